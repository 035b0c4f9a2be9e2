"""The composite decoder, built from a tiny ridge and a tiny bank through the real code
paths (log, register, build_decoder), served by the real ``mlflow models serve``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from sbd.decoding.decoder import ranked_wnids
from sbd.decoding.knn import KNNLabeller
from sbd.decoding.ridge import MultiRidge
from sbd.features.bank import write_bank
from sbd.registry import ridge_model
from sbd.registry.common import model_name, register_model_version
from sbd.registry.knn_model import log_knn_model
from sbd.registry.signatures import InvalidModelInput
from sbd.steps import build_decoder

WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331"]
N_VOXELS, DIM, BACKBONE = 12, 8, "efficientnet-lite0"


def build_tiny_decoder(root: Path, top_k: int = 3) -> tuple[str, np.ndarray]:
    """Register a ridge (12 voxels → 8 features), a kNN over 60 bank rows and the decoder
    (subject 1, VC, phantom) in the current store; returns the decoder URI and voxels."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(len(WNIDS), DIM)) * 3
    labels = np.repeat(np.arange(len(WNIDS)), 10)
    bank_X = centres[labels] + 0.3 * rng.normal(size=(len(labels), DIM))
    bank_w = [WNIDS[c] for c in labels]
    bank = write_bank(root / "bank.h5", bank_X, bank_w, [f"{w}_{i}" for i, w in enumerate(bank_w)],
                      [""] * len(bank_w), attrs={"backbone": BACKBONE})
    W = rng.normal(size=(N_VOXELS, DIM))
    X = rng.normal(size=(40, N_VOXELS))
    ridge = MultiRidge(alpha=1.0).fit(X, X @ W)
    with mlflow.start_run(run_name="tiny-ridge"):
        info = ridge_model.log_ridge_model(ridge, name="ridge")
    ridge_model.register_ridge_model(info.model_uri, "phantom", 1, "VC", BACKBONE, 0.5,
                                     {"alpha": 1.0}, n_voxels=N_VOXELS)
    lab = KNNLabeller(k=3, rule="vote", top_k=top_k).fit(bank)
    with mlflow.start_run(run_name="tiny-knn"):
        info = log_knn_model(lab, bank, name="knn", names={w: f"name-{w}" for w in WNIDS})
    register_model_version(info.model_uri, model_name("knn", "phantom", backbone=BACKBONE), 0.4,
                           tags={"dataset": "phantom", "backbone": BACKBONE})
    build_decoder.run(dataset="phantom", subject=1, roi="VC", backbone=BACKBONE)
    return f"models:/{model_name('decoder', 'phantom', 1, 'VC')}@champion", X[:4]


@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory, store_of_its_own):
    """The tiny decoder, registered in a fresh store of its own (env vars included, so a
    served model finds it); the previous store is restored afterwards."""
    root = tmp_path_factory.mktemp("serving")
    with store_of_its_own(root, "sbd-serving"):
        yield build_tiny_decoder(root)


def test_decoder_pyfunc_composes_ridge_and_knn(tiny_decoder):
    uri, X = tiny_decoder
    client = mlflow.MlflowClient()
    mv = client.get_model_version_by_alias(model_name("decoder", "phantom", 1, "VC"), "champion")
    assert mv.tags["ridge_uri"] == f"models:/{model_name('ridge', 'phantom', 1, 'VC')}/1"
    assert mv.tags["knn_uri"] == f"models:/{model_name('knn', 'phantom', backbone=BACKBONE)}/1"
    assert {mv.tags[k] for k in ("dataset", "subject", "roi", "backbone")} == \
        {"phantom", "1", "VC", BACKBONE}
    model = mlflow.pyfunc.load_model(uri)
    df = pd.DataFrame(X, columns=[f"v{i}" for i in range(N_VOXELS)])
    out = model.predict(df)
    assert list(out.columns) == [f"{c}_{r}" for c in ("wnid", "name", "score") for r in (1, 2, 3)]
    py = model.unwrap_python_model()
    feats = py.predict_features(X)  # arrays work on the python model
    assert feats.shape == (4, DIM) and feats.dtype == np.float32
    ridge = mlflow.pyfunc.load_model(mv.tags["ridge_uri"])
    knn = mlflow.pyfunc.load_model(mv.tags["knn_uri"])
    np.testing.assert_allclose(feats, ridge.predict(df).to_numpy(), rtol=1e-6)
    want = knn.predict(pd.DataFrame(feats.astype(np.float64), columns=[f"f{i}" for i in range(DIM)]))
    pd.testing.assert_frame_equal(out.reset_index(drop=True), want.reset_index(drop=True))
    assert ranked_wnids(out)[0] == out.loc[0, ["wnid_1", "wnid_2", "wnid_3"]].tolist()
    assert out.loc[0, "name_1"] == f"name-{out.loc[0, 'wnid_1']}"
    with pytest.raises(InvalidModelInput, match="expected 12 voxel columns"):
        py.predict(None, X[:, :5])


BAD_PAYLOADS = {
    "wrong voxel count": ({"dataframe_split": {"columns": [f"v{i}" for i in range(5)],
                                               "data": [[0.0] * 5]}}, "v5"),
    "unknown column": ({"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS - 1)]
                                            + ["x"], "data": [[0.0] * N_VOXELS]}}, "v11"),
    "tensor of wrong width": ({"inputs": [[0.0] * (N_VOXELS + 2)]}, "v0"),
    "NaN": ('{"dataframe_split": {"columns": %s, "data": [[NaN%s]]}}'
            % (json.dumps([f"v{i}" for i in range(N_VOXELS)]), ", 0.0" * (N_VOXELS - 1)), "NaN"),
    "non-numeric": ({"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS)],
                                         "data": [["abc"] + [0.0] * (N_VOXELS - 1)]}}, "v0"),
    "empty": ({"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS)], "data": []}},
              "empty"),
}


@pytest.mark.skipif(shutil.which("uvicorn") is None and not Path(sys.executable).with_name(
    "uvicorn").exists(), reason="uvicorn is not installed")
def test_served_decoder_answers_and_rejects_bad_payloads(tiny_decoder, serve):
    uri, X = tiny_decoder
    expected = mlflow.pyfunc.load_model(uri).predict(
        pd.DataFrame(X, columns=[f"v{i}" for i in range(N_VOXELS)]))
    server = serve(uri)
    payload = {"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS)],
                                   "data": X.tolist()}}
    status, body = server.post(payload)
    assert status == 200, body
    got = pd.DataFrame(json.loads(body)["predictions"])
    pd.testing.assert_frame_equal(got[expected.columns], expected.reset_index(drop=True),
                                  check_exact=False, rtol=1e-6)
    for what, (bad, needle) in BAD_PAYLOADS.items():
        status, body = server.post(bad)
        assert 400 <= status < 500, f"{what}: HTTP {status} {body[:300]}"
        assert needle in json.loads(body)["message"], f"{what}: {body[:500]}"
        assert server.ping(), f"server stopped answering after the {what} payload"
