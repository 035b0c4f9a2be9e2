"""One image reader for every consumer (features, the tiny generator's bank, generate's
stimulus thumbnails, the image metrics, the human-evaluation study), and one record of the
images it could not read, per data folder.

:func:`read_image` returns an RGB :class:`PIL.Image.Image`, fully decoded, or raises
:class:`UnreadableImage` with the reason.  What real image folders hold (ImageNet's training
set has a few of each):

=====================  ==============================================================
zero-byte file         unreadable: "empty file (0 bytes)"
truncated / cut off    unreadable: "truncated (…)" — never decoded with grey padding
not an image           unreadable: "not an image PIL can identify"
PNG named ``.JPEG``    read: the format comes from the content, not the name
CMYK JPEG              read: converted to RGB
16-bit / 32-bit        read: scaled to 8 bits (not clipped at 255)
palette (``P``)        read: through RGBA when it has transparency
alpha (LA, RGBA)       read: composited on white
EXIF-rotated           read: turned upright (``ImageOps.exif_transpose``)
=====================  ==============================================================

:class:`SkippedImages` is the record: ``<data_dir>/skipped_images.csv`` (path relative to
the data folder, reason, the consumer that met it), rewritten atomically (temp + rename),
so every consumer sees what another skipped, and a run counts them.
"""

from __future__ import annotations

import csv
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from sbd.files import staged_path

__all__ = ["UnreadableImage", "read_image", "try_read_image", "SkippedImages", "SKIPPED_FILE",
           "IMAGE_EXTENSIONS", "is_image_file"]

SKIPPED_FILE = "skipped_images.csv"
# what counts as an image file in a stimulus folder or a bank (by name; the content decides
# the format, so a PNG named .JPEG is read as a PNG)
IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_FIELDS = ("path", "reason", "consumer")


class UnreadableImage(ValueError):
    """An image file that cannot be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def is_image_file(path: str | Path) -> bool:
    """A visible file with an image extension (:data:`IMAGE_EXTENSIONS`, any case)."""
    p = Path(path)
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") else max(float(a.max()), 1.0)
        if mode == "F" and a.max() <= 1.0:
            hi = 1.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def read_image(path: str | Path, draft: tuple[int, int] | None = None) -> Image.Image:
    """The image at ``path`` as a decoded RGB image (module doc), or :class:`UnreadableImage`.

    ``draft`` (w, h): let a JPEG decode at a reduced scale no smaller than that (fast
    thumbnails); exact pixels otherwise.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UnreadableImage(path, f"missing ({err.strerror or err})") from err
    if size == 0:
        raise UnreadableImage(path, "empty file (0 bytes)")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # a library set it globally: we never want it
        ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF / palette / decompression-bomb notes
            with Image.open(path) as im:
                if draft is not None and im.format == "JPEG":
                    im.draft("RGB", tuple(int(v) for v in draft))
                im.load()
                im = ImageOps.exif_transpose(im) or im
                out = _to_rgb(im)
                out.load()
                return out.copy() if out is im else out
    except UnidentifiedImageError as err:
        raise UnreadableImage(path, "not an image PIL can identify") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        text = str(err)
        reason = (f"truncated ({text})" if "truncated" in text or "broken data stream" in text
                  else f"{err.__class__.__name__}: {text}")
        raise UnreadableImage(path, reason) from err


def try_read_image(path: str | Path, draft: tuple[int, int] | None = None
                   ) -> tuple[Image.Image | None, str]:
    """``(image, "")``, or ``(None, reason)`` for an unreadable file."""
    try:
        return read_image(path, draft), ""
    except UnreadableImage as err:
        return None, err.reason


class SkippedImages:
    """The images of one data folder that a consumer could not read (module doc).

    >>> skipped = SkippedImages("data/phantom")
    >>> skipped.add("imagenet/train/n01/x.JPEG", "truncated", "extract_features")
    >>> "imagenet/train/n01/x.JPEG" in skipped
    True
    """

    _lock = threading.Lock()

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / SKIPPED_FILE

    def key(self, path: str | Path) -> str:
        p = Path(path)
        if p.is_absolute():
            try:
                return p.resolve().relative_to(self.data_dir.resolve()).as_posix()
            except ValueError:
                return p.as_posix()
        return p.as_posix()

    def read(self) -> dict[str, dict[str, str]]:
        """``{path: {"reason": …, "consumer": …}}`` (empty when nothing was skipped)."""
        if not self.path.is_file():
            return {}
        with open(self.path, newline="", encoding="utf-8") as f:
            return {r["path"]: {"reason": r["reason"], "consumer": r["consumer"]}
                    for r in csv.DictReader(f)}

    def __contains__(self, path: str | Path) -> bool:
        return self.key(path) in self.read()

    def __len__(self) -> int:
        return len(self.read())

    def add_many(self, entries: list[tuple[str | Path, str]], consumer: str) -> None:
        """Record ``(path, reason)`` pairs met by ``consumer`` (first record of a path kept)."""
        if not entries:
            return
        with self._lock:
            rows = self.read()
            for path, reason in entries:
                rows.setdefault(self.key(path), {"reason": str(reason), "consumer": consumer})
            with (staged_path(self.path) as tmp,
                  open(tmp, "w", newline="", encoding="utf-8") as f):
                w = csv.writer(f)
                w.writerow(_FIELDS)
                for p in sorted(rows):
                    w.writerow([p, rows[p]["reason"], rows[p]["consumer"]])

    def add(self, path: str | Path, reason: str, consumer: str) -> None:
        self.add_many([(path, reason)], consumer)
