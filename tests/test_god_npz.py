"""The Kamitani npz GOD package (``dataset=god-npz``): written from the small phantom in
both image dtypes, read back to the samples ``god.load`` gives on the phantom itself; its
images written out in the GOD layout; each malformed file refused with a message that
names the file, the key and what was expected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from sbd.data import god, god_npz, layout

SPLITS = ("train", "test")
ROIS = ("VC", "V1", "HVC")


@pytest.fixture(scope="module", params=god_npz.IMAGE_DTYPES)
def package(request, phantom_dir, tmp_path_factory) -> Path:
    """A package written from the small phantom, images stored as uint8 or floats in 0-1."""
    out = tmp_path_factory.mktemp(f"npz-{request.param}")
    return god_npz.write_from_phantom(phantom_dir, out, image_dtype=request.param)


@pytest.fixture(scope="module")
def uint8_package(phantom_dir, tmp_path_factory) -> Path:
    return god_npz.write_from_phantom(phantom_dir, tmp_path_factory.mktemp("npz-base"))


def _copy(package: Path, dest: Path) -> Path:
    """The package's own files (not what sbd wrote into it) in a new folder."""
    dest.mkdir()
    for p in package.iterdir():
        if p.is_file():
            shutil.copy2(p, dest / p.name)
    return dest


def _rewrite(path: Path, change) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    path.unlink()
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- reading


def test_package_layout_is_mindvis(package):
    names = {p.name for p in package.iterdir()}
    assert {"sbj_1.npz", "sbj_2.npz", "images_256.npz", "imagenet_class_index.json",
            "imagenet_training_label.csv", "imagenet_testing_label.csv"} <= names
    with np.load(package / "sbj_1.npz") as z:
        keys = list(z.files)
        assert keys[:10] == ["V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC"]
        assert keys[10:] == [f"arr_{i}" for i in range(7)]
        assert z["VC"].dtype == bool and z["VC"].shape == (z["arr_0"].shape[1],)
        assert z["arr_2"].shape[0] == 10 and z["arr_3"].max() < 96
    with np.load(package / "images_256.npz") as z:
        assert z["train_images"].shape == (96, 256, 256, 3)
        assert z["test_images"].shape == (10, 256, 256, 3)
    first = (package / "imagenet_training_label.csv").read_text().splitlines()[0]
    assert god.decode_label(float(first.split(",")[0]))[1] == first.split(",")[1][:-5]


@pytest.mark.parametrize("split", SPLITS)
def test_reads_the_samples_god_load_gives(package, phantom_dir, split):
    assert layout.is_npz_package(package) and not layout.is_npz_package(phantom_dir)
    for subject in (1, 2):
        for roi in ROIS:
            want = god.load(phantom_dir, subject, roi, split)
            got = god_npz.load(package, subject, roi, split)
            assert got.voxels.dtype == np.float32 and got.voxels.shape == want.voxels.shape
            np.testing.assert_allclose(got.voxels, want.voxels, atol=1e-5)
            assert got.wnids == want.wnids and got.image_ids == want.image_ids
            np.testing.assert_allclose(got.labels, want.labels)
            np.testing.assert_array_equal(got.n_trials, want.n_trials)
            assert (got.split, got.subject, got.roi) == (split, subject, roi)
            assert (got.runs == -1).all()
    # god.load dispatches on the folder: callers need no change
    via_god = god.load(package, "2", "VC", split)
    np.testing.assert_allclose(via_god.voxels, god.load(phantom_dir, 2, "VC", split).voxels,
                               atol=1e-5)


def test_single_test_trials(package, phantom_dir):
    want = god.load(phantom_dir, 1, "VC", "test", average=False)
    got = god.load(package, 1, "VC", "test", average=False)
    np.testing.assert_allclose(got.voxels, want.voxels, atol=1e-5)
    assert got.image_ids == want.image_ids and len(got) == 50


