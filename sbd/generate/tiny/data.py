"""The bank images the tiny generator trains on: class list, signature, object crops,
loading."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from sbd.data import layout
from sbd.data.images import SkippedImages, UnreadableImage, is_image_file, read_image
from sbd.files import staged_path
from sbd.generate.tiny.config import IMAGE_CACHE

log = logging.getLogger(__name__)


def bank_classes(data_dir: str | Path) -> list[str]:
    """The class wnids of the bank under ``data_dir`` (sorted), with at least one image."""
    root = layout.bank_dir(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"No bank folder {root} (expected <wnid>/*.JPEG; build the "
                                "phantom or extract an ILSVRC-layout bank first).")
    wnids = sorted(d.name for d in root.iterdir() if d.is_dir() and _images_in(d))
    if not wnids:
        raise FileNotFoundError(f"Bank folder {root} holds no <wnid>/*.JPEG images.")
    return wnids


def bank_signature(data_dir: str | Path) -> str:
    """A short hash of the bank's classes and image names: which bank a model was trained on."""
    import hashlib

    root = layout.bank_dir(data_dir)
    h = hashlib.sha256()
    for w in bank_classes(data_dir):
        h.update(w.encode())
        for p in _images_in(root / w):
            h.update(p.name.encode())
    return h.hexdigest()[:16]


def _images_in(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if is_image_file(p))


def object_box(img: np.ndarray, min_fraction: float = 0.02) -> tuple[int, int, int, int]:
    """A square box ``(x0, y0, x1, y1)`` around the object of an image on a smooth background.

    A quadratic colour surface is fitted to the image's border; pixels far from it (more than
    ``max(40, 2 × the border's 90th-percentile residual)``) are the object. Backgrounds that
    a smooth surface does not fit (stripes, textures) leave most pixels "object": the box
    then grows to the whole image, so the crop does no harm there.

    Parameters
    ----------
    img : (H, W, 3) array
    min_fraction : below this share of object pixels the whole image is returned.
    """
    a = np.asarray(img, dtype=np.float32)
    h, w, _ = a.shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    basis = np.stack([np.ones_like(xx), xx, yy, xx * xx, yy * yy, xx * yy], -1)
    b = max(2, h // 32)
    border = np.zeros((h, w), bool)
    border[:b] = border[-b:] = True
    border[:, :b] = border[:, -b:] = True
    coef, *_ = np.linalg.lstsq(basis[border], a[border], rcond=None)
    residual = np.linalg.norm(a - basis @ coef, axis=-1)
    mask = residual > max(40.0, 2.0 * float(np.percentile(residual[border], 90)))
    if mask.sum() < min_fraction * h * w:
        return 0, 0, w, h
    ys, xs = np.nonzero(mask)
    x0, x1 = np.percentile(xs, [1, 99])
    y0, y1 = np.percentile(ys, [1, 99])
    side = min(max(x1 - x0, y1 - y0) * 1.15 + 4, min(h, w))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), w - side)))
    top = int(round(min(max(cy - side / 2, 0), h - side)))
    return left, top, left + int(round(side)), top + int(round(side))


def load_image(path: str | Path, size: int, crop: bool = False) -> np.ndarray:
    """One image as a (size, size, 3) uint8 array: centre square (or, with ``crop``, the
    square around its object, :func:`object_box`), area-resized.  Raises
    :class:`sbd.data.images.UnreadableImage` for a file that cannot be read."""
    im = read_image(path, draft=(size * 2, size * 2))  # JPEG: decode at a reduced scale
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if crop:
        im = im.crop(object_box(np.asarray(im)))
    return np.asarray(im.resize((size, size), Image.BOX), dtype=np.uint8)


def load_bank(data_dir: str | Path, size: int, max_per_class: int = 0,
              cache_dir: str | Path | None = None, progress: bool = True,
              crop: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The bank images at ``size`` px (object-cropped with ``crop``, see :func:`load_image`).

    Returns
    -------
    images : (N, size, size, 3) uint8
    labels : (N,) int64 class indices into ``wnids``
    wnids : list of C class wnids (sorted)
    """
    wnids = bank_classes(data_dir)
    cache = Path(cache_dir) / IMAGE_CACHE.format(size=size, crop=int(crop)) if cache_dir else None
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if (list(z["wnids"]) == wnids and int(z["max_per_class"]) == max_per_class
                    and "signature" in z.files and str(z["signature"]) == bank_signature(data_dir)):
                return z["images"], z["labels"], wnids
    record = SkippedImages(data_dir)
    known = record.read()  # skipped by another consumer (extract_features): not read again
    paths, labels = [], []
    for i, w in enumerate(wnids):
        files = [f for f in _images_in(layout.bank_dir(data_dir) / w)
                 if record.key(f) not in known]
        files = files[:max_per_class] if max_per_class > 0 else files
        paths += files
        labels += [i] * len(files)
    images, kept, skipped = [], [], []
    for j, p in enumerate(tqdm(paths, desc="tiny: bank images", unit="img",
                               disable=not progress)):
        try:
            images.append(load_image(p, size, crop))
            kept.append(j)
        except UnreadableImage as err:
            skipped.append((p, err.reason))
    if skipped:
        record.add_many(skipped, "tiny")
        log.warning("tiny: %d unreadable bank image(s) skipped (listed in %s): %s",
                    len(skipped), record.path, ", ".join(str(p) for p, _ in skipped[:5]))
    if not images:
        raise ValueError(f"No readable bank image under {layout.bank_dir(data_dir)}.")
    images = np.stack(images)
    labels = np.asarray(labels, dtype=np.int64)[kept]
    if cache is not None:
        with staged_path(cache) as tmp:
            np.savez(tmp, images=images, labels=labels, wnids=np.asarray(wnids),
                     max_per_class=max_per_class, signature=bank_signature(data_dir))
    return images, labels, wnids
