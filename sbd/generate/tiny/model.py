"""The tiny generator's parts: patch-PCA codec, class-conditional denoiser, class
prototypes, noise scheduler."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from sbd.generate.tiny.config import TinyConfig

log = logging.getLogger(__name__)


class PatchPCA(ModelMixin, ConfigMixin):
    """A linear autoencoder: each ``patch``×``patch`` RGB patch ↔ its top principal components.

    ``encode``: (B, 3, S, S) in [-1, 1] → (B, k, S/p, S/p); ``decode`` inverts it (exactly
    for the kept components). Fitted in seconds by SVD (:meth:`fit`); with ``whiten`` each
    component is scaled to unit variance, so the latent suits a unit-variance diffusion.
    ``patch=1`` with all 3 components is a whitened colour transform of the pixels.
    A diffusers model: ``save_pretrained`` / ``from_pretrained`` (config + safetensors).
    """

    @register_to_config
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


class ClassPrototypes(ModelMixin, ConfigMixin):
    """The class maps of :class:`TinyDenoiser`: ``prototypes`` learned spatial maps per class
    (``channels`` × ``grid`` × ``grid``) and each class's prototype probabilities; a
    diffusers model (``save_pretrained`` / ``from_pretrained``).

    Parameters
    ----------
    num_classes : C, the real classes (the null class of guidance is row ``C * K``)
    prototypes : K
    channels : m, channels of a map; 0 = no maps (the UNet's class embedding only)
    grid : g, the latent's side

    ``maps`` : (C * K + 1, m, g, g) parameter (absent when m = 0); row ``c * K + j`` =
    prototype j of class c, the last row the null class's. ``weights`` : (C, K) buffer.
    """

    @register_to_config
    def __init__(self, num_classes: int, prototypes: int = 1, channels: int = 0, grid: int = 8):
        super().__init__()
        rows = num_classes * prototypes + 1
        self.maps = (torch.nn.Parameter(torch.zeros((rows, channels, grid, grid)))
                     if channels > 0 else None)
        self.register_buffer("weights", torch.full((num_classes, prototypes), 1.0 / prototypes))

    @classmethod
    def of(cls, maps: torch.Tensor | None, weights: torch.Tensor) -> "ClassPrototypes":
        """Prototypes holding ``maps`` (C * K + 1, m, g, g) or None, and ``weights`` (C, K)."""
        c, k = weights.shape
        if maps is not None and maps.shape[0] != c * k + 1:
            raise ValueError(f"class maps have {maps.shape[0]} rows; expected "
                             f"{c} classes × {k} prototypes + 1.")
        out = cls(c, k, 0 if maps is None else maps.shape[1],
                  8 if maps is None else maps.shape[-1])
        with torch.no_grad():
            out.weights.copy_(weights.float())
            if maps is not None:
                out.maps.copy_(maps)
        return out


class TinyDenoiser(torch.nn.Module):
    """``UNet2DModel`` with two class conditionings: an embedding added to the time
    embedding (the UNet's own ``num_class_embeds``) and a learned spatial map
    (:class:`ClassPrototypes`) concatenated to the noisy latent. Class ``num_classes`` is
    the null class of classifier-free guidance.
    """

    def __init__(self, unet, prototypes: ClassPrototypes):
        super().__init__()
        self.unet, self.prototypes = unet, prototypes
        self.num_classes = unet.config.num_class_embeds - 1
        if prototypes.config.num_classes != self.num_classes:
            raise ValueError(f"The UNet has {self.num_classes} classes (+ null) but the "
                             f"prototypes {prototypes.config.num_classes}.")

    @property
    def n_prototypes(self) -> int:
        return int(self.prototypes.config.prototypes)

    def forward(self, z: torch.Tensor, t: torch.Tensor | int, labels: torch.Tensor,
                protos: torch.Tensor | None = None) -> torch.Tensor:
        maps = self.prototypes.maps
        if maps is not None:
            k = self.n_prototypes
            rows = labels * k + (protos if protos is not None else 0)
            rows = torch.where(labels >= self.num_classes, self.num_classes * k, rows)
            z = torch.cat([z, maps[rows]], dim=1)
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
        return TinyDenoiser(unet, ClassPrototypes(num_classes)), None
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
    return TinyDenoiser(unet, ClassPrototypes.of(maps, weights)), assign


def build_scheduler(cfg: TinyConfig):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                         prediction_type=cfg.prediction_type, clip_sample=False,
                         set_alpha_to_one=True, timestep_spacing="trailing")
