"""Label-conditioned image generators behind one interface.

::

    gen = get_generator("sd", model_id=None, device="auto", steps=30)
    images = gen.generate(["n01518878", "n02084071"], seed=0, n_per_label=2, sample=3)
    images[0][1]        # PIL image: the second image of the first wnid

Registry :data:`GENERATORS`:

``sd``
    Stable Diffusion (the paper's): a text prompt built from the synset's name.
``dit``
    Class-conditional DiT on the ImageNet-1k class index of the wnid; a wnid outside
    ImageNet-1k maps to its nearest 1k class in WordNet (``out_of_set="nearest"``) or errors.
``tiny``
    The small class-conditional model trained on a phantom bank (:mod:`sbd.generate.tiny`);
    a wnid outside its classes maps the same way as for ``dit``.

Every image has its own ``torch.Generator`` seeded by :func:`image_seed` from
``(seed, sample, wnid, n)``, so any single image is reproduced alone by asking for that
wnid with the same seed and sample. Weights load from a local folder or the Hugging Face
cache; with ``HF_HUB_OFFLINE=1`` nothing is downloaded. Each image carries its provenance
in ``image.info`` (keys ``sbd.*``: wnid, seed, prompt or class, blanked by the safety checker).
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from sbd.generate.labels import (LabelIndex, ModelNotFoundError,  # noqa: F401 (public API)
                                 image_seed, imagenet1k_wnids)

log = logging.getLogger(__name__)

WNID_RE = re.compile(r"^n\d{8}$")
DEVICES = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------- helpers

def resolve_device(device: str | torch.device = "auto", heavy: bool = True) -> torch.device:
    """``auto`` → cuda when available, else cpu (with a warning when ``heavy``)."""
    dev = str(device or "auto")
    if dev not in DEVICES and not dev.startswith("cuda:"):
        raise ValueError(f"Unknown device={device!r}; valid: {', '.join(DEVICES)}, cuda:N.")
    if dev == "auto":
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        if dev == "cpu" and heavy:
            warnings.warn("No CUDA device: running a full-size diffusion model on the CPU takes "
                          "minutes per image (use device=cuda, fewer steps, or generator=tiny).",
                          RuntimeWarning, stacklevel=3)
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but torch sees no CUDA device.")
    return torch.device(dev)


def check_wnids(wnids: Sequence[str]) -> list[str]:
    """Validate the form of a non-empty wnid list (``n`` + 8 digits)."""
    if isinstance(wnids, str):
        raise ValueError(f"wnids must be a list of wnids, got the string {wnids!r}.")
    wnids = list(wnids)
    if not wnids:
        raise ValueError("Empty label list: generate() needs at least one wnid.")
    bad = [w for w in wnids if not isinstance(w, str) or not WNID_RE.match(w)]
    if bad:
        raise ValueError(f"Malformed wnid(s) {bad!r}; expected 'n' + 8 digits, e.g. 'n01518878'.")
    return wnids


def hf_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) asks for no downloads."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def load_pretrained(cls: Any, model_id: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(model_id)`` with a clear error when the model is not there.

    A local folder is used as is; a path-like id that does not exist fails at once; a hub
    id is read from the cache only (``local_files_only``) when offline mode is on.
    """
    path = Path(model_id).expanduser()
    if path.exists():
        return cls.from_pretrained(str(path), **kwargs)
    if path.is_absolute() or model_id.startswith((".", "~")) or model_id.count("/") > 1:
        raise ModelNotFoundError(f"Model folder {model_id!r} does not exist.")
    offline = hf_offline()
    try:
        return cls.from_pretrained(model_id, local_files_only=offline, **kwargs)
    except (OSError, ValueError) as err:
        how = ("offline mode is on (HF_HUB_OFFLINE), so only the local cache is read"
               if offline else "it could not be downloaded either")
        raise ModelNotFoundError(
            f"Cannot load {cls.__name__} {model_id!r}: not a local folder and not in the "
            f"Hugging Face cache, and {how}. Download it first (`hf download {model_id}`) "
            f"or pass a local folder as model_id. Cause: {err}") from err


