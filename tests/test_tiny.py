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
    direct = pipe([1], generator=[torch.Generator().manual_seed(0)]).images[0]
    loaded = tiny.TinyPipeline.from_pretrained(folder)(
        [1], generator=[torch.Generator().manual_seed(0)]).images[0]
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
    assert resumed.weights_hash() == straight.weights_hash()  # bit-identical
    with pytest.raises(ValueError, match="another configuration"):
        tiny.train(bank, tmp_path / "b", "small", lr=0.5, progress=False)
    # the schedule follows max_steps: a checkpoint of another step count is not continued
    with pytest.raises(ValueError, match="max_steps"):
        tiny.train(bank, tmp_path / "b", "small", max_steps=12, progress=False)


def _figures(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in tiny.TIMING_KEYS}


def test_same_parameters_same_weights_and_figures(bank, tmp_path):
    """Two trainings of the small preset, the second with torch set to another thread count
    (as on another machine), give bit-identical weights and identical ``tiny/*`` figures:
    the thread count comes from the config, the schedule from max_steps, every draw from
    the seed."""
    runs = []
    for name, machine_threads in (("a", 1), ("b", 2)):
        torch.set_num_threads(machine_threads)
        torch.manual_seed(1000 + machine_threads)  # the caller's global RNG plays no part
        pipe = tiny.train(bank, tmp_path / name, "small", progress=False)
        assert torch.get_num_threads() == machine_threads  # restored after training
        m = tiny.evaluate(pipe, bank, n_per_class=2, progress=False)
        runs.append((pipe.weights_hash(), pipe.info, m))
    (hash_a, info_a, m_a), (hash_b, info_b, m_b) = runs
    assert hash_a == hash_b == info_a["weights_sha256"] == info_b["weights_sha256"]
    assert _figures(info_a) == _figures(info_b) and info_a["threads"] == 1
    assert _figures(m_a) == _figures(m_b)
    # the folders hold the same weights; another seed gives others
    loaded = tiny.TinyPipeline.from_pretrained(tmp_path / "b" / "pipeline")
    assert loaded.weights_hash() == hash_a
    other = tiny.train(bank, tmp_path / "c", "small", seed=1, progress=False)
    assert other.weights_hash() != hash_a


def test_learning_rate_follows_max_steps():
    from sbd.generate.tiny.train import _lr_at

    cfg = tiny.resolve_config("small", max_steps=100, warmup=10, lr=1.0)
    assert _lr_at(cfg, 0) == pytest.approx(0.1) and _lr_at(cfg, 9) == pytest.approx(1.0)
    assert _lr_at(cfg, 10) == pytest.approx(1.0)
    assert _lr_at(cfg, 55) == pytest.approx(0.55)  # half way: half of the cosine
    assert _lr_at(cfg, 100) == pytest.approx(0.1)  # the end: 10 %
    longer = tiny.resolve_config(cfg, max_steps=200)
    assert _lr_at(longer, 100) > _lr_at(cfg, 100)


def test_time_budget_is_gone(bank, tmp_path, caplog):
    """``time_budget_s`` is refused as a parameter; saved configurations of an earlier sbd
    that hold it still load; its checkpoint is passed over (training starts afresh)."""
    import json

    with pytest.raises(ValueError, match="time_budget_s.*removed.*max_steps"):
        tiny.resolve_config("default", time_budget_s=540)
    assert "time_budget_s" not in tiny.TinyConfig().to_dict()
    old = {**tiny.PRESETS["small"].to_dict(), "time_budget_s": 540.0}
    assert tiny.config_from_dict(old) == tiny.PRESETS["small"]
    # an earlier checkpoint, trained for a time budget: passed over with a warning
    fresh = tiny.train(bank, tmp_path / "fresh", "small", progress=False)
    part = tiny.train(bank, tmp_path / "old", "small", max_new_steps=3, checkpoint_every_s=1e-9,
                      progress=False)
    assert part.info["train_steps"] == 3
    ckpt_path = tmp_path / "old" / tiny.CHECKPOINT_NAME
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["config"]["time_budget_s"] = 540.0
    torch.save(ckpt, ckpt_path)
    with caplog.at_level("WARNING", logger="sbd.generate.tiny.train"):
        redone = tiny.train(bank, tmp_path / "old", "small", progress=False)
    assert "wall-clock budget" in caplog.text and "training from scratch" in caplog.text
    assert redone.info["train_steps"] == 8 and redone.weights_hash() == fresh.weights_hash()
    # an earlier pipeline folder whose config holds time_budget_s loads and samples
    index = tmp_path / "fresh" / "pipeline" / "model_index.json"
    meta = json.loads(index.read_text())
    meta["tiny_config"]["time_budget_s"] = 540.0
    index.write_text(json.dumps(meta))
    loaded = tiny.TinyPipeline.from_pretrained(tmp_path / "fresh" / "pipeline")
    assert loaded.tiny_config == tiny.PRESETS["small"]
    assert loaded([0], generator=[torch.Generator().manual_seed(0)]).images[0].size == (16, 16)


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


def test_train_tiny_run_logs_steps_figures_and_times(bank, tmp_path, mlflow_store):
    """A ``train_tiny`` run logs max_steps as a parameter, the model's figures as ``tiny/*``
    (the same for two runs with the same parameters), wall times apart as ``tiny_time/*``
    and the weights' hash as a tag."""
    import mlflow

    from sbd.generate import tiny_models

    runs = [tiny_models.train_and_register("phantom", bank, "small", work_dir=tmp_path / n,
                                           progress=False)[0] for n in ("a", "b")]
    a, b = (mlflow.get_run(r).data for r in runs)
    assert a.params["max_steps"] == "8" and "time_budget_s" not in a.params
    assert a.tags[tiny_models.WEIGHTS_TAG] == b.tags[tiny_models.WEIGHTS_TAG]
    figures = [{k: v for k, v in d.metrics.items() if k.startswith("tiny/")} for d in (a, b)]
    assert figures[0] == figures[1]
    assert {"tiny/train_steps", "tiny/knn_centered_top1_acc", "tiny/final_loss"} <= set(figures[0])
    assert {f"tiny_time/{k}" for k in tiny.TIMING_KEYS} <= set(a.metrics)
    assert not {f"tiny/{k}" for k in tiny.TIMING_KEYS} & set(a.metrics)
    # a step count other than the preset's trains in its own work folder
    cfg = tiny.resolve_config("small")
    assert tiny_models._work_name("small", cfg) == "small"
    other = tiny_models._work_name("small", tiny.resolve_config("small", max_steps=9))
    assert other.startswith("small-") and other != tiny_models._work_name(
        "small", tiny.resolve_config("small", max_steps=10))


def test_bench_tiny_steps_sweep(bank, tmp_path, capsys):
    """``benchmarks/bench_tiny.py --steps`` trains one model per step count (one image cache)
    and prints one JSON line each, with the kNN figures and the load average."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tiny.py"
    spec = importlib.util.spec_from_file_location("bench_tiny", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = bench.main(["--data-dir", str(bank), "--out", str(tmp_path), "--preset", "small",
                      "--steps", "4,8", "--quiet"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [r["max_steps"] for r in lines] == [4, 8] == [r["train_steps"] for r in out]
    for r in lines:
        assert 0 <= r["guidance_2"]["knn_centered_top1_acc"] <= 1
        assert len(r["load_average_before"]) == 3 and r["threads"] == 1
    assert lines[0]["weights_sha256"] != lines[1]["weights_sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank_16_crop1.npz", "steps-4", "steps-8"]
