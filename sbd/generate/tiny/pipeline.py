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
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
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
    def sample_tensor(self, class_labels: Sequence[int],
                      generator: torch.Generator | list[torch.Generator] | None = None,
                      num_inference_steps: int | None = None,
                      guidance_scale: float | None = None, progress: bool = False) -> torch.Tensor:
        """Sample images in [0, 1], shape (B, 3, S, S).  ``generator``: one per image (a
        list, as diffusers pipelines take it: each image's draws come from its own, so an
        image does not depend on the rest of the batch) or one for the whole batch."""
        steps = (int(num_inference_steps) if num_inference_steps and num_inference_steps > 0
                 else self.default_steps)
        guidance = (self.default_guidance if guidance_scale is None or guidance_scale < 0
                    else float(guidance_scale))
        n = len(class_labels)
        gens = generator if isinstance(generator, list) else [generator] * n
        if len(gens) != n:
            raise ValueError(f"{n} classes but {len(gens)} generators.")
        bad = [c for c in class_labels if not 0 <= int(c) < len(self.class_wnids)]
        if bad:
            raise ValueError(f"Class index(es) {bad} out of range 0..{len(self.class_wnids) - 1}.")
        cfg, dev, dtype = self.tiny_config, self.device, self.unet.dtype
        weights = self.prototypes.weights.cpu().float()
        protos = torch.as_tensor([int(torch.multinomial(weights[int(c)], 1, generator=g))
                                  if weights.shape[1] > 1 else 0
                                  for c, g in zip(class_labels, gens)], device=dev)
        z = randn_tensor((n, cfg.latent_dim, cfg.grid, cfg.grid), generator=generator,
                         dtype=torch.float32).to(dev, dtype)
        labels = torch.as_tensor([int(c) for c in class_labels], dtype=torch.long, device=dev)
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

    def __call__(self, class_labels: Sequence[int],
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 output_type: str = "pil", return_dict: bool = True, progress: bool = False
                 ) -> ImagePipelineOutput | tuple:
        """Sample one image (RGB, ``image_size`` px) per class index, as diffusers'
        ``DiTPipeline`` is called: ``output_type`` ``pil`` (PIL images), ``np`` (float
        arrays in [0, 1], (B, S, S, 3)) or ``pt`` (the tensor); an
        :class:`~diffusers.pipelines.pipeline_utils.ImagePipelineOutput` unless
        ``return_dict`` is false (then a 1-tuple)."""
        x = self.sample_tensor(class_labels, generator, num_inference_steps, guidance_scale,
                               progress)
        if output_type == "pt":
            images: Any = x
        elif output_type == "np":
            images = x.permute(0, 2, 3, 1).numpy()
        elif output_type == "pil":
            arr = (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            images = [Image.fromarray(a) for a in arr]
        else:
            raise ValueError(f"Unknown output_type={output_type!r}; valid: pil, np, pt.")
        return ImagePipelineOutput(images=images) if return_dict else (images,)
