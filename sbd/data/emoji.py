"""Emoji as pictures of WordNet concepts: the glyph table and the drawings of the phantom.

Each emoji of the Noto Color Emoji font (Debian ``fonts-noto-color-emoji``) whose Unicode
name names a physical thing is mapped to a WordNet 3.0 noun synset:

1. the codepoint must lie in a pictograph block (:data:`EMOJI_RANGES`);
2. :data:`OVERRIDES` decides first, where the name misleads (``TURTLE`` → the reptile, not
   the sweater; ``None`` drops an emoji: people, body parts, signs, zodiac…);
3. otherwise the lower-cased name (``HOT DOG`` → ``hot_dog``), then the name without a final
   ``FACE`` (``DOG FACE`` → ``dog``), is looked up and the first noun sense that passes (4)
   is taken;
4. a synset passes when its lexicographer file is one of :data:`ALLOWED_LEXNAMES`
   (animals, plants, foods, artifacts, natural objects), its hypernym paths reach
   ``physical_entity.n.01`` and none of them runs through ``person.n.01``.

Several emoji may map to one synset (``DOG`` and ``DOG FACE``): they are different drawings of
one category. A second font (Debian ``fonts-symbola``: monochrome glyphs) gives more drawings;
the phantom uses them for part of its labelled bank, so that bank and stimuli are different
pictures of one concept, as photos of one ImageNet class are.

:func:`compose` puts a glyph on a random background (solid, gradient, radial, texture,
stripes) with random scale, rotation, flip, position, colour jitter, blur and noise.
"""

from __future__ import annotations

import functools
import hashlib
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from sbd.data.files import file_sha256

__all__ = [
    "ALLOWED_LEXNAMES", "EMOJI_RANGES", "OVERRIDES", "Category", "Fonts", "COLOR_SIZE",
    "find_fonts", "categories", "is_physical", "synset_of_codepoint", "table_sha256",
    "render_glyph", "compose",
]

COLOR_SIZE = 109  # the only size of Noto Color Emoji's bitmap strikes (CBDT)
OUTLINE_SIZE = 128

COLOR_FONT_PATHS = (
    "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/noto/NotoColorEmoji.ttf",
    "/usr/share/fonts/google-noto-emoji/NotoColorEmoji.ttf",
    "/usr/local/share/fonts/NotoColorEmoji.ttf",
)
OUTLINE_FONT_PATHS = (
    "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
    "/usr/share/fonts/truetype/ancient-scripts/Symbola.ttf",
    "/usr/share/fonts/truetype/symbola/Symbola.ttf",
    "/usr/share/fonts/TTF/Symbola.ttf",
    "/usr/local/share/fonts/Symbola.ttf",
)

ALLOWED_LEXNAMES = frozenset(
    {"noun.animal", "noun.plant", "noun.food", "noun.artifact", "noun.object"})

EMOJI_RANGES = (
    (0x2300, 0x23FF),    # Miscellaneous Technical (watch, hourglass, keyboard…)
    (0x2600, 0x27BF),    # Miscellaneous Symbols, Dingbats
    (0x1F300, 0x1F5FF),  # Miscellaneous Symbols and Pictographs
    (0x1F680, 0x1F6FF),  # Transport and Map Symbols
    (0x1F900, 0x1F9FF),  # Supplemental Symbols and Pictographs
    (0x1FA70, 0x1FAFF),  # Symbols and Pictographs Extended-A
)

