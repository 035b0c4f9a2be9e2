"""Models that know their data: a data folder's identity (sbd.data.identity), a champion per
identity, the served decoder answering which data it learnt from, and MLflow 3's
model-centric view of the evaluate step's test figures."""

from __future__ import annotations

import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from sbd.data import god
from sbd.data.identity import FULL_HASH_BYTES, data_identity, file_fingerprint
from sbd.registry.common import (CHAMPION, champion_alias, decoder_for_data, model_name,
                                 register_model_version)


class _Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return np.zeros(len(model_input))


def _register(name: str, score: float, data_id: str | None) -> str:
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="m", python_model=_Constant())
    tags = {"val_metric": "val/objective", **({"data_id": data_id} if data_id else {})}
    return register_model_version(info.model_uri, name, score, tags=tags)[0].version


def _alias(name: str, alias: str) -> str:
    return MlflowClient().get_model_version_by_alias(name, alias).version


def test_scores_are_compared_only_among_versions_trained_on_the_same_data(mlflow_store):
    name = model_name("decoder", "phantom", 1, "VC")
    a1 = _register(name, 0.30, "aaaa")
    b1 = _register(name, 0.90, "bbbb")  # better, but on other data: champion stays
    assert _alias(name, CHAMPION) == a1
    assert _alias(name, champion_alias("aaaa")) == a1 and _alias(name, "champion-bbbb") == b1
    a2 = _register(name, 0.20, "aaaa")  # worse on the same data: nothing moves
    assert _alias(name, champion_alias("aaaa")) == a1 and _alias(name, "candidate") == a2
    a3 = _register(name, 0.40, "aaaa")
    assert _alias(name, CHAMPION) == a3 == _alias(name, "champion-aaaa")
    assert _alias(name, "champion-bbbb") == b1
    assert decoder_for_data("phantom", 1, "VC", "bbbb").endswith("@champion-bbbb")


def test_a_step_refuses_the_champion_of_other_data_and_names_both(mlflow_store):
    name = model_name("decoder", "phantom", 2, "VC")
    _register(name, 0.5, "aaaa")
    with pytest.raises(LookupError, match="data_id cccc.*trained on data_id aaaa"):
        decoder_for_data("phantom", 2, "VC", "cccc")
    # a champion that does not record its data (build_decoder, earlier sbd) is used
    legacy = model_name("decoder", "phantom", 3, "VC")
    _register(legacy, 0.5, None)
    assert decoder_for_data("phantom", 3, "VC", "cccc").endswith(f"{legacy}@champion")


def test_identity_follows_the_content_not_the_place(phantom_dir, tmp_path):
    ident = data_identity("phantom", phantom_dir)
    assert len(ident.data_id) == 12 and ident.data_dir == str(phantom_dir.resolve())
    # the GOD reading of the same folder hashes its files: a copy keeps the id ...
    fmri = tmp_path / "copy" / "fMRI" / "GOD"
    fmri.mkdir(parents=True)
    for f in (phantom_dir / "fMRI" / "GOD").glob("*.h5"):
        shutil.copy2(f, fmri / f.name)
    original = data_identity("god", phantom_dir)
    copied = data_identity("god", tmp_path / "copy")
    assert copied.data_id != original.data_id  # the copy lacks the bank and image lists
    shutil.copytree(phantom_dir / "imagenet", tmp_path / "copy" / "imagenet")
    shutil.copytree(phantom_dir / "fMRI" / "imagenet", tmp_path / "copy" / "fMRI" / "imagenet")
    assert data_identity("god", tmp_path / "copy").data_id == original.data_id
    # ... and a changed byte of a brain file changes it
    target = sorted(fmri.glob("*.h5"))[0]
    blob = bytearray(target.read_bytes())
    assert len(blob) <= FULL_HASH_BYTES  # hashed whole
    blob[len(blob) // 2] ^= 0xFF
    target.write_bytes(bytes(blob))
    assert data_identity("god", tmp_path / "copy").data_id != original.data_id
    with pytest.raises(FileNotFoundError, match="No god brain data"):
        data_identity("god", tmp_path)


def test_large_files_are_fingerprinted_by_samples(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(FULL_HASH_BYTES + 4096))
    before = file_fingerprint(big)
    with open(big, "r+b") as f:  # the last byte: inside the last sample
        f.seek(big.stat().st_size - 1)
        f.write(b"\x01")
    assert file_fingerprint(big) != before


@pytest.fixture(scope="module")
def two_folders(tmp_path_factory, store_of_its_own):
    """``main`` on two small phantoms of different seeds, in one tracking store (kept, env
    vars included, for the module's tests)."""
    from sbd.steps import main

    tmp = tmp_path_factory.mktemp("two")
    with store_of_its_own(tmp, "two-folders") as store:
        parents = {seed: main.run(dataset="phantom", data_dir=str(tmp / f"p{seed}"),
                                  preset="small", subjects="1", rois="VC", n_trials=2,
                                  seed=seed) for seed in (0, 1)}
        yield tmp, store, parents


def test_each_data_folder_keeps_its_own_champion_and_serves_it(two_folders, serve):
    tmp, store, parents = two_folders
    name = model_name("decoder", "phantom", 1, "VC")
    client = MlflowClient()
    ids = {seed: data_identity("phantom", tmp / f"p{seed}") for seed in (0, 1)}
    assert ids[0].data_id != ids[1].data_id
    own = {seed: client.get_model_version_by_alias(name, champion_alias(i.data_id))
           for seed, i in ids.items()}
    for seed, mv in own.items():
        assert mv.tags["data_id"] == ids[seed].data_id
        assert mv.tags["data_dir"] == ids[seed].data_dir
        assert f"data_id {ids[seed].data_id}" in mv.description and "paper" in mv.description
        assert "Test (averaged test images" in mv.description  # added by evaluate
    assert own[0].version != own[1].version
    assert _alias(name, CHAMPION) == own[0].version  # the first folder kept its champion
    # the champion the second folder's steps use, served, is the decoder trained on it
    uri = decoder_for_data("phantom", 1, "VC", ids[1].data_id)
    test = god.load(tmp / "p1", 1, "VC", "test")
    cols = [f"v{i}" for i in range(test.voxels.shape[1])]
    frame = pd.DataFrame(np.asarray(test.voxels[:3], np.float64), columns=cols)
    local = mlflow.pyfunc.load_model(f"models:/{name}/{own[1].version}").predict(frame)
    server = serve(uri)
    status, body = server.post({"dataframe_split": frame.to_dict(orient="split")})
    assert status == 200, body
    answer = pd.DataFrame(json.loads(body)["predictions"])
    assert (answer["data_id"] == ids[1].data_id).all()
    assert (answer["data_dir"] == ids[1].data_dir).all()
    assert answer["wnid_1"].tolist() == local["wnid_1"].tolist()


def test_search_logged_models_compares_decoders_by_test_score_and_data(two_folders):
    tmp, store, _ = two_folders
    models = mlflow.search_logged_models(
        experiment_ids=[e.experiment_id for e in mlflow.search_experiments()],
        filter_string="name = 'decoder'", output_format="list")
    by_data = {}
    for m in models:
        test = {x.key: x for x in m.metrics or [] if x.key == "test/wup_top1"}
        if test:
            by_data[m.tags["data_id"]] = test["test/wup_top1"]
    ids = {data_identity("phantom", tmp / f"p{seed}").data_id for seed in (0, 1)}
    assert set(by_data) == ids
    for data_id, metric in by_data.items():
        assert data_id in metric.dataset_name and metric.dataset_digest
        assert 0.0 < metric.value <= 1.0