def test_no_imagery(package):
    with pytest.raises(ValueError, match=r"sbj_1\.npz: no imagery samples.*perception only"):
        god.load(package, 1, "VC", "imagery")


def test_normalisation_detected_and_a_raw_package_z_scored(uint8_package, tmp_path):
    norm = god_npz.normalisation(uint8_package, 1)
    assert norm["zscored"] and norm["max_abs_voxel_mean"] < 1e-6
    assert "used as it is" in norm["verdict"]

    raw = _copy(uint8_package, tmp_path / "raw")
    scale, offset = 40.0, 700.0
    _rewrite(raw / "sbj_1.npz", lambda a: a.update(
        {k: a[k] * scale + offset for k in ("arr_0", "arr_1", "arr_2")}))
    norm = god_npz.normalisation(raw, 1)
    assert not norm["zscored"] and norm["median_voxel_mean"] == pytest.approx(offset, abs=1)
    as_left = god_npz.load(raw, 1, "VC", "train", zscore=False)
    ref = god_npz.load(uint8_package, 1, "VC", "train")
    np.testing.assert_allclose(as_left.voxels, ref.voxels * scale + offset, rtol=1e-5)
    z = god_npz.load(raw, 1, "VC", "train").voxels.astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-3)
    # the test averages come from the z-scored single trials, not from the raw arr_2
    test = god_npz.load(raw, 1, "VC", "test")
    np.testing.assert_allclose(test.voxels, god_npz.load(uint8_package, 1, "VC", "test").voxels,
                               atol=1e-3)


# --------------------------------------------------------------------------- images


def test_images_written_out_in_the_god_layout(package, tmp_path):
    root = _copy(package, tmp_path / "pkg")
    (root / "features" / "resnet50").mkdir(parents=True)
    (root / "features" / "resnet50" / "test.h5").write_text("stale")
    (root / "features" / "resnet50" / "bank.h5").write_text("kept")
    result = god_npz.write_images(root)
    assert result["written"] and result["n_images"] == {"training": 96, "test": 10}
    assert result["image_dtype"]["training"] == god_npz.image_dtype(package)
    assert not (root / "features" / "resnet50" / "test.h5").exists()
    assert (root / "features" / "resnet50" / "bank.h5").exists()
    arrays = {s: god_npz.read_images(root, s) for s in layout.STIMULUS_SETS}
    for split, sset in (("train", "training"), ("test", "test")):
        sample = god.load(root, 1, "VC", split)
        paths, missing = god.stimulus_paths(root, sample.image_ids, sset)
        assert not missing
        listed = god.read_image_list(root, sset)
        assert set(sample.image_ids) <= set(listed["image_id"])
        row = listed["image_id"].tolist().index(sample.image_ids[0])
        np.testing.assert_array_equal(np.asarray(Image.open(paths[0])), arrays[sset][row])
    assert not god_npz.write_images(root)["written"]  # the same package: reused
    (root / "fMRI" / "imagenet" / "images" / "test" / f"{sample.image_ids[0]}.png").unlink()
    assert god_npz.write_images(root)["written"]  # an image gone: written again


def test_both_dtypes_give_the_same_pixels(phantom_dir, uint8_package, tmp_path):
    floats = god_npz.write_from_phantom(phantom_dir, tmp_path / "f", image_dtype="float",
                                        subjects=[1])
    with np.load(floats / "images_256.npz") as z:
        assert z["test_images"].dtype == np.float32 and z["test_images"].max() <= 1.0
    assert god_npz.image_dtype(floats) == "float" and god_npz.image_dtype(uint8_package) == "uint8"
    np.testing.assert_array_equal(god_npz.read_images(floats, "test"),
                                  god_npz.read_images(uint8_package, "test"))