# Curated mapping where the Unicode name misleads: codepoint → synset name, or None to drop.
OVERRIDES: dict[int, str | None] = {
    # wrong sense of the name
    0x2696: "scale.n.07", 0x26CF: "pickax.n.01", 0x26D3: "chain.n.03", 0x1F30B: "volcano.n.02",
    0x1F330: "chestnut.n.03", 0x1F336: "hot_pepper.n.02", 0x1F352: "cherry.n.03",
    0x1F36D: "lollipop.n.02", 0x1F3E6: "bank.n.09", 0x1F40F: "ram.n.05",
    0x1F414: "chicken.n.02", 0x1F419: "octopus.n.02", 0x1F421: "puffer.n.02",
    0x1F422: "turtle.n.02", 0x1F42C: "dolphin.n.02", 0x1F48A: "pill.n.02", 0x1F48D: "ring.n.08",
    0x1F4FA: "television_receiver.n.01", 0x1F528: "hammer.n.02", 0x1F579: "joystick.n.01",
    0x1F68A: "streetcar.n.01", 0x1F6BD: "toilet.n.02", 0x1F6D6: "hovel.n.01",
    0x1F6F4: "scooter.n.02", 0x1F952: "cucumber.n.02", 0x1F95C: "peanut.n.04",
    0x1F966: "broccoli.n.02", 0x1F96D: "mango.n.02", 0x1F991: "squid.n.02",
    0x1F994: "hedgehog.n.02", 0x1F99A: "peacock.n.02", 0x1F99E: "lobster.n.02",
    0x1F9A8: "skunk.n.04", 0x1F9AB: "beaver.n.07", 0x1F9AD: "seal.n.09", 0x1F9E4: "glove.n.02",
    0x1FA9D: "hook.n.04", 0x1FAA6: "gravestone.n.01", 0x1FAB8: "coral.n.04",
    0x1FAD0: "blueberry.n.02", 0x1FAD1: "sweet_pepper.n.02", 0x1F5FD: "statue.n.01",
    0x1F512: "padlock.n.01", 0x1F346: "eggplant.n.01", 0x1F3A9: "dress_hat.n.01",
    0x2328: "computer_keyboard.n.01", 0x23F2: "clock.n.01",
    # names that do not match a lemma as written
    0x2615: "coffee_cup.n.01", 0x260E: "telephone.n.01", 0x2614: "umbrella.n.01",
    0x1F302: "umbrella.n.01", 0x265F: "pawn.n.03", 0x2694: "sword.n.01",
    0x2702: "scissors.n.01", 0x2712: "nib.n.01", 0x26B1: "urn.n.01", 0x26C4: "snowman.n.01",
    0x26D1: "helmet.n.02", 0x26E9: "shrine.n.01", 0x26FD: "gas_pump.n.01",
    0x1F309: "bridge.n.01", 0x1F332: "evergreen.n.01", 0x1F333: "tree.n.01",
    0x1F33D: "ear.n.05", 0x1F340: "clover.n.01", 0x1F341: "leaf.n.01", 0x1F342: "leaf.n.01",
    0x1F34E: "apple.n.01", 0x1F34F: "apple.n.01", 0x1F355: "pizza.n.01",
    0x1F357: None, 0x1F358: "cracker.n.01", 0x1F35A: "rice.n.01",
    0x1F35B: "curry.n.01", 0x1F360: "sweet_potato.n.02", 0x1F365: "fish_cake.n.01",
    0x1F373: "frying_pan.n.01", 0x1F375: "teacup.n.02", 0x1F377: "wineglass.n.01",
    0x1F378: "cocktail.n.01", 0x1F37C: "feeding_bottle.n.01", 0x1F383: "pumpkin.n.02",
    0x1F387: "sparkler.n.02", 0x1F392: "backpack.n.01", 0x1F393: "mortarboard.n.02",
    0x1F399: "microphone.n.01", 0x1F3A0: "carousel.n.02", 0x1F3A3: "fishing_rod.n.01",
    0x1F3A8: "palette.n.02", 0x1F3B1: "billiard_ball.n.01", 0x1F3B2: "die.n.01",
    0x1F3B3: "bowling_ball.n.01", 0x1F3B9: "piano.n.01", 0x1F3BE: "tennis_racket.n.01",
    0x1F3BF: "ski.n.01", 0x1F3C0: "basketball.n.02", 0x1F3C1: "flag.n.01",
    0x1F3C6: None, 0x1F3C8: "football.n.02", 0x1F3C9: "rugby_ball.n.01",
    0x1F3CD: "motorcycle.n.01", 0x1F3CF: "cricket_bat.n.01", 0x1F3D1: "hockey_stick.n.01",
    0x1F3D2: "puck.n.02", 0x1F3D3: "table-tennis_racquet.n.01", 0x1F3D4: "mountain.n.01",
    0x1F3D8: "house.n.01", 0x1F3DA: "house.n.01", 0x1F3E0: "house.n.01", 0x1F3E1: "house.n.01",
    0x1F3DD: "island.n.01", 0x1F3EE: "lantern.n.01", 0x1F3EF: "castle.n.02",
    0x1F3F0: "castle.n.02", 0x1F3F3: "flag.n.01", 0x1F3F8: "shuttlecock.n.01",
    0x1F41A: "seashell.n.01", 0x1F420: "fish.n.01", 0x1F423: "chick.n.01",
    0x1F424: "chick.n.01", 0x1F425: "chick.n.01", 0x1F42A: "dromedary.n.01",
    0x1F433: "whale.n.02", 0x1F452: "hat.n.01", 0x1F455: "tee_shirt.n.01",
    0x1F45A: "blouse.n.01", 0x1F45E: "shoe.n.01", 0x1F45F: "gym_shoe.n.01",
    0x1F461: "sandal.n.01", 0x1F462: "boot.n.01", 0x1F4A1: "light_bulb.n.01",
    0x1F4B0: "moneybag.n.01", 0x1F4C2: "file_folder.n.01", 0x1F4CD: "thumbtack.n.01",
    0x1F4CF: "ruler.n.02", 0x1F4D3: None, 0x1F4D4: None,
    0x1F4D5: "book.n.02", 0x1F4D6: "book.n.02", 0x1F4D7: "book.n.02", 0x1F4D8: "book.n.02",
    0x1F4D9: "book.n.02", 0x1F4E0: "fax.n.01", 0x1F4E1: "dish.n.05",
    0x1F4E2: "loudspeaker.n.01", 0x1F4E3: "megaphone.n.01", 0x1F4E4: "tray.n.01",
    0x1F4E5: "tray.n.01", 0x1F4E8: "envelope.n.01", 0x1F4EA: "mailbox.n.01",
    0x1F4EB: "mailbox.n.01", 0x1F4EC: "mailbox.n.01", 0x1F4ED: "mailbox.n.01",
    0x1F4F8: "camera.n.01", 0x1F4FF: None, 0x1F509: "loudspeaker.n.01",
    0x1F50A: "loudspeaker.n.01", 0x1F50C: "plug.n.05", 0x1F50D: "magnifier.n.01",
    0x1F50E: "magnifier.n.01", 0x1F513: "padlock.n.01", 0x1F526: "flashlight.n.01",
    0x1F52A: "knife.n.01", 0x1F52E: None, 0x1F531: "trident.n.01",
    0x1F54A: "dove.n.01", 0x1F570: "clock.n.01", 0x1F576: "sunglasses.n.01",
    0x1F587: "paper_clip.n.01", 0x1F58A: "ballpoint.n.01", 0x1F58B: "fountain_pen.n.01",
    0x1F58C: "paintbrush.n.01", 0x1F58D: "crayon.n.01", 0x1F5B1: "mouse.n.04",
    0x1F5BC: "picture_frame.n.01", 0x1F5DC: "clamp.n.01", 0x1F5DD: "key.n.01",
    0x1F5DE: "newspaper.n.03", 0x1F5E1: "dagger.n.01", 0x1F5F3: "ballot_box.n.01",
    0x1F5FC: "tower.n.01", 0x1F684: "bullet_train.n.01", 0x1F685: "bullet_train.n.01",
    0x1F687: "subway_train.n.01", 0x1F68B: "streetcar.n.01", 0x1F68D: "bus.n.01",
    0x1F694: "cruiser.n.01", 0x1F696: "cab.n.03", 0x1F698: "car.n.01",
    0x1F69D: None, 0x1F6A0: "cable_car.n.01", 0x1F6CB: "sofa.n.01",
    0x1F6CE: "bell.n.01", 0x1F6D2: "shopping_cart.n.01", 0x1F6D5: "temple.n.01",
    0x1F6DF: "life_buoy.n.01", 0x1F6E2: "drum.n.04", 0x1F6E4: "railroad_track.n.01",
    0x1F6E5: "motorboat.n.01", 0x1F6E9: "airplane.n.01", 0x1F941: "drum.n.01",
    0x1F943: "tumbler.n.02", 0x1F94F: "frisbee.n.01", 0x1F956: "baguet.n.01",
    0x1F958: "paella.n.01", 0x1F95B: "milk.n.01", 0x1F95D: "kiwi.n.03", 0x1F963: "bowl.n.03",
    0x1F96C: "lettuce.n.03", 0x1F97E: "boot.n.01", 0x1FA71: "swimsuit.n.01",
    0x1FA74: "flip-flop.n.02", 0x1F996: "tyrannosaur.n.01", 0x1F9BD: "wheelchair.n.01",
    0x1F9C0: "cheese.n.01", 0x1F9E2: "baseball_cap.n.01", 0x1F9E9: "jigsaw_puzzle.n.01",
    0x1F9F5: "spool.n.01", 0x1F9F6: "yarn.n.02", 0x1F9FC: "soap.n.01", 0x1FA80: "yo-yo.n.01",
    0x1FA84: "wand.n.01", 0x1FA86: "doll.n.01", 0x1FA94: "oil_lamp.n.01",
    0x1FA96: "helmet.n.02", 0x1FA98: "drum.n.01", 0x1FA9A: "handsaw.n.01",
    0x1FAA4: "mousetrap.n.01", 0x1FAB4: "houseplant.n.01", 0x1FAB9: "nest.n.01",
    0x1FABA: "nest.n.01", 0x1F916: "robot.n.01",
    # dropped: symbols, zodiac, people, body parts, places drawn as icons, myths
    0x2620: None, 0x2648: None, 0x2649: None, 0x264A: None, 0x264B: None, 0x264C: None,
    0x264D: None, 0x264E: None, 0x264F: None, 0x2650: None, 0x2651: None, 0x2652: None,
    0x2653: None, 0x26CE: None, 0x2668: None, 0x1F3A6: None, 0x1F3C3: None, 0x1F3D9: None,
    0x1F409: None, 0x1F432: None, 0x1F440: None, 0x1F441: None, 0x1F442: None,
    0x1F443: None, 0x1F444: None, 0x1F445: None, 0x1F468: None, 0x1F476: None,
    0x1F48F: None, 0x1F49C: None, 0x1F525: None, 0x1F54B: None, 0x1F573: None,
    0x1F689: None, 0x1F6BB: None, 0x1F6BE: None, 0x1F6C0: None, 0x1F6C4: None,
    0x1F6CC: None, 0x1F6D0: None, 0x1F9B5: None, 0x1F9B6: None, 0x1F9B7: None,
    0x1F9CC: None, 0x1F9D1: None, 0x1F9DF: None, 0x1F9E0: None, 0x1FA7B: None,
    0x1FAB5: None, 0x1FAE7: None, 0x2744: None, 0x1F384: None, 0x271D: None,
}

