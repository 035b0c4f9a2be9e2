"""The kNN labeller as an MLflow pyfunc: features → ranked wnids, names and scores.

Registered as ``sbd-<dataset>-<backbone>-knn``.  Input: a table with columns
``f0..f{D-1}`` (float) — or, through the unwrapped python model, a 2-D array; output: one
row per query with columns ``wnid_1..K``, ``name_1..K``, ``score_1..K``
(:func:`sbd.decoding.decoder.ranked_frame`).

Once loaded, the bank is searched in memory (:func:`load_bank`): a contiguous bank file
(today's format) is memory-mapped as it is, a normalised one (``normalize`` other than
"none") is normalised once into a float16 copy, an older gzip bank is decompressed once;
whatever fits in ``in_memory_mb`` (config; default: 80 % of the memory available when the
model loads).  A bank that does not fit is streamed from disk for every request, with a
warning saying so (FAISS IVF, ``backend=faiss-ivf``, is the option for such banks).  The
first search runs at load, so the first request finds the bank paged in.  The search path
is the labeller's ``half`` (in ``config.json``'s ``params``): None (default) takes float16
products on AVX-512 CPUs and exact float32 products of rows converted in cache-sized
pieces elsewhere; a model logged from ``KNNLabeller(half=False)`` serves the float32 path
on any CPU (``bench_bank.py --half off``).

Artifacts: ``config.json`` (labeller parameters, backbone, dim), ``centroids.npy`` (class
means, so loading needs no pass over the bank), ``normalizer.npz`` (the training-feature
statistics of the labeller's feature normalisation), ``class_similarity.npy`` (rule
``semantic``: Wu-Palmer similarity of the bank's classes), ``names.json`` (wnid → name, so serving
needs no WordNet) and ``bank.h5`` — the bank itself when it is at most ``max_bank_mb``,
else only its absolute path in ``config.json`` (``bank_ref``), which must then exist
where the model is loaded.

Bad input (wrong column count or names, non-numeric, NaN/inf, empty) raises
:class:`sbd.registry.signatures.InvalidModelInput` (``INVALID_PARAMETER_VALUE``), which the
scoring server answers with HTTP 400 and the message.  Like the ridge model, the ``sbd``
package travels with the model (``code_paths``).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from importlib.metadata import version as _dist_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, Schema

from sbd.decoding.decoder import ranked_frame
from sbd.decoding.knn import FeatureNormalizer, InMemoryBank, KNNLabeller
from sbd.features.bank import FeatureBank
from sbd.registry import ridge_model
from sbd.registry.common import copy_package, model_code
from sbd.registry.signatures import checked_signature, feature_schema, validate_table

log = logging.getLogger(__name__)

__all__ = ["KNNModel", "log_knn_model", "output_schema", "bank_names", "pip_requirements"]

DEFAULT_MAX_BANK_MB = 256.0
IN_MEMORY_MB = -1.0  # < 0: 80 % of the memory available when the model loads


def pip_requirements() -> list[str]:
    """The ridge model's pinned requirements plus torch and h5py (kNN search)."""
    return ridge_model.pip_requirements() + [f"{d}=={_dist_version(d)}" for d in ("torch", "h5py")]


def output_schema(top_k: int) -> Schema:
    """Columns ``wnid_1..K`` (string), ``name_1..K`` (string), ``score_1..K`` (double)."""
    r = range(1, top_k + 1)
    return Schema([ColSpec("string", f"wnid_{i}") for i in r]
                  + [ColSpec("string", f"name_{i}") for i in r]
                  + [ColSpec("double", f"score_{i}") for i in r])


def bank_names(wnids: Any) -> dict[str, str]:
    """wnid → readable name for every distinct wnid (WordNet; the wnid itself if unknown)."""
    from sbd.wordnet import name

    out = {}
    for w in sorted(set(map(str, wnids))):
        try:
            out[w] = name(w)
        except ValueError:
            out[w] = w
    return out