def test_validate_and_prepare_data_step(uint8_package, tmp_path):
    from sbd.steps import prepare_data

    report = god_npz.validate(uint8_package)
    assert report["ok"], report["problems"]
    assert report["subjects"]["1"]["rois"]["VC"] == 540
    assert report["subjects"]["1"]["samples"] == {"train": 96, "test": 50, "test_images": 10,
                                                  "imagery": 0}
    assert report["images"]["training"]["n"] == 96

    root = _copy(uint8_package, tmp_path / "pkg")
    run_id = prepare_data.run(dataset="god-npz", data_dir=str(root))
    run = mlflow.get_run(run_id)
    assert run.data.tags["sbd.data.valid"] == "true"
    assert run.data.tags["sbd.data.normalisation"].startswith("z-scored")
    assert run.data.metrics["data/n_training_images"] == 96
    assert len(list(layout.images_dir(root, "training").glob("*.png"))) == 96
    text = Path(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="data/validation.txt")).read_text()
    assert "status: OK" in text and "normalisation: z-scored" in text

    _rewrite(root / "sbj_2.npz", lambda a: a.pop("arr_3"))
    with pytest.raises(prepare_data.DataProblem, match=r"sbj_2\.npz: key 'arr_3' missing"):
        prepare_data.run(dataset="god-npz", data_dir=str(root))


def test_layout_knows_the_dataset():
    from sbd.features.backbones import resolve_backbone

    assert "god-npz" in layout.DATASETS
    assert layout.resolve_data_dir("god-npz") == Path("data/god-npz")
    assert resolve_backbone("god-npz") == "resnet50"


# --------------------------------------------------------------------------- malformed files


def _sbj(change):
    return lambda root: _rewrite(root / "sbj_1.npz", change)


def _images(change):
    return lambda root: _rewrite(root / "images_256.npz", change)


def _bad_mask(a):
    a["V1"] = np.concatenate([a["V1"], [True]])


def _out_of_range(a):
    a["arr_3"] = a["arr_3"].copy()
    a["arr_3"][5] = 96


