"""Throughput and memory of the three generators at their real sizes, with random weights.

Builds each pipeline from its architecture's config (no download, no weights read):

- ``sd``: Stable Diffusion v1-4 — UNet2DConditionModel (320/640/1280/1280, cross-attention
  768, 64×64 latents), its AutoencoderKL (128/256/512/512), a CLIP ViT-L/14 text encoder
  (768 wide, 12 layers, 77 tokens) and its safety checker (CLIP ViT-L/14 vision, 24 layers);
  512 px images.
- ``dit``: DiT-XL/2-256 — DiTTransformer2DModel (28 layers, 16 heads × 72, patch 2,
  32×32 latents, 1000 classes) with the same AutoencoderKL; 256 px images.
- ``tiny``: the tiny generator's ``default`` preset (:mod:`sbd.generate.tiny`), 200 classes.

and runs it through sbd's own generator classes (:mod:`sbd.generate.generators`: prompts,
seeds, batching, PIL output), at float32 and float16, on CUDA when present, else on the
CPU. One JSON line per generator::

    {"generator": "sd", "device": "cpu", "sizes": "real", "n_params": …, "steps": 2,
     "batch": 1, "image_size": 512,
     "fp32": {"images_per_s": …, "seconds": …, "denoiser_s_per_step": …,
              "images_per_s_at_default_steps": …, "peak_memory_mb": …, "largest_batch": …,
              "images_per_s_at_largest_batch": …},
     "fp16": null, "notes": {"fp16": "why null", "largest_batch": "…", "memory": "…"},
     "load_average": […], "threads": 2}

``images_per_s`` is measured at ``--steps`` denoising steps and batch ``--batch`` (1:
sbd's default, every image reproducible alone); ``images_per_s_at_default_steps``
extrapolates it to the generator's default steps (50, 50, 20) from the measured time per
denoiser step. Peak memory: ``torch.cuda.max_memory_allocated`` during the call on CUDA,
the process's peak resident memory during the call on the CPU (weights included). The
largest batch (CUDA only): the batch doubles from 1 until it runs out of memory or reaches
``--max-batch``. On the CPU float16 is not measured (sbd runs float32 there; most CPU
half-precision kernels are slower than float32 or missing) unless ``--cpu-fp16``.

    python benchmarks/bench_generate.py                      # real sizes (CPU: 2 steps)
    python benchmarks/bench_generate.py --tiny --steps 2 --threads 1   # test sizes, CI
    python benchmarks/bench_generate.py --only sd,dit --steps 50 --batch 4
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

GENERATOR_NAMES = ("sd", "dit", "tiny")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
WNID = "n01440764"  # tench: an ImageNet-1k class and a WordNet noun


# ----------------------------------------------------------------------------- components

def _tokenizer(folder: Path, max_length: int):
    """A CLIPTokenizer over a letters-only vocabulary (the real vocabulary is not needed to
    measure: prompts are padded to ``max_length`` tokens, as with the real one)."""
    from transformers import CLIPTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = (["<|startoftext|>", "<|endoftext|>", "!"] + list(letters)
              + [c + "</w>" for c in letters])
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                         model_max_length=max_length)


def _vae(tiny: bool):
    from diffusers import AutoencoderKL

    if tiny:
        return AutoencoderKL(block_out_channels=(8, 16), in_channels=3, out_channels=3,
                             latent_channels=4, down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8,
                             sample_size=16)
    # CompVis/stable-diffusion-v1-4 vae/config.json (also stabilityai/sd-vae-ft-*, DiT's VAE)
    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), in_channels=3, out_channels=3,
                         latent_channels=4, layers_per_block=2, norm_num_groups=32,
                         down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
                         sample_size=512)


def build_sd(tiny: bool, folder: Path):
    """A StableDiffusionPipeline of SD v1-4's architecture (``tiny``: the test sizes)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPTextConfig, CLIPTextModel

    if tiny:
        tok = _tokenizer(folder, 16)
        text = CLIPTextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                              num_attention_heads=4, num_hidden_layers=2,
                              max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                              pad_token_id=1)
        unet = UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1,
                                    sample_size=8, in_channels=4, out_channels=4,
                                    cross_attention_dim=32,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                                    norm_num_groups=8, attention_head_dim=4)
        checker = CLIPConfig(text_config={"hidden_size": 8, "intermediate_size": 8,
                                          "num_hidden_layers": 1, "num_attention_heads": 2,
                                          "vocab_size": 10},
                             vision_config={"hidden_size": 8, "intermediate_size": 8,
                                            "num_hidden_layers": 1, "num_attention_heads": 2,
                                            "image_size": 16, "patch_size": 8},
                             projection_dim=8)
        size = 16
    else:
        tok = _tokenizer(folder, 77)
        # openai/clip-vit-large-patch14 text_config (SD v1-4 text_encoder/config.json)
        text = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                              num_attention_heads=12, num_hidden_layers=12,
                              max_position_embeddings=77, hidden_act="quick_gelu",
                              projection_dim=768, bos_token_id=0, eos_token_id=2,
                              pad_token_id=1)
        # SD v1-4 unet/config.json
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
            attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5, act_fn="silu",
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D",
                            "CrossAttnUpBlock2D"),
            downsample_padding=1, flip_sin_to_cos=True, freq_shift=0)
        # SD v1-4 safety_checker/config.json: CLIP ViT-L/14 vision tower
        checker = CLIPConfig(text_config={"hidden_size": 768, "intermediate_size": 3072,
                                          "num_hidden_layers": 12, "num_attention_heads": 12},
                             vision_config={"hidden_size": 1024, "intermediate_size": 4096,
                                            "num_hidden_layers": 24, "num_attention_heads": 16,
                                            "image_size": 224, "patch_size": 14},
                             projection_dim=768)
        size = 224
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    proc = CLIPImageProcessor(size={"shortest_edge": size},
                              crop_size={"height": size, "width": size})
    return StableDiffusionPipeline(vae=_vae(tiny), text_encoder=CLIPTextModel(text), tokenizer=tok,
                                   unet=unet, scheduler=sched,
                                   safety_checker=StableDiffusionSafetyChecker(checker),
                                   feature_extractor=proc, requires_safety_checker=True)


