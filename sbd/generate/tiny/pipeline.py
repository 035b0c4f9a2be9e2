""":class:`TinyPipeline`: sampling, save_pretrained / from_pretrained."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from sbd.generate.tiny.config import CONFIG_NAME, TENSORS_NAME, TinyConfig, resolve_config
from sbd.generate.tiny.model import PatchPCA, TinyDenoiser

log = logging.getLogger(__name__)


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
