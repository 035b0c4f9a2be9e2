"""Training the tiny generator: a fixed number of steps, deterministic, resumable.

:func:`train` runs ``cfg.max_steps`` optimiser steps; the learning rate warms up over
``cfg.warmup`` steps and then follows a cosine to 10 % at ``max_steps``. Wall time is measured
(``pipe.info``: ``train_seconds``, ``train_cpu_seconds``, …), never an input, so the model
does not depend on how fast or how busy the machine is.

Determinism: the same configuration, bank and seed on the same machine give bit-identical
weights (:meth:`TinyPipeline.weights_hash`). Every random draw (model initialisation,
batch indices, noise, timesteps, label dropout) comes from generators seeded by
``cfg.seed``; flips are precomputed views, the bank is read in sorted order; torch runs
with ``cfg.threads`` threads (CPU reductions are summed in thread-dependent pieces, so the
thread count is a parameter, not the machine's core count) and with
``torch.use_deterministic_algorithms`` (warn only) while training. Resuming from
``<out_dir>/checkpoint.pt`` (model, EMA, optimiser, RNG state, step) continues exactly
where the run stopped: an interrupted run ends with the weights of an uninterrupted one.
A checkpoint of an earlier sbd that trained for a wall-clock budget (``time_budget_s``)
cannot be continued step for step: it is passed over with a warning.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sbd.files import staged_path
from sbd.generate.tiny.config import (CHECKPOINT_NAME, REMOVED_FIELDS, TinyConfig,
                                      legacy_time_budget, resolve_config)
from sbd.generate.tiny.data import load_bank
from sbd.generate.tiny.model import PatchPCA, TinyDenoiser, build_denoiser, build_scheduler
from sbd.generate.tiny.pipeline import TinyPipeline

log = logging.getLogger(__name__)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch threads (0: leave torch's setting), then restore it."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for the block, then the
    previous setting (an op without a deterministic kernel warns instead of failing)."""
    on, warn = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(on, warn_only=warn)


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


