"""Benchmark of feature extraction: the whole pipeline against the model alone.

Builds (or reuses, ``--data-dir``) a phantom dataset, then measures in one process:

* ``images_per_s``: extraction of the whole phantom bank with ``extract_source`` (files
  listed, JPEGs decoded and resized by DataLoader workers, forward passes, chunks saved,
  merged into ``bank.h5``, stimulus near-duplicates checked), wall clock;
* ``forward_only_images_per_s``: the same model on the same images already decoded into
  uint8 tensors in memory, same batch size (measured before and after the extraction;
  the mean is reported, the machine being shared);
* ``ratio`` = images_per_s / forward_only_images_per_s.

The last line printed is one JSON object with these figures.  Without the phantom
(``sbd.data.phantom`` or its emoji font missing) it renders a bank of JPEG crops of
scikit-image's sample photos in ILSVRC layout instead (``"data": "rendered"``).

    python benchmarks/bench_extract.py [--preset small] [--image-size 256] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sbd.data import layout
from sbd.features.backbones import get_backbone, to_uint8
from sbd.features.extract import extract_dataset, extract_source, list_bank, stimulus_ids


def render_bank(root: Path, n_wnids: int = 20, per_wnid: int = 10, size: int = 256,
                seed: int = 0) -> None:
    """A GOD-layout folder of JPEG crops of scikit-image photos (fallback data)."""
    from skimage import data as skd

    names = ["chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "hubble_deep_field",
             "immunohistochemistry", "motorcycle_left" if hasattr(skd, "motorcycle_left") else "cat"]
    photos = []
    for n in names:
        try:
            photos.append(np.asarray(Image.fromarray(getattr(skd, n)()).convert("RGB")))
        except Exception:  # some samples need a download
            continue
    rng = np.random.default_rng(seed)

    def crop() -> Image.Image:
        a = photos[rng.integers(len(photos))]
        h, w = a.shape[:2]
        s = int(min(h, w) * rng.uniform(0.4, 1.0))
        y, x = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        return Image.fromarray(a[y:y + s, x:x + s]).resize((size, size), Image.BILINEAR)

    for k in range(n_wnids):
        wnid = f"n{1000000 + 7919 * k:08d}"
        d = layout.bank_dir(root) / wnid
        d.mkdir(parents=True, exist_ok=True)
        for j in range(per_wnid):
            crop().save(d / f"{wnid}_{j + 1}.JPEG", quality=90)
    for s, n in (("training", 8), ("test", 4)):
        d = layout.images_dir(root, s)
        d.mkdir(parents=True, exist_ok=True)
        for j in range(n):
            crop().save(d / f"n09999999_{s[:2]}{j}.JPEG", quality=90)


def make_data(args, tmp: Path) -> tuple[Path, str]:
    if args.data_dir:
        return Path(args.data_dir), "given"
    root = tmp / "data"
    try:
        from sbd.data import phantom

        phantom.build(root, preset=args.preset, seed=0, progress=False,
                      image_size=args.image_size)
        return root, f"phantom:{args.preset}"
    except (ImportError, FileNotFoundError) as err:
        print(f"phantom unavailable ({err}); rendering a bank instead", file=sys.stderr)
        render_bank(root, size=args.image_size)
        return root, "rendered"


def forward_only(bb, tensors: list[torch.Tensor], batch_size: int) -> float:
    """Images per second of ``bb.features`` on ready uint8 tensors."""
    batches = [torch.stack(tensors[i:i + batch_size]) for i in range(0, len(tensors), batch_size)]
    bb.features(batches[0])  # warm-up (kernel selection for this shape)
    t0 = time.perf_counter()
    for b in batches:
        bb.features(b)
    return len(tensors) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default="", help="an existing phantom/GOD-layout folder")
    p.add_argument("--preset", default="small")
    p.add_argument("--image-size", type=int, default=256, help="phantom image size (px)")
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--device", default=None)
    args = p.parse_args()

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        root, kind = make_data(args, Path(tmp))
        bb = get_backbone(args.backbone, device=args.device)
        # stimulus features first (not timed): the bank is checked against them
        extract_dataset(root, bb, source="stimuli", batch_size=args.batch_size,
                        num_workers=0, progress=False)
        items, _ = list_bank(root, stimulus_ids(root))
        tensors = []
        for it in items:
            with Image.open(root / it.path) as im:
                tensors.append(to_uint8(bb.resize(im.convert("RGB"))))

        fwd1 = forward_only(bb, tensors, args.batch_size)
        t0 = time.perf_counter()
        r = extract_source(root, bb, "bank", batch_size=args.batch_size,
                           num_workers=args.num_workers, progress=False, force=True)
        whole = time.perf_counter() - t0
        fwd2 = forward_only(bb, tensors, args.batch_size)

    fwd = (fwd1 + fwd2) / 2
    ips = r.n_computed / whole
    print(json.dumps({
        "images_per_s": round(ips, 2),
        "forward_only_images_per_s": round(fwd, 2),
        "ratio": round(ips / fwd, 3),
        "forward_only_before_after": [round(fwd1, 2), round(fwd2, 2)],
        "n_images": r.n_computed, "n_features": r.n_features, "data": kind,
        "image_size": args.image_size, "backbone": args.backbone,
        "batch_size": args.batch_size, "num_workers": args.num_workers,
        "device": str(bb.device), "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "loadavg_before_after": [round(load0, 2),
                                                         round(os.getloadavg()[0], 2)],
    }))


if __name__ == "__main__":
    main()
