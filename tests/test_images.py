"""The one image reader (sbd.data.images) on the kinds of files real image folders hold,
written here with PIL, and the per-folder record of skipped images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sbd.data.images import SKIPPED_FILE, SkippedImages, UnreadableImage, read_image, \
    try_read_image


def _gradient(w=40, h=24) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.uint8)
    return np.stack([np.tile(x, (h, 1)), np.tile(x[::-1], (h, 1)),
                     np.full((h, w), 128, np.uint8)], axis=2)


def test_readable_kinds_come_out_rgb_and_right(tmp_path):
    rgb = _gradient()
    Image.fromarray(rgb).save(tmp_path / "png_named.JPEG", format="PNG")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    sixteen = (np.linspace(0, 65535, 40 * 24).reshape(24, 40)).astype(np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "sixteen.png")
    pal = Image.fromarray(rgb).quantize(16)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "palette.png", transparency=0)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=95)

    got = read_image(tmp_path / "png_named.JPEG")
    assert got.mode == "RGB" and np.array_equal(np.asarray(got), rgb)
    cmyk = np.asarray(read_image(tmp_path / "cmyk.jpg"), dtype=float)
    assert cmyk.shape == rgb.shape and np.abs(cmyk - rgb).mean() < 12
    grey = np.asarray(read_image(tmp_path / "sixteen.png"))[..., 0].astype(float)
    # scaled from 16 to 8 bits (clipping would make nearly all of it 255)
    assert grey.min() <= 1 and grey.max() >= 254 and 100 < grey.mean() < 155
    palette = read_image(tmp_path / "palette.png")
    assert palette.mode == "RGB" and palette.size == (40, 24)
    upright = read_image(tmp_path / "rotated.jpg")
    assert upright.size == (24, 40)  # turned by its EXIF orientation


def test_unreadable_kinds_raise_with_the_reason(tmp_path):
    Image.fromarray(_gradient(400, 300)).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.JPEG").write_bytes(b"")
    (tmp_path / "text.JPEG").write_text("<html>404 not found</html>")
    cases = {"cut.jpg": "truncated", "empty.JPEG": "empty file (0 bytes)",
             "text.JPEG": "not an image", "absent.jpg": "missing"}
    for name, reason in cases.items():
        with pytest.raises(UnreadableImage) as err:
            read_image(tmp_path / name)
        assert reason in err.value.reason and name in str(err.value)
        assert try_read_image(tmp_path / name)[0] is None
    assert try_read_image(tmp_path / "whole.jpg")[1] == ""


def test_skipped_images_are_one_record_per_folder(tmp_path):
    a, b = SkippedImages(tmp_path), SkippedImages(tmp_path)
    a.add(tmp_path / "imagenet/train/n1/x.JPEG", "truncated", "extract_features")
    b.add_many([("imagenet/train/n1/x.JPEG", "other reason"),
                ("fMRI/imagenet/images/test/y.JPEG", "empty file (0 bytes)")], "generate")
    rows = SkippedImages(tmp_path).read()
    assert rows["imagenet/train/n1/x.JPEG"] == {"reason": "truncated",
                                                "consumer": "extract_features"}
    assert "fMRI/imagenet/images/test/y.JPEG" in a and len(b) == 2
    assert (tmp_path / SKIPPED_FILE).is_file()
    assert not list(tmp_path.glob(".skipped-*"))  # no temp file left