def build_dit(tiny: bool, folder: Path):
    """A DiTPipeline of DiT-XL/2-256's architecture (``tiny``: the test sizes)."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    if tiny:
        tr = DiTTransformer2DModel(sample_size=8, patch_size=2, in_channels=4, out_channels=8,
                                   num_layers=2, num_attention_heads=2, attention_head_dim=8,
                                   norm_num_groups=8, num_embeds_ada_norm=1000)
    else:
        # facebook/DiT-XL-2-256 transformer/config.json
        tr = DiTTransformer2DModel(sample_size=32, patch_size=2, in_channels=4, out_channels=8,
                                   num_layers=28, num_attention_heads=16, attention_head_dim=72,
                                   norm_num_groups=32, num_embeds_ada_norm=1000,
                                   activation_fn="gelu-approximate", attention_bias=True,
                                   norm_type="ada_norm_zero", norm_elementwise_affine=False,
                                   upcast_attention=False, dropout=0.0)
    return DiTPipeline(transformer=tr, vae=_vae(tiny), scheduler=DDIMScheduler())


def build_tiny(tiny: bool, folder: Path):
    """A TinyPipeline of the ``default`` preset (200 classes; ``tiny``: ``small``, 3 classes),
    random weights."""
    from sbd.generate import tiny as tiny_gen
    from sbd.generate.labels import imagenet1k_wnids

    cfg = tiny_gen.resolve_config("small" if tiny else "default")
    wnids = list(imagenet1k_wnids()[:3 if tiny else 200])
    denoiser, _ = tiny_gen.build_denoiser(cfg, len(wnids))
    codec = tiny_gen.PatchPCA(cfg.patch, cfg.latent_dim)
    return tiny_gen.TinyPipeline.of(denoiser, codec, tiny_gen.build_scheduler(cfg), wnids, cfg)


BUILDERS: dict[str, Callable] = {"sd": build_sd, "dit": build_dit, "tiny": build_tiny}


def _as_generator(name: str, pipe, device: torch.device, steps: int, batch: int):
    """sbd's generator class ``name`` around an already built ``pipe``: the code that runs
    real weights (conditions, seeds, batching, output), minus the loading."""
    from sbd.generate import generators as g
    from sbd.generate.labels import LabelIndex

    cls = g.GENERATORS[name]

    class Built(cls):  # type: ignore[misc, valid-type]
        def load(self) -> None:
            pipe.set_progress_bar_config(disable=True)
            self.pipe = pipe
            if name == "tiny":
                self.labels = LabelIndex(pipe.class_wnids, "nearest")
                self.default_steps = pipe.default_steps
                self.default_guidance = pipe.default_guidance

    return Built("random-weights", str(device), steps=steps or None, batch_size=batch)


def _image_size(name: str, pipe) -> int:
    """Side of the images the pipeline draws (px)."""
    if name == "tiny":
        return int(pipe.tiny_config.image_size)
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    model = pipe.transformer if name == "dit" else pipe.unet
    return int(model.config.sample_size) * scale


# ----------------------------------------------------------------------------- measuring

class _PeakRss:
    """The process's peak resident memory (MB) while the block runs, sampled every 5 ms."""

    def __init__(self) -> None:
        self.peak = 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page / 2 ** 20
        except OSError:  # not Linux: the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(0.005)

    def __enter__(self) -> "_PeakRss":
        self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


