"""Tuning the whole decoder for what is reported: labels of unseen categories, under test
conditions.

The decoder is one unit — ridge (voxels → features), feature rescaling, label-stage
normalisation, similarity, k and label rule — and is tuned as one, per subject and ROI,
for the labels of held-out categories (Wu-Palmer top-1 and top-5 accuracy).  Validation
mirrors the test set:

- **unseen categories**: category folds (GroupKFold on wnid,
  :func:`sbd.decoding.tuning.grouped_folds`); a category's out-of-fold predictions come
  from a ridge fitted without it;
- **test-like inputs** (``validation``): GOD's test samples are averages of 35
  presentations of *one* image, its training samples single trials of 8 images per
  category.  Each validation query averages the out-of-fold predictions of a few trials
  of one held-out category (for a linear ridge, the prediction of the averaged voxels):
  ``pair`` (default; 2 trials, 4 queries per GOD category), ``quad`` (4), ``category``
  (all 8) or ``trial`` (1).  Averaging cuts the noise toward the test's, but averaging
  many *different* images makes a query a category prototype, unlike a test image:
  measured on the default phantom (seed 0), ``category`` validation rated the
  class-centroid rule 0.02 above nearest neighbour (mean top-1 Wu-Palmer, subjects 1-3,
  three ridges), the test set 0.02 below it; ``pair`` validation still chose it on some
  subjects.  A query that averages trials of several images of one category is closer
  to that category's centroid than a test image is, so the centroid rule's validation
  score is inflated by construction; it is left out of the search.  ``trial``
  validation over-regularises the ridge.

Search space (:func:`suggest`)

================  ==================================================================
alpha             ridge penalty, log-uniform in [1, 1e6] (one alpha for all features)
voxel_frac        fraction of the ROI's voxels kept, 0.1 … 1.0 by 0.1
selection         ``corr`` or ``f`` (on each fold's training part only)
standardize       z-score voxels on the training data
feature_norm      ``none`` or ``rescale``: predictions z-scored with the mean / sd of
                  held-out (out-of-fold, averaged like the validation queries)
                  predictions stored at training time, then given the training
                  features' mean / sd — the paper's adjustment made inductive
normalize         label stage: ``none``, ``center`` or ``zscore`` with the training
                  features' statistics (:class:`sbd.decoding.knn.FeatureNormalizer`)
metric            ``euclidean`` or ``cosine``
rule              ``nearest``, ``vote``, ``weighted``, ``semantic`` (the label of
                  highest expected Wu-Palmer similarity,
                  :func:`sbd.decoding.knn.rank_labels`); not ``centroid``, whose
                  validation score is biased (below)
k                 1 … 50 (log), neighbours of ``vote`` / ``weighted``
members           1 … 3, ``nearest`` and ``semantic`` only: a class's distance is the
                  mean distance to its ``members`` nearest bank images
                  (:func:`sbd.decoding.knn.exact_search`)
temperature       0.01 … 10 (log), ``weighted`` and ``semantic`` only
================  ==================================================================

The objective (:data:`OBJECTIVES`, default ``wup_top5``) is the mean of the top-1
Wu-Palmer similarity and the top-5 accuracy: the two figures a decoder is reported by.
Nothing here reads the test split.  Every trial costs small products: the fold
decompositions are cached (:class:`sbd.decoding.tuning.FoldCache`), the bank is held in
memory once per normalisation, and Wu-Palmer similarities come from one matrix
(validation categories × bank classes).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from sbd.decoding import knn
from sbd.decoding.ridge import MultiRidge, adjust_predictions, n_voxels_kept
from sbd.decoding.tuning import (FoldCache, SELECTIONS, fit_model,
                                 out_of_fold_predictions, trial_run)
from sbd.params import as_bool
from sbd.tracking import OBJECTIVE_TAG

__all__ = ["VALIDATIONS", "OBJECTIVES", "FEATURE_NORMS", "RULES", "PAPER_LIKE", "CENTRED_NN",
           "SEMANTIC", "QUEUED", "query_chunks", "DecoderSearch", "suggest",
           "normalise_decoder_params", "ridge_params",
           "label_params", "fit_decoder", "rescale_statistics", "DecoderTuneResult",
           "tune_decoder"]

VALIDATIONS = ("category", "trial", "pair", "quad")
_GROUP_SIZE = {"trial": 1, "pair": 2, "quad": 4, "category": 0}
FEATURE_NORMS = ("none", "rescale")
TOP_K = 5
K_MAX = 50
RULES = tuple(r for r in knn.RULES if r != "centroid")  # searched (module doc)
ALPHA_RANGE = (1.0, 1e6)
SCORE_KEYS = ("wup_top1", "wup_best_top5", "top1_acc", "top5_acc")
OBJECTIVES: dict[str, Callable[[dict[str, float]], float]] = {
    "wup_top5": lambda s: 0.5 * (s["wup_top1"] + s["top5_acc"]),
    "wup_top1": lambda s: s["wup_top1"],
    "wup_best_top5": lambda s: 0.5 * (s["wup_top1"] + s["wup_best_top5"]),
}
# Queued first: the paper's settings made inductive (rescale with stored statistics instead
# of the test batch's), the plain centred nearest neighbour, and the semantic rule.
PAPER_LIKE: dict[str, Any] = {"alpha": 1000.0, "voxel_frac": 1.0, "selection": "corr",
                              "standardize": False, "feature_norm": "rescale",
                              "normalize": "none", "metric": "euclidean", "rule": "nearest",
                              "k": 5, "temperature": 1.0, "members": 1}
CENTRED_NN: dict[str, Any] = {**PAPER_LIKE, "alpha": 100.0, "feature_norm": "none",
                              "normalize": "center", "metric": "cosine", "k": 1}
SEMANTIC: dict[str, Any] = {**CENTRED_NN, "alpha": 300.0, "rule": "semantic",
                            "temperature": 0.05}
QUEUED = (PAPER_LIKE, CENTRED_NN, SEMANTIC)
_RIDGE_KEYS = ("alpha", "voxel_frac", "selection", "standardize")
_LABEL_KEYS = ("normalize", "metric", "rule", "k", "temperature", "members")
MEMBERS_MAX = 3


def normalise_decoder_params(params: dict[str, Any]) -> dict[str, Any]:
    """Decoder parameters typed and checked (strings from tags accepted); missing keys take
    :data:`PAPER_LIKE`'s values."""
    unknown = set(params) - set(PAPER_LIKE)
    if unknown:
        raise ValueError(f"Unknown decoder parameters {sorted(unknown)}; valid: "
                         f"{', '.join(PAPER_LIKE)}.")
    p = {**PAPER_LIKE, **params}
    out = {"alpha": float(p["alpha"]), "voxel_frac": round(float(p["voxel_frac"]), 6),
           "selection": str(p["selection"]), "standardize": as_bool(p["standardize"]),
           "feature_norm": str(p["feature_norm"]), "normalize": str(p["normalize"]),
           "metric": str(p["metric"]), "rule": str(p["rule"]), "k": int(float(p["k"])),
           "temperature": float(p["temperature"]), "members": int(float(p["members"]))}
    for key, valid in (("selection", SELECTIONS), ("feature_norm", FEATURE_NORMS),
                       ("normalize", knn.NORMALIZATIONS), ("metric", knn.METRICS),
                       ("rule", knn.RULES)):
        if out[key] not in valid:
            raise ValueError(f"Unknown {key}={out[key]!r}; valid: {', '.join(valid)}.")
    if not (np.isfinite(out["alpha"]) and out["alpha"] > 0):
        raise ValueError(f"alpha must be positive, got {p['alpha']!r}.")
    if not 0 < out["voxel_frac"] <= 1:
        raise ValueError(f"voxel_frac must be in (0, 1], got {p['voxel_frac']!r}.")
    if out["k"] < 1 or out["members"] < 1 or not out["temperature"] > 0:
        raise ValueError(f"k and members must be ≥ 1 and temperature > 0, got k={out['k']}, "
                         f"members={out['members']}, temperature={out['temperature']}.")
    return out