_PHYSICAL = "physical_entity.n.01"
_PERSON = "person.n.01"


@dataclass(frozen=True)
class Category:
    """One WordNet category of the phantom and its glyphs.

    Attributes
    ----------
    wnid : WordNet 3.0 noun offset, ``"n02084071"``.
    synset : synset name, ``"dog.n.01"``.
    name : first lemma, underscores as spaces.
    chars : the emoji (one character each) that draw it, in codepoint order.
    outline_chars : those of ``chars`` the outline font also has (may be empty).
    """

    wnid: str
    synset: str
    name: str
    chars: tuple[str, ...]
    outline_chars: tuple[str, ...]


@dataclass(frozen=True)
class Fonts:
    """Paths of the colour font (required) and the outline font (optional)."""

    color: Path
    outline: Path | None

    def sha256(self) -> dict[str, str | None]:
        """Content hashes, so that a different font version rebuilds the phantom."""
        return {"color": file_sha256(self.color),
                "outline": file_sha256(self.outline) if self.outline else None}


def find_fonts(color: str | Path | None = None, outline: str | Path | None = None,
               use_outline: bool = True) -> Fonts:
    """Locate the emoji fonts.

    ``color`` / ``outline`` (or env ``SBD_EMOJI_FONT`` / ``SBD_OUTLINE_FONT``) override the
    search of the usual Debian paths. A missing colour font raises FileNotFoundError saying
    what to install; a missing outline font only means the bank has colour drawings only.
    """
    color = color or os.environ.get("SBD_EMOJI_FONT")
    if color:
        color_path = Path(color)
        if not color_path.is_file():
            raise FileNotFoundError(f"Emoji font {color_path} does not exist.")
    else:
        color_path = next((Path(p) for p in COLOR_FONT_PATHS if Path(p).is_file()), None)
        if color_path is None:
            raise FileNotFoundError(
                "Noto Color Emoji not found (looked in: " + ", ".join(COLOR_FONT_PATHS)
                + "). Install it: `apt-get install fonts-noto-color-emoji`, or set "
                "SBD_EMOJI_FONT to NotoColorEmoji.ttf.")
    outline_path = None
    if use_outline:
        outline = outline or os.environ.get("SBD_OUTLINE_FONT")
        if outline:
            outline_path = Path(outline)
            if not outline_path.is_file():
                raise FileNotFoundError(f"Outline font {outline_path} does not exist.")
        else:
            outline_path = next((Path(p) for p in OUTLINE_FONT_PATHS if Path(p).is_file()),
                                None)
    return Fonts(color_path, outline_path)


