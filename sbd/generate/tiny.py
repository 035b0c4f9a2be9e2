"""The ``tiny`` generator: a small class-conditional diffusion model trained on a bank on the CPU.

::

    pipe = train(data_dir, out_dir, preset="default")        # resumable, tqdm progress
    images = pipe([3, 17], generators=[g1, g2], steps=20, guidance=2.0)
    pipe.save_pretrained(folder); TinyPipeline.from_pretrained(folder)
    figures = evaluate(pipe, data_dir)                        # kNN accuracy of its samples

Design (defaults of :class:`TinyConfig`; each choice measured, see below):

1. **Data**: every bank image (``layout.bank_dir(data_dir)``: ``<wnid>/*.JPEG``) is cropped
   to the square around its object (:func:`object_box`: a smooth background fitted to the
   border) and shrunk to 64 px, so that the images of a class align.
2. **Latent**: a patch-PCA codec (:class:`PatchPCA`, fitted by one SVD in seconds): each
   8×8 RGB patch → its 32 first principal components, a 32 × 8 × 8 latent. The denoiser
   works on 64 positions instead of 4096 pixels.
3. **Denoiser** (:class:`TinyDenoiser`): a diffusers ``UNet2DModel`` (64/128 channels,
   attention at 4×4) with a class embedding, plus class maps concatenated to its input:
   ``prototypes`` (10) latents per class, initialised to k-means centres of the class's
   training latents — a mixture prior that the UNet refines. One extra null class serves
   classifier-free guidance (10% label dropout).
4. **Diffusion**: cosine schedule, x0 ("sample") prediction, plain MSE, EMA weights; DDIM
   sampling in 20 steps with guidance 2.

Measured (100-class subsets of the default phantom bank, 400 steps of 32, kNN of 200
samples against the bank's EfficientNet-Lite0 features; chance 1%): pixel-free v-prediction
models (whitened or not, with or without crops) gave noise at chance; x0 prediction on
cropped images gave smooth class-coloured images (Euclidean kNN 1–2%, 2.5–3% with 3× the
steps); prototypes 4 / 10 raised the centred kNN from 2% to 6% / 16% (Euclidean 4%).
Real bank images prepared like the training images reach 69% (the ceiling).

Folder written by :meth:`TinyPipeline.save_pretrained`::

    <folder>/unet/                  UNet2DModel.save_pretrained (config + safetensors, EMA weights)
    <folder>/scheduler/             DDIMScheduler.save_pretrained
    <folder>/sbd_tiny.safetensors   PCA codec, class maps, prototype weights
    <folder>/sbd_tiny.json          class wnids (index order), config, training figures

Training writes ``<out_dir>/checkpoint.pt`` (model, EMA, optimiser, step, elapsed time,
RNG state) every ``checkpoint_every_s`` seconds and resumes from it; the finished model
goes to ``<out_dir>/pipeline``. :func:`log_model` logs it as an MLflow pyfunc
(:class:`TinyGeneratorModel`) and registers it as ``sbd-<dataset>-tiny-generator``.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import io
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import mlflow.pyfunc
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from sbd.data import layout
from sbd.data.images import (SkippedImages, UnreadableImage, is_image_file, read_image,
                             try_read_image)
from sbd.generate.labels import LabelIndex, ModelNotFoundError, image_seed

log = logging.getLogger(__name__)

CONFIG_NAME = "sbd_tiny.json"
TENSORS_NAME = "sbd_tiny.safetensors"
CHECKPOINT_NAME = "checkpoint.pt"
IMAGE_CACHE = "bank_{size}_crop{crop}.npz"
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
CLASS_MAP_INITS = ("mean", "random")
MODEL_NAME = "sbd-{dataset}-tiny-generator"
PYFUNC_NAME = "tiny_generator"


@dataclass(frozen=True)
class TinyConfig:
    """Every parameter of one tiny model and its training run.

    Image and latent: ``image_size`` (px); ``crop``: train on the square around each bank
    image's object (:func:`object_box`), so that a class's images align; ``patch`` > 1 trains in a patch-PCA latent
    (:class:`PatchPCA`: each ``patch``×``patch`` RGB patch → ``latent_channels`` principal
    components, ``whiten`` to unit variance; 1 = pixels).
    Denoiser (:class:`TinyDenoiser`): a ``UNet2DModel`` with block widths ``channels``
    (the last block has self-attention when ``attention``), ``layers_per_block``, a class
    embedding added to the time embedding, and ``class_map_channels`` channels of a learned
    per-class spatial map concatenated to its input (0 = none), initialised (``class_map_init``)
    to the first channels of the class's mean latent (``mean``) or small noise (``random``);
    with ``prototypes`` = K > 1 each class has K maps, initialised to the k-means centres of
    its latents (a mixture prior: an image picks a prototype by its seed, in proportion to
    the cluster sizes, and the UNet refines it).
    Diffusion: ``prediction_type``, ``train_timesteps``, ``beta_schedule``, ``snr_gamma``
    (Min-SNR loss weighting; 0 = plain MSE), ``cond_dropout`` (share of training samples
    with the null class, for classifier-free guidance).
    Training: ``batch_size``, ``lr`` (AdamW, linear warm-up over ``warmup`` steps, then
    cosine to 10%), ``ema_decay``, ``max_steps`` and ``time_budget_s`` (whichever ends
    first; 0 = no time limit), ``max_per_class`` (bank images per class; 0 = all),
    ``flip`` (horizontal flips), ``seed``, ``threads`` (torch threads; 0 = torch's choice),
    ``checkpoint_every_s``.
    Sampling defaults: ``sample_steps`` (DDIM), ``guidance``. ``eval_classes``: classes
    sampled by the evaluation after training (:func:`evaluate`).
    """

    image_size: int = 64
    crop: bool = True
    patch: int = 8
    latent_channels: int = 32
    whiten: bool = False
    channels: tuple[int, ...] = (64, 128)
    layers_per_block: int = 1
    attention: bool = True
    class_map_channels: int = 32
    class_map_init: str = "mean"
    prototypes: int = 10
    prediction_type: str = "sample"
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    snr_gamma: float = 0.0
    cond_dropout: float = 0.1
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 20
    ema_decay: float = 0.999
    max_steps: int = 100_000
    time_budget_s: float = 540.0
    max_per_class: int = 0
    flip: bool = True
    seed: int = 0
    threads: int = 0
    checkpoint_every_s: float = 60.0
    sample_steps: int = 20
    guidance: float = 2.0
    eval_classes: int = 100

    # Fields that may change between a checkpoint and its resumption.
    RESUMABLE = ("max_steps", "time_budget_s", "threads", "checkpoint_every_s",
                 "sample_steps", "guidance", "eval_classes")

    @property
    def grid(self) -> int:
        """Side of the latent grid (``image_size / patch``)."""
        return self.image_size // self.patch

    @property
    def latent_dim(self) -> int:
        """Channels of the latent: ``latent_channels`` (0 = all ``3 * patch**2``)."""
        full = 3 * self.patch ** 2
        return min(self.latent_channels, full) if self.latent_channels > 0 else full

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d


PRESETS: dict[str, TinyConfig] = {
    # The phantom's model: <= 10 minutes on 2 CPU cores (see benchmarks/bench_tiny.py).
    "default": TinyConfig(),
    # Tests: seconds.
    "small": TinyConfig(image_size=16, patch=4, latent_channels=12, channels=(16, 32),
                        attention=False, class_map_channels=2, prototypes=2, batch_size=16, max_steps=8,
                        time_budget_s=0, warmup=2, sample_steps=4, checkpoint_every_s=0,
                        eval_classes=8),
}


def resolve_config(preset: str | TinyConfig = "default", **overrides: Any) -> TinyConfig:
    """The configuration of ``preset`` with any field overridden (None values ignored)."""
    if isinstance(preset, TinyConfig):
        cfg = preset
    elif preset in PRESETS:
        cfg = PRESETS[preset]
    else:
        raise ValueError(f"Unknown tiny preset={preset!r}; valid: {', '.join(PRESETS)}.")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    valid = {f.name for f in dataclasses.fields(TinyConfig)}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(f"Unknown tiny parameter(s) {sorted(unknown)}; valid: {', '.join(sorted(valid))}.")
    if "channels" in overrides:
        overrides["channels"] = tuple(int(c) for c in overrides["channels"])
    cfg = dataclasses.replace(cfg, **overrides)
    if cfg.prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"Unknown prediction_type={cfg.prediction_type!r}; valid: "
                         f"{', '.join(PREDICTION_TYPES)}.")
    if cfg.class_map_init not in CLASS_MAP_INITS:
        raise ValueError(f"Unknown class_map_init={cfg.class_map_init!r}; valid: "
                         f"{', '.join(CLASS_MAP_INITS)}.")
    if cfg.prototypes < 1 or (cfg.prototypes > 1 and cfg.class_map_channels < 1):
        raise ValueError(f"prototypes={cfg.prototypes} must be >= 1 (and > 1 needs class maps).")
    if cfg.patch < 1 or cfg.image_size % cfg.patch:
        raise ValueError(f"image_size={cfg.image_size} must be a multiple of patch={cfg.patch}.")
    halvings = 2 ** (len(cfg.channels) - 1)
    if cfg.grid % halvings or cfg.grid < halvings:
        raise ValueError(f"The latent grid ({cfg.image_size}/{cfg.patch} = {cfg.grid}) must be "
                         f"divisible by {halvings} (one halving per extra UNet block).")
    return cfg


# --------------------------------------------------------------------------- data

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
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.stem + ".tmp.npz")
        np.savez(tmp, images=images, labels=labels, wnids=np.asarray(wnids),
                 max_per_class=max_per_class, signature=bank_signature(data_dir))
        os.replace(tmp, cache)
    return images, labels, wnids


# --------------------------------------------------------------------------- model

class PatchPCA(torch.nn.Module):
    """A linear autoencoder: each ``patch``×``patch`` RGB patch ↔ its top principal components.

    ``encode``: (B, 3, S, S) in [-1, 1] → (B, k, S/p, S/p); ``decode`` inverts it (exactly
    for the kept components). Fitted in seconds by SVD (:meth:`fit`); with ``whiten`` each
    component is scaled to unit variance, so the latent suits a unit-variance diffusion.
    ``patch=1`` with all 3 components is a whitened colour transform of the pixels.
    """

    def __init__(self, patch: int, k: int):
        super().__init__()
        self.patch, self.k = int(patch), int(k)
        d = 3 * self.patch ** 2
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("components", torch.eye(d)[:self.k].clone())
        self.register_buffer("scale", torch.ones(self.k))

    @torch.no_grad()
    def fit(self, images: torch.Tensor, whiten: bool = True, max_patches: int = 200_000,
            seed: int = 0) -> "PatchPCA":
        """Fit on (N, 3, S, S) images in [-1, 1]."""
        patches = F.unfold(images, self.patch, stride=self.patch).transpose(1, 2)
        patches = patches.reshape(-1, patches.shape[-1])
        if len(patches) > max_patches:
            g = torch.Generator().manual_seed(seed)
            patches = patches[torch.randperm(len(patches), generator=g)[:max_patches]]
        mean = patches.mean(0)
        _, sv, vt = torch.linalg.svd(patches - mean, full_matrices=False)
        std = sv[:self.k] / math.sqrt(max(1, len(patches) - 1))
        self.mean.copy_(mean)
        self.components.copy_(vt[:self.k])
        self.scale.copy_(std.clamp_min(1e-6) if whiten else torch.full_like(std, float(std.mean())))
        return self

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        b, _, s, _ = x.shape
        g = s // self.patch
        patches = F.unfold(x, self.patch, stride=self.patch).transpose(1, 2) - self.mean
        z = (patches @ self.components.T) / self.scale
        return z.transpose(1, 2).reshape(b, self.k, g, g)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        b, _, g, _ = z.shape
        patches = (z.reshape(b, self.k, g * g).transpose(1, 2) * self.scale) @ self.components
        patches = (patches + self.mean).transpose(1, 2)
        return F.fold(patches, (g * self.patch, g * self.patch), self.patch, stride=self.patch)


class TinyDenoiser(torch.nn.Module):
    """``UNet2DModel`` with two class conditionings: an embedding added to the time
    embedding (the UNet's own ``num_class_embeds``) and a learned spatial map
    (``class_map_channels`` × grid × grid; K = ``prototypes`` per class) concatenated to the
    noisy latent. Class ``num_classes`` is the null class of classifier-free guidance.

    Parameters
    ----------
    unet : diffusers.UNet2DModel
    class_maps : (C * K + 1, m, g, g) tensor or None; row ``c * K + j`` = prototype j of
        class c, the last row the null class's.
    proto_weights : (C, K) tensor, each row the probabilities of a class's prototypes.
    """

    def __init__(self, unet, class_maps: torch.Tensor | None,
                 proto_weights: torch.Tensor | None = None):
        super().__init__()
        self.unet = unet
        self.num_classes = unet.config.num_class_embeds - 1
        self.class_maps = torch.nn.Parameter(class_maps) if class_maps is not None else None
        if proto_weights is None:
            proto_weights = torch.ones((self.num_classes, 1))
        self.register_buffer("proto_weights", proto_weights.float())
        k = proto_weights.shape[1]
        if class_maps is not None and class_maps.shape[0] != self.num_classes * k + 1:
            raise ValueError(f"class_maps has {class_maps.shape[0]} rows; expected "
                             f"{self.num_classes} classes × {k} prototypes + 1.")

    @property
    def prototypes(self) -> int:
        return int(self.proto_weights.shape[1])

    def forward(self, z: torch.Tensor, t: torch.Tensor | int, labels: torch.Tensor,
                protos: torch.Tensor | None = None) -> torch.Tensor:
        if self.class_maps is not None:
            rows = labels * self.prototypes + (protos if protos is not None else 0)
            rows = torch.where(labels >= self.num_classes, self.num_classes * self.prototypes, rows)
            z = torch.cat([z, self.class_maps[rows]], dim=1)
        return self.unet(z, t, class_labels=labels).sample


def _kmeans(x: torch.Tensor, k: int, iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic k-means of (n, d) rows: farthest-point start, Lloyd steps.
    Returns centres (k, d) (rows repeat when n < k) and the assignment (n,)."""
    k_eff = min(k, len(x))
    first = int(((x - x.mean(0)) ** 2).sum(1).argmin())
    idx = [first]
    for _ in range(1, k_eff):
        d = torch.cdist(x, x[idx]).min(1).values
        idx.append(int(d.argmax()))
    centres = x[idx].clone()
    assign = torch.zeros(len(x), dtype=torch.long)
    for _ in range(iters):
        assign = torch.cdist(x, centres).argmin(1)
        for j in range(k_eff):
            members = x[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    if k_eff < k:
        centres = torch.cat([centres, centres[:1].expand(k - k_eff, -1)])
    return centres, assign


def class_prototypes(z: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int,
                     m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per class, k-means of its latents' first ``m`` channels.

    Returns
    -------
    maps : (C * k + 1, m, g, g) prototype maps (last row: the mean of all latents)
    assign : (N,) prototype index of each latent
    weights : (C, k) cluster shares per class (zero for unused prototypes)
    """
    g = z.shape[-1]
    maps = torch.zeros((num_classes * k + 1, m, g, g))
    assign = torch.zeros(len(z), dtype=torch.long)
    weights = torch.zeros((num_classes, k))
    for c in range(num_classes):
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) == 0:
            weights[c, 0] = 1.0
            continue
        x = z[rows, :m].reshape(len(rows), -1)
        centres, a = _kmeans(x, k)
        maps[c * k:(c + 1) * k] = centres.reshape(k, m, g, g)
        assign[rows] = a
        weights[c] = torch.bincount(a, minlength=k).float() / len(rows)
    maps[-1] = z[:, :m].mean(0)
    return maps, assign, weights


def build_denoiser(cfg: TinyConfig, num_classes: int, z: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> tuple[TinyDenoiser, torch.Tensor | None]:
    """A fresh denoiser for ``num_classes`` classes (+ 1 null class).

    With ``class_map_init="mean"``, ``z`` (N, k, g, g) training latents and their ``labels``
    (N,) initialise the class maps (class means, or k-means prototypes when
    ``prototypes > 1``). Returns the denoiser and the prototype index of each latent
    (None without class maps).
    """
    from diffusers import UNet2DModel

    n = len(cfg.channels)
    down = ["DownBlock2D"] * n
    up = ["UpBlock2D"] * n
    if cfg.attention:
        down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
    groups = math.gcd(*cfg.channels, 32) if min(cfg.channels) >= 8 else 1
    unet = UNet2DModel(
        sample_size=cfg.grid, in_channels=cfg.latent_dim + cfg.class_map_channels,
        out_channels=cfg.latent_dim, block_out_channels=tuple(cfg.channels),
        layers_per_block=cfg.layers_per_block, down_block_types=tuple(down),
        up_block_types=tuple(up), norm_num_groups=groups,
        attention_head_dim=min(32, cfg.channels[-1]), add_attention=cfg.attention,
        num_class_embeds=num_classes + 1)
    if cfg.class_map_channels <= 0:
        return TinyDenoiser(unet, None), None
    k = cfg.prototypes
    gen = torch.Generator().manual_seed(cfg.seed)
    maps = 0.1 * torch.randn((num_classes * k + 1, cfg.class_map_channels, cfg.grid, cfg.grid),
                             generator=gen)
    weights = torch.full((num_classes, k), 1.0 / k)
    assign = None
    if z is not None and labels is not None:
        assign = torch.zeros(len(z), dtype=torch.long)
        if cfg.class_map_init == "mean":
            m = min(cfg.class_map_channels, z.shape[1])
            protos, assign, weights = class_prototypes(z, labels, num_classes, k, m)
            maps[:, :m] = protos
    return TinyDenoiser(unet, maps, weights), assign


def build_scheduler(cfg: TinyConfig):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False,
                         set_alpha_to_one=True, timestep_spacing="trailing")


class TinyPipeline:
    """A trained tiny model: denoiser (EMA weights), latent codec, DDIM scheduler, classes.

    Parameters
    ----------
    denoiser : TinyDenoiser for ``len(class_wnids)`` classes (+ null)
    codec : PatchPCA
    scheduler : diffusers.DDIMScheduler
    class_wnids : list of str, class-index order
    config : TinyConfig
    info : training figures (steps, seconds, loss…)
    """

    def __init__(self, denoiser: TinyDenoiser, codec: PatchPCA, scheduler,
                 class_wnids: Sequence[str], config: TinyConfig,
                 info: dict[str, Any] | None = None):
        n = denoiser.unet.config.num_class_embeds
        if n != len(class_wnids) + 1:
            raise ValueError(f"Denoiser has {n} class embeddings; expected {len(class_wnids)} "
                             "classes + 1 null.")
        self.denoiser, self.codec, self.scheduler = denoiser.eval(), codec.eval(), scheduler
        self.class_wnids = list(class_wnids)
        self.config = config
        self.info = dict(info or {})

    @property
    def default_steps(self) -> int:
        return self.config.sample_steps

    @property
    def default_guidance(self) -> float:
        return self.config.guidance

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    def to(self, device: str | torch.device) -> "TinyPipeline":
        self.denoiser.to(device)
        self.codec.to(device)
        return self

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write the pipeline folder (to a temporary name, then renamed into place)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        tmp = folder.with_name(folder.name + ".tmp")
        if tmp.exists():
            _rmtree(tmp)
        self.denoiser.unet.save_pretrained(tmp / "unet")
        self.scheduler.save_pretrained(tmp / "scheduler")
        tensors = {f"codec.{k}": v.detach().cpu().contiguous() for k, v in self.codec.state_dict().items()}
        if self.denoiser.class_maps is not None:
            tensors["class_maps"] = self.denoiser.class_maps.detach().cpu().contiguous()
        tensors["proto_weights"] = self.denoiser.proto_weights.detach().cpu().contiguous()
        save_file(tensors, str(tmp / TENSORS_NAME))
        meta = {"class_wnids": self.class_wnids, "config": self.config.to_dict(), "info": self.info}
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=1))
        if folder.exists():
            _rmtree(folder)
        os.replace(tmp, folder)
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "TinyPipeline":
        from diffusers import DDIMScheduler, UNet2DModel
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_file = folder / CONFIG_NAME
        if not meta_file.exists():
            raise FileNotFoundError(f"{folder} is not a tiny-model folder (no {CONFIG_NAME}).")
        meta = json.loads(meta_file.read_text())
        cfg = resolve_config(TinyConfig(), **meta["config"])
        tensors = load_file(str(folder / TENSORS_NAME))
        codec = PatchPCA(cfg.patch, cfg.latent_dim)
        codec.load_state_dict({k[len("codec."):]: v for k, v in tensors.items() if k.startswith("codec.")})
        denoiser = TinyDenoiser(UNet2DModel.from_pretrained(folder / "unet"),
                                tensors.get("class_maps"), tensors.get("proto_weights"))
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler")
        return cls(denoiser, codec, scheduler, meta["class_wnids"], cfg, meta.get("info")).to(device)

    @torch.no_grad()
    def sample_tensor(self, class_idx: Sequence[int], generators: Sequence[torch.Generator],
                      steps: int | None = None, guidance: float | None = None,
                      progress: bool = False) -> torch.Tensor:
        """Sample images in [0, 1], shape (B, 3, S, S); one generator per image."""
        steps = int(steps) if steps and steps > 0 else self.default_steps
        guidance = self.default_guidance if guidance is None or guidance < 0 else float(guidance)
        if len(class_idx) != len(generators):
            raise ValueError(f"{len(class_idx)} classes but {len(generators)} generators.")
        bad = [c for c in class_idx if not 0 <= int(c) < len(self.class_wnids)]
        if bad:
            raise ValueError(f"Class index(es) {bad} out of range 0..{len(self.class_wnids) - 1}.")
        cfg, dev = self.config, self.device
        shape = (1, cfg.latent_dim, cfg.grid, cfg.grid)
        weights = self.denoiser.proto_weights.cpu()
        protos = torch.as_tensor([int(torch.multinomial(weights[int(c)], 1, generator=g))
                                  if weights.shape[1] > 1 else 0
                                  for c, g in zip(class_idx, generators)], device=dev)
        z = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(dev)
        labels = torch.as_tensor([int(c) for c in class_idx], dtype=torch.long, device=dev)
        null = torch.full_like(labels, len(self.class_wnids))
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(steps)
        for t in tqdm(sched.timesteps, desc="tiny: sampling", disable=not progress, leave=False):
            if guidance == 1.0:
                out = self.denoiser(z, t, labels, protos)
            else:
                cond, uncond = self.denoiser(torch.cat([z, z]), t, torch.cat([labels, null]),
                                             torch.cat([protos, protos])).chunk(2)
                out = uncond + guidance * (cond - uncond)
            z = sched.step(out, t, z, eta=0.0).prev_sample
        return ((self.codec.decode(z).clamp(-1, 1) + 1) / 2).cpu()

    def __call__(self, class_idx: Sequence[int], generators: Sequence[torch.Generator],
                 steps: int | None = None, guidance: float | None = None,
                 progress: bool = False) -> list[Image.Image]:
        """Sample one PIL image (RGB, ``image_size`` px) per class index."""
        x = self.sample_tensor(class_idx, generators, steps, guidance, progress)
        arr = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return [Image.fromarray(a) for a in arr]


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- training

def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_(p.detach(), alpha=1 - decay)


def _loss(cfg: TinyConfig, scheduler, denoiser: TinyDenoiser, z0: torch.Tensor,
          labels: torch.Tensor, gen: torch.Generator,
          protos: torch.Tensor | None = None) -> torch.Tensor:
    b = z0.shape[0]
    noise = torch.randn(z0.shape, generator=gen)
    t = torch.randint(0, cfg.train_timesteps, (b,), generator=gen)
    zt = scheduler.add_noise(z0, noise, t)
    pred = denoiser(zt, t, labels, protos)
    if cfg.prediction_type == "epsilon":
        target = noise
    elif cfg.prediction_type == "sample":
        target = z0
    else:
        target = scheduler.get_velocity(z0, noise, t)
    per = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
    if cfg.snr_gamma > 0:
        ac = scheduler.alphas_cumprod[t]
        snr = ac / (1 - ac)
        clipped = torch.clamp(snr, max=cfg.snr_gamma)
        weight = {"epsilon": clipped / snr, "sample": clipped,
                  "v_prediction": clipped / (snr + 1)}[cfg.prediction_type]
        per = per * weight
    return per.mean()


def train(data_dir: str | Path, out_dir: str | Path, preset: str | TinyConfig = "default",
          resume: bool = True, progress: bool = True, max_new_steps: int | None = None,
          **overrides: Any) -> TinyPipeline:
    """Train (or resume training) a tiny model on the bank of ``data_dir``.

    Parameters
    ----------
    data_dir : folder holding ``imagenet/train/<wnid>/*.JPEG``.
    out_dir : working folder: image cache, ``checkpoint.pt``, and the result ``pipeline/``.
    preset : a :data:`PRESETS` name or a :class:`TinyConfig`; ``overrides`` change fields.
    resume : continue from ``out_dir/checkpoint.pt`` when its configuration matches.
    progress : tqdm bar over training steps.
    max_new_steps : stop this call after that many steps (the schedule still follows
        ``max_steps``; a later call resumes from the checkpoint), e.g. to train in slices.

    Returns
    -------
    The trained pipeline (EMA weights), also saved to ``out_dir/pipeline``.
    ``pipe.info`` holds the training figures (steps, seconds, CPU seconds, final loss).
    """
    cfg = resolve_config(preset, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    t_start, c_start = time.perf_counter(), time.process_time()
    images, labels, wnids = load_bank(data_dir, cfg.image_size, cfg.max_per_class, out, progress,
                                      cfg.crop)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
    y_all = torch.from_numpy(labels)
    n_classes = len(wnids)

    torch.manual_seed(cfg.seed)
    codec = PatchPCA(cfg.patch, cfg.latent_dim).fit(x, whiten=cfg.whiten, seed=cfg.seed)
    with torch.no_grad():
        z_all = torch.cat([codec.encode(x[i:i + 512]) for i in range(0, len(x), 512)])
        if cfg.flip:
            z_all = torch.cat([z_all] + [codec.encode(x[i:i + 512].flip(3))
                                         for i in range(0, len(x), 512)])
            y_all = torch.cat([y_all, y_all])
    del x
    denoiser, p_all = build_denoiser(cfg, n_classes, z_all, y_all)
    denoiser.train()
    if p_all is None:
        p_all = torch.zeros_like(y_all)
    ema = copy.deepcopy(denoiser).eval().requires_grad_(False)
    scheduler = build_scheduler(cfg)
    opt = torch.optim.AdamW(denoiser.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, elapsed, cpu_used, losses = 0, 0.0, 0.0, []
    prep_s, prep_cpu = time.perf_counter() - t_start, time.process_time() - c_start

    ckpt_path = out / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)  # tensors and plain data only
        fixed = {k: v for k, v in cfg.to_dict().items() if k not in TinyConfig.RESUMABLE}
        saved = {k: v for k, v in ckpt["config"].items() if k not in TinyConfig.RESUMABLE}
        if fixed != saved or ckpt["class_wnids"] != wnids:
            diff = sorted(k for k in fixed if fixed[k] != saved.get(k))
            raise ValueError(f"{ckpt_path} was written with another configuration or bank "
                             f"(differs in {diff or 'class wnids'}); delete it or use resume=False.")
        denoiser.load_state_dict(ckpt["denoiser"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        gen.set_state(ckpt["gen"])
        step, elapsed, cpu_used, losses = ckpt["step"], ckpt["elapsed"], ckpt["cpu"], ckpt["losses"]
        log.info("Resuming tiny training at step %d (%.0f s done).", step, elapsed)

    def save_checkpoint() -> None:
        state = {"denoiser": denoiser.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                 "gen": gen.get_state(), "step": step, "elapsed": elapsed, "cpu": cpu_used,
                 "losses": losses, "config": cfg.to_dict(), "class_wnids": wnids}
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, ckpt_path)

    def lr_at(i: int) -> float:
        if i < cfg.warmup:
            return cfg.lr * (i + 1) / cfg.warmup
        total = cfg.max_steps
        if cfg.time_budget_s > 0 and i > cfg.warmup and elapsed > 0:
            total = min(total, int(i * cfg.time_budget_s / elapsed))
        frac = min(1.0, (i - cfg.warmup) / max(1, total - cfg.warmup))
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    first_step = step

    def done() -> bool:
        return (step >= cfg.max_steps or (cfg.time_budget_s > 0 and elapsed >= cfg.time_budget_s)
                or (max_new_steps is not None and step - first_step >= max_new_steps))

    bar = tqdm(total=cfg.max_steps if not cfg.time_budget_s else None, initial=step,
               desc="tiny: training", unit="step", disable=not progress)
    last_ckpt = time.perf_counter()
    while not done():
        t0, c0 = time.perf_counter(), time.process_time()
        idx = torch.randint(0, len(z_all), (cfg.batch_size,), generator=gen)
        z0, y, pr = z_all[idx], y_all[idx].clone(), p_all[idx]
        if cfg.cond_dropout > 0:
            y[torch.rand(cfg.batch_size, generator=gen) < cfg.cond_dropout] = n_classes
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = _loss(cfg, scheduler, denoiser, z0, y, gen, pr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(denoiser.parameters(), 1.0)
        opt.step()
        _ema_update(ema, denoiser, min(cfg.ema_decay, (1 + step) / (10 + step)))
        step += 1
        losses.append(loss.item())
        elapsed += time.perf_counter() - t0
        cpu_used += time.process_time() - c0
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}", s=f"{elapsed:.0f}")
        if cfg.checkpoint_every_s > 0 and time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
            save_checkpoint()
            last_ckpt = time.perf_counter()
    bar.close()
    if cfg.checkpoint_every_s > 0 or ckpt_path.exists():
        save_checkpoint()
    info = {"train_steps": step, "train_seconds": round(elapsed, 1),
            "train_cpu_seconds": round(cpu_used, 1), "prep_seconds": round(prep_s, 1),
            "prep_cpu_seconds": round(prep_cpu, 1), "threads": torch.get_num_threads(),
            "final_loss": float(np.mean(losses[-100:])) if losses else float("nan"),
            "n_classes": n_classes, "n_images": int(len(images)),
            "n_params": int(sum(p.numel() for p in denoiser.parameters()))}
    pipe = TinyPipeline(ema, codec, scheduler, wnids, cfg, info)
    pipe.save_pretrained(out / "pipeline")
    return pipe


# --------------------------------------------------------------------------- evaluation

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
        samples += pipe([ci for ci, _ in chunk], gens, steps=steps, guidance=guidance)
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
    s = pipe.config.image_size
    n_ceiling = min(500, 5 * len(classes))
    sub = np.arange(0, len(bank_imgs), max(1, len(bank_imgs) // n_ceiling))
    small = [Image.fromarray(load_image(bank_imgs[i], s, pipe.config.crop)) for i in sub]
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
        imgs = pipe([ci] * n_per_class, gens, steps=steps, guidance=guidance)
        draw.text((4, row * tile + tile // 2 - 6), name(pipe.class_wnids[ci])[:20], fill="black")
        for j, im in enumerate(imgs):
            sheet.paste(im.resize((tile, tile), Image.NEAREST), (label_w + j * tile, row * tile))
    return sheet


# --------------------------------------------------------------------------- MLflow

class TinyGeneratorModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc of a tiny model (weights are the ``pipeline`` artifact folder).

    Input: DataFrame with column ``wnid`` (str) and optional int columns ``seed``, ``sample``,
    ``n`` (default 0). Output: DataFrame with ``wnid``, ``class_wnid`` (the model class used)
    and ``png`` (base64 PNG; the same image ``get_generator("tiny")`` gives for that seed).
    """

    def load_context(self, context):
        self.pipeline = TinyPipeline.from_pretrained(context.artifacts["pipeline"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if "wnid" not in model_input.columns:
            raise ValueError(f"Input needs a 'wnid' column; got {list(model_input.columns)}.")
        labels = LabelIndex(self.pipeline.class_wnids)
        rows = []
        for _, r in model_input.iterrows():
            wnid = str(r["wnid"])
            idx = labels(wnid)
            s = image_seed(int(r.get("seed", 0) or 0), int(r.get("sample", 0) or 0), wnid,
                           int(r.get("n", 0) or 0))
            img = self.pipeline([idx], [torch.Generator().manual_seed(s)])[0]
            buf = io.BytesIO()
            img.save(buf, "PNG")
            rows.append({"wnid": wnid, "class_wnid": self.pipeline.class_wnids[idx],
                         "png": base64.b64encode(buf.getvalue()).decode()})
        return pd.DataFrame(rows)


def log_model(pipeline_dir: str | Path, dataset: str, score: float | None = None,
              tags: dict[str, Any] | None = None, register: bool = True) -> str:
    """Log ``pipeline_dir`` as a pyfunc in the active run and register it.

    Registered as ``sbd-<dataset>-tiny-generator`` with ``val_score = score`` (the generate
    step passes the centred kNN top-1 accuracy of samples; higher is better), alias
    ``candidate``, ``champion`` when better.
    Returns the model URI (``models:/name/version`` when registered, else ``runs:/…``).
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    import tempfile

    import diffusers
    import pandas

    from sbd.registry.common import model_code, register_model_version

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "wnid")] + [ColSpec("long", c, required=False)
                                                      for c in ("seed", "sample", "n")]),
        outputs=Schema([ColSpec("string", c) for c in ("wnid", "class_wnid", "png")]))
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.pyfunc.log_model(
            name=PYFUNC_NAME,
            python_model=model_code(tmp, "sbd.generate.tiny", "TinyGeneratorModel"),
            artifacts={"pipeline": str(pipeline_dir)}, signature=signature,
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}",
                              f"diffusers=={diffusers.__version__}",
                              f"pandas=={pandas.__version__}"])
    if not register:
        return info.model_uri
    name = MODEL_NAME.format(dataset=dataset)
    mv, _ = register_model_version(info.model_uri, name, score if score is not None else 0.0,
                                   tags={"dataset": dataset, **(tags or {})})
    return f"models:/{name}/{mv.version}"


def load_pipeline(model_id: str | Path, device: str | torch.device = "cpu") -> TinyPipeline:
    """A tiny pipeline from a folder or an MLflow model URI (``models:/…``, ``runs:/…``)."""
    text = str(model_id)
    if "://" in text or text.startswith(("models:/", "runs:/")):
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=text)
        except MlflowException as err:
            raise ModelNotFoundError(f"Cannot load tiny model {text!r} from MLflow: {err}") from err
        folder = Path(local) / "artifacts" / "pipeline"
        if not folder.exists():
            folder = Path(local)
        return TinyPipeline.from_pretrained(folder, device)
    folder = Path(text).expanduser()
    if not folder.exists():
        raise ModelNotFoundError(f"Tiny model folder {text!r} does not exist.")
    return TinyPipeline.from_pretrained(folder, device)
