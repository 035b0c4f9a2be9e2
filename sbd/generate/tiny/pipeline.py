""":class:`TinyPipeline`: a diffusers ``DiffusionPipeline`` (sampling; ``save_pretrained``,
``from_pretrained`` and ``.to(device)`` from diffusers)."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DModel
from PIL import Image
from tqdm.auto import tqdm

from sbd.files import staged_dir
from sbd.generate.tiny.config import TinyConfig, config_from_dict
from sbd.generate.tiny.model import ClassPrototypes, PatchPCA, TinyDenoiser

log = logging.getLogger(__name__)


class TinyPipeline(DiffusionPipeline):
    """A trained tiny model as a diffusers pipeline, built as diffusers' ``DiTPipeline`` is:
    components ``unet`` (EMA weights), ``codec`` (:class:`PatchPCA`), ``prototypes``
    (:class:`ClassPrototypes`) and ``scheduler`` (DDIM); in its config (``model_index.json``)
    the class wnids (class-index order), the :class:`TinyConfig` (``tiny_config``) and the
    training figures (``info``).  ``TinyPipeline.from_pretrained(folder)`` loads a folder
    written by :meth:`save_pretrained` (``low_cpu_mem_usage`` needs ``accelerate``).
    """

    model_cpu_offload_seq = "unet->codec"

    def __init__(self, unet: UNet2DModel, codec: PatchPCA, prototypes: ClassPrototypes,
                 scheduler: DDIMScheduler, class_wnids: Sequence[str] | None = None,
                 tiny_config: dict[str, Any] | None = None, info: dict[str, Any] | None = None):
        super().__init__()
        wnids = list(class_wnids or [])
        n = unet.config.num_class_embeds
        if n != len(wnids) + 1:
            raise ValueError(f"The UNet has {n} class embeddings; expected {len(wnids)} "
                             "classes + 1 null.")
        self.register_modules(unet=unet, codec=codec, prototypes=prototypes, scheduler=scheduler)
        self.register_to_config(class_wnids=wnids, tiny_config=dict(tiny_config or {}),
                                info=dict(info or {}))
        self.denoiser = TinyDenoiser(unet, prototypes).eval()
        codec.eval()

    @classmethod
    def of(cls, denoiser: TinyDenoiser, codec: PatchPCA, scheduler, class_wnids: Sequence[str],
           config: TinyConfig, info: dict[str, Any] | None = None) -> "TinyPipeline":
        """The pipeline of a trained ``denoiser`` (its UNet and prototypes) and ``codec``."""
        return cls(denoiser.unet, codec, denoiser.prototypes, scheduler, class_wnids,
                   config.to_dict(), info)

    @property
    def class_wnids(self) -> list[str]:
        return list(self.config.class_wnids)

    @property
    def tiny_config(self) -> TinyConfig:
        """The :class:`TinyConfig` it was trained with (fields of an earlier sbd dropped)."""
        return config_from_dict(self.config.tiny_config)

    @property
    def info(self) -> dict[str, Any]:
        return dict(self.config.info)

    @property
    def default_steps(self) -> int:
        return self.tiny_config.sample_steps

    @property
    def default_guidance(self) -> float:
        return self.tiny_config.guidance

    def weights_hash(self) -> str:
        """SHA-256 (hex) of every weight and buffer of ``unet``, ``codec`` and
        ``prototypes`` (names, dtypes, shapes and bytes, in name order): equal hashes,
        bit-identical models."""
        import hashlib

        h = hashlib.sha256()
        for part in ("unet", "codec", "prototypes"):
            state = getattr(self, part).state_dict()
            for name in sorted(state):
                t = state[name].detach().cpu().contiguous()
                h.update(f"{part}.{name}:{t.dtype}:{tuple(t.shape)};".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> Path:
        """Write the pipeline folder (to a temporary name, then renamed into place)."""
        folder = Path(folder)
        with staged_dir(folder) as tmp:
            super().save_pretrained(tmp, **kwargs)
        return folder

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
        cfg, dev, dtype = self.tiny_config, self.device, self.unet.dtype
        shape = (1, cfg.latent_dim, cfg.grid, cfg.grid)
        weights = self.prototypes.weights.cpu().float()
        protos = torch.as_tensor([int(torch.multinomial(weights[int(c)], 1, generator=g))
                                  if weights.shape[1] > 1 else 0
                                  for c, g in zip(class_idx, generators)], device=dev)
        z = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(dev, dtype)
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
        return ((self.codec.decode(z.to(self.codec.dtype)).float().clamp(-1, 1) + 1) / 2).cpu()

    def __call__(self, class_idx: Sequence[int], generators: Sequence[torch.Generator],
                 steps: int | None = None, guidance: float | None = None,
                 progress: bool = False) -> list[Image.Image]:
        """Sample one PIL image (RGB, ``image_size`` px) per class index."""
        x = self.sample_tensor(class_idx, generators, steps, guidance, progress)
        arr = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        return [Image.fromarray(a) for a in arr]

