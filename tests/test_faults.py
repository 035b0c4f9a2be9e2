"""Real-world faults, met as a user meets them, on a GOD-layout folder written here with bdpy
the way GOD's files are made (BData with VoxelData, ROI_* flags, voxel_x/y/z, Session, Run,
Block, DataType and a two-column Label), holding the small phantom's recordings, stimulus
images and ILSVRC-layout bank:

- part of the training stimulus set missing (10 %) and one training JPEG cut off, as a set
  rebuilt from ImageNet URLs leaves it;
- one test stimulus missing;
- one bank JPEG cut off (ImageNet's training folders hold a few broken files).

``main`` must finish, evaluate, and report what it left out.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
from bdpy import BData

from sbd.data import layout, phantom
from sbd.data.images import SkippedImages
from sbd.features.bank import FeatureBank

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_god_bdata(src: Path, dst: Path) -> int:
    """Subject file ``dst`` written with bdpy as GOD's are, from the arrays of ``src``;
    returns the number of voxels."""
    b = BData(str(src))
    x = b.select("VoxelData")
    out = BData()
    out.add(x, "VoxelData")
    keys = list(b.metadata.key)
    for key in keys:
        if key.startswith(("ROI_", "voxel_")):
            out.add_metadata(key, b.get_metadata(key, where="VoxelData"),
                             b.metadata.get(key, "description") or key, where="VoxelData")
    run = b.select("Run").ravel()
    out.add(np.ones_like(run), "Session")
    out.add(run, "Run")
    out.add(b.select("Block").ravel(), "Block")
    out.add(b.select("DataType").ravel(), "DataType")
    label = b.select("stimulus_id").ravel()
    out.add(np.c_[label, np.floor(label)], "Label")
    out.add_metadata("stimulus_id", np.array([1, np.nan]), "Stimulus ID", where="Label")
    out.add_metadata("category_id", np.array([np.nan, 1]), "Category ID", where="Label")
    dst.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(dst))
    return x.shape[1]


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.fixture(scope="module")
def partial_god(phantom_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("god-partial") / "god"
    write_god_bdata(layout.fmri_file(phantom_dir, 1), layout.fmri_file(root, 1))
    shutil.copytree(layout.images_dir(phantom_dir), layout.images_dir(root))
    shutil.copytree(layout.bank_dir(phantom_dir), layout.bank_dir(root))
    train = sorted(layout.images_dir(root, "training").glob("*.JPEG"))
    removed = train[::10]
    for p in removed:
        p.unlink()
    cut_train = train[1]
    _cut(cut_train)
    test_missing = sorted(layout.images_dir(root, "test").glob("*.JPEG"))[0]
    test_missing.unlink()
    cut_bank = sorted(layout.bank_dir(root).glob("*/*.JPEG"))[5]
    _cut(cut_bank)
    return {"root": root, "removed": [p.stem for p in removed], "cut_train": cut_train,
            "test_missing": test_missing.stem, "cut_bank": cut_bank}


def _children(parent_id: str) -> dict[str, mlflow.entities.Run]:
    runs = mlflow.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              output_format="list", search_all_experiments=True)
    return {r.data.tags["sbd.entry_point"]: r for r in runs}


def test_main_on_a_partial_god_folder_finishes_and_reports_what_it_left_out(partial_god):
    from sbd.steps import main

    root = partial_god["root"]
    parent = main.run(dataset="god", data_dir=str(root), preset="small", subjects="1",
                      rois="VC", backbone="efficientnet-lite0", generator="tiny", n_trials=4)
    steps = _children(parent)
    assert {"prepare_data", "extract_features", "train_decoder", "generate",
            "evaluate"} <= set(steps)
    n_dropped = len(partial_god["removed"]) + 1  # + the cut training JPEG
    prep = steps["prepare_data"].data.metrics
    assert prep["data/n_train_trials_without_image"] == n_dropped  # one trial per image
    # the missing test image's presentations (averaged into one test sample later)
    assert prep["data/n_test_trials_without_image"] == phantom.PRESETS["small"].test_repeats
    assert prep["data/n_unreadable_images"] == 1
    dec = steps["train_decoder"].data.metrics
    assert dec["data/n_train_dropped"] == n_dropped
    client = mlflow.MlflowClient()
    listed = client.download_artifacts(steps["train_decoder"].info.run_id,
                                       "data/dropped_training_samples.txt")
    assert sorted(Path(listed).read_text().split()) == sorted(
        partial_god["removed"] + [partial_god["cut_train"].stem])
    # the cut bank JPEG: skipped by extract_features, recorded once for the whole folder,
    # and not read again (nor crashed on) by the tiny generator's bank loader
    skipped = SkippedImages(root).read()
    bank_key = partial_god["cut_bank"].relative_to(root).as_posix()
    assert skipped[bank_key]["consumer"] == "extract_features"
    assert "truncated" in skipped[bank_key]["reason"]
    feats = steps["extract_features"].data.metrics  # counted in the run's metrics
    assert feats["bank/n_failed"] == 1 and feats["training/n_failed"] == 1
    with FeatureBank(layout.features_file(root, "efficientnet-lite0", "bank")) as bank:
        assert partial_god["cut_bank"].stem not in set(bank.image_ids)
    assert steps["generate"].data.metrics["generate/n_stimuli_missing"] == 1
    ev = steps["evaluate"].data.metrics
    assert ev["test/n_samples"] == 10  # every test sample decoded, the unimaged one too
    assert ev["data/n_test_without_image"] == 1 and ev["test/feature_n"] == 9
    assert 0.0 <= ev["test/wup_top1"] <= 1.0 and np.isfinite(ev["test/ident2_acc"])

    # the step cache: a second main reuses every step; with features/ deleted, the cached
    # extract_features run no longer counts (its outputs are gone) and it runs again
    kwargs = dict(dataset="god", data_dir=str(root), preset="small", subjects="1", rois="VC",
                  backbone="efficientnet-lite0", generator="tiny", n_trials=4)
    warm = mlflow.get_run(main.run(**kwargs)).data.metrics
    assert warm["main/n_steps_run"] == 0
    shutil.rmtree(root / "features")
    again = main.run(**kwargs)
    rerun = _children(again)
    assert rerun["extract_features"].info.run_id != steps["extract_features"].info.run_id
    assert layout.features_file(root, "efficientnet-lite0", "bank").is_file()
    assert mlflow.get_run(again).data.metrics["main/n_steps_run"] >= 1


def test_too_few_training_images_is_refused_naming_the_folder(partial_god, tmp_path):
    from sbd.decoding.training_data import load_training_data
    from sbd.features.extract import extract_source

    root = partial_god["root"]
    extract_source(root, "efficientnet-lite0", "training", num_workers=0, progress=False)
    with pytest.raises(ValueError) as err:
        load_training_data(root, 1, "VC", "efficientnet-lite0", min_train_fraction=0.95)
    msg = str(err.value)
    assert "training samples of subject 1 have a readable stimulus image in" in msg
    assert str(layout.images_dir(root, "training")) in msg and "0.95" in msg