# ----------------------------------------------------------------------------- interface

class Generator(ABC):
    """Base class: subclasses load a pipeline and turn a batch of conditions into images.

    Parameters
    ----------
    model_id : str, optional
        Hub id or local folder (default: the generator's ``default_model_id``).
    device : {"auto", "cpu", "cuda", "cuda:N"}
    steps : int, optional
        Denoising steps (None or <= 0: the generator's default).
    guidance : float, optional
        Classifier-free guidance scale (None or < 0: the generator's default).
    batch_size : int
        Images per pipeline call. 1 (default) makes every image bit-identical to its
        reproduction alone; larger batches are faster on a GPU and equal up to rounding.
    progress : bool
        Show the pipeline's per-step progress bar.
    """

    name: str = ""
    default_model_id: str | None = None
    default_steps: int = 50
    default_guidance: float = 7.5
    heavy: bool = True

    def __init__(self, model_id: str | None = None, device: str = "auto", steps: int | None = None,
                 guidance: float | None = None, batch_size: int = 1, progress: bool = False):
        self.model_id = model_id or self.default_model_id
        if not self.model_id:
            raise ValueError(f"Generator {self.name!r} needs a model_id.")
        self.device = resolve_device(device, heavy=self.heavy)
        self.steps = steps
        self.guidance = guidance
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self.progress = progress
        self.load()

    @property
    def num_steps(self) -> int:
        return int(self.steps) if self.steps and self.steps > 0 else self.default_steps

    @property
    def guidance_scale(self) -> float:
        return float(self.guidance) if self.guidance is not None and self.guidance >= 0 \
            else self.default_guidance

    @abstractmethod
    def load(self) -> None:
        """Load the pipeline onto ``self.device``."""

    @abstractmethod
    def condition(self, wnid: str) -> Any:
        """The pipeline condition of one wnid (prompt, class index); ValueError if unknown."""

    @abstractmethod
    def _run(self, conditions: list[Any],
             generators: list[torch.Generator]) -> list[tuple[Image.Image, bool]]:
        """One pipeline call: an image (and whether it was blanked) per condition."""

    def describe(self, condition: Any) -> dict[str, str]:
        """Provenance of one condition, stored in ``image.info``."""
        return {"sbd.condition": str(condition)}

    def generate(self, wnids: Sequence[str], seed: int, n_per_label: int = 1,
                 sample: int = 0) -> list[list[Image.Image]]:
        """Generate ``n_per_label`` images for each wnid.

        Parameters
        ----------
        wnids : sequence of str, length L
        seed, sample : int
            With the wnid and the image number they seed each image (:func:`image_seed`).
        n_per_label : int

        Returns
        -------
        list of L lists of ``n_per_label`` PIL images (RGB).
        """
        wnids = check_wnids(wnids)
        if int(n_per_label) < 1:
            raise ValueError(f"n_per_label must be >= 1, got {n_per_label!r}.")
        conditions = [self.condition(w) for w in wnids]  # all errors before any work
        jobs = [(i, n, image_seed(seed, sample, w, n))
                for i, w in enumerate(wnids) for n in range(int(n_per_label))]
        out: list[list[Image.Image]] = [[None] * int(n_per_label) for _ in wnids]  # type: ignore[list-item]
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            gens = [torch.Generator("cpu").manual_seed(s) for _, _, s in chunk]
            cuda = [self.device.index or 0] if self.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(chunk[0][2])  # any global-RNG use inside a pipeline
                results = self._run([conditions[i] for i, _, _ in chunk], gens)
            for (i, n, s), (img, blanked) in zip(chunk, results):
                img = img.convert("RGB")
                img.info.update({"sbd.generator": self.name, "sbd.model_id": str(self.model_id),
                                 "sbd.wnid": wnids[i], "sbd.seed": str(s),
                                 "sbd.blanked": "true" if blanked else "false",
                                 **self.describe(conditions[i])})
                if blanked:
                    log.warning("The safety checker blanked image %d of %s (seed %d).", n, wnids[i], s)
                out[i][n] = img
        return out