@functools.lru_cache(maxsize=8)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap())


def is_physical(syn) -> bool:
    """True when an NLTK noun synset is a physical thing of an allowed kind.

    Its lexicographer file is in :data:`ALLOWED_LEXNAMES`, a hypernym path reaches
    ``physical_entity.n.01`` and no path runs through ``person.n.01``.
    """
    if syn.pos() != "n" or syn.lexname() not in ALLOWED_LEXNAMES:
        return False
    on_paths = {s.name() for path in syn.hypernym_paths() for s in path}
    return _PHYSICAL in on_paths and _PERSON not in on_paths


def _name_candidates(uname: str) -> list[str]:
    words = uname.lower().replace("-", " ").split()
    out = ["_".join(words)]
    if len(words) > 1 and words[-1] == "face":
        out.append("_".join(words[:-1]))
    return out


def synset_of_codepoint(cp: int, wn=None):
    """The synset an emoji codepoint maps to (rules in the module docstring), or None."""
    if wn is None:
        from sbd.wordnet import get_wordnet

        wn = get_wordnet()
    if not any(lo <= cp <= hi for lo, hi in EMOJI_RANGES):
        return None
    if cp in OVERRIDES:
        name = OVERRIDES[cp]
        return None if name is None else wn.synset(name)
    uname = unicodedata.name(chr(cp), None)
    if uname is None:
        return None
    for cand in _name_candidates(uname):
        for syn in wn.synsets(cand, pos="n"):
            if is_physical(syn):
                return syn
    return None


