"""The tiny generator: training (resumable), save/load, sampling through get_generator,
the MLflow model, and the kNN evaluation, on a few-class bank drawn in the test."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sbd.data import layout
from sbd.generate import tiny
from sbd.generate.generators import ModelNotFoundError, get_generator

# tench, goldfish, great white shark: real wnids, so names and Wu-Palmer work.
WNIDS = ("n01440764", "n01443537", "n01484850")
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """3 classes × 4 images: a coloured disc or square on a random grey background."""
    root = tmp_path_factory.mktemp("tinybank")
    rng = np.random.default_rng(0)
    for c, (wnid, colour) in enumerate(zip(WNIDS, COLOURS)):
        d = layout.bank_dir(root) / wnid
        d.mkdir(parents=True)
        for i in range(4):
            im = Image.new("RGB", (48, 48), tuple(int(v) for v in rng.integers(60, 200, 3)))
            x, y = rng.integers(4, 16, 2)
            shape = ImageDraw.Draw(im).ellipse if c % 2 == 0 else ImageDraw.Draw(im).rectangle
            shape((int(x), int(y), int(x) + 28, int(y) + 28), fill=colour)
            im.save(d / f"{wnid}_{i}.JPEG", quality=95)
    return root


@pytest.fixture(scope="module")
def trained(bank, tmp_path_factory):
    out = tmp_path_factory.mktemp("tinyrun")
    pipe = tiny.train(bank, out, "small", progress=False)
    return pipe, out / "pipeline"


def test_config_errors():
    with pytest.raises(ValueError, match="Unknown tiny preset='huge'"):
        tiny.resolve_config("huge")
    with pytest.raises(ValueError, match="Unknown tiny parameter"):
        tiny.resolve_config("small", colour=True)
    with pytest.raises(ValueError, match="multiple of patch"):
        tiny.resolve_config("small", image_size=18)
    with pytest.raises(ValueError, match="Unknown prediction_type"):
        tiny.resolve_config("small", prediction_type="noise")


def test_patch_pca_round_trip():
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    full = tiny.PatchPCA(4, 48).fit(x)
    assert full.encode(x).shape == (4, 48, 4, 4)
    assert torch.allclose(full.decode(full.encode(x)), x, atol=1e-4)  # all components: exact
    z = full.encode(x)
    assert abs(float(z.std()) - 1) < 0.2  # whitened


def test_train_save_load_and_generate(trained, bank, tmp_path):
    pipe, folder = trained
    assert pipe.class_wnids == list(WNIDS) and pipe.info["train_steps"] == 8
    assert {"model_index.json", "unet", "codec", "prototypes", "scheduler"} <= \
        {f.name for f in folder.iterdir()}
    gen = get_generator("tiny", str(folder), device="cpu")
    a = gen.generate([WNIDS[1], WNIDS[0]], seed=5, n_per_label=2, sample=3)
    assert [len(r) for r in a] == [2, 2] and a[0][0].size == (16, 16)
    b = gen.generate([WNIDS[0]], seed=5, n_per_label=2, sample=3)
    assert (np.asarray(a[1][1]) == np.asarray(b[0][1])).all()  # one image reproduced alone
    assert not (np.asarray(a[1][0]) == np.asarray(a[1][1])).all()
    direct = pipe([1], [torch.Generator().manual_seed(0)])[0]
    loaded = tiny.TinyPipeline.from_pretrained(folder)([1], [torch.Generator().manual_seed(0)])[0]
    assert (np.asarray(direct) == np.asarray(loaded)).all()
    # a diffusers pipeline: diffusers' loader rebuilds every component from the folder
    from diffusers import DiffusionPipeline

    generic = tiny.TinyPipeline.from_pretrained(folder).to("cpu")
    assert isinstance(generic, DiffusionPipeline) and generic.class_wnids == list(WNIDS)
    assert set(generic.components) == {"unet", "codec", "prototypes", "scheduler"}
    assert isinstance(generic.codec, tiny.PatchPCA) and generic.tiny_config == pipe.tiny_config
    # a folder of the earlier format is refused, saying what to do
    old = tmp_path / "old"
    old.mkdir()
    (old / "sbd_tiny.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="train_tiny"):
        get_generator("tiny", str(old), device="cpu").generate([WNIDS[0]], seed=0)
    # a wnid outside the classes maps to the nearest one (fish → a fish class), or errors
    dog = "n02084071"
    assert gen.generate([dog], seed=0)[0][0].info["sbd.class_wnid"] in WNIDS
    strict = get_generator("tiny", str(folder), device="cpu", out_of_set="error")
    with pytest.raises(ValueError, match="not one of the model's 3 classes"):
        strict.generate([dog], seed=0)
    with pytest.raises(ValueError, match="Empty label list"):
        gen.generate([], seed=0)
    with pytest.raises(ModelNotFoundError):
        get_generator("tiny", str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="needs a model_id"):
        get_generator("tiny")


def test_resume_continues_exactly(bank, tmp_path):
    straight = tiny.train(bank, tmp_path / "a", "small", progress=False)
    part = tiny.train(bank, tmp_path / "b", "small", max_new_steps=5, checkpoint_every_s=1e-9,
                      progress=False)
    assert part.info["train_steps"] == 5
    resumed = tiny.train(bank, tmp_path / "b", "small", checkpoint_every_s=1e-9, progress=False)
    assert resumed.info["train_steps"] == 8
    for p, q in zip(straight.denoiser.parameters(), resumed.denoiser.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    with pytest.raises(ValueError, match="another configuration"):
        tiny.train(bank, tmp_path / "b", "small", lr=0.5, progress=False)


def test_mlflow_model_round_trip(trained, mlflow_store, pickled_files):
    import mlflow
    import pandas as pd

    _, folder = trained
    with mlflow.start_run():
        uri = tiny.log_model(folder, "unit", score=0.5)
    assert uri == "models:/sbd-unit-tiny-generator/1"
    assert pickled_files(uri) == []  # models-from-code + safetensors + json
    by_alias = get_generator("tiny", "models:/sbd-unit-tiny-generator@champion", device="cpu")
    by_folder = get_generator("tiny", str(folder), device="cpu")
    x = by_alias.generate([WNIDS[2]], seed=1)[0][0]
    y = by_folder.generate([WNIDS[2]], seed=1)[0][0]
    assert (np.asarray(x) == np.asarray(y)).all()
    out = mlflow.pyfunc.load_model(uri).predict(pd.DataFrame({"wnid": [WNIDS[2]], "seed": [1]}))
    png = Image.open(io.BytesIO(base64.b64decode(out["png"][0])))
    assert (np.asarray(png.convert("RGB")) == np.asarray(x)).all()
    with pytest.raises(ModelNotFoundError, match="sbd-none-tiny-generator"):
        get_generator("tiny", "models:/sbd-none-tiny-generator@champion")


def test_evaluate_and_sheet(trained, bank):
    pipe, _ = trained
    m = tiny.evaluate(pipe, bank, n_per_class=2, progress=False)
    assert m["chance"] == pytest.approx(1 / 3) and m["n_samples"] == 6
    for key in ("knn_top1_acc", "knn_vote_acc", "knn_top5_acc", "ceiling_top1_acc"):
        assert 0.0 <= m[key] <= 1.0
    sheet = tiny.sample_sheet(pipe, n_classes=3, n_per_class=2, tile=16)
    assert sheet.size == (16 * 2 + 16 * 2, 16 * 3)
