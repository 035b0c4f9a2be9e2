"""The composite decoder pyfunc: voxels → ridge → predicted features → kNN → ranked labels.

Registered as ``sbd-<dataset>-s<subject>-<roi>-decoder``.  Built from two registered
versions (a ridge and a kNN model), which travel inside it as artifacts (``ridge/``,
``knn/``), so the decoder keeps answering the same when their champions move on.

Input: a table with columns ``v0..v{n-1}`` (or, through the unwrapped python model, a 2-D
array); output: one row per sample with ``wnid_1..K``, ``name_1..K``, ``score_1..K``
(rank 1 = best), and, for a decoder logged with the data it was trained on
(``log_decoder_model(data=...)``, as ``train_decoder`` does), ``data_id`` and ``data_dir``
(:mod:`sbd.data.identity`): every answer says which data the model learnt from.
``unwrap_python_model().predict_features(X)`` gives the ridge's
predicted features (n, D).  Bad input (wrong voxel count or column names, non-numeric, NaN,
empty) raises :class:`sbd.registry.signatures.InvalidModelInput`: HTTP 400 when served.

Served with::

    mlflow models serve -m models:/sbd-phantom-s1-VC-decoder@champion --env-manager local
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.types import ColSpec, Schema

from sbd.decoding.decoder import ranked_frame
from sbd.decoding.tuning import study_lock
from sbd.registry.common import (STUDY_TAG, copy_package, model_code, model_name,
                                 register_model_version, study_version)
from sbd.registry.knn_model import output_schema, pip_requirements
from sbd.registry.signatures import checked_signature, input_schema, voxel_schema

log = logging.getLogger(__name__)

# columns a decoder logged with its data answers beside the ranked labels
DATA_COLUMNS = ("data_id", "data_dir")

__all__ = ["DecoderModel", "log_decoder_model", "register_decoder_model", "model_dims",
           "describe_version", "add_test_figures", "DATA_COLUMNS", "register_parts",
           "register_tuned_decoder"]


class DecoderModel(mlflow.pyfunc.PythonModel):
    """Pyfunc of ridge → kNN (see the module doc)."""

    def load_context(self, context) -> None:
        config = dict(getattr(context, "model_config", None) or {})
        self.trained_on = {k: str(config[k]) for k in DATA_COLUMNS if k in config}
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
        for k, v in getattr(self, "trained_on", {}).items():
            out[k] = v
        if isinstance(model_input, pd.DataFrame):
            out.index = model_input.index
        return out


def model_dims(model_uri: str) -> tuple[int, int]:
    """``(n_inputs, n_outputs)`` of a logged model's column schemas (e.g. voxels, D)."""
    sig = mlflow.models.get_model_info(model_uri).signature
    n_out = len(sig.outputs.inputs) if sig is not None and sig.outputs is not None else 0
    return len(input_schema(model_uri).inputs), n_out


