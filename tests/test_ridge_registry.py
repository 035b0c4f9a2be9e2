"""The ridge pyfunc: registry round trip, aliases, input errors; the train_ridge step."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from sbd.decoding.ridge import MultiRidge
from sbd.decoding.tuning import normalise_params, params_from_tags
from sbd.registry.common import model_name
from sbd.registry.ridge_model import (
    load_weights, log_ridge_model, register_ridge_model, save_weights,
)
from sbd.registry.signatures import (InvalidModelInput, column_names, input_schema,
                                     validate_table)

N_VOXELS, DIM = 24, 10


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, N_VOXELS))
    Y = X[:, :6] @ rng.standard_normal((6, DIM)) + 0.1 * rng.standard_normal((60, DIM))
    groups = np.repeat(np.arange(12), 5)
    model = MultiRidge(alpha=np.geomspace(1, 10, DIM), n_voxels=0.5, selection="f",
                       standardize=True).fit(X, Y, groups)
    return model, X


def _frame(X):
    return pd.DataFrame(X, columns=column_names("v", X.shape[1]))


def test_pyfunc_round_trip_through_registry_and_aliases(fitted):
    model, X = fitted
    with mlflow.start_run():
        info = log_ridge_model(model, input_example=X[:2], metadata={"dataset": "unit"})
    params = {"alpha": 1.0, "alpha_mode": "per_target", "voxel_frac": 0.5}
    name = model_name("ridge", "unit", 1, "VC")
    v1, champ1 = register_ridge_model(info.model_uri, "unit", 1, "VC", "tiny", 0.80, params,
                                      n_voxels=N_VOXELS)
    v2, champ2 = register_ridge_model(info.model_uri, "unit", 1, "VC", "tiny", 0.70, params,
                                      n_voxels=N_VOXELS)
    assert (champ1, champ2) == (True, False)
    client = mlflow.MlflowClient()
    assert client.get_model_version_by_alias(name, "champion").version == v1.version
    assert client.get_model_version_by_alias(name, "candidate").version == v2.version
    assert v2.tags["n_voxels"] == str(N_VOXELS) and v2.tags["alpha_mode"] == "per_target"
    assert v2.tags["backbone"] == "tiny" and float(v2.tags["val_score"]) == 0.70
    assert params_from_tags(v2.tags) == normalise_params(params)
    v3, champ3 = register_ridge_model(info.model_uri, "unit", 1, "VC", "tiny", 0.90, params,
                                      n_voxels=N_VOXELS)
    assert champ3 and client.get_model_version_by_alias(name, "champion").version == v3.version

    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    sig = loaded.metadata.signature
    # the input schema lives in the metadata (MLflow's enforcement would drop extra columns)
    assert sig.inputs is None
    assert input_schema(f"models:/{name}@champion").input_names() == column_names("v", N_VOXELS)
    assert loaded.metadata.metadata["input_columns"] == f"v0 … v{N_VOXELS - 1} (double)"
    assert sig.outputs.input_names() == column_names("f", DIM)
    out = loaded.predict(_frame(X[:7]))
    assert list(out.columns) == column_names("f", DIM) and (out.dtypes == np.float32).all()
    expected = model.predict(X[:7]).astype(np.float32)
    assert np.array_equal(out.to_numpy(), expected)
    # columns in another order are matched by name
    assert np.array_equal(loaded.predict(_frame(X[:7])[column_names("v", N_VOXELS)[::-1]])
                          .to_numpy(), expected)
    inner = loaded.unwrap_python_model()
    assert np.array_equal(inner.predict_features(X[:7]), expected)

    # bad input → MlflowException with INVALID_PARAMETER_VALUE (HTTP 400 when served)
    bad_inputs = {
        "missing": _frame(X[:3]).drop(columns=["v5"]),
        "extra": _frame(X[:3]).assign(x1=1.0, x2=2.0),
        "NaN": _frame(np.where(np.eye(3, N_VOXELS) > 0, np.nan, X[:3])),
        "non-numeric": _frame(X[:3]).astype({"v2": str}).assign(v2="x"),
    }
    for what, bad in bad_inputs.items():
        with pytest.raises(MlflowException) as err:
            loaded.predict(bad)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE", what
        assert err.value.get_http_status_code() == 400
    with pytest.raises(InvalidModelInput, match="expected 24 voxel columns, got 23"):
        inner.predict_features(X[:3, :-1])


def test_validate_table_messages():
    X = np.arange(12.0).reshape(3, 4)
    assert np.array_equal(validate_table(_frame(X), 4), X)
    assert validate_table(X[0], 4).shape == (1, 4)
    cases = [
        (_frame(X).assign(extra=1.0), "unknown: 'extra'"),
        (_frame(X).drop(columns=["v1"]), "missing: 'v1'"),
        (_frame(X).assign(v0=["a", "b", "c"]), "non-numeric: 'v0'"),
        (_frame(X).iloc[:0], "empty"),
        (np.where(X > 10, np.inf, X), "NaN or infinite .* row 2, column v3"),
        (X[:, :3], "expected 4 voxel columns, got 3"),
        (X.astype(str), "numeric"),
        (X[None], "shape"),
    ]
    for bad, message in cases:
        with pytest.raises(InvalidModelInput, match=message) as err:
            validate_table(bad, 4)
        assert isinstance(err.value, ValueError)
        assert err.value.error_code == "INVALID_PARAMETER_VALUE"


def test_weights_are_plain_arrays(fitted, tmp_path):
    model, X = fitted
    path = save_weights(model, tmp_path / "w.npz")
    with np.load(path, allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert np.array_equal(load_weights(path).predict(X), model.predict(X))


@pytest.mark.slow
def test_train_ridge_step_on_phantom(phantom_features):
    from sbd.steps import train_ridge

    run_id = train_ridge.run(dataset="phantom", data_dir=str(phantom_features), subject=1,
                             roi="VC", n_trials=4, seed=0)
    run = mlflow.MlflowClient().get_run(run_id)
    m = run.data.metrics
    for key in ("val/ident_othercat_acc", "val/ident_othercat_acc_paper", "val/r", "val/r_paper"):
        assert key in m
    assert m["val/ident_othercat_acc"] >= m["val/ident_othercat_acc_paper"]
    uri = run.data.tags["sbd.ridge_uri"]
    assert uri.startswith("models:/sbd-phantom-s1-VC-ridge/")
    loaded = mlflow.pyfunc.load_model(uri)
    n = int(run.data.params["n_voxels"])
    out = loaded.predict(pd.DataFrame(np.zeros((2, n)), columns=column_names("v", n)))
    assert out.shape == (2, int(run.data.params["n_features"]))