def ridge_params(params: dict[str, Any]) -> dict[str, Any]:
    """The ridge part of decoder params, for :func:`sbd.decoding.tuning.fit_model`."""
    p = normalise_decoder_params(params)
    return {k: p[k] for k in _RIDGE_KEYS}


def label_params(params: dict[str, Any]) -> dict[str, Any]:
    """The label-stage part of decoder params, for :class:`sbd.decoding.knn.KNNLabeller`."""
    p = normalise_decoder_params(params)
    return {k: p[k] for k in _LABEL_KEYS}


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """One configuration of the search space (module doc)."""
    p = {"alpha": trial.suggest_float("alpha", *ALPHA_RANGE, log=True),
         "voxel_frac": trial.suggest_float("voxel_frac", 0.1, 1.0, step=0.1),
         "selection": trial.suggest_categorical("selection", list(SELECTIONS)),
         "standardize": trial.suggest_categorical("standardize", [False, True]),
         "feature_norm": trial.suggest_categorical("feature_norm", list(FEATURE_NORMS)),
         "normalize": trial.suggest_categorical("normalize", list(knn.NORMALIZATIONS)),
         "metric": trial.suggest_categorical("metric", list(knn.METRICS)),
         "rule": trial.suggest_categorical("rule", list(RULES))}
    p["k"] = (trial.suggest_int("k", 1, K_MAX, log=True)
              if p["rule"] in ("vote", "weighted") else 1)
    p["temperature"] = (trial.suggest_float("temperature", 0.01, 10.0, log=True)
                        if p["rule"] in ("weighted", "semantic") else 1.0)
    p["members"] = (trial.suggest_int("members", 1, MEMBERS_MAX)
                    if p["rule"] in ("nearest", "semantic") else 1)
    return p