@dataclass
class _State:
    """What training carries from step to step, and what a checkpoint holds."""

    denoiser: TinyDenoiser
    ema: TinyDenoiser
    opt: torch.optim.Optimizer
    gen: torch.Generator
    step: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0
    losses: list = field(default_factory=list)

    def save(self, path: Path, cfg: TinyConfig, wnids: list[str]) -> None:
        """Write the checkpoint (to a temporary name, then renamed)."""
        state = {"denoiser": self.denoiser.state_dict(), "ema": self.ema.state_dict(),
                 "opt": self.opt.state_dict(), "gen": self.gen.get_state(), "step": self.step,
                 "elapsed": self.elapsed, "cpu": self.cpu, "losses": self.losses,
                 "config": cfg.to_dict(), "class_wnids": wnids}
        with staged_path(path) as tmp:
            torch.save(state, tmp)

    def resume(self, path: Path, cfg: TinyConfig, wnids: list[str]) -> None:
        """Continue from the checkpoint at ``path``; ValueError when it was written with
        another configuration (``max_steps`` included) or bank.  One of an earlier sbd's
        model (other parameter names), or of one that trained for a wall-clock budget
        (``time_budget_s``), is passed over: training starts afresh."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain data only
        budget = legacy_time_budget(ckpt["config"])
        if budget > 0:
            log.warning("%s was written by an earlier sbd that trained for a wall-clock budget "
                        "(time_budget_s=%g, %d steps done), whose learning-rate schedule cannot "
                        "be continued step for step; training from scratch for max_steps=%d "
                        "(the checkpoint will be replaced).", path, budget, ckpt.get("step", 0),
                        cfg.max_steps)
            return
        skip = set(TinyConfig.RESUMABLE) | set(REMOVED_FIELDS)
        fixed = {k: v for k, v in cfg.to_dict().items() if k not in skip}
        saved = {k: v for k, v in ckpt["config"].items() if k not in skip}
        if fixed != saved or ckpt["class_wnids"] != wnids:
            diff = sorted(k for k in fixed if fixed[k] != saved.get(k))
            raise ValueError(f"{path} was written with another configuration or bank "
                             f"(differs in {diff or 'class wnids'}); delete it or use resume=False.")
        try:
            self.denoiser.load_state_dict(ckpt["denoiser"])
            self.ema.load_state_dict(ckpt["ema"])
        except RuntimeError as err:
            log.warning("%s holds other parameters than this sbd's model (%s); training from "
                        "scratch.", path, str(err).splitlines()[0])
            return
        self.opt.load_state_dict(ckpt["opt"])
        self.gen.set_state(ckpt["gen"])
        self.step, self.elapsed, self.cpu, self.losses = (ckpt["step"], ckpt["elapsed"],
                                                          ckpt["cpu"], ckpt["losses"])
        log.info("Resuming tiny training at step %d (%.0f s done).", self.step, self.elapsed)


def _lr_at(cfg: TinyConfig, i: int) -> float:
    """The learning rate of step ``i``: linear warm-up over ``warmup`` steps, then a cosine
    decay to 10 % at ``max_steps``."""
    if i < cfg.warmup:
        return cfg.lr * (i + 1) / cfg.warmup
    frac = min(1.0, (i - cfg.warmup) / max(1, cfg.max_steps - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def _encode_bank(data_dir: str | Path, cfg: TinyConfig, cache: Path, progress: bool
                 ) -> tuple[PatchPCA, torch.Tensor, torch.Tensor, list[str], int]:
    """The bank's images in the codec's latent: the fitted codec, latents (N, k, g, g)
    (with their mirror images when ``cfg.flip``), labels (N,), class wnids, image count."""
    images, labels, wnids = load_bank(data_dir, cfg.image_size, cfg.max_per_class, cache,
                                      progress, cfg.crop)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(127.5).sub_(1)
    y = torch.from_numpy(labels)
    codec = PatchPCA(cfg.patch, cfg.latent_dim).fit(x, whiten=cfg.whiten, seed=cfg.seed)
    views = [x, x.flip(3)] if cfg.flip else [x]
    with torch.no_grad():
        z = torch.cat([codec.encode(v[i:i + 512]) for v in views for i in range(0, len(v), 512)])
    return codec, z, y.repeat(len(views)), wnids, len(images)


def _train_step(cfg: TinyConfig, st: _State, scheduler, z_all: torch.Tensor,
                y_all: torch.Tensor, p_all: torch.Tensor, n_classes: int) -> None:
    """One optimiser step on a random batch (labels dropped to the null class at rate
    ``cond_dropout``), then the EMA update."""
    t0, c0 = time.perf_counter(), time.process_time()
    idx = torch.randint(0, len(z_all), (cfg.batch_size,), generator=st.gen)
    z0, y, pr = z_all[idx], y_all[idx].clone(), p_all[idx]
    if cfg.cond_dropout > 0:
        y[torch.rand(cfg.batch_size, generator=st.gen) < cfg.cond_dropout] = n_classes
    for g in st.opt.param_groups:
        g["lr"] = _lr_at(cfg, st.step)
    loss = _loss(cfg, scheduler, st.denoiser, z0, y, st.gen, pr)
    st.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(st.denoiser.parameters(), 1.0)
    st.opt.step()
    _ema_update(st.ema, st.denoiser, min(cfg.ema_decay, (1 + st.step) / (10 + st.step)))
    st.step += 1
    st.losses.append(loss.item())
    st.elapsed += time.perf_counter() - t0
    st.cpu += time.process_time() - c0


def train(data_dir: str | Path, out_dir: str | Path, preset: str | TinyConfig = "default",
          resume: bool = True, progress: bool = True, max_new_steps: int | None = None,
          cache_dir: str | Path | None = None, **overrides: Any) -> TinyPipeline:
    """Train (or resume training) a tiny model on the bank of ``data_dir`` for
    ``max_steps`` steps.

    Parameters
    ----------
    data_dir : folder holding ``imagenet/train/<wnid>/*.JPEG``.
    out_dir : working folder: image cache, ``checkpoint.pt``, and the result ``pipeline/``.
    preset : a :data:`PRESETS` name or a :class:`TinyConfig`; ``overrides`` change fields.
    resume : continue from ``out_dir/checkpoint.pt`` when its configuration matches
        (ValueError when it does not; one of a time-budgeted earlier sbd is passed over).
    progress : tqdm bar over training steps.
    max_new_steps : stop this call after that many steps (the schedule still follows
        ``max_steps``; a later call resumes from the checkpoint), e.g. to train in slices.
    cache_dir : folder of the prepared-image cache (default ``out_dir``), e.g. one shared by
        several runs on the same bank.

    Returns
    -------
    The trained pipeline (EMA weights), also saved to ``out_dir/pipeline``.
    ``pipe.info`` holds the training figures: steps, final loss, sizes, threads, the
    weights' hash (``weights_sha256``) and the measured seconds (wall and CPU, preparation
    and training).
    """
    cfg = resolve_config(preset, **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(cfg.threads), deterministic():
        return _train(data_dir, out, cfg, resume, progress, max_new_steps,
                      Path(cache_dir) if cache_dir else out)


def _train(data_dir: str | Path, out: Path, cfg: TinyConfig, resume: bool, progress: bool,
           max_new_steps: int | None, cache: Path) -> TinyPipeline:
    t_start, c_start = time.perf_counter(), time.process_time()
    codec, z_all, y_all, wnids, n_images = _encode_bank(data_dir, cfg, cache, progress)
    n_classes = len(wnids)
    with torch.random.fork_rng(devices=[]):  # the UNet's initialisation: seeded, no side effect
        torch.manual_seed(cfg.seed)
        denoiser, p_all = build_denoiser(cfg, n_classes, z_all, y_all)
    p_all = torch.zeros_like(y_all) if p_all is None else p_all
    st = _State(denoiser.train(), copy.deepcopy(denoiser).eval().requires_grad_(False),
                torch.optim.AdamW(denoiser.parameters(), lr=cfg.lr, weight_decay=0.0,
                                  fused=cfg.fused),
                torch.Generator().manual_seed(cfg.seed))
    scheduler = build_scheduler(cfg)
    prep_s, prep_cpu = time.perf_counter() - t_start, time.process_time() - c_start
    ckpt_path = out / CHECKPOINT_NAME
    if resume and ckpt_path.exists():
        st.resume(ckpt_path, cfg, wnids)
    stop_at = cfg.max_steps if max_new_steps is None else min(cfg.max_steps,
                                                                st.step + max_new_steps)
    bar = tqdm(total=cfg.max_steps, initial=st.step, desc="tiny: training", unit="step",
               disable=not progress)
    last_ckpt = time.perf_counter()
    while st.step < stop_at:
        _train_step(cfg, st, scheduler, z_all, y_all, p_all, n_classes)
        bar.update(1)
        if st.step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(st.losses[-50:]):.4f}", s=f"{st.elapsed:.0f}")
        if cfg.checkpoint_every_s > 0 and time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
            st.save(ckpt_path, cfg, wnids)
            last_ckpt = time.perf_counter()
    bar.close()
    if cfg.checkpoint_every_s > 0 or ckpt_path.exists():
        st.save(ckpt_path, cfg, wnids)
    info = {"train_steps": st.step, "train_seconds": round(st.elapsed, 1),
            "train_cpu_seconds": round(st.cpu, 1), "prep_seconds": round(prep_s, 1),
            "prep_cpu_seconds": round(prep_cpu, 1), "threads": torch.get_num_threads(),
            "final_loss": float(np.mean(st.losses[-100:])) if st.losses else float("nan"),
            "n_classes": n_classes, "n_images": n_images,
            "n_params": int(sum(p.numel() for p in denoiser.parameters()))}
    pipe = TinyPipeline.of(st.ema, codec, scheduler, wnids, cfg, info)
    pipe.register_to_config(info={**info, "weights_sha256": pipe.weights_hash()})
    pipe.save_pretrained(out / "pipeline")
    return pipe