# ----------------------------------------------------------------------------- sd

class StableDiffusionGenerator(Generator):
    """Stable Diffusion 1.x/2.x (``StableDiffusionPipeline``) prompted with the synset's name.

    Extra parameters
    ----------------
    prompt : str
        Template with ``{name}`` (first lemma, underscores as spaces) and/or ``{wnid}``.
    negative_prompt : str, optional
    safety_checker : bool
        Keep the model's safety checker; an image it blanks is flagged
        (``image.info["sbd.blanked"] == "true"``) and logged.
    height, width : int, optional
        Output size (default: the model's).
    dtype : {"auto", "float16", "float32"}
        ``auto``: float16 on CUDA, float32 on the CPU.
    attention_slicing, cpu_offload : bool
        Memory savers for small GPUs (``cpu_offload`` needs ``accelerate``).
    """

    name = "sd"
    default_model_id = "CompVis/stable-diffusion-v1-4"
    default_steps = 50
    default_guidance = 7.5

    def __init__(self, model_id: str | None = None, device: str = "auto", *,
                 prompt: str = "An image of a {name}", negative_prompt: str | None = None,
                 safety_checker: bool = True, height: int | None = None, width: int | None = None,
                 dtype: str = "auto", attention_slicing: bool = False, cpu_offload: bool = False,
                 **kw: Any):
        if "{name}" not in prompt and "{wnid}" not in prompt:
            raise ValueError(f"prompt template {prompt!r} needs a {{name}} or {{wnid}} field.")
        self.prompt, self.negative_prompt = prompt, negative_prompt or None
        self.safety_checker, self.height, self.width = safety_checker, height, width
        self.dtype, self.attention_slicing, self.cpu_offload = dtype, attention_slicing, cpu_offload
        super().__init__(model_id, device, **kw)

    def load(self) -> None:
        from diffusers import StableDiffusionPipeline

        kwargs: dict[str, Any] = {"dtype": _dtype(self.dtype, self.device)}
        if not self.safety_checker:
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        pipe = load_pretrained(StableDiffusionPipeline, self.model_id, **kwargs)
        if self.attention_slicing:
            pipe.enable_attention_slicing()
        if self.cpu_offload and self.device.type == "cuda":
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        pipe.set_progress_bar_config(disable=not self.progress)
        self.pipe = pipe

    def condition(self, wnid: str) -> str:
        from sbd import wordnet

        return self.prompt.format(name=wordnet.name(wnid), wnid=wnid)

    def describe(self, condition: Any) -> dict[str, str]:
        return {"sbd.prompt": condition}

    def _run(self, conditions, generators):
        neg = [self.negative_prompt] * len(conditions) if self.negative_prompt else None
        out = self.pipe(prompt=conditions, negative_prompt=neg, num_inference_steps=self.num_steps,
                        guidance_scale=self.guidance_scale, generator=generators,
                        height=self.height, width=self.width, output_type="pil")
        flags = out.nsfw_content_detected or [False] * len(out.images)
        return [(img, bool(f)) for img, f in zip(out.images, flags)]


# ----------------------------------------------------------------------------- dit