def _category_means(P: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    sums = np.zeros((n, P.shape[1]))
    np.add.at(sums, codes, P)
    return sums / np.bincount(codes, minlength=n)[:, None]


def query_chunks(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation queries of ``size`` trials each: ``(chunk (n,) query index of every trial,
    category (m,) of every query)``; a category's trials are taken in order, the last
    query of a category takes its remainder; ``size`` 0 = one query per category."""
    chunk, cats, n = np.empty(len(codes), dtype=np.int64), [], 0
    for c in range(int(codes.max()) + 1):
        idx = np.flatnonzero(codes == c)
        parts = 1 if size == 0 else max(1, len(idx) // size)
        for j in range(parts):
            chunk[idx[j * size:] if j == parts - 1 else idx[j * size:(j + 1) * size]] = n
            cats.append(c)
            n += 1
    return chunk, np.asarray(cats, dtype=np.int64)


def rescale_statistics(P: np.ndarray, groups: np.ndarray, validation: str = "pair"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sd (D,) of held-out predictions ``P`` (n, D), averaged into validation
    queries first (:class:`DecoderSearch`), as the validation rescales them."""
    if validation not in VALIDATIONS:
        raise ValueError(f"Unknown validation={validation!r}; valid: {', '.join(VALIDATIONS)}.")
    P = np.asarray(P, np.float64)
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    chunk, cats = query_chunks(codes, _GROUP_SIZE[validation])
    P = _category_means(P, chunk, len(cats))
    return P.mean(axis=0), P.std(axis=0)


class DecoderSearch:
    """Scores decoder configurations on held-out categories (module doc).

    Parameters
    ----------
    X : (n, v) training voxels;  Y : (n, D) their stimulus features;  groups : (n,) wnids
    bank : FeatureBank, InMemoryBank or path (held in memory as float32)
    exclude : (N,) bool, bank rows never returned (e.g. the training stimuli themselves)
    n_splits : category folds
    validation : trials averaged per query: ``"pair"`` (2), ``"quad"`` (4), ``"category"``
        (all of a category) or ``"trial"`` (1)
    wup : (n_categories, C) Wu-Palmer similarity of each training category (sorted wnids)
        to each bank class (sorted); default computed with :mod:`sbd.wordnet`
    class_similarity : (C, C) the same between bank classes (rule ``semantic``); default
        computed on first use
    split_seed : None: GroupKFold's split; an int: another, shuffled category split
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray, bank: Any,
                 exclude: np.ndarray | None = None, n_splits: int = 5,
                 validation: str = "pair", wup: np.ndarray | None = None,
                 class_similarity: np.ndarray | None = None,
                 cache: FoldCache | None = None, split_seed: int | None = None) -> None:
        if validation not in VALIDATIONS:
            raise ValueError(f"Unknown validation={validation!r}; valid: "
                             f"{', '.join(VALIDATIONS)}.")
        self.validation = validation
        self.cache = cache or FoldCache(X, Y, groups, n_splits=n_splits, seed=split_seed)
        self.n_splits = len(self.cache.folds)
        self.categories, self.codes = np.unique(self.cache.groups.astype(str),
                                                return_inverse=True)
        bank = knn.open_bank(bank)
        feats = np.concatenate([np.array(b, dtype=np.float32, copy=True)
                                for _, b in knn.iter_blocks(bank, knn.DEFAULT_BLOCK_SIZE)])
        self.bank_wnids = np.asarray(bank.wnids, dtype=str)
        self.bank_features = feats
        self.classes, self.bank_codes = knn.class_codes(self.bank_wnids)
        if feats.shape[1] != self.cache.Y.shape[1]:
            raise ValueError(f"The bank is {feats.shape[1]}-d but the training features are "
                             f"{self.cache.Y.shape[1]}-d: different backbones.")
        self.exclude = None if exclude is None or not np.any(exclude) else np.asarray(exclude,
                                                                                     bool)
        self.y_mean = self.cache.Y.mean(axis=0)
        self.y_std = self.cache.Y.std(axis=0)
        if wup is None:
            from sbd.wordnet import wup_matrix

            wup = wup_matrix(list(self.categories), list(self.classes))
        self.wup = np.asarray(wup, dtype=np.float64)
        if self.wup.shape != (len(self.categories), len(self.classes)):
            raise ValueError(f"wup has shape {self.wup.shape}; expected "
                             f"({len(self.categories)}, {len(self.classes)}).")
        self.fold_of = np.empty(len(self.codes), dtype=int)
        for f, (_, va) in enumerate(self.cache.folds):
            self.fold_of[va] = f
        self._class_similarity = class_similarity
        self._banks: dict[str, tuple[knn.FeatureNormalizer, knn.InMemoryBank]] = {}
        self._centroids: dict[tuple[str, str], np.ndarray] = {}

    def resplit(self, split_seed: int) -> "DecoderSearch":
        """The same search on another (shuffled) category split; bank, Wu-Palmer tables and
        training data shared."""
        other = object.__new__(DecoderSearch)
        other.__dict__.update(self.__dict__)
        c = self.cache
        other.cache = FoldCache(c.X, c.Y, c.groups, n_splits=self.n_splits, seed=split_seed)
        other.fold_of = np.empty(len(self.codes), dtype=int)
        for f, (_, va) in enumerate(other.cache.folds):
            other.fold_of[va] = f
        other.__dict__.pop("_chunks", None)
        return other

    # -- predictions ------------------------------------------------------------------
    def out_of_fold(self, params: dict[str, Any]) -> np.ndarray:
        """Out-of-fold predictions (n, D) of every training sample (raw ridge output)."""
        p = normalise_decoder_params(params)
        n_keep = n_voxels_kept(p["voxel_frac"], self.cache.n_voxels)
        P = np.empty_like(self.cache.Y)
        for f, (_, va) in enumerate(self.cache.folds):
            fac = self.cache.factors(f, n_keep, p["selection"], p["standardize"])
            P[va] = fac.predict(p["alpha"])
        return P

    def queries(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validation queries of out-of-fold predictions ``P``: ``(Q (m, D), category index
        (m,), fold (m,))`` — means of ``validation``'s trials of one category."""
        if not hasattr(self, "_chunks"):
            chunk, cats = query_chunks(self.codes, _GROUP_SIZE[self.validation])
            fold = np.empty(len(cats), dtype=int)
            fold[chunk] = self.fold_of
            self._chunks = (chunk, cats, fold)
        chunk, cats, fold = self._chunks
        return _category_means(P, chunk, len(cats)), cats, fold

    def rescaled(self, Q: np.ndarray, fold: np.ndarray) -> np.ndarray:
        """``feature_norm="rescale"`` of validation queries: each fold's queries with the
        statistics of the *other* folds' queries (as a model stores them at training)."""
        out = np.empty_like(Q)
        for f in np.unique(fold):
            own, rest = fold == f, fold != f
            mu, sd = Q[rest].mean(axis=0), Q[rest].std(axis=0)
            out[own] = (Q[own] - mu) / np.where(sd > 0, sd, 1.0) * self.y_std + self.y_mean
        return out

    # -- label stage ------------------------------------------------------------------
    @property
    def class_similarity(self) -> np.ndarray:
        """(C, C) Wu-Palmer similarity of the bank classes (computed once)."""
        if self._class_similarity is None:
            from sbd.wordnet import wup_matrix

            self._class_similarity = wup_matrix(list(self.classes), list(self.classes))
        return self._class_similarity

    def _bank(self, mode: str) -> tuple[knn.FeatureNormalizer, knn.InMemoryBank]:
        if mode not in self._banks:
            norm = knn.FeatureNormalizer(mode, self.y_mean, self.y_std)
            self._banks[mode] = (norm, knn.InMemoryBank(norm(self.bank_features),
                                                        self.bank_wnids))
        return self._banks[mode]

    def _centroid_features(self, mode: str, metric: str) -> np.ndarray:
        if (mode, metric) not in self._centroids:
            _, bank = self._bank(mode)
            n = len(self.classes)
            codes = (self.bank_codes if self.exclude is None
                     else np.where(self.exclude, n, self.bank_codes))
            self._centroids[(mode, metric)] = knn.class_centroids(bank, codes, n + 1,
                                                                  metric)[:n]
        return self._centroids[(mode, metric)]

    def rank(self, Q: np.ndarray, params: dict[str, Any], top_k: int = TOP_K) -> np.ndarray:
        """Ranked class indices (m, top_k) into :attr:`classes` of queries ``Q`` (m, D)."""
        p = normalise_decoder_params(params)
        norm, bank = self._bank(p["normalize"])
        q = norm(Q)
        k = max(p["k"], top_k) if p["rule"] in ("vote", "weighted") else top_k
        nb = knn.exact_search(q, bank, k, p["metric"], codes=self.bank_codes,
                              n_classes=len(self.classes), exclude=self.exclude,
                              class_members=p["members"])
        cen = knn.centroid_distances(q, self._centroid_features(p["normalize"], p["metric"]),
                                     p["metric"])
        sim = self.class_similarity if p["rule"] == "semantic" else None
        wnids, _ = knn.rank_labels(nb, self.classes, p["rule"], p["k"], p["temperature"],
                                   top_k, cen, sim)
        return np.searchsorted(self.classes, wnids)

    def score_ranked(self, ranked: np.ndarray, cats: np.ndarray) -> dict[str, float]:
        """``wup_top1``, ``wup_best_top5``, ``top1_acc``, ``top5_acc`` of ranked class indices
        (m, K) of queries whose true category indices are ``cats`` (m,)."""
        return knn.label_scores(self.wup, self.classes, self.categories, ranked, cats)

    def score(self, params: dict[str, Any]) -> dict[str, float]:
        """Validation scores (:data:`SCORE_KEYS`) of one decoder configuration."""
        p = normalise_decoder_params(params)
        Q, cats, fold = self.queries(self.out_of_fold(p))
        if p["feature_norm"] == "rescale":
            Q = self.rescaled(Q, fold)
        return self.score_ranked(self.rank(Q, p), cats)

    def score_paper(self) -> dict[str, float]:
        """The paper's transductive pipeline on the same queries: Ridge(1000), each fold's
        queries z-scored across themselves, Euclidean 5-NN in neighbour order."""
        Q, cats, fold = self.queries(self.out_of_fold(PAPER_LIKE))
        for f in np.unique(fold):
            own = fold == f
            Q[own] = adjust_predictions(Q[own], self.y_mean, self.y_std)
        return self.score_ranked(self.rank(Q, {**PAPER_LIKE, "feature_norm": "none"}), cats)


def fit_decoder(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, params: dict[str, Any],
                bank: Any, n_splits: int = 5, validation: str = "pair",
                top_k: int = TOP_K, backend: str = "torch", faiss_params: dict | None = None,
                class_similarity: np.ndarray | None = None
                ) -> tuple[MultiRidge, knn.KNNLabeller]:
    """The decoder of ``params`` fitted on all training data: ``(ridge, labeller)``.

    With ``feature_norm="rescale"`` the ridge's rescaling statistics come from out-of-fold
    predictions on category folds, averaged into validation queries, as in tuning.  The
    labeller's normalisation uses the training features' mean and sd;
    ``class_similarity`` (C, C) is the bank classes' Wu-Palmer matrix (rule ``semantic``;
    default computed from WordNet).
    """
    p = normalise_decoder_params(params)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    groups = np.asarray(groups)
    rp = {**ridge_params(p), "alpha_mode": "shared"}
    ridge = fit_model(X, Y, groups, rp)
    if p["feature_norm"] == "rescale":
        P = out_of_fold_predictions(X, Y, groups, rp, n_splits=n_splits)
        ridge.set_rescale(*rescale_statistics(P, groups, validation))
    labeller = knn.KNNLabeller(**label_params(p), top_k=top_k, backend=backend,
                               faiss_params=faiss_params)
    labeller.fit(bank, stats=(Y.mean(axis=0), Y.std(axis=0)),
                 class_similarity=class_similarity if p["rule"] == "semantic" else None)
    return ridge, labeller


@dataclass
class DecoderTuneResult:
    """Outcome of :func:`tune_decoder` (scores on the validation queries)."""

    study: optuna.Study
    objective: str
    best_params: dict[str, Any]
    best_scores: dict[str, float]
    paper_scores: dict[str, float]
    trials: list[dict[str, Any]]

    @property
    def best_value(self) -> float:
        return OBJECTIVES[self.objective](self.best_scores)


def _mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in scores])) for k in SCORE_KEYS}