class _StepTimer:
    """Wall time of the denoiser's forward passes (hooks on the module)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.seconds, self.calls, self._t0 = 0.0, 0, 0.0
        self.device = device
        self._hooks = [module.register_forward_pre_hook(self._pre),
                       module.register_forward_hook(self._post)]

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _pre(self, *_: Any) -> None:
        self._sync()
        self._t0 = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._t0
        self.calls += 1

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def _release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the system (glibc), so that the
    resident memory measured next is not that of the previous generator."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _denoiser(name: str, pipe) -> torch.nn.Module:
    return pipe.transformer if name == "dit" else pipe.unet


def _timed_call(gen, name: str, batch: int) -> dict[str, float]:
    """One ``generate`` call of ``batch`` images (one pipeline call); its figures."""
    device = gen.device
    timer = _StepTimer(_denoiser(name, gen.pipe), device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with _PeakRss() as rss:
            t0 = time.perf_counter()
            gen.generate([WNID], seed=0, n_per_label=batch)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
    finally:
        timer.remove()
    peak = (torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda"
            else rss.peak)
    steps = gen.num_steps
    per_step = timer.seconds / max(1, steps)  # one forward per step (guidance: a doubled batch)
    default = gen.default_steps
    at_default = seconds - timer.seconds + per_step * default
    return {"images_per_s": round(batch / seconds, 4), "seconds": round(seconds, 3),
            "denoiser_s_per_step": round(per_step, 4), "default_steps": int(default),
            "images_per_s_at_default_steps": round(batch / at_default, 4),
            "peak_memory_mb": round(peak, 1)}


def _largest_batch(gen, name: str, max_batch: int) -> tuple[int, bool]:
    """The largest power-of-two batch (≤ ``max_batch``) that runs on CUDA at one step;
    and whether ``max_batch`` stopped the search (True) rather than memory."""
    steps, gen.steps = gen.steps, 1
    best, b = 0, 1
    try:
        while b <= max_batch:
            gen.batch_size = b
            try:
                gen.generate([WNID], seed=0, n_per_label=b)
            except torch.cuda.OutOfMemoryError:
                break
            finally:
                gc.collect()
                torch.cuda.empty_cache()
            best, b = b, b * 2
        return best, b > max_batch
    finally:
        gen.steps = steps


def bench(name: str, device: torch.device, tiny: bool, steps: int, batch: int,
          max_batch: int, cpu_fp16: bool) -> dict[str, Any]:
    """Build generator ``name`` with random weights and measure it at each dtype
    (``steps`` 0: the generator's default)."""
    torch.manual_seed(0)
    out: dict[str, Any] = {"generator": name, "device": str(device),
                           "sizes": "tiny" if tiny else "real", "steps": steps or None,
                           "batch": batch}
    notes: dict[str, str] = {}
    _release_memory()
    if device.type == "cpu":
        out["rss_before_build_mb"] = round(_PeakRss()._rss(), 1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pipe = BUILDERS[name](tiny, Path(tmp))
        out["build_seconds"] = round(time.perf_counter() - t0, 1)
        parts = {k: m for k, m in pipe.components.items() if isinstance(m, torch.nn.Module)}
        out["components"] = {k: int(sum(p.numel() for p in m.parameters()))
                             for k, m in parts.items()}
        out["n_params"] = sum(out["components"].values())
        out["image_size"] = _image_size(name, pipe)
        gen = None
        for label, dtype in DTYPES.items():
            if device.type == "cpu" and dtype == torch.float16 and not cpu_fp16:
                out[label] = None
                notes[label] = ("not measured on the CPU: sbd runs float32 there (dtype auto); "
                                "most CPU float16 kernels are slower than float32 or missing "
                                "(--cpu-fp16 tries anyway)")
                continue
            try:
                pipe.to(device=device, dtype=dtype)
                gen = _as_generator(name, pipe, device, steps, batch)
                out["steps"] = gen.num_steps
                gen.steps = 1
                gen.generate([WNID], seed=0, n_per_label=1)  # warm-up (kernels, caches)
                gen.steps = out["steps"]
                figures = _timed_call(gen, name, batch)
                if device.type == "cuda":
                    largest, capped = _largest_batch(gen, name, max_batch)
                    figures["largest_batch"] = largest
                    if capped:
                        notes["largest_batch"] = f"bounded by --max-batch {max_batch}"
                    if largest > batch:
                        gen.batch_size = largest
                        figures["images_per_s_at_largest_batch"] = _timed_call(
                            gen, name, largest)["images_per_s"]
                else:
                    figures["largest_batch"] = None
                    notes["largest_batch"] = ("not searched on the CPU: memory is not the limit "
                                              "there, time is (batch 1 is sbd's default)")
                out[label] = figures
            except (RuntimeError, NotImplementedError, TypeError) as err:
                out[label] = None
                notes[label] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            finally:
                _release_memory()
        if device.type == "cpu":
            notes["memory"] = ("peak resident memory of the process during the call, weights "
                               "included (MB); rss_before_build_mb: before the pipeline existed")
        else:
            notes["memory"] = "torch.cuda.max_memory_allocated during the call (MB)"
        del pipe, parts, gen  # the generator holds the pipeline too
    _release_memory()
    out["notes"] = notes
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["threads"] = torch.get_num_threads()
    return out


def main(argv=None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="test sizes: seconds on a CPU (CI)")
    p.add_argument("--only", default=",".join(GENERATOR_NAMES),
                   help="comma-separated generators (sd, dit, tiny)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu, cuda")
    p.add_argument("--steps", type=int, default=0,
                   help="denoising steps (0: the generator's default on CUDA, 2 on the CPU)")
    p.add_argument("--batch", type=int, default=1, help="images per pipeline call")
    p.add_argument("--max-batch", type=int, default=64, help="bound of the largest-batch search")
    p.add_argument("--cpu-fp16", action="store_true", help="measure float16 on the CPU too")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    a = p.parse_args(argv)

    import diffusers
    import transformers

    from sbd.generate.generators import resolve_device

    diffusers.utils.logging.set_verbosity_error()  # "modules to keep in float32: []" per cast
    transformers.utils.logging.set_verbosity_error()
    if a.threads > 0:
        torch.set_num_threads(a.threads)

    device = resolve_device(a.device, heavy=False)
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    bad = [n for n in names if n not in GENERATOR_NAMES]
    if bad:
        raise SystemExit(f"Unknown generator(s) {bad}; valid: {', '.join(GENERATOR_NAMES)}.")
    results = []
    steps = a.steps or (0 if device.type == "cuda" else 2)
    for name in names:
        figures = bench(name, device, a.tiny, steps, a.batch, a.max_batch, a.cpu_fp16)
        print(json.dumps(figures), flush=True)
        results.append(figures)
    return results


if __name__ == "__main__":
    main()
