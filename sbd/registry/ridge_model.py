"""The registered ridge model: voxels → CNN features as an MLflow pyfunc.

Weights are a ``.npz`` artifact (:meth:`sbd.decoding.ridge.MultiRidge.to_arrays`; never a
pickled estimator); the model is logged "from code" (a two-line script that instantiates
:class:`RidgePyfunc`, so nothing is pickled at all) and the ``sbd`` package travels with it
(``code_paths``).  Input: a DataFrame with columns ``v0 … v{n-1}`` (or, via
:meth:`RidgePyfunc.predict_features`, a 2-D array); output: a DataFrame ``f0 … f{D-1}``
(float32).  Bad input raises :class:`sbd.registry.signatures.InvalidModelInput` (HTTP 400
when served).
"""

from __future__ import annotations

import tempfile
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

import sbd
from sbd.files import staged_path
from sbd.decoding.ridge import MultiRidge
from sbd.registry.common import copy_package, model_code, model_name, register_model_version
from sbd.registry.signatures import column_names, table_signature, to_table, validate_table

__all__ = ["WEIGHTS", "RidgePyfunc", "save_weights", "load_weights", "pip_requirements",
           "log_ridge_model", "register_ridge_model"]

WEIGHTS = "weights"
WEIGHTS_FILE = "ridge_weights.npz"


def save_weights(model: MultiRidge, path: str | Path) -> Path:
    """Write the fitted ``model`` as plain arrays to ``path`` (.npz; staged,
    :func:`sbd.files.staged_path`)."""
    with staged_path(path) as tmp:
        np.savez(tmp, **model.to_arrays())
    return Path(path)


def load_weights(path: str | Path) -> MultiRidge:
    """The fitted :class:`MultiRidge` stored by :func:`save_weights`."""
    with np.load(path, allow_pickle=False) as z:
        return MultiRidge.from_arrays({k: z[k] for k in z.files})


class RidgePyfunc(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a fitted :class:`MultiRidge` loaded from the ``weights`` artifact."""

    def __init__(self) -> None:
        self.estimator: MultiRidge | None = None

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.estimator = load_weights(context.artifacts[WEIGHTS])

    @property
    def n_voxels(self) -> int:
        return int(self._fitted().n_features_in_)

    @property
    def dim(self) -> int:
        return int(self._fitted().coef_.shape[1])

    def _fitted(self) -> MultiRidge:
        if self.estimator is None:
            raise RuntimeError("RidgePyfunc has no weights: load it with mlflow.pyfunc.load_model.")
        return self.estimator

    def predict_features(self, X: Any) -> np.ndarray:
        """Predicted features (n × D, float32) of voxels ``X`` (DataFrame v0… or n × v)."""
        model = self._fitted()
        arr = validate_table(X, model.n_features_in_, prefix="v", what="voxel")
        return model.predict(arr).astype(np.float32)

    def predict(self, context, model_input, params=None):
        # no type hints here: MLflow would read them as a (conflicting) signature
        """Predicted features as a DataFrame ``f0 … f{D-1}`` (float32), one row per input row."""
        index = model_input.index if isinstance(model_input, pd.DataFrame) else None
        return to_table(self.predict_features(model_input), prefix="f", index=index)


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (the versions in this environment)."""
    dists = ["mlflow", "numpy", "pandas", "scipy", "scikit-learn", "cloudpickle"]
    return [f"{d}=={_dist_version(d)}" for d in dists]


def log_ridge_model(model: MultiRidge, name: str = "ridge", input_example: Any = None,
                    metadata: dict[str, Any] | None = None) -> mlflow.models.model.ModelInfo:
    """Log a fitted ``model`` as a pyfunc in the active run; returns its ModelInfo.

    ``input_example``: a few voxel rows (DataFrame v0… or array; 2 rows by default from the
    model's intercept-only input, zeros).
    """
    if model.test_time_adjust:
        raise ValueError("A MultiRidge with test_time_adjust=True decodes a sample differently "
                         "depending on the rest of its batch (the paper's transductive "
                         "adjustment, kept for the baseline); it is never logged or served. "
                         "Use MultiRidge.set_rescale for the inductive form.")
    n_voxels, dim = model.n_features_in_, model.coef_.shape[1]
    if input_example is None:
        input_example = np.zeros((2, n_voxels))
    example = input_example if isinstance(input_example, pd.DataFrame) else pd.DataFrame(
        np.asarray(input_example, dtype=np.float64), columns=column_names("v", n_voxels))
    signature, schema_meta = table_signature(n_voxels, dim)
    meta = {"n_voxels": int(n_voxels), "dim": int(dim), "n_voxels_kept": int(model.support_.size),
            "sbd_version": sbd.__version__, **schema_meta, **(metadata or {})}
    with tempfile.TemporaryDirectory() as tmp:
        weights = save_weights(model, Path(tmp) / WEIGHTS_FILE)
        code = copy_package(Path(tmp) / "code", __name__)
        script = model_code(tmp, "sbd.registry.ridge_model", "RidgePyfunc")
        return mlflow.pyfunc.log_model(
            name=name, python_model=script, artifacts={WEIGHTS: str(weights)},
            code_paths=[str(code)], signature=signature,
            input_example=example, pip_requirements=pip_requirements(), metadata=meta)


def register_ridge_model(model_uri: str, dataset: str, subject: int, roi: str, backbone: str,
                         score: float, params: dict[str, Any], n_voxels: int,
                         extra_tags: dict[str, Any] | None = None):
    """Register a logged ridge model as ``sbd-<dataset>-s<subject>-<roi>-ridge``.

    Tags: dataset, subject, roi, backbone, n_voxels, the best params, ``val_score`` (+ extra);
    aliases as :func:`sbd.registry.common.register_model_version` moves them.
    Returns ``(ModelVersion, became_champion)``.
    """
    tags = {"dataset": dataset, "subject": int(subject), "roi": roi, "backbone": backbone,
            "n_voxels": int(n_voxels), **{k: v for k, v in params.items()}, **(extra_tags or {})}
    return register_model_version(model_uri, model_name("ridge", dataset, subject, roi), score,
                                  tags=tags, higher_is_better=True)
