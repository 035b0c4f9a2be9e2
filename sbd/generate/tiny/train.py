"""Training the tiny generator (resumable, tqdm progress)."""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sbd.generate.tiny.config import CHECKPOINT_NAME, TinyConfig, resolve_config
from sbd.generate.tiny.data import load_bank
from sbd.generate.tiny.model import PatchPCA, TinyDenoiser, build_denoiser, build_scheduler
from sbd.generate.tiny.pipeline import TinyPipeline

log = logging.getLogger(__name__)


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