class KNNModel(mlflow.pyfunc.PythonModel):
    """Pyfunc wrapper of a fitted :class:`~sbd.decoding.knn.KNNLabeller` (see module doc)."""

    def load_context(self, context) -> None:
        arts = context.artifacts
        cfg = json.loads(Path(arts["config"]).read_text())
        bank = arts.get("bank") or cfg.get("bank_ref")
        if not bank or not Path(bank).is_file():
            raise MlflowException(f"The kNN model's bank {bank!r} is missing: it was stored by "
                                  "reference; make that file available at this path.")
        self.config = cfg
        self.dim = int(cfg["dim"])
        self.names = json.loads(Path(arts["names"]).read_text())
        normalizer = None
        if "normalizer" in arts:
            with np.load(arts["normalizer"], allow_pickle=False) as z:
                normalizer = FeatureNormalizer.from_arrays({k: z[k] for k in z.files})
        similarity = np.load(arts["class_similarity"]) if "class_similarity" in arts else None
        bank, normalized = load_bank(bank, normalizer, float(cfg.get("in_memory_mb", IN_MEMORY_MB)))
        self.labeller = KNNLabeller(**cfg["params"]).fit(
            bank, centroids=np.load(arts["centroids"]), stats=normalizer,
            class_similarity=similarity, bank_normalized=normalized)
        self.labeller.search(np.zeros((1, self.dim), np.float32))  # page the bank in now

    def predict_ranked(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (n, K), scores (n, K))`` of features (n, D)."""
        X = validate_table(features, self.dim, prefix="f", what="feature")
        return self.labeller.predict_ranked(X)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        wnids, scores = self.predict_ranked(model_input)
        return ranked_frame(wnids, scores, self.names)


def available_mb() -> float:
    """Memory available to a new allocation now (``MemAvailable``), in MiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def load_bank(path: str | Path, normalizer: FeatureNormalizer | None = None,
              in_memory_mb: float = IN_MEMORY_MB) -> tuple[Any, bool]:
    """The bank of a served model, ready for fast searches; returns ``(bank, normalized)``.

    Without normalisation a contiguous bank file is memory-mapped as it is (no copy); with
    it, the normalised features are computed once into a float16 array; an older gzip bank
    is decompressed once.  Each only if its float16 size fits ``in_memory_mb`` (< 0: 80 % of
    :func:`available_mb`); otherwise the file is streamed for every search, with a warning.
    ``normalized`` says whether the returned bank holds normalised features.
    """
    fb = FeatureBank(path)
    need_mb = len(fb) * fb.dim * 2 / 2**20
    limit = 0.8 * available_mb() if in_memory_mb < 0 else in_memory_mb
    plain = normalizer is None or normalizer.mode == "none"
    if need_mb > limit:
        log.warning("The bank %s (%.0f MiB as float16) does not fit in memory (limit %.0f MiB): "
                    "it is read from disk for every request. Free memory, or use a FAISS IVF "
                    "decoder (train_knn -P backend=faiss-ivf).", path, need_mb, limit)
        return fb, False
    if plain and fb.array() is not None and fb.dtype == np.float16:
        return fb, False
    out = np.empty((len(fb), fb.dim), np.float16)
    for start, block in fb.iter_blocks(65536, mapped=False):
        out[start:start + len(block)] = block if plain else normalizer(block)
    bank = InMemoryBank(out, fb.wnids, fb.image_ids, fb.backbone)
    fb.close()
    return bank, not plain


def log_knn_model(labeller: KNNLabeller, bank_path: str | Path, name: str = "model",
                  max_bank_mb: float = DEFAULT_MAX_BANK_MB,
                  names: dict[str, str] | None = None,
                  in_memory_mb: float = IN_MEMORY_MB) -> Any:
    """Log a fitted labeller as a pyfunc in the active run; returns the ``ModelInfo``.

    The bank file travels as an artifact when at most ``max_bank_mb``, else by reference
    (its absolute path).  ``names`` default: :func:`bank_names` of the bank's wnids.
    """
    bank_path = Path(bank_path).resolve()
    if not bank_path.is_file():
        raise FileNotFoundError(f"Feature bank file {bank_path} does not exist.")
    size_mb = bank_path.stat().st_size / 2**20
    by_ref = size_mb > max_bank_mb
    params = {k: v for k, v in labeller.get_params().items() if k != "faiss_params"}
    params["faiss_params"] = labeller.faiss_params
    cfg = {"params": params, "dim": int(labeller.bank_.dim),
           "backbone": str(getattr(labeller.bank_, "backbone", "") or ""),
           "n_bank": int(len(labeller.bank_)), "n_classes": int(len(labeller.classes_)),
           "bank_mb": round(size_mb, 3), "bank_ref": str(bank_path) if by_ref else None,
           "in_memory_mb": float(in_memory_mb)}
    names = names if names is not None else bank_names(labeller.classes_)
    top_k = min(int(labeller.top_k), len(labeller.classes_))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
        (tmp / "names.json").write_text(json.dumps(names))
        np.save(tmp / "centroids.npy", labeller.centroids_)
        np.savez(tmp / "normalizer.npz", **labeller.normalizer_.to_arrays())
        artifacts = {"config": str(tmp / "config.json"), "names": str(tmp / "names.json"),
                     "centroids": str(tmp / "centroids.npy"),
                     "normalizer": str(tmp / "normalizer.npz")}
        if labeller.class_similarity_ is not None:
            np.save(tmp / "class_similarity.npy", labeller.class_similarity_)
            artifacts["class_similarity"] = str(tmp / "class_similarity.npy")
        if not by_ref:
            artifacts["bank"] = str(bank_path)
        signature, schema_meta = checked_signature(feature_schema(cfg["dim"], "double"),
                                                   output_schema(top_k))
        code = copy_package(tmp / "code", __name__)
        script = model_code(tmp, "sbd.registry.knn_model", "KNNModel")
        return mlflow.pyfunc.log_model(name=name, python_model=script, artifacts=artifacts,
                                       code_paths=[str(code)], signature=signature,
                                       pip_requirements=pip_requirements(),
                                       metadata={"dim": cfg["dim"], "top_k": top_k,
                                                 "bank_by_reference": by_ref, **schema_meta})