class DiTGenerator(Generator):
    """Class-conditional DiT (``DiTPipeline``) on the ImageNet-1k class index of a wnid.

    Extra parameters
    ----------------
    out_of_set : {"nearest", "error"}
        A wnid outside ImageNet-1k: nearest 1k class in WordNet (logged) or ValueError.
    dtype : {"auto", "float16", "float32"}
    """

    name = "dit"
    default_model_id = "facebook/DiT-XL-2-256"
    default_steps = 50
    default_guidance = 4.0

    def __init__(self, model_id: str | None = None, device: str = "auto", *,
                 out_of_set: str = "nearest", dtype: str = "auto", **kw: Any):
        self.labels = LabelIndex(imagenet1k_wnids(), out_of_set)
        self.dtype = dtype
        super().__init__(model_id, device, **kw)

    def load(self) -> None:
        from diffusers import DiTPipeline

        pipe = load_pretrained(DiTPipeline, self.model_id, dtype=_dtype(self.dtype, self.device))
        n = pipe.transformer.config.num_embeds_ada_norm
        if n is None or n < 1000:
            raise ValueError(f"DiT model {self.model_id!r} has {n} class embeddings; the ImageNet-1k "
                             "class index needs 1000.")
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=not self.progress)
        self.pipe = pipe

    def condition(self, wnid: str) -> int:
        return self.labels(wnid)

    def describe(self, condition: Any) -> dict[str, str]:
        return {"sbd.class_index": str(condition), "sbd.class_wnid": self.labels.classes[condition]}

    def _run(self, conditions, generators):
        out = self.pipe(class_labels=list(conditions), guidance_scale=self.guidance_scale,
                        num_inference_steps=self.num_steps, generator=generators, output_type="pil")
        return [(img, False) for img in out.images]


# ----------------------------------------------------------------------------- tiny

class TinyGenerator(Generator):
    """The small class-conditional model of :mod:`sbd.generate.tiny`.

    ``model_id`` is a folder written by ``TinyPipeline.save_pretrained`` or an MLflow model
    URI (``models:/sbd-phantom-tiny-generator@champion``, ``runs:/…``).

    Extra parameters
    ----------------
    out_of_set : {"nearest", "error"}
        A wnid outside the model's classes: nearest class in WordNet (logged) or ValueError.
    """

    name = "tiny"
    heavy = False

    def __init__(self, model_id: str | None = None, device: str = "auto", *,
                 out_of_set: str = "nearest", **kw: Any):
        self.out_of_set = out_of_set
        super().__init__(model_id, device, **kw)

    def load(self) -> None:
        from sbd.generate import tiny

        self.pipe = tiny.load_pipeline(self.model_id, device=self.device)
        self.labels = LabelIndex(self.pipe.class_wnids, self.out_of_set)
        self.default_steps = self.pipe.default_steps
        self.default_guidance = self.pipe.default_guidance

    def condition(self, wnid: str) -> int:
        return self.labels(wnid)

    def describe(self, condition: Any) -> dict[str, str]:
        return {"sbd.class_index": str(condition), "sbd.class_wnid": self.labels.classes[condition]}

    def _run(self, conditions, generators):
        images = self.pipe(list(conditions), generator=list(generators),
                           num_inference_steps=self.num_steps,
                           guidance_scale=self.guidance_scale, progress=self.progress).images
        return [(img, False) for img in images]


GENERATORS: dict[str, type[Generator]] = {
    "sd": StableDiffusionGenerator,
    "dit": DiTGenerator,
    "tiny": TinyGenerator,
}


def _dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    valid = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if dtype not in valid:
        raise ValueError(f"Unknown dtype={dtype!r}; valid: auto, {', '.join(valid)}.")
    return valid[dtype]


def get_generator(name: str, model_id: str | None = None, device: str = "auto",
                  **opts: Any) -> Generator:
    """A ready generator of the registry :data:`GENERATORS`.

    Parameters
    ----------
    name : {"sd", "dit", "tiny"}
    model_id : str, optional
        Hub id, local folder (or, for ``tiny``, an MLflow model URI); None or "" = default.
    device : str
        ``auto`` (cuda if present), ``cpu``, ``cuda``.
    **opts
        Generator options: ``steps``, ``guidance``, ``batch_size``, ``progress`` and the
        generator's own (see its class).
    """
    if name not in GENERATORS:
        raise ValueError(f"Unknown generator={name!r}; valid: {', '.join(GENERATORS)}.")
    return GENERATORS[name](model_id or None, device, **opts)