def tune_decoder(search: DecoderSearch, n_trials: int = 60, objective: str = "wup_top5",
                 seed: int = 0, storage: str | None = None, study_name: str | None = None,
                 n_recheck: int = 8, n_resplits: int = 2, log_to_mlflow: bool = True,
                 progress: bool = False) -> DecoderTuneResult:
    """Optuna (TPE, seeded) over :func:`suggest`, with :data:`QUEUED` first (the paper's
    settings made inductive, centred nearest neighbour, the semantic rule); each trial a
    nested MLflow run when a run is active.

    The best of many noisy validation scores is biased upwards (the winner's curse), so the
    ``n_recheck`` best configurations are scored again on ``n_resplits`` other category
    splits, and the one of best mean objective over all splits wins.  ``best_scores`` and
    ``paper_scores`` are means over those splits.  ``storage`` / ``study_name``: an RDB URL
    to share or resume the study (:func:`sbd.decoding.tuning.make_storage`).
    """
    from sbd.decoding.tuning import make_storage

    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective={objective!r}; valid: {', '.join(OBJECTIVES)}.")
    if int(n_trials) < 0:
        raise ValueError(f"n_trials must be ≥ 0, got {n_trials}.")
    storage_obj = make_storage(storage)
    if storage_obj is not None and not study_name:
        raise ValueError("A persistent storage needs a study_name to resume the study by.")
    study = optuna.create_study(storage=storage_obj, study_name=study_name or None,
                                direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=int(seed)))
    study.sampler = optuna.samplers.TPESampler(seed=int(seed) + len(study.trials))
    for queued in QUEUED:
        study.enqueue_trial({k: v for k, v in queued.items()
                             if (k != "k" or queued["rule"] in ("vote", "weighted")) and
                             (k != "temperature" or queued["rule"] in ("weighted", "semantic"))},
                            skip_if_exists=True)
    if log_to_mlflow:
        import mlflow

        log_to_mlflow = mlflow.active_run() is not None
    score_of = OBJECTIVES[objective]
    rows: list[dict[str, Any]] = []

    def run_trial(trial: optuna.Trial) -> float:
        p = suggest(trial)
        scores = search.score(p)
        value = score_of(scores)
        for key, v in scores.items():
            trial.set_user_attr(f"val/{key}", v)
        rows.append({"trial": trial.number, **p, **scores, "objective": value})
        with trial_run(log_to_mlflow, trial.number, "decoder-trial") as run:
            if run is not None:
                import mlflow

                mlflow.log_params(p)
                mlflow.log_metrics({**{f"val/{k}": v for k, v in scores.items()},
                                    "val/objective": value})
                mlflow.set_tags({"optuna.study": study.study_name,
                                 "optuna.trial": str(trial.number),
                                 "optuna.state": "COMPLETE", OBJECTIVE_TAG: objective})
        return value

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(run_trial, n_trials=int(n_trials), show_progress_bar=progress,
                       gc_after_trial=False)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError(f"Study {study.study_name!r} has no completed trial.")
    ranked = sorted(done, key=lambda t: t.value, reverse=True)
    candidates: list[dict[str, Any]] = []
    for t in ranked:
        p = normalise_decoder_params(dict(t.params))
        if p not in candidates:
            candidates.append(p)
        if len(candidates) >= max(1, int(n_recheck)):
            break
    others = [search.resplit(int(seed) * 1000 + r + 1) for r in range(int(n_resplits))]
    best_params, best_scores, best_value = None, None, -np.inf
    for p in candidates:
        scores = _mean_scores([search.score(p)] + [o.score(p) for o in others])
        value = score_of(scores)
        if value > best_value:
            best_params, best_scores, best_value = p, scores, value
    paper = _mean_scores([search.score_paper()] + [o.score_paper() for o in others])
    return DecoderTuneResult(study, objective, best_params, best_scores, paper, rows)