def _cut_off(root):
    data = (root / "sbj_1.npz").read_bytes()
    (root / "sbj_1.npz").write_bytes(data[: len(data) // 2])


def _bad_csv_id(root):
    path = root / "imagenet_testing_label.csv"
    lines = path.read_text().splitlines()
    lines[3] = "not-an-id," + lines[3].split(",")[1]
    path.write_text("\n".join(lines) + "\n")


def _short_csv(root):
    path = root / "imagenet_training_label.csv"
    path.write_text("\n".join(path.read_text().splitlines()[:-1]) + "\n")


MALFORMED = {
    "missing key": (_sbj(lambda a: a.pop("arr_0")), ValueError,
                    r"sbj_1\.npz: key 'arr_0' missing; expected arr_0 = training fMRI"),
    "missing index key": (_sbj(lambda a: a.pop("arr_4")), ValueError,
                          r"sbj_1\.npz: key 'arr_4' missing; expected arr_4 = index into "
                          r"test_images"),
    "mask length": (_sbj(_bad_mask), ValueError,
                    r"sbj_1\.npz: ROI mask 'V1' has shape \(541,\); expected \(540,\)"),
    "mask values": (_sbj(lambda a: a.update(V2=a["V2"].astype(int) * 2)), ValueError,
                    r"sbj_1\.npz: ROI mask 'V2' has dtype int64 with values other than 0/1"),
    "arr_3 out of range": (_sbj(_out_of_range), ValueError,
                           r"sbj_1\.npz: key 'arr_3' out of range: 1 value\(s\) outside 0\.\.95 "
                           r"\(e\.g\. row 5: 96\); expected indices into train_images"),
    "arr_4 out of range": (_sbj(lambda a: a.update(arr_4=a["arr_4"] - 1)), ValueError,
                           r"sbj_1\.npz: key 'arr_4' out of range: .* outside 0\.\.9"),
    "arr_3 not integers": (_sbj(lambda a: a.update(arr_3=a["arr_3"] + 0.5)), ValueError,
                           r"sbj_1\.npz: key 'arr_3' holds non-integer values"),
    "arr_3 length": (_sbj(lambda a: a.update(arr_3=a["arr_3"][:-1])), ValueError,
                     r"sbj_1\.npz: key 'arr_3' has shape \(95,\); expected \(96,\), one index "
                     r"per row of arr_0"),
    "test voxels": (_sbj(lambda a: a.update(arr_1=a["arr_1"][:, :-1])), ValueError,
                    r"sbj_1\.npz: key 'arr_1' has shape \(50, 539\); expected test fMRI single "
                    r"trials, \(n_test_trials, voxels\) with voxels = 540"),
    "averaged rows": (_sbj(lambda a: a.update(arr_2=a["arr_2"][:-1])), ValueError,
                      r"sbj_1\.npz: key 'arr_2' has 9 rows; expected 10, one per image"),
    "noise ceiling": (_sbj(lambda a: a.update(arr_5=a["arr_5"][:3])), ValueError,
                      r"sbj_1\.npz: key 'arr_5' has shape \(3,\); expected \(540,\)"),
    "nan voxels": (_sbj(lambda a: a["arr_0"].__setitem__((3, 0), np.nan)), ValueError,
                   r"sbj_1\.npz: 1 NaN/Inf value\(s\) in key 'arr_0', ROI VC"),
    "cut off": (_cut_off, ValueError, r"sbj_1\.npz cannot be read as an \.npz file"),
    "image shape": (_images(lambda a: a.update(train_images=a["train_images"].transpose(
                        0, 3, 1, 2))), ValueError,
                    r"images_256\.npz: key 'train_images' has shape \(96, 3, 256, 256\); "
                    r"expected \(n, 256, 256, 3\)"),
    "image key": (_images(lambda a: a.pop("train_images")), ValueError,
                  r"images_256\.npz: key 'train_images' missing; expected train_images = the "
                  r"training stimulus images"),
    "image count": (_images(lambda a: a.update(test_images=a["test_images"][:9])), ValueError,
                    r"images_256\.npz: key 'test_images' holds 9 images but .*"
                    r"imagenet_testing_label\.csv lists 10"),
    "label csv id": (_bad_csv_id, ValueError,
                     r"imagenet_testing_label\.csv, row 4: bad stimulus id 'not-an-id'"),
    "label csv rows": (_short_csv, ValueError,
                       r"key 'train_images' holds 96 images but .*imagenet_training_label\.csv "
                       r"lists 95"),
    "images file": (lambda root: (root / "images_256.npz").unlink(), FileNotFoundError,
                    r"Stimulus images not found: .*images_256\.npz"),
    "label file": (lambda root: (root / "imagenet_testing_label.csv").unlink(),
                   FileNotFoundError, r"Label file not found: .*imagenet_testing_label\.csv"),
    "roi absent": (_sbj(lambda a: a.pop("VC")), ValueError,
                   r"sbj_1\.npz: ROI 'VC' absent \(no mask key 'VC'\); ROI masks present: "
                   r"V1 \(60 voxels\)"),
}


def _load_both_splits(root: Path) -> None:
    for split in SPLITS:
        god.load(root, 1, "VC", split)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_package_refused(case, uint8_package, tmp_path):
    change, error, message = MALFORMED[case]
    root = _copy(uint8_package, tmp_path / "pkg")
    change(root)
    with pytest.raises(error, match=message):
        _load_both_splits(root)
    report = god_npz.validate(root)  # prepare_data's check finds it too
    assert not report["ok"]
    assert any(name in p for p in report["problems"]
               for name in ("sbj_1.npz", "images_256.npz", "_label.csv"))


def test_missing_subject_and_bad_float_images(uint8_package, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sbj_7\.npz.*Subjects present there: 1, 2"):
        god.load(uint8_package, 7, "VC", "train")
    with pytest.raises(ValueError, match=r"Unknown subject='s1'"):
        god_npz.load(uint8_package, "s1", "VC", "train")
    root = _copy(uint8_package, tmp_path / "pkg")
    _rewrite(root / "images_256.npz",
             lambda a: a.update(test_images=a["test_images"].astype(np.float32)))
    with pytest.raises(ValueError, match=r"images_256\.npz: key 'test_images' holds floats in "
                                         r"0\.\.255; expected floats in 0-1"):
        god_npz.write_images(root)
    assert json.loads((uint8_package / "imagenet_class_index.json").read_text())


# --------------------------------------------------------------------------- main end to end

# The decoding figures of main on the package and on the same data read as GOD: a copy of
# the phantom it was written from (BData, bank) whose stimulus images are the package's,
# as prepare_data wrote them out. The two differ only in the voxels' float32 round trip
# (1e-5). Against the phantom's own images (dataset=phantom) the figures differ by more:
# write_from_phantom resamples the small phantom's 128 px JPEGs to 256 px (bicubic), and
# EfficientNet-Lite0's own bilinear resize of the 128 px image gives stimulus features 15 %
# apart (relative L2), which moves a decoded label or two of the 10 test images (measured:
# wup_top1 0.432 both, top5_acc_inbank 0.25 vs 0.5, i.e. one of the 4 samples whose
# category the bank holds).
MAIN_FIGURES = ("test/wup_top1", "test/wup_specific", "test/ident2_acc", "test/top5_acc_inbank")
MAIN_TOLERANCE = 0.02


def _main_figures(dataset: str, data_dir: Path) -> dict[str, float]:
    from sbd.steps import main

    parent = main.run(dataset=dataset, data_dir=str(data_dir), backbone="efficientnet-lite0",
                      generator="tiny", subjects="1", rois="VC", n_trials=4, seed=0,
                      preset="small")
    summary = mlflow.load_table("summary.json", run_ids=[parent]).to_dict("records")
    assert len(summary) == 1
    metrics = mlflow.get_run(summary[0]["evaluate_run"]).data.metrics
    return {"parent": parent, **{m: metrics[m] for m in MAIN_FIGURES}}


def test_main_on_the_package_scores_as_on_god(uint8_package, phantom_dir, tmp_path,
                                              mlflow_store, one_torch_thread):
    # copies: main writes features and a tiny generator into its data folder
    package = _copy(uint8_package, tmp_path / "pkg")
    shutil.copytree(layout.bank_dir(phantom_dir), layout.bank_dir(package))
    npz = _main_figures("god-npz", package)

    as_god = tmp_path / "god"
    shutil.copytree(phantom_dir, as_god, ignore=shutil.ignore_patterns("features", "tiny"))
    shutil.rmtree(layout.images_dir(as_god))
    shutil.copytree(layout.images_dir(package), layout.images_dir(as_god))
    ref = _main_figures("god", as_god)
    print("\nmain, god-npz vs god:", {m: (round(npz[m], 4), round(ref[m], 4))
                                      for m in MAIN_FIGURES})
    for m in MAIN_FIGURES:
        assert npz[m] == pytest.approx(ref[m], abs=MAIN_TOLERANCE), m

    children = mlflow.search_runs(
        filter_string=f"tags.`mlflow.parentRunId` = '{npz['parent']}'", output_format="list",
        search_all_experiments=True)
    assert {r.data.tags["sbd.entry_point"] for r in children} == {
        "prepare_data", "extract_features", "train_decoder", "generate", "evaluate"}
    assert all(r.data.tags["sbd.dataset"] == "god-npz" for r in children)
    assert len(list(layout.images_dir(package, "test").glob("*.png"))) == 10
    # a cached prepare_data run counts while the package is as it validated it
    from sbd.steps.main import _data_unchanged

    prepared = next(r for r in children if r.data.tags["sbd.entry_point"] == "prepare_data")
    still_valid = _data_unchanged("god-npz", str(package))
    assert still_valid(prepared)
    (package / "sbj_1.npz").touch()
    assert not still_valid(prepared)
