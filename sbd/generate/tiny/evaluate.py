"""Evaluating the tiny generator: kNN accuracy of its samples against the bank, and
sample sheets."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from sbd.data import layout
from sbd.data.images import (try_read_image)
from sbd.generate.tiny.data import _images_in, load_image
from sbd.generate.tiny.pipeline import TinyPipeline

log = logging.getLogger(__name__)


def evaluate(pipe: TinyPipeline, data_dir: str | Path, n_classes: int = 0, n_per_class: int = 1,
             seed: int = 0, k: int = 5, steps: int | None = None, guidance: float | None = None,
             batch_size: int = 64, backbone: str = "efficientnet-lite0",
             progress: bool = True) -> dict[str, float]:
    """How recognisable the samples are: a kNN over the bank's CNN features names their class.

    Samples ``n_per_class`` images for ``n_classes`` classes (0 = all; else an evenly spaced
    subset), embeds them and the bank images with ``backbone``
    (:func:`sbd.features.extract.embed_images`) and labels each sample by its nearest bank
    image in Euclidean distance (as the decoder's kNN does; ``top1``), by a majority of its
    ``k`` nearest (``vote``), and by cosine similarity after subtracting each set's mean
    feature (``centered``): blurry samples share a direction that makes a few bank images
    nearest to nearly all of them (hubs); removing the means corrects for that shift.

    Returns
    -------
    dict with ``knn_top1_acc``, ``knn_vote_acc``, ``knn_top5_acc`` (true class among the
    classes of the 5 nearest), ``knn_centered_top1_acc``, ``chance`` (1 / classes),
    ``ceiling_top1_acc`` / ``ceiling_centered_top1_acc`` (the same for real bank images
    prepared as the training images, leave-one-out: what a perfect model would reach),
    ``n_samples``, ``sample_seconds``.
    """
    from sbd.features.extract import embed_images

    wnids = pipe.class_wnids
    c = len(wnids)
    classes = list(range(c)) if n_classes <= 0 or n_classes >= c else \
        sorted({int(round(i * (c - 1) / max(1, n_classes - 1))) for i in range(n_classes)})
    jobs = [(ci, j) for ci in classes for j in range(n_per_class)]
    t0 = time.perf_counter()
    samples: list[Image.Image] = []
    for start in tqdm(range(0, len(jobs), batch_size), desc="tiny: eval samples",
                      disable=not progress):
        chunk = jobs[start:start + batch_size]
        gens = [torch.Generator().manual_seed(seed * 1_000_003 + ci * 101 + j) for ci, j in chunk]
        samples += pipe([ci for ci, _ in chunk], generator=gens, num_inference_steps=steps,
                        guidance_scale=guidance).images
    sample_s = time.perf_counter() - t0

    bank_f, bank_lab_a, bank_imgs = _bank_features(data_dir, wnids, backbone)
    gen_f = embed_images(samples, backbone)
    labels = np.asarray([ci for ci, _ in jobs])

    def knn(q: np.ndarray, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        d = (q ** 2).sum(1)[:, None] - 2 * q @ bank_f.T + (bank_f ** 2).sum(1)[None]
        if exclude is not None:
            d[np.arange(len(q)), exclude] = np.inf
        order = np.argsort(d, axis=1)[:, :max(k, 5)]
        return bank_lab_a[order], order

    def centered(q: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
        qc, bc = q - q.mean(0), bank_f - bank_f.mean(0)
        sim = (qc / np.linalg.norm(qc, axis=1, keepdims=True)) @ \
            (bc / np.linalg.norm(bc, axis=1, keepdims=True)).T
        if exclude is not None:
            sim[np.arange(len(q)), exclude] = -np.inf
        return bank_lab_a[np.argmax(sim, axis=1)]

    nn_lab, _ = knn(gen_f)
    vote = np.array([np.bincount(r[:k], minlength=c).argmax() for r in nn_lab])
    # Ceiling: bank images shrunk to the model's size, nearest other bank image.
    s = pipe.tiny_config.image_size
    n_ceiling = min(500, 5 * len(classes))
    sub = np.arange(0, len(bank_imgs), max(1, len(bank_imgs) // n_ceiling))
    small = [Image.fromarray(load_image(bank_imgs[i], s, pipe.tiny_config.crop)) for i in sub]
    small_f = embed_images(small, backbone)
    ceil_lab, _ = knn(small_f, exclude=sub)
    return {"knn_top1_acc": float((nn_lab[:, 0] == labels).mean()),
            "knn_centered_top1_acc": float((centered(gen_f) == labels).mean()),
            "knn_vote_acc": float((vote == labels).mean()),
            "knn_top5_acc": float(np.mean([l in r[:5] for l, r in zip(labels, nn_lab)])),
            "chance": 1.0 / c,
            "ceiling_top1_acc": float((ceil_lab[:, 0] == bank_lab_a[sub]).mean()),
            "ceiling_centered_top1_acc": float((centered(small_f, sub) == bank_lab_a[sub]).mean()),
            "n_samples": float(len(samples)), "sample_seconds": round(sample_s, 1)}


def _bank_features(data_dir: str | Path, wnids: Sequence[str],
                   backbone: str) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Features (N, D), class indices (N,) and paths of the bank images of ``wnids``.

    Read from the extracted bank (``layout.features_file(data_dir, backbone, "bank")``)
    when it exists, else computed with :func:`sbd.features.extract.embed_images`.
    """
    index = {w: i for i, w in enumerate(wnids)}
    root = layout.bank_dir(data_dir)
    files = {p.stem: p for w in wnids if (root / w).is_dir() for p in _images_in(root / w)}
    path = layout.features_file(data_dir, backbone, "bank")
    if path.exists():
        from sbd.features.bank import FeatureBank

        with FeatureBank(path) as bank:
            ids = bank.image_ids
            keep = np.flatnonzero([w in index and i in files for w, i in zip(bank.wnids, ids)])
            if len(keep):
                feats = bank.load()[keep].astype(np.float32)
                labs = np.asarray([index[w] for w in bank.wnids[keep]])
                return feats, labs, [files[i] for i in ids[keep]]
        log.info("Bank features %s hold none of the bank images: recomputing.", path)
    from sbd.features.extract import embed_images

    listed = [(p, index[w]) for w in wnids
              for p in (_images_in(root / w) if (root / w).is_dir() else [])]
    feats, paths, labs = [], [], []
    for i in range(0, len(listed), 256):
        got = [(try_read_image(p)[0], p, c) for p, c in listed[i:i + 256]]
        got = [g for g in got if g[0] is not None]  # unreadable: skipped (load_bank records)
        if got:
            feats.append(embed_images([g[0] for g in got], backbone))
            paths += [g[1] for g in got]
            labs += [g[2] for g in got]
    return np.concatenate(feats), np.asarray(labs), paths


def sample_sheet(pipe: TinyPipeline, n_classes: int = 16, n_per_class: int = 4, seed: int = 0,
                 steps: int | None = None, guidance: float | None = None,
                 tile: int = 64) -> Image.Image:
    """A sheet of samples: one row per class (evenly spaced over the classes), with names."""
    from PIL import ImageDraw

    c = len(pipe.class_wnids)
    classes = sorted({int(round(i * (c - 1) / max(1, n_classes - 1))) for i in range(min(n_classes, c))})
    label_w = tile * 2
    sheet = Image.new("RGB", (label_w + tile * n_per_class, tile * len(classes)), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        from sbd.wordnet import name
    except ImportError:  # pragma: no cover
        name = str  # type: ignore[assignment]
    for row, ci in enumerate(classes):
        gens = [torch.Generator().manual_seed(seed * 7919 + ci * 31 + j) for j in range(n_per_class)]
        imgs = pipe([ci] * n_per_class, generator=gens, num_inference_steps=steps,
                    guidance_scale=guidance).images
        draw.text((4, row * tile + tile // 2 - 6), name(pipe.class_wnids[ci])[:20], fill="black")
        for j, im in enumerate(imgs):
            sheet.paste(im.resize((tile, tile), Image.NEAREST), (label_w + j * tile, row * tile))
    return sheet
