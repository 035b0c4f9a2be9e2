"""The ``tiny`` generator: a small class-conditional diffusion model trained on a bank on the CPU.

::

    pipe = train(data_dir, out_dir, preset="default")        # resumable, tqdm progress
    images = pipe([3, 17], generator=[g1, g2], num_inference_steps=20, guidance_scale=2.0).images
    pipe.save_pretrained(folder); TinyPipeline.from_pretrained(folder).to("cuda")
    figures = evaluate(pipe, data_dir)                        # kNN accuracy of its samples

Design (defaults of :class:`TinyConfig`; each choice measured, see below):

1. **Data**: every bank image (``layout.bank_dir(data_dir)``: ``<wnid>/*.JPEG``) is cropped
   to the square around its object (:func:`object_box`: a smooth background fitted to the
   border) and shrunk to 64 px, so that the images of a class align.
2. **Latent**: a patch-PCA codec (:class:`PatchPCA`, fitted by one SVD in seconds): each
   8×8 RGB patch → its 32 first principal components, a 32 × 8 × 8 latent. The denoiser
   works on 64 positions instead of 4096 pixels.
3. **Denoiser** (:class:`TinyDenoiser`): a diffusers ``UNet2DModel`` (64/128 channels,
   attention at 4×4) with a class embedding, plus class maps concatenated to its input:
   ``prototypes`` (10) latents per class, initialised to k-means centres of the class's
   training latents — a mixture prior that the UNet refines. One extra null class serves
   classifier-free guidance (10% label dropout).
4. **Diffusion**: cosine schedule, x0 ("sample") prediction, plain MSE, EMA weights; DDIM
   sampling in 20 steps with guidance 2.
5. **Training**: 700 steps of 32 (``max_steps``; the learning rate, 2e-3 with warm-up and
   cosine decay, follows that number), AdamW's fused kernel, one torch thread, every draw
   from ``seed``: the same parameters and bank give the same weights however busy the
   machine is (:mod:`sbd.generate.tiny.train`; the step count is
   chosen from a measured curve, :mod:`sbd.generate.tiny.config`).

Measured (100-class subsets of the default phantom bank, 400 steps of 32, kNN of 200
samples against the bank's EfficientNet-Lite0 features; chance 1%): pixel-free v-prediction
models (whitened or not, with or without crops) gave noise at chance; x0 prediction on
cropped images gave smooth class-coloured images (Euclidean kNN 1–2%, 2.5–3% with 3× the
steps); prototypes 4 / 10 raised the centred kNN from 2% to 6% / 16% (Euclidean 4%).
Real bank images prepared like the training images reach 69% (the ceiling).

:class:`TinyPipeline` is a diffusers ``DiffusionPipeline``; its folder
(:meth:`TinyPipeline.save_pretrained`, written to a temporary name, then renamed)::

    <folder>/model_index.json       components, class wnids (index order), config, training figures
    <folder>/unet/                  UNet2DModel (config + safetensors, EMA weights)
    <folder>/codec/                 PatchPCA (config + safetensors)
    <folder>/prototypes/            ClassPrototypes: class maps, prototype weights
    <folder>/scheduler/             DDIMScheduler

Training writes ``<out_dir>/checkpoint.pt`` (model, EMA, optimiser, step, elapsed time,
RNG state) every ``checkpoint_every_s`` seconds and resumes from it; the finished model
goes to ``<out_dir>/pipeline``. :func:`log_model` logs it as an MLflow pyfunc
(:class:`TinyGeneratorModel`) and registers it as ``sbd-<dataset>-tiny-generator``.

Modules: ``config`` (:class:`TinyConfig`, presets), ``data`` (bank images), ``model``
(codec, denoiser, prototypes, scheduler), ``pipeline`` (:class:`TinyPipeline`), ``train``,
``evaluate``, ``pyfunc`` (MLflow); this package re-exports their public names.
"""

from __future__ import annotations

from sbd.generate.tiny.config import (
    PIPELINE_FORMAT, CHECKPOINT_NAME, IMAGE_CACHE, PREDICTION_TYPES,
    CLASS_MAP_INITS, MODEL_NAME, PYFUNC_NAME, TIMING_KEYS, REMOVED_FIELDS, TinyConfig, PRESETS,
    resolve_config, config_from_dict,
)
from sbd.generate.tiny.data import bank_classes, bank_signature, object_box, load_image, load_bank
from sbd.generate.tiny.model import (
    PatchPCA, ClassPrototypes, TinyDenoiser, class_prototypes, build_denoiser, build_scheduler,
)
from sbd.generate.tiny.pipeline import TinyPipeline
from sbd.generate.tiny.train import train
from sbd.generate.tiny.evaluate import evaluate, sample_sheet
from sbd.generate.tiny.pyfunc import TinyGeneratorModel, log_model, load_pipeline

__all__ = [
    "PIPELINE_FORMAT", "CHECKPOINT_NAME", "IMAGE_CACHE", "PREDICTION_TYPES",
    "CLASS_MAP_INITS", "MODEL_NAME", "PYFUNC_NAME", "TIMING_KEYS", "REMOVED_FIELDS",
    "TinyConfig", "PRESETS", "resolve_config", "config_from_dict", "bank_classes", "bank_signature", "object_box", "load_image",
    "load_bank", "PatchPCA", "ClassPrototypes", "TinyDenoiser", "class_prototypes", "build_denoiser",
    "build_scheduler", "TinyPipeline", "train", "evaluate", "sample_sheet",
    "TinyGeneratorModel", "log_model", "load_pipeline",
]
