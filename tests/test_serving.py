"""The composite decoder, built from a tiny ridge and a tiny bank through the real code
paths (log, register, build_decoder), served by the real ``mlflow models serve``."""

from __future__ import annotations

import io
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
    "renamed column": ({"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS - 1)]
                                            + ["x"], "data": [[0.0] * N_VOXELS]}}, "v11"),
    "extra columns": ({"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS)]
                                           + [f"x{j}" for j in range(5)],
                                           "data": [[0.0] * (N_VOXELS + 5)]}}, "unknown: 'x0'"),
    "tensor of wrong width": ({"inputs": [[0.0] * (N_VOXELS + 2)]}, "got 14"),
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


def malformed_payloads():
    """Hypothesis strategy: request bodies the decoder cannot answer (12 voxel columns
    expected), as JSON text: extra / missing / duplicated columns, non-finite, non-numeric
    or missing values, empty tables, wrong shapes in every input format, and text that is
    not JSON or not a request at all."""
    from hypothesis import strategies as st

    cols = [f"v{i}" for i in range(N_VOXELS)]
    num = st.floats(-1e3, 1e3, allow_nan=False)
    bad_cell = st.one_of(st.text(max_size=5), st.booleans(), st.none(),
                         st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(_Raw),
                         st.lists(num, max_size=2))

    def table(columns, width, n=st.integers(1, 3)):
        return n.flatmap(lambda k: st.lists(st.lists(num, min_size=width, max_size=width),
                                            min_size=k, max_size=k)).map(
            lambda rows: {"dataframe_split": {"columns": columns, "data": rows}})

    extra = st.lists(st.text(min_size=1, max_size=4).filter(lambda c: c not in cols),
                     min_size=1, max_size=6, unique=True).flatmap(
        lambda xs: table(cols + xs, N_VOXELS + len(xs)))
    duplicated = st.sampled_from(cols).flatmap(lambda c: table(cols + [c], N_VOXELS + 1))
    missing = st.integers(0, N_VOXELS - 1).flatmap(
        lambda n: st.permutations(cols).map(lambda p: p[:n])).flatmap(
        lambda c: table(list(c), len(c)))

    def poisoned(cell):
        return st.tuples(st.integers(0, N_VOXELS - 1), cell).map(lambda t: {
            "dataframe_split": {"columns": cols, "data": [[0.5] * t[0] + [t[1]]
                                                          + [0.5] * (N_VOXELS - 1 - t[0])]}})

    tensor = st.integers(0, 40).filter(lambda w: w != N_VOXELS).flatmap(
        lambda w: st.sampled_from(["inputs", "instances"]).map(
            lambda key: {key: [[0.25] * w]}))
    records = st.lists(st.sampled_from(cols), max_size=N_VOXELS - 1, unique=True).map(
        lambda c: {"dataframe_records": [{k: 1.0 for k in c}]})
    empty = st.sampled_from([{"dataframe_split": {"columns": cols, "data": []}},
                             {"dataframe_records": []}, {"inputs": []}, {}, [],
                             {"dataframe_split": {}}])
    junk = st.one_of(st.text(max_size=30), st.binary(max_size=30).map(
        lambda b: b.decode("latin-1")))
    shaped = st.one_of(extra, duplicated, missing, poisoned(bad_cell), tensor, records, empty)
    return st.one_of(shaped.map(_dumps), junk)


class _Raw(str):
    """A JSON literal written as is (NaN, Infinity: what Python's and MLflow's parsers
    accept, and a client may send)."""


def _dumps(obj) -> str:
    if isinstance(obj, _Raw):
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ", ".join(_dumps(v) for v in obj) + "]"
    return json.dumps(obj)


@pytest.mark.skipif(shutil.which("uvicorn") is None and not Path(sys.executable).with_name(
    "uvicorn").exists(), reason="uvicorn is not installed")
def test_served_decoder_fuzzed_with_malformed_payloads(tiny_decoder, serve):
    """Some hundreds of generated malformed requests to a real server: each gets a 4xx, none
    a 5xx, and the server still answers a valid request afterwards."""
    from hypothesis import HealthCheck, given, settings

    uri, X = tiny_decoder
    server = serve(uri)
    counts = {"tried": 0, "4xx": 0, "5xx": 0, "other": 0}
    failures = []

    @settings(max_examples=300, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(malformed_payloads())
    def check(body):
        status, text = server.post(body)
        counts["tried"] += 1
        kind = "4xx" if 400 <= status < 500 else "5xx" if status >= 500 else "other"
        counts[kind] += 1
        if kind != "4xx" and len(failures) < 5:
            failures.append((status, body[:200], text[:300]))

    check()
    alive = server.ping()
    status, _ = server.post({"dataframe_split": {"columns": [f"v{i}" for i in range(N_VOXELS)],
                                                 "data": X[:1].tolist()}})
    print("fuzz:", {**counts, "server_alive": alive, "valid_after": status})
    assert counts["tried"] >= 200 and counts["4xx"] == counts["tried"], failures
    assert alive and status == 200


def test_models_hold_no_pickle_and_load_in_a_fresh_process(tiny_decoder, pickled_files,
                                                           tmp_path):
    """Every registered model is code + arrays (models-from-code, .npz/.npy/json): no pickled
    instance anywhere in its folder; and it loads and predicts in a new process started
    outside the checkout."""
    import subprocess

    uri, X = tiny_decoder
    names = [model_name("ridge", "phantom", 1, "VC"),
             model_name("knn", "phantom", backbone=BACKBONE),
             model_name("decoder", "phantom", 1, "VC")]
    for name in names:
        assert pickled_files(f"models:/{name}/1") == [], name
    np.save(tmp_path / "x.npy", X)
    code = ("import sys, mlflow, numpy as np, pandas as pd\n"
            "X = np.load(sys.argv[2])\n"
            "df = pd.DataFrame(X, columns=[f'v{i}' for i in range(X.shape[1])])\n"
            "out = mlflow.pyfunc.load_model(sys.argv[1]).predict(df).to_json()\n"
            "print(sys.modules['sbd'].__file__)\n"
            "print(out)\n")
    out = subprocess.run([sys.executable, "-c", code, uri, str(tmp_path / "x.npy")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    # it ran the code shipped with the model (only what the model imports), not the checkout's
    shipped = Path(mlflow.artifacts.download_artifacts(f"{uri}/code", dst_path=str(tmp_path)))
    assert "/code/sbd/" in out.stdout.splitlines()[-2]
    assert (shipped / "sbd" / "registry" / "decoder_model.py").is_file()
    assert not (shipped / "sbd" / "humaneval").exists() and not (shipped / "sbd" / "steps").exists()
    want = mlflow.pyfunc.load_model(uri).predict(
        pd.DataFrame(X, columns=[f"v{i}" for i in range(N_VOXELS)]))
    got = pd.read_json(io.StringIO(out.stdout.strip().splitlines()[-1]))
    assert got["wnid_1"].tolist() == want["wnid_1"].tolist()
