"""Public label lists shipped with sbd: ILSVRC-2012's 1,000 classes (the label set of the
paper's bank) and GOD's 50 test stimuli.

- ``imagenet1k_wnids.txt``: the 1000 ILSVRC-2012 wnids in class-index order;
- ``god_test_image_ids.csv``: GOD's test stimulus ids as in its ``image_test_id.csv``
  (``1443537.022563,n01443537_22563.JPEG``; one image of each of 50 categories).

They answer, without any fMRI, what a label metric scores on GOD by answering alone
(``docs/god_context.py``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from sbd.data.god import decode_label

__all__ = ["IMAGENET1K_FILE", "GOD_TEST_IDS_FILE", "imagenet1k_wnids", "god_test_wnids"]

IMAGENET1K_FILE = Path(__file__).with_name("imagenet1k_wnids.txt")
GOD_TEST_IDS_FILE = Path(__file__).with_name("god_test_image_ids.csv")


@lru_cache(maxsize=1)
def imagenet1k_wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC-2012 wnids in class-index order (index 0 = n01440764)."""
    wnids = tuple(IMAGENET1K_FILE.read_text().split())
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise ValueError(f"{IMAGENET1K_FILE} must list 1000 unique wnids, has {len(wnids)}.")
    return wnids


@lru_cache(maxsize=1)
def god_test_wnids() -> tuple[str, ...]:
    """The wnids of GOD's 50 test images, in the order of its stimulus ids."""
    ids = [line.split(",")[0] for line in GOD_TEST_IDS_FILE.read_text().split()]
    wnids = tuple(decode_label(float(i))[0] for i in ids)
    if len(wnids) != 50 or len(set(wnids)) != 50:
        raise ValueError(f"{GOD_TEST_IDS_FILE} must list 50 test images of 50 categories, "
                         f"has {len(wnids)} of {len(set(wnids))}.")
    return wnids
