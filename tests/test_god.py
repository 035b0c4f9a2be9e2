"""GOD reader on BData files made here with bdpy, the way GOD's files are made.

The file has GOD's keys: ``VoxelData`` columns flagged by ``ROI_<name>`` and
``voxel_x/y/z``, then ``Session``, ``Run``, ``Block``, ``DataType`` (1 train, 2 test,
3 imagery) and the ``Label`` columns with ``stimulus_id`` (wnid offset + image / 10**6).
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from bdpy import BData
from PIL import Image

from sbd.data import god, layout

ROI_COLUMNS = {"V1": [0, 1], "V2": [2, 3], "V3": [4], "V4": [5], "LOC": [6], "FFA": [7],
               "PPA": [8, 9], "LVC": [0, 1, 2, 3, 4, 5], "HVC": [6, 7, 8, 9],
               "VC": list(range(10))}
N_VOXELS = 10
TRAIN = [(1518878, 5958), (1518878, 10042), (1518878, 12028),      # ostrich
         (2084071, 777), (2084071, 1234), (2084071, 99999)]        # dog
TEST = [(1443537, 22563), (2121620, 19020), (1677366, 18182)]
N_REPEATS = 4


def _label(offset: int, number: int = 0) -> float:
    return offset + number / 1e6


def make_god_bdata(path, *, rois=ROI_COLUMNS, label_key="stimulus_id", nan_at=None, seed=0):
    """Write a small GOD-like BData file; return the raw arrays used."""
    rng = np.random.default_rng(seed)
    rows = []  # (datatype, run, label)
    for i, (off, num) in enumerate(TRAIN):
        rows.append((1, 1 + i // 3, _label(off, num)))              # runs 1, 2
    for rep in range(N_REPEATS):
        for off, num in TEST:
            rows.append((2, 3 + rep // 2, _label(off, num)))         # runs 3, 4
    for rep in range(2):
        for off, _ in TEST:
            rows.append((3, 5, _label(off)))                         # run 5: imagery
    datatype = np.array([r[0] for r in rows], dtype=float)
    run = np.array([r[1] for r in rows], dtype=float)
    label = np.array([r[2] for r in rows], dtype=float)
    n = len(rows)
    # per-run offsets and scales, so that z-scoring within runs is visible
    x = rng.normal(size=(n, N_VOXELS)) * (1 + run[:, None]) + 10 * run[:, None]
    if nan_at is not None:
        x[nan_at] = np.nan

    bdata = BData()
    bdata.add(x, "VoxelData")
    for roi, cols in rois.items():
        mask = np.zeros(N_VOXELS)
        mask[cols] = 1
        bdata.add_metadata(f"ROI_{roi}", mask, f"1 = ROI {roi}", where="VoxelData")
    for axis in "xyz":
        bdata.add_metadata(f"voxel_{axis}", rng.integers(-60, 60, N_VOXELS).astype(float),
                           f"Voxel {axis} coordinate", where="VoxelData")
    bdata.add(np.ones(n), "Session")
    bdata.add(run, "Run")
    bdata.add(np.arange(1, n + 1, dtype=float), "Block")
    bdata.add(datatype, "DataType")
    if label_key == "stimulus_id":
        category_index = np.floor(label)
        bdata.add(np.c_[label, category_index], "Label")
        bdata.add_metadata("stimulus_id", np.array([1, np.nan]), "Stimulus ID", where="Label")
        bdata.add_metadata("category_id", np.array([np.nan, 1]), "Category ID", where="Label")
    else:
        bdata.add(label, "Label")
    path.parent.mkdir(parents=True, exist_ok=True)
    bdata.save(str(path))
    return {"x": x, "run": run, "datatype": datatype, "label": label}


def write_images(data_dir, skip=()):
    for sset, items in (("training", TRAIN), ("test", TEST)):
        folder = layout.images_dir(data_dir, sset)
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for off, num in items:
            image_id = f"n{off:08d}_{num}"
            lines.append(f'{_label(off, num):.6f},"{image_id}.JPEG"\n')
            if image_id not in skip:
                Image.new("RGB", (8, 8), (num % 256, 40, 90)).save(folder / f"{image_id}.JPEG",
                                                                   format="JPEG")
        layout.image_list_csv(data_dir, sset).write_text("".join(lines))


@pytest.fixture(scope="module")
def god_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("god")
    raw = make_god_bdata(layout.fmri_file(root, 1))
    write_images(root)
    return root, raw


def _zscored(x, groups):
    out = np.empty_like(x)
    for g in np.unique(groups):
        r = groups == g
        out[r] = (x[r] - x[r].mean(0)) / x[r].std(0)
    return out


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("offset,number", [(1518878, 5958), (1443537, 22563),
                                           (2084071, 1), (4379243, 999999), (1440764, 100000)])
def test_decode_label(offset, number):
    wnid, image_id = god.decode_label(_label(offset, number))
    assert wnid == f"n{offset:08d}"
    assert image_id == f"n{offset:08d}_{number}"


def test_decode_label_examples_and_errors():
    assert god.decode_label(1518878.005958) == ("n01518878", "n01518878_5958")
    assert god.decode_label(1443537.0, category_only=True) == ("n01443537", "n01443537")
    for bad in (np.nan, -1.0, 0.0, 1e9):
        with pytest.raises(ValueError, match="label"):
            god.decode_label(bad)
    with pytest.raises(ValueError, match="no image number"):
        god.decode_label(1518878.0)


# ----------------------------------------------------------------------------- load


def test_train_zscored_within_runs(god_dir):
    root, raw = god_dir
    s = god.load(root, 1, "V1", "train")
    rows = raw["datatype"] == 1
    cols = ROI_COLUMNS["V1"]
    assert s.voxels.dtype == np.float32 and s.voxels.shape == (len(TRAIN), len(cols))
    expected = _zscored(raw["x"][rows][:, cols], raw["run"][rows])
    np.testing.assert_allclose(s.voxels, expected, rtol=1e-5, atol=1e-5)
    for r in (1, 2):
        v = s.voxels[s.runs == r]
        np.testing.assert_allclose(v.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(v.std(0), 1, atol=1e-5)
    assert s.wnids == ["n01518878"] * 3 + ["n02084071"] * 3
    assert s.image_ids[0] == "n01518878_5958" and s.image_ids[-1] == "n02084071_99999"
    assert s.labels[0] == pytest.approx(1518878.005958, abs=0)
    assert s.runs.tolist() == [1, 1, 1, 2, 2, 2]
    assert (s.split, s.subject, s.roi) == ("train", 1, "V1")
    raw_s = god.load(root, "1", "V1", "train", zscore=False)
    np.testing.assert_allclose(raw_s.voxels, raw["x"][rows][:, cols], rtol=1e-6)


def test_test_averaged_per_image(god_dir):
    root, raw = god_dir
    s = god.load(root, 1, "VC", "test")
    rows = raw["datatype"] == 2
    z = _zscored(raw["x"][rows], raw["run"][rows])
    ids = [god.decode_label(v)[1] for v in raw["label"][rows]]
    assert s.image_ids == sorted(set(ids)) and len(s) == len(TEST)
    for k, image_id in enumerate(s.image_ids):
        sel = np.array([i == image_id for i in ids])
        np.testing.assert_allclose(s.voxels[k], z[sel].mean(0), rtol=1e-5, atol=1e-5)
    assert s.n_trials.tolist() == [N_REPEATS] * len(TEST)
    assert s.runs.tolist() == [3] * len(TEST)  # first presentation's run
    assert s.wnids == [i.split("_")[0] for i in s.image_ids]
    assert [god.decode_label(v)[1] for v in s.labels] == s.image_ids

    every = god.load(root, 1, "VC", "test", average=False)
    assert len(every) == N_REPEATS * len(TEST)
    np.testing.assert_allclose(every.voxels, z, rtol=1e-5, atol=1e-5)


def test_imagery_averaged_per_category(god_dir):
    root, raw = god_dir
    s = god.load(root, 1, "HVC", "imagery")
    assert s.wnids == sorted(f"n{off:08d}" for off, _ in TEST)
    assert s.image_ids == s.wnids
    assert s.n_trials.tolist() == [2, 2, 2]
    rows = raw["datatype"] == 3
    z = _zscored(raw["x"][rows][:, ROI_COLUMNS["HVC"]], raw["run"][rows])
    wn = [f"n{int(v):08d}" for v in raw["label"][rows]]
    sel = np.array([w == s.wnids[0] for w in wn])
    np.testing.assert_allclose(s.voxels[0], z[sel].mean(0), rtol=1e-5, atol=1e-5)
    assert len(god.load(root, 1, "HVC", "imagery", average=False)) == 6


def test_label_column_variant(tmp_path):
    make_god_bdata(layout.fmri_file(tmp_path, 2), label_key="Label")
    s = god.load(tmp_path, 2, "V2", "test")
    assert s.image_ids[0] == "n01443537_22563"


# ----------------------------------------------------------------------------- bad input


def test_unknown_names(god_dir):
    root, _ = god_dir
    with pytest.raises(ValueError, match="split='val'.*train, test, imagery"):
        god.load(root, 1, "VC", "val")
    with pytest.raises(ValueError, match="roi='V9'.*V1, V2"):
        god.load(root, 1, "V9", "train")
    with pytest.raises(ValueError, match="subject='s1'; valid: 1"):
        god.load(root, "s1", "VC", "train")


def test_missing_file_says_where_and_how(god_dir):
    root, _ = god_dir
    with pytest.raises(FileNotFoundError) as err:
        god.load(root, 2, "VC", "train")
    msg = str(err.value)
    assert "fMRI/GOD/Subject2.h5" in msg and "figshare 7387130" in msg
    assert "Subjects present there: 1" in msg


def test_not_bdata(tmp_path):
    path = layout.fmri_file(tmp_path, 1)
    path.parent.mkdir(parents=True)
    path.write_text("not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        god.load(tmp_path, 1, "VC", "train")
    path.unlink()
    with h5py.File(path, "w") as f:
        f["voxels"] = np.zeros((3, 4))
    with pytest.raises(ValueError, match="not a BData file.*/dataset"):
        god.load(tmp_path, 1, "VC", "train")


def test_broken_bdata_files_name_the_file_the_problem_and_the_fix(tmp_path):
    """An interrupted download (cut off mid-file), an empty file and a file another process
    holds open for writing each get a message naming the file, what is wrong and what to do."""
    import subprocess
    import sys

    path = layout.fmri_file(tmp_path, 1)
    make_god_bdata(path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError) as err:
        god.load(tmp_path, 1, "VC", "train")
    msg = str(err.value)
    assert str(path) in msg and "is cut off" in msg and f"of the {len(whole):,}" in msg
    assert "Download Subject1.h5 again from figshare 7387130" in msg
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"Subject1\.h5 is empty \(0 bytes\)\. Download"):
        god.load(tmp_path, 1, "VC", "train")
    path.write_bytes(whole)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import h5py, sys, time; f = h5py.File(sys.argv[1], 'a'); "
         "print('open', flush=True); time.sleep(60)", str(path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "HDF5_USE_FILE_LOCKING": "TRUE"})
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(ValueError) as err:
            god.read_bdata(path)
        msg = str(err.value)
        assert str(path) in msg and "locked by another process" in msg
        assert "figshare" not in msg  # downloading again would not help
    finally:
        holder.kill()
        holder.wait()
    assert god.load(tmp_path, 1, "VC", "train").voxels.shape[0] > 0  # unlocked: reads


def test_roi_absent_lists_present(tmp_path):
    rois = {k: v for k, v in ROI_COLUMNS.items() if k != "FFA"}
    make_god_bdata(layout.fmri_file(tmp_path, 1), rois=rois)
    with pytest.raises(ValueError, match=r"ROI 'FFA' absent.*V1 \(2 voxels\)"):
        god.load(tmp_path, 1, "FFA", "train")
    report = god.validate(tmp_path)
    assert any("ROIs absent: FFA" in p for p in report["problems"])


def test_nan_voxels(tmp_path):
    make_god_bdata(layout.fmri_file(tmp_path, 1), nan_at=(7, 3))  # a test sample, voxel 3
    msg = r"1 NaN and 0 Inf.*1 voxel\(s\) \(dataset columns 3\).*rows 7\).*test: 1"
    with pytest.raises(ValueError, match=msg):
        god.load(tmp_path, 1, "V2", "train")
    god.load(tmp_path, 1, "V1", "train")  # other ROIs are fine


# ----------------------------------------------------------------------------- images


def test_stimulus_paths_and_missing(tmp_path):
    write_images(tmp_path, skip={"n01518878_10042"})
    ids = ["n01518878_5958", "n01518878_10042", "n01518878_10042", "n02084071_777"]
    paths, missing = god.stimulus_paths(tmp_path, ids, "training")
    assert paths[0].name == "n01518878_5958.JPEG" and paths[0].is_file()
    assert paths[1] is None and paths[2] is None
    assert missing == ["n01518878_10042"]
    with pytest.raises(ValueError, match="stimulus_set='train'"):
        god.stimulus_paths(tmp_path, ids, "train")
    df = god.read_image_list(tmp_path, "training")
    assert df["image_id"].tolist()[:2] == ["n01518878_5958", "n01518878_10042"]
    assert df["label"].iloc[0] == pytest.approx(1518878.005958, abs=0)
    assert df["wnid"].iloc[-1] == "n02084071"


def test_validate_report(god_dir, tmp_path):
    root, _ = god_dir
    report = god.validate(root)
    assert report["ok"], report["problems"]
    sub = report["subjects"]["1"]
    assert sub["rois"]["VC"] == 10 and sub["rois"]["V1"] == 2
    assert sub["samples"] == {"train": 6, "test": 12, "imagery": 6}
    assert sub["images"] == {"train": 6, "test": 3, "imagery": 3}
    assert report["image_lists"]["training"]["n"] == 6

    # part of the stimulus set missing or unreadable: warnings (samples left out of
    # training, test samples decoded without image metrics), not problems
    make_god_bdata(layout.fmri_file(tmp_path, 1))
    write_images(tmp_path, skip={"n02121620_19020"})
    broken = layout.images_dir(tmp_path, "training") / "n01518878_5958.JPEG"
    broken.write_bytes(broken.read_bytes()[:20])
    report = god.validate(tmp_path)
    assert report["ok"], report["problems"]
    assert report["missing_images"] == {"training": ["n01518878_5958"],
                                        "test": ["n02121620_19020"]}
    assert list(report["unreadable_images"]["training"]) == ["n01518878_5958"]
    sub = report["subjects"]["1"]
    assert sub["samples_without_image"] == {"train": 1, "test": 4}
    warnings = " ".join(report["warnings"])
    assert "1 of 6 training stimulus images missing or unreadable" in warnings
    assert "1 of 6 train samples will be left out of training" in warnings
    assert "4 of 12 test samples are still decoded" in warnings
    assert "n01518878_5958.JPEG" in (tmp_path / "skipped_images.csv").read_text()
    # below the floor: a problem
    report = god.validate(tmp_path, min_train_fraction=0.9)
    assert not report["ok"] and any("below min_train_fraction=0.9" in p
                                    for p in report["problems"])

    empty = god.validate(tmp_path / "nothing")
    assert not empty["ok"] and any("figshare 7387130" in p for p in empty["problems"])
