"""Configuration of the tiny generator: :class:`TinyConfig`, its presets and file names.

A configuration fixes the model it trains: training runs ``max_steps`` optimiser steps and
the learning-rate schedule follows that number, so the same configuration, bank and seed
give the same weights on a machine however fast or busy it is (wall time is measured, never
an input). The earlier ``time_budget_s`` (train until a wall-clock budget ran out, the
schedule stretched to the steps that fitted) is gone: a saved configuration that still has
it loads without it (:func:`config_from_dict`), and passing it raises a ValueError that
says to use ``max_steps``.

The default (``max_steps`` 700 at ``lr`` 2e-3, fused AdamW) comes from the
quality-versus-steps curves of the default preset on the default phantom
(``benchmarks/bench_tiny.py --steps ...``; one thread; CPU seconds of training, which the
load does not change; kNN figures of 100 samples; 50-way top-1 of the rank-1 images of the
50 test samples as the ``evaluate`` step scores them, 95 % CI)::

    lr 1e-3, loop AdamW (sbd before; 2 shared cores at load 3-4, wall seconds)
    steps   train s   kNN top-1   centred kNN top-1   50-way top-1 [95 % CI]
      400       130        0.10                0.19   0.079 [0.034, 0.130]
      800       350        0.18                0.29   0.116 [0.059, 0.181]
     1600       621        0.29                0.39   0.168 [0.096, 0.243]
     2400       831        0.29                0.41   0.195 [0.114, 0.278]

    lr 2e-3, fused AdamW (CPU seconds)
      400        96        0.16                0.25   0.158 [0.086, 0.239]
      700       178        0.20                0.35   0.189 [0.116, 0.269]
     1000       244        0.24                0.43   0.192 [0.125, 0.270]

The fused optimiser is 9× faster per update (13 M parameters, most of them class maps:
113 → 13 ms of a 0.35 s step), and the doubled learning rate reaches at 700 steps the
50-way top-1 that 2,400 steps gave before. 700 is the first measured count whose 50-way
top-1 is at or above 0.18 and whose training (about 2.5 minutes on a quiet core) keeps a
cold default ``main`` near 10 minutes; 1,000 steps add a minute for a better centred kNN.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any


log = logging.getLogger(__name__)


# the tag of registered tiny models saved as a diffusers pipeline folder (model_index.json);
# versions without it hold the folder format of earlier sbd and are not loaded
PIPELINE_FORMAT = "diffusers"
CHECKPOINT_NAME = "checkpoint.pt"
IMAGE_CACHE = "bank_{size}_crop{crop}.npz"
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
CLASS_MAP_INITS = ("mean", "random")
MODEL_NAME = "sbd-{dataset}-tiny-generator"
# Figures of training and evaluation that are measured wall or CPU time: they vary from run
# to run and are logged apart (``tiny_time/*``) from the model's figures (``tiny/*``).
TIMING_KEYS = ("train_seconds", "train_cpu_seconds", "prep_seconds", "prep_cpu_seconds",
               "sample_seconds")
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
    Training: ``max_steps`` optimiser steps of ``batch_size`` (the default preset's count is
    chosen from the measured quality-versus-steps curve of ``benchmarks/bench_tiny.py
    --steps``), ``lr`` (AdamW, linear warm-up over ``warmup`` steps, then cosine to 10% at
    ``max_steps``; ``fused``: torch's fused CPU/GPU kernel, the same update as the loop
    kernel to rounding and 9× faster on the 13 M parameters of the default model, most of
    them class maps), ``ema_decay``, ``max_per_class`` (bank images per class; 0 = all),
    ``flip`` (horizontal flips), ``seed``, ``threads`` (torch threads while training and
    evaluating: CPU sums are split by thread, so the weights' last bits depend on the thread
    count, which is therefore a parameter and not the machine's core count; 1 by default:
    on 2 busy cores one thread was 3× faster per step than two; 0 = torch's choice, the
    machine's), ``checkpoint_every_s`` (wall-clock interval of checkpoints; it does not
    change the weights).
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
    lr: float = 2e-3
    fused: bool = True
    warmup: int = 20
    ema_decay: float = 0.999
    max_steps: int = 700
    max_per_class: int = 0
    flip: bool = True
    seed: int = 0
    threads: int = 1
    checkpoint_every_s: float = 60.0
    sample_steps: int = 20
    guidance: float = 2.0
    eval_classes: int = 100

    # Fields that may change between a checkpoint and its resumption (``max_steps`` may
    # not: the learning-rate schedule follows it). ``threads`` may, at the cost of
    # bit-identity with an uninterrupted run.
    RESUMABLE = ("threads", "checkpoint_every_s", "sample_steps", "guidance", "eval_classes")

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
    # The phantom's model: 700 steps, about 3 CPU minutes on one thread (the curve above).
    "default": TinyConfig(),
    # Tests: seconds.
    "small": TinyConfig(image_size=16, patch=4, latent_channels=12, channels=(16, 32),
                        attention=False, class_map_channels=2, prototypes=2, batch_size=16, max_steps=8,
                        warmup=2, sample_steps=4, checkpoint_every_s=0, eval_classes=8),
}

# Fields of earlier sbd versions that a saved configuration (a checkpoint, a pipeline's
# model_index.json) may still hold, and why they are gone.
REMOVED_FIELDS = {
    "time_budget_s": "training follows max_steps (a number of steps, not a wall-clock budget), "
                     "so that the same parameters give the same model on any machine",
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
    removed = sorted(set(overrides) & set(REMOVED_FIELDS))
    if removed:
        raise ValueError(f"Tiny parameter {removed[0]!r} was removed: "
                         f"{REMOVED_FIELDS[removed[0]]}; set max_steps instead.")
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


def config_from_dict(saved: dict[str, Any], base: str | TinyConfig | None = None) -> TinyConfig:
    """The :class:`TinyConfig` of a saved configuration (``TinyConfig.to_dict()`` of this or
    an earlier sbd), fields of :data:`REMOVED_FIELDS` dropped; the fields it lacks take the
    values of ``base`` (default: ``TinyConfig()``)."""
    kept = {k: v for k, v in saved.items() if k not in REMOVED_FIELDS}
    return resolve_config(TinyConfig() if base is None else base, **kept)


def legacy_time_budget(saved: dict[str, Any]) -> float:
    """The wall-clock budget (s) a saved configuration of an earlier sbd trained for (0:
    none; its model then followed ``max_steps`` as today's do)."""
    return float(saved.get("time_budget_s", 0) or 0)