def log_decoder_model(ridge_uri: str, knn_uri: str, name: str = "decoder",
                      input_example: Any = None, data: dict[str, str] | None = None) -> Any:
    """Log the composite of two logged/registered models in the active run; returns ModelInfo.

    ``data``: the :meth:`~sbd.data.identity.DataIdentity.tags` of the data it was trained
    on; the model answers its ``data_id`` and ``data_dir`` with every row, and the logged
    model carries them as tags.

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
    data = {k: str(v) for k, v in (data or {}).items()}
    outputs = output_schema(top_k)
    if data:
        outputs = Schema(outputs.inputs + [ColSpec("string", k) for k in DATA_COLUMNS])
    signature, schema_meta = checked_signature(voxel_schema(n_voxels), outputs)
    with tempfile.TemporaryDirectory() as tmp:
        code = copy_package(Path(tmp) / "code", __name__)
        return mlflow.pyfunc.log_model(
            name=name, python_model=model_code(tmp, "sbd.registry.decoder_model", "DecoderModel"),
            artifacts={"ridge": ridge_uri, "knn": knn_uri}, code_paths=[str(code)],
            signature=signature, input_example=input_example,
            pip_requirements=pip_requirements(), model_config=data or None, tags=data or None,
            metadata={"n_voxels": n_voxels, "dim": dim, "top_k": top_k,
                      "ridge_uri": ridge_uri, "knn_uri": knn_uri, **schema_meta, **data})


def register_decoder_model(model_uri: str, dataset: str, subject: int, roi: str, backbone: str,
                           score: float, ridge_uri: str, knn_uri: str,
                           extra_tags: dict[str, Any] | None = None):
    """Register as ``sbd-<dataset>-s<subject>-<roi>-decoder`` with tags dataset, subject,
    roi, backbone, ridge_uri, knn_uri (+ extra); returns ``(ModelVersion, became_champion)``."""
    tags = {"dataset": dataset, "subject": int(subject), "roi": roi, "backbone": backbone,
            "ridge_uri": ridge_uri, "knn_uri": knn_uri, **(extra_tags or {})}
    return register_model_version(model_uri, model_name("decoder", dataset, subject, roi),
                                  score, tags=tags, higher_is_better=True)


RIDGE_PART_KEYS = ("alpha", "voxel_frac", "selection", "standardize", "target_mix",
                   "feature_norm")
LABEL_PART_KEYS = ("normalize", "metric", "rule", "k", "temperature", "members")


def register_parts(ridge_uri: str, knn_uri: str, dataset: str, subject: int, roi: str,
                   backbone: str, score: float, params: dict[str, Any], n_voxels: int,
                   tags: dict[str, Any]) -> tuple[str, str]:
    """Register a decoder's two parts as models of their own: the ridge as
    ``sbd-<dataset>-s<subject>-<roi>-ridge`` and the kNN labeller as
    ``sbd-<dataset>-<backbone>-knn``, each with its share of the tuned ``params``, the
    decoder's validation ``score`` and ``tags`` (``val_metric``, data identity, run);
    returns their ``models:/name/version`` URIs."""
    from sbd.registry.ridge_model import register_ridge_model

    ridge, _ = register_ridge_model(ridge_uri, dataset, subject, roi, backbone, score,
                                    {k: params[k] for k in RIDGE_PART_KEYS if k in params},
                                    n_voxels, extra_tags={**tags, "part_of": "decoder"})
    knn, _ = register_model_version(
        knn_uri, model_name("knn", dataset, backbone=backbone), score,
        tags={"dataset": dataset, "backbone": backbone, "tuned_on_subject": int(subject),
              "tuned_on_roi": roi, "part_of": "decoder",
              **{k: params[k] for k in LABEL_PART_KEYS if k in params}, **tags})
    return (f"models:/{ridge.name}/{ridge.version}", f"models:/{knn.name}/{knn.version}")


def _figures(scores: dict[str, float], paper: dict[str, float]) -> str:
    return "; ".join(f"{k} {v:.3f} (paper {paper[k]:.3f})" if k in paper else f"{k} {v:.3f}"
                     for k, v in scores.items())


def describe_version(version: ModelVersion, identity: Any, objective: str,
                     scores: dict[str, float], paper: dict[str, float], run_id: str) -> str:
    """Write the registered version's description: what the decoder is, the data it was
    trained on (``identity``: a :class:`sbd.data.identity.DataIdentity`), its validation
    figures beside the paper's pipeline on the same queries, and the run that made it.
    The ``evaluate`` step adds the test figures (:func:`add_test_figures`)."""
    tags = version.tags
    text = (f"sbd decoder of subject {tags.get('subject')}, ROI {tags.get('roi')}: "
            f"voxels → ridge → {tags.get('backbone')} features → kNN over the labelled bank → "
            f"ranked WordNet labels.\n\nTrained on: {identity.describe()}.\n\n"
            f"Validation (held-out training categories, objective {objective}): "
            f"{_figures(scores, paper)}.\n\nMade by run {run_id}.")
    MlflowClient().update_model_version(version.name, version.version, description=text)
    return text


TEST_HEADER = "Test (averaged test images"


def add_test_figures(name: str, version: str | int, run_id: str, data: str,
                     scores: dict[str, float], paper: dict[str, float]) -> str:
    """Add (or replace) the test figures of an ``evaluate`` run to a version's description."""
    client = MlflowClient()
    kept = (client.get_model_version(name, str(version)).description or "").split(
        f"\n\n{TEST_HEADER}")[0]
    text = (f"{kept}\n\n{TEST_HEADER}, {data}; run {run_id}): {_figures(scores, paper)}.")
    client.update_model_version(name, str(version), description=text)
    return text


def register_tuned_decoder(result: Any, parts: tuple, identity: Any, meta: dict,
                           X: np.ndarray, validation: str, shared: tuple[str, str],
                           run_id: str) -> tuple[str, bool]:
    """Log the composite decoder of a tuning ``result``
    (:class:`sbd.decoding.tuning.decoder.DecoderTuneResult`) whose logged ``parts`` are
    ``(ridge, knn)`` model infos, and register it and its two parts (:func:`register_parts`)
    once per shared study (``shared``: ``(storage, study_name)``, empty for none): a later
    worker that chose the same configuration, or one that validated no better, points to
    the study's version instead.  ``meta``: dataset, subject, roi, backbone.
    Returns ``(models:/… URI, champion)``."""
    ridge_info, knn_info = parts
    for part in parts:
        mlflow.set_logged_model_tags(part.model_id, identity.tags())
    info = log_decoder_model(
        ridge_info.model_uri, knn_info.model_uri, name="decoder", data=identity.tags(),
        input_example=pd.DataFrame(X[:1], columns=[f"v{i}" for i in range(X.shape[1])]))
    best, paper, objective = result.best_scores, result.paper_scores, result.objective
    choice = hashlib.sha256(json.dumps(result.best_params, sort_keys=True,
                                       default=str).encode()).hexdigest()[:16]
    name = model_name("decoder", meta["dataset"], meta["subject"], meta["roi"])
    storage, study_name = shared
    with study_lock(storage, study_name):
        found = (study_version(name, study_name, {"decoder_choice": choice}, result.best_value)
                 if storage else None)
        if found is not None:
            log.info("the study's choice is registered already (%s)", found[0])
            return found
        study_tags = {STUDY_TAG: study_name, "decoder_choice": choice} if storage else {}
        tags = {"val_metric": f"val/{objective}", "run_id": run_id, **study_tags,
                **identity.tags()}
        ridge_version, knn_version = register_parts(
            ridge_info.model_uri, knn_info.model_uri, **meta, score=result.best_value,
            params=result.best_params, n_voxels=X.shape[1], tags=tags)
        version, champion = register_decoder_model(
            info.model_uri, **meta, score=result.best_value,
            ridge_uri=ridge_info.model_uri, knn_uri=knn_info.model_uri,
            extra_tags={**tags, "validation": validation, "ridge_version": ridge_version,
                        "knn_version": knn_version,
                        **{f"val_{k}": round(v, 6) for k, v in best.items()},
                        **{f"paper_val_{k}": round(v, 6) for k, v in paper.items()},
                        **result.best_params})
        describe_version(version, identity, objective, best, paper, run_id)
        return f"models:/{version.name}/{version.version}", champion
