"""Backbone registry: shapes and dtypes (random weights), real EfficientNet-Lite0 weights
classify real photos, clear errors for unknown names and missing weights."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from sbd.features import backbones
from sbd.features.backbones import BACKBONES, get_backbone, resolve_backbone, torch_cache_dir

skdata = pytest.importorskip("skimage.data")

TORCHVISION = {"resnet50": 2048, "efficientnet-b0": 1280, "convnext-tiny": 768}


def _photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skdata, name)()).convert("RGB")


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_shapes_and_dtypes(name):
    bb = get_backbone(name, weights=False, device="cpu")
    assert bb.dim == TORCHVISION[name] and bb.layer and bb.preprocessing
    x = torch.stack([bb.transform(_photo("coffee")), bb.transform(Image.new("L", (50, 80)))])
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    # the trunks end in adaptive pooling: a small input checks shapes at a fraction of the cost
    f = bb.features(torch.randn(2, 3, 64, 64))
    assert f.shape == (2, bb.dim) and f.dtype == torch.float32
    assert bb.classifier(f).shape == (2, 1000)


def test_uint8_batches_are_normalised_like_transform():
    bb = get_backbone("efficientnet-lite0", device="cpu")
    photo = _photo("coffee")
    u = backbones.to_uint8(bb.resize(photo))
    assert u.dtype == torch.uint8 and u.shape == (3, 224, 224)
    x = bb.transform(photo)
    torch.testing.assert_close(backbones.normalize_uint8(u, bb.mean, bb.std), x)
    torch.testing.assert_close(bb.features(u[None]), bb.features(x[None]))


@pytest.mark.parametrize("name", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_efficientnet_lite_classifies_real_photos(name):
    from torchvision.models import ResNet50_Weights

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # ImageNet-1k class names
    bb = get_backbone(name, device="cpu")
    assert bb.dim == 1280
    photos = {"chelsea": {"tabby", "tiger cat", "Egyptian cat"},
              "coffee": {"espresso", "cup"},
              "camera": {"tripod"}}
    x = torch.stack([bb.transform(_photo(n)) for n in photos])
    feats = bb.features(x)
    assert feats.shape == (3, 1280) and torch.isfinite(feats).all()
    top = bb.logits(x).argmax(dim=1).tolist()
    assert [categories[i] in want for i, want in zip(top, photos.values())] == [True] * 3, \
        [categories[i] for i in top]


def test_registry_names_and_defaults():
    assert {"resnet50", "efficientnet-lite0"} <= set(BACKBONES) and len(BACKBONES) >= 3
    assert resolve_backbone("phantom", "") == "efficientnet-lite0"
    assert resolve_backbone("god", None) == "resnet50"
    assert resolve_backbone("god", "convnext-tiny") == "convnext-tiny"
    with pytest.raises(ValueError, match="Unknown backbone='alexnet'.*resnet50.*efficientnet-lite0"):
        get_backbone("alexnet")
    with pytest.raises(ValueError, match="Unknown backbone"):
        resolve_backbone("phantom", "alexnet")


def test_missing_weights_error_names_the_cache_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub.get_dir() follows it
    assert torch_cache_dir() == tmp_path / "hub" / "checkpoints"
    unreachable = SimpleNamespace(url="http://127.0.0.1:9/resnet50-0000.pth")
    with pytest.raises(RuntimeError) as err:
        backbones._torchvision_state_dict(unreachable)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0000.pth") in str(err.value)
    assert "TORCH_HOME" in str(err.value)


@pytest.mark.weights
def test_resnet50_real_weights_when_cached():
    from torchvision.models import ResNet50_Weights

    w = ResNet50_Weights.IMAGENET1K_V1
    if not (torch_cache_dir() / w.url.rsplit("/", 1)[1]).is_file():
        pytest.skip(f"ResNet-50 weights not in {torch_cache_dir()}")
    bb = get_backbone("resnet50", device="cpu")
    top = bb.logits(bb.transform(_photo("coffee"))[None]).argmax(1).item()
    assert w.meta["categories"][top] in {"espresso", "cup", "coffee mug"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    cpu = get_backbone("efficientnet-lite0", device="cpu")
    gpu = get_backbone("efficientnet-lite0", device="cuda")
    x = torch.stack([cpu.transform(_photo(n)) for n in ("chelsea", "coffee")])
    a, b = cpu.features(x).numpy(), gpu.features(x).numpy()
    assert b.dtype == np.float32
    np.testing.assert_allclose(b, a, rtol=0.05, atol=0.05)


def test_lite2_on_the_phantom_is_refused_unless_allowed(phantom_dir, mlflow_store):
    """The phantom's brain is built from EfficientNet-Lite2 blocks: decoding it with Lite2 is
    partly circular.  Every step that meets the combination refuses it, saying why and what
    to do, before any work; with allow_circular the run goes ahead, tagged and warned."""
    import mlflow

    from sbd import tracking
    from sbd.features.backbones import check_circular
    from sbd.steps import extract_features, main, train_decoder

    assert check_circular("phantom", "efficientnet-lite0") == ""
    assert check_circular("god", "efficientnet-lite2") == ""
    for step in (main.run, extract_features.run, train_decoder.run):
        with pytest.raises(ValueError, match=r"efficientnet-lite2.*refused: the phantom's brain "
                                             r"network is built from EfficientNet-Lite2.*"
                                             r"allow_circular=true"):
            step(dataset="phantom", data_dir=str(phantom_dir), backbone="efficientnet-lite2")
    assert mlflow.search_runs(search_all_experiments=True).empty  # refused before any run
    with pytest.warns(UserWarning, match="circular backbone"):
        run_id = extract_features.run(dataset="phantom", data_dir=str(phantom_dir),
                                      backbone="efficientnet-lite2", source="stimuli",
                                      num_workers=0, allow_circular=True, progress=False)
    run = mlflow.get_run(run_id)
    assert "EfficientNet-Lite2" in run.data.tags[tracking.CIRCULAR_TAG]
    assert run.data.params["allow_circular"] == "true"