@functools.lru_cache(maxsize=4)
def _categories(color: str, outline: str | None) -> tuple[Category, ...]:
    from sbd.wordnet import get_wordnet, wnid_of

    wn = get_wordnet()
    color_cps = _cmap(color)
    outline_cps = _cmap(outline) if outline else frozenset()
    by_wnid: dict[str, tuple[object, list[int]]] = {}
    for cp in sorted(color_cps):
        syn = synset_of_codepoint(cp, wn)
        if syn is None:
            continue
        if cp in OVERRIDES and not is_physical(syn):
            raise ValueError(f"OVERRIDES maps U+{cp:X} to {syn.name()}, which is not a "
                             "physical object of an allowed kind.")
        by_wnid.setdefault(wnid_of(syn), (syn, []))[1].append(cp)
    out = []
    for wnid in sorted(by_wnid):
        syn, cps = by_wnid[wnid]
        out.append(Category(
            wnid=wnid, synset=syn.name(), name=syn.lemma_names()[0].replace("_", " "),
            chars=tuple(chr(c) for c in cps),
            outline_chars=tuple(chr(c) for c in cps if c in outline_cps)))
    return tuple(out)


def categories(fonts: Fonts | None = None) -> list[Category]:
    """All categories the fonts can draw, sorted by wnid (several hundred with Noto)."""
    fonts = fonts or find_fonts()
    return list(_categories(str(fonts.color), str(fonts.outline) if fonts.outline else None))


