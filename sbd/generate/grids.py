"""Image grids of the generate step: one row per test sample, and an overview of all rows.

A sample row::

    ┌──────────┬────────────────────┬─────────┬─────────┬─────────┐
    │ stimulus │ true: tench        │ 1 tench │ 2 carp  │ 3 eel   │
    │          │ 1 tench      0.61  │ (image) │ (image) │ (image) │
    │          │ 2 carp       0.20  │         │         │         │
    └──────────┴────────────────────┴─────────┴─────────┴─────────┘

With ``n_per_label > 1`` each rank gets that many image columns.
"""

from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MISSING = (200, 200, 200)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow built without FreeType
        return ImageFont.load_default()


def _fit(img: Image.Image | None, tile: int) -> Image.Image:
    if img is None:
        out = Image.new("RGB", (tile, tile), MISSING)
        ImageDraw.Draw(out).text((tile // 2, tile // 2), "no image", fill=INK, anchor="mm",
                                 font=_font(max(8, tile // 10)))
        return out
    img = img.convert("RGB")
    scale = tile / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    resample = Image.NEAREST if scale >= 2 else Image.LANCZOS
    out = Image.new("RGB", (tile, tile), BACKGROUND)
    out.paste(img.resize(size, resample), ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return out


def _clip(text: str, font: ImageFont.ImageFont, width: int) -> str:
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def sample_grid(stimulus: Image.Image | None, generated: Sequence[Sequence[Image.Image]],
                names: Sequence[str], scores: Sequence[float] | None = None,
                true_name: str | None = None, title: str | None = None,
                tile: int = 128) -> Image.Image:
    """One sample: stimulus | decoded top-k names | generated images.

    Parameters
    ----------
    stimulus : the seen image (None: a grey "no image" tile).
    generated : K lists of images, one list per decoded label (rank order).
    names : K label names (rank order); ``scores`` their K scores (optional).
    true_name : the true label's name, shown above the ranking.
    title : first text line (e.g. the sample id).
    tile : side of each image tile in pixels.

    Returns
    -------
    RGB image of height ``tile + caption`` and width ``tile * (2 + sum of images)``.
    """
    if len(generated) != len(names):
        raise ValueError(f"{len(generated)} generated image lists but {len(names)} names.")
    caption_h = max(12, tile // 8)
    font = _font(max(9, tile // 11))
    cap_font = _font(max(8, tile // 12))
    n_img = sum(len(g) for g in generated)
    text_w = int(tile * 1.5)
    width = tile + text_w + tile * n_img
    out = Image.new("RGB", (width, tile + caption_h), BACKGROUND)
    draw = ImageDraw.Draw(out)
    out.paste(_fit(stimulus, tile), (0, 0))
    draw.text((tile // 2, tile + caption_h // 2), "stimulus", fill=INK, anchor="mm", font=cap_font)
    lines = ([title] if title else []) + ([f"true: {true_name}"] if true_name else [])
    for r, name in enumerate(names):
        score = f" {scores[r]:.2f}" if scores is not None and r < len(scores) else ""
        lines.append(f"{r + 1} {name}{score}")
    line_h = font.size + 3 if hasattr(font, "size") else 12
    for i, line in enumerate(lines):
        y = 4 + i * line_h
        if y + line_h > tile + caption_h:
            break
        draw.text((tile + 6, y), _clip(line, font, text_w - 10), fill=INK, font=font)
    x = tile + text_w
    for r, images in enumerate(generated):
        for img in images:
            out.paste(_fit(img, tile), (x, 0))
            cap = _clip(f"{r + 1} {names[r]}", cap_font, tile - 4)
            draw.text((x + tile // 2, tile + caption_h // 2), cap, fill=INK, anchor="mm",
                      font=cap_font)
            x += tile
    return out


def overview_grid(rows: Sequence[Image.Image], max_height: int = 12000) -> Image.Image:
    """Stack sample rows vertically (left-aligned, 2 px gaps), scaled down to ``max_height``."""
    if not rows:
        raise ValueError("overview_grid needs at least one row.")
    gap = 2
    width = max(r.width for r in rows)
    height = sum(r.height for r in rows) + gap * (len(rows) - 1)
    out = Image.new("RGB", (width, height), (235, 235, 235))
    y = 0
    for r in rows:
        out.paste(r.convert("RGB"), (0, y))
        y += r.height + gap
    if height > max_height:
        scale = max_height / height
        out = out.resize((max(1, round(width * scale)), max_height), Image.LANCZOS)
    return out
