"""Configuration of the tiny generator: :class:`TinyConfig`, its presets and file names."""

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