def table_sha256(cats: list[Category]) -> str:
    """Hash of the emoji → wnid table (recorded in the phantom's manifest)."""
    text = "\n".join(f"{c.wnid}\t{''.join(c.chars)}\t{''.join(c.outline_chars)}" for c in cats)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=4)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size=size)


@functools.lru_cache(maxsize=4096)
def _color_glyph(path: str, char: str) -> Image.Image:
    font = _font(path, COLOR_SIZE)
    canvas = Image.new("RGBA", (COLOR_SIZE * 2, COLOR_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((COLOR_SIZE // 2, COLOR_SIZE // 2), char, font=font,
                                embedded_color=True)
    return _crop(canvas, char)


@functools.lru_cache(maxsize=4096)
def _outline_mask(path: str, char: str, hollow: bool) -> Image.Image:
    font = _font(path, OUTLINE_SIZE)
    canvas = Image.new("L", (OUTLINE_SIZE * 2, OUTLINE_SIZE * 2), 0)
    draw = ImageDraw.Draw(canvas)
    xy = (OUTLINE_SIZE // 2, OUTLINE_SIZE // 2)
    if hollow:  # a line drawing: the glyph's contour only
        draw.text(xy, char, font=font, fill=0, stroke_width=3, stroke_fill=255)
        draw.text(xy, char, font=font, fill=0)
    else:
        draw.text(xy, char, font=font, fill=255)
    return _crop(canvas, char)


def _crop(img: Image.Image, char: str) -> Image.Image:
    alpha = img.getchannel("A") if img.mode == "RGBA" else img
    box = alpha.getbbox()
    if box is None:
        raise ValueError(f"Glyph U+{ord(char):X} renders empty.")
    return img.crop(box)


def render_glyph(char: str, fonts: Fonts, style: str = "color",
                 rng: np.random.Generator | None = None) -> Image.Image:
    """One glyph as a tightly cropped RGBA image.

    ``style="color"``: the Noto bitmap. ``style="outline"``: the outline font's glyph as a
    filled silhouette or a line drawing (chosen by ``rng``), in a random dark or bright ink.
    """
    if style == "color":
        return _color_glyph(str(fonts.color), char)
    if style != "outline":
        raise ValueError(f"Unknown style={style!r}; valid: color, outline.")
    if fonts.outline is None:
        raise ValueError("style='outline' needs an outline font (apt-get install fonts-symbola).")
    rng = rng or np.random.default_rng(0)
    mask = _outline_mask(str(fonts.outline), char, bool(rng.random() < 0.5))
    ink = tuple(int(v) for v in (rng.integers(0, 90, 3) if rng.random() < 0.7
                                 else rng.integers(150, 256, 3)))
    out = Image.new("RGBA", mask.size, ink + (0,))
    out.putalpha(mask)
    return out


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random (size, size, 3) float32 background in [0, 255]."""
    c1 = rng.uniform(0, 255, 3).astype(np.float32)
    c2 = rng.uniform(0, 255, 3).astype(np.float32)
    kind = rng.integers(0, 5)
    axis = np.linspace(0.0, 1.0, size, dtype=np.float32)
    yy, xx = axis[:, None], axis[None, :]
    if kind == 0:  # solid
        t = np.zeros((size, size), np.float32)
    elif kind == 1:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * np.pi)
        t = np.float32(np.cos(a)) * xx + np.float32(np.sin(a)) * yy
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    elif kind == 2:  # radial gradient
        cx, cy = rng.uniform(0, 1, 2).astype(np.float32)
        t = np.sqrt((xx - cx) ** 2 + (yy - cy) ** 2)
        t = t / max(float(t.max()), 1e-6)
    elif kind == 3:  # smooth random texture
        g = int(rng.integers(3, 9))
        small = Image.fromarray((rng.random((g, g)) * 255).astype(np.uint8))
        t = np.asarray(small.resize((size, size), Image.BICUBIC), np.float32) / 255.0
    else:  # stripes
        a = rng.uniform(0, np.pi)
        f = rng.uniform(3, 12)
        t = 0.5 + 0.5 * np.sin(np.float32(2 * np.pi * f)
                               * (np.float32(np.cos(a)) * xx + np.float32(np.sin(a)) * yy))
    t = np.broadcast_to(t, (size, size)).astype(np.float32)
    return c1 + (c2 - c1) * t[..., None]


def _jitter(glyph: Image.Image, rng: np.random.Generator) -> Image.Image:
    rgb, alpha = glyph.convert("RGB"), glyph.getchannel("A")
    rgb = ImageEnhance.Brightness(rgb).enhance(rng.uniform(0.7, 1.3))
    rgb = ImageEnhance.Contrast(rgb).enhance(rng.uniform(0.7, 1.3))
    rgb = ImageEnhance.Color(rgb).enhance(rng.uniform(0.6, 1.4))
    shift = int(rng.integers(-12, 13))  # small hue rotation (of 256)
    if shift:
        h, s, v = rgb.convert("HSV").split()
        h = h.point(lambda x: (x + shift) % 256)
        rgb = Image.merge("HSV", (h, s, v)).convert("RGB")
    out = rgb.convert("RGBA")
    out.putalpha(alpha)
    return out


def compose(glyph: Image.Image, rng: np.random.Generator, size: int = 256) -> Image.Image:
    """Draw an RGBA glyph on a random background with random geometry, colour and noise.

    Parameters
    ----------
    glyph : RGBA image (from :func:`render_glyph`).
    rng : the source of every random choice (one image ↔ one generator state).
    size : side of the square output.

    Returns
    -------
    RGB image (size, size).
    """
    bg = Image.fromarray(_background(rng, size).astype(np.uint8))
    g = _jitter(glyph, rng)
    if rng.random() < 0.5:
        g = g.transpose(Image.FLIP_LEFT_RIGHT)
    g = g.rotate(float(rng.uniform(-30, 30)), resample=Image.BICUBIC, expand=True)
    scale = rng.uniform(0.45, 0.85) * size / max(g.size)
    g = g.resize((max(1, round(g.width * scale)), max(1, round(g.height * scale))),
                 Image.LANCZOS)
    x = int(rng.integers(0, max(size - g.width, 0) + 1))
    y = int(rng.integers(0, max(size - g.height, 0) + 1))
    bg.paste(g, (x, y), g)
    if rng.random() < 0.3:
        bg = bg.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    arr = np.asarray(bg, np.float32)
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * np.float32(rng.uniform(0.0, 12.0))
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8))
