"""The composite decoder pyfunc: voxels → ridge → predicted features → kNN → ranked labels.

Registered as ``sbd-<dataset>-s<subject>-<roi>-decoder``.  Built from two registered
versions (a ridge and a kNN model), which travel inside it as artifacts (``ridge/``,
``knn/``), so the decoder keeps answering the same when their champions move on.

Input: a table with columns ``v0..v{n-1}`` (or, through the unwrapped python model, a 2-D
array); output: one row per sample with ``wnid_1..K``, ``name_1..K``, ``score_1..K``
(rank 1 = best).  ``unwrap_python_model().predict_features(X)`` gives the ridge's
predicted features (n, D).  Bad input (wrong voxel count or column names, non-numeric, NaN,
empty) raises :class:`sbd.registry.signatures.InvalidModelInput`: HTTP 400 when served.

Served with::

    mlflow models serve -m models:/sbd-phantom-s1-VC-decoder@champion --env-manager local
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from sbd.decoding.decoder import ranked_frame
from sbd.registry.common import copy_package, model_code, model_name, register_model_version
from sbd.registry.knn_model import output_schema, pip_requirements
from sbd.registry.signatures import checked_signature, input_schema, voxel_schema

__all__ = ["DecoderModel", "log_decoder_model", "register_decoder_model", "model_dims"]


class DecoderModel(mlflow.pyfunc.PythonModel):
    """Pyfunc of ridge → kNN (see the module doc)."""

    def load_context(self, context) -> None:
        self.ridge = mlflow.pyfunc.load_model(context.artifacts["ridge"]).unwrap_python_model()
        self.knn = mlflow.pyfunc.load_model(context.artifacts["knn"]).unwrap_python_model()
        if self.ridge.dim != self.knn.dim:
            raise mlflow.exceptions.MlflowException(
                f"Ridge predicts {self.ridge.dim}-d features but the kNN bank is {self.knn.dim}-d.")

    @property
    def n_voxels(self) -> int:
        return int(self.ridge.n_voxels)

    def predict_features(self, X: Any) -> np.ndarray:
        """Predicted features, float32 (n, D), of voxels ``X`` (DataFrame v0.. or (n, v) array)."""
        return self.ridge.predict_features(X)

    def predict_ranked(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (n, K), scores (n, K))`` of voxels ``X``."""
        return self.knn.labeller.predict_ranked(self.predict_features(X))

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        wnids, scores = self.predict_ranked(model_input)
        out = ranked_frame(wnids, scores, self.knn.names)
        if isinstance(model_input, pd.DataFrame):
            out.index = model_input.index
        return out


def model_dims(model_uri: str) -> tuple[int, int]:
    """``(n_inputs, n_outputs)`` of a logged model's column schemas (e.g. voxels, D)."""
    sig = mlflow.models.get_model_info(model_uri).signature
    n_out = len(sig.outputs.inputs) if sig is not None and sig.outputs is not None else 0
    return len(input_schema(model_uri).inputs), n_out


def log_decoder_model(ridge_uri: str, knn_uri: str, name: str = "decoder",
                      input_example: Any = None) -> Any:
    """Log the composite of two logged/registered models in the active run; returns ModelInfo.

    Raises ValueError when the ridge's output dim differs from the kNN's input dim.
    """
    n_voxels, dim = model_dims(ridge_uri)
    knn_dim, n_out = model_dims(knn_uri)
    if dim != knn_dim:
        raise ValueError(f"Cannot compose {ridge_uri} ({dim}-d features) with {knn_uri} "
                         f"({knn_dim}-d bank): they come from different backbones.")
    top_k = n_out // 3
    if input_example is None:
        input_example = pd.DataFrame(np.zeros((2, n_voxels)),
                                     columns=[f"v{i}" for i in range(n_voxels)])
    signature, schema_meta = checked_signature(voxel_schema(n_voxels), output_schema(top_k))
    with tempfile.TemporaryDirectory() as tmp:
        code = copy_package(Path(tmp) / "code", __name__)
        return mlflow.pyfunc.log_model(
            name=name, python_model=model_code(tmp, "sbd.registry.decoder_model", "DecoderModel"),
            artifacts={"ridge": ridge_uri, "knn": knn_uri}, code_paths=[str(code)],
            signature=signature, input_example=input_example,
            pip_requirements=pip_requirements(),
            metadata={"n_voxels": n_voxels, "dim": dim, "top_k": top_k,
                      "ridge_uri": ridge_uri, "knn_uri": knn_uri, **schema_meta})


def register_decoder_model(model_uri: str, dataset: str, subject: int, roi: str, backbone: str,
                           score: float, ridge_uri: str, knn_uri: str,
                           extra_tags: dict[str, Any] | None = None):
    """Register as ``sbd-<dataset>-s<subject>-<roi>-decoder`` with tags dataset, subject,
    roi, backbone, ridge_uri, knn_uri (+ extra); returns ``(ModelVersion, became_champion)``."""
    tags = {"dataset": dataset, "subject": int(subject), "roi": roi, "backbone": backbone,
            "ridge_uri": ridge_uri, "knn_uri": knn_uri, **(extra_tags or {})}
    return register_model_version(model_uri, model_name("decoder", dataset, subject, roi),
                                  score, tags=tags, higher_is_better=True)
