"""Tuning the kNN label stage alone (the ``train_knn`` component tool) on validation
queries: ridge-predicted features of held-out training categories.  The whole decoder is
tuned by :mod:`sbd.decoding.tuning.decoder`; this searches the label stage's sub-space
(:data:`sbd.decoding.tuning.spaces.KNN`: k, metric, rule, temperature; the semantic rule
needs WordNet tables per query and is left to the decoder tuning) through the same study
code (:mod:`sbd.decoding.tuning.study`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna

from sbd.decoding import knn
from sbd.decoding.tuning import spaces
from sbd.decoding.tuning.study import create_study, enqueue, optimize, record

__all__ = ["K_MAX", "TOP_K", "PAPER_RULE", "OBJECTIVE", "ValidationSearch", "suggest", "tune"]

K_MAX = spaces.KNN["k"].high
TOP_K = 5
PAPER_RULE = spaces.PAPER_LABELS
OBJECTIVE = "wup_top1"


class ValidationSearch:
    """Cached neighbours of the validation queries, per metric; scores any rule cheaply.

    Parameters
    ----------
    queries : (n, D) predicted features; true_wnids : (n,) their categories
    bank : FeatureBank or path; exclude : (N,) bool, bank rows left out
    """

    def __init__(self, queries: np.ndarray, true_wnids: np.ndarray, bank: Any,
                 exclude: np.ndarray | None = None, k_max: int = K_MAX,
                 block_size: int = knn.DEFAULT_BLOCK_SIZE) -> None:
        self.queries = np.asarray(queries, dtype=np.float32)
        self.true = [str(w) for w in true_wnids]
        self.bank = knn.open_bank(bank)
        self.classes, codes = knn.class_codes(self.bank.wnids)
        self.k_max = min(int(k_max), len(self.bank))
        self._cache: dict[str, tuple[knn.Neighbours, np.ndarray]] = {}
        self.exclude = exclude
        self.codes = codes
        self.block_size = block_size
        self._wup: np.ndarray | None = None

    def _search(self, metric: str) -> tuple[knn.Neighbours, np.ndarray]:
        if metric not in self._cache:
            n_classes = len(self.classes)
            nb = knn.exact_search(self.queries, self.bank, self.k_max, metric, self.block_size,
                                  codes=self.codes, n_classes=n_classes, exclude=self.exclude)
            codes = self.codes if self.exclude is None else np.where(self.exclude, n_classes,
                                                                     self.codes)
            cen = knn.class_centroids(self.bank, codes, n_classes + 1, metric,
                                      self.block_size)[:n_classes]
            self._cache[metric] = (nb, knn.centroid_distances(self.queries, cen, metric))
        return self._cache[metric]

    def ranked(self, k: int, metric: str, rule: str, temperature: float = 1.0,
               top_k: int = TOP_K) -> np.ndarray:
        """Ranked wnids (n, top_k) of the validation queries under one configuration."""
        nb, cen = self._search(metric)
        wnids, _ = knn.rank_labels(nb, self.classes, rule, min(int(k), self.k_max),
                                   float(temperature), top_k, cen)
        return wnids

    def score(self, k: int, metric: str, rule: str, temperature: float = 1.0) -> dict[str, float]:
        """``wup_top1``, ``wup_best_top5``, ``top1_acc``, ``top5_acc`` of one configuration
        (Wu-Palmer from one categories × classes table, :func:`sbd.wordnet.wup_matrix`)."""
        if self._wup is None:
            from sbd.wordnet import wup_matrix

            self._cats, self._cat_of = np.unique(np.asarray(self.true), return_inverse=True)
            self._wup = np.asarray(wup_matrix(list(self._cats), list(self.classes)))
        ranked = np.searchsorted(self.classes, self.ranked(k, metric, rule, temperature))
        return knn.label_scores(self._wup, self.classes, self._cats, ranked, self._cat_of)


def suggest(trial: optuna.Trial) -> dict[str, Any]:
    """One configuration of :data:`sbd.decoding.tuning.spaces.KNN`."""
    return spaces.suggest(trial, spaces.KNN, spaces.KNN_WHEN)


def tune(search: ValidationSearch, n_trials: int, seed: int = 0,
         callbacks: Sequence[Callable] = ()
         ) -> tuple[dict[str, Any], dict[str, float], dict[str, float], list[dict]]:
    """Optuna study over :func:`suggest`; the paper's rule is enqueued as trial 0;
    ``callbacks`` are called after each trial.

    Returns ``(best_params, best_scores, paper_scores, trials)``.
    """
    study = create_study(seed=seed)
    enqueue(study, [PAPER_RULE], lambda name, _: name != "temperature")
    rows: list[dict] = []

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial)
        s = search.score(**p)
        rows.append({"trial": trial.number, **p, **s})
        record(trial, p, s)
        return s[OBJECTIVE]

    optimize(study, objective, max(1, int(n_trials)), callbacks)
    best = dict(study.best_trial.params)
    best.setdefault("temperature", 1.0)
    best_scores = {k[len("val/"):]: v for k, v in study.best_trial.user_attrs.items()
                   if k.startswith("val/")}
    return best, best_scores, search.score(**PAPER_RULE), rows
