"""Feature extraction: images → CNN features (in memory, or to HDF5 feature banks)."""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from sbd.features.backbones import Backbone, get_backbone


@lru_cache(maxsize=4)
def _cached_backbone(name: str) -> Backbone:
    return get_backbone(name)


def embed_images(images: Sequence[Image.Image], backbone: str | Backbone = "efficientnet-lite0",
                 batch_size: int = 32) -> np.ndarray:
    """Features of in-memory images (no files).

    Parameters
    ----------
    images : n PIL images (any mode; converted to RGB).
    backbone : a registry name (built once and cached) or a :class:`Backbone`.
    batch_size : images per forward pass.

    Returns
    -------
    (n, D) float32 array.
    """
    bb = _cached_backbone(backbone) if isinstance(backbone, str) else backbone
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    out = np.empty((len(images), bb.dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = torch.stack([bb.transform(im.convert("RGB")) for im in chunk])
        out[start:start + len(chunk)] = bb.features(batch).numpy()
    return out
