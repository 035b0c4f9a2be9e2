"""Optuna tuning of the ridge decoder, cross-validated by category.

Test categories are never seen in training, so validation folds split by category
(:func:`grouped_folds`: GroupKFold on wnid).  Every trial is scored on the same folds with

- ``r``: mean over validation samples of the Pearson r between predicted and true features;
- ``ident_othercat_acc``: n-way identification accuracy (default 2-way): how often a
  sample's predicted features correlate more with its own true features than with those
  of ``n_way - 1`` other validation samples of *other* categories (exact expectation over
  all distractor sets, no sampling; the one definition,
  :func:`sbd.scores.identification`, with other-category distractors —
  hence the name, unlike an evaluation's ``test/ident{n}_acc`` among all test samples);
  ``ident_othercat_top1``: identified among all of them.

Search space (:data:`sbd.decoding.tuning.spaces.RIDGE`, drawn by :func:`suggest_params`)

===================  ================================================================
alpha                log-uniform in [1, 1e6] (:data:`sbd.decoding.tuning.spaces.ALPHA`)
alpha_mode           ``shared`` (one alpha) or ``per_target`` (one alpha per feature,
                     each chosen on the training fold by exact leave-one-category-out
                     error from :data:`PER_TARGET_GRID`, within ±2 decades of ``alpha``)
voxel_frac           fraction of the ROI's voxels kept, 0.05 … 1.0 by 0.05
selection            ``corr`` (mean |r| with the features) or ``f`` (ANOVA F across
                     categories) — computed on the training fold only
standardize          z-score voxels on the training fold
===================  ================================================================

The paper's transductive adjustment (:func:`sbd.decoding.ridge.adjust_predictions`) is
scored on the same folds for reference (``*_paper_adjusted``) but never searched: a
registered model must decode a sample the same whatever else is in the request.

Decompositions are cached per (fold, kept voxels, selection, standardisation) in a
:class:`FoldCache`, so a trial that revisits a configuration only does small products;
the paper's fixed Ridge(alpha=1000) is scored on the same folds (:data:`PAPER_PARAMS`).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from sklearn.model_selection import GroupKFold

from sbd.decoding.ridge import (
    MultiRidge, RidgeDecomposition, SELECTIONS, adjust_predictions, center_scale, decompose,
    grouped_loo_errors, n_voxels_kept, select_voxels, shrinkage, voxel_scores,
)
from sbd.decoding.tuning import spaces
from sbd.decoding.tuning.study import StudyResult, create_study, enqueue, optimize, record
from sbd.params import as_bool
from sbd.scores import identification, other_category_mask, pearson_matrix

__all__ = [
    "OBJECTIVES", "ALPHA_RANGE", "PER_TARGET_GRID", "PAPER_PARAMS", "PAPER_ADJUSTED_PARAMS",
    "grouped_folds", "score_predictions", "identification_accuracy", "FoldCache",
    "normalise_params", "params_from_tags", "suggest_params", "evaluate_params",
    "per_target_window", "per_target_alphas",
    "fit_model", "out_of_fold_predictions", "TuneResult", "tune",
]

logger = logging.getLogger(__name__)

OBJECTIVES = {"ident": "ident_othercat_acc", "r": "r"}
SCORE_KEYS = ("r", "ident_othercat_acc", "ident_othercat_top1")
ALPHA_RANGE = (spaces.ALPHA.low, spaces.ALPHA.high)
PER_TARGET_GRID = np.logspace(-2, 8, 21)
PER_TARGET_WIDTH = 2.0
ALPHA_MODES = ("shared", "per_target")
PAPER_PARAMS: dict[str, Any] = {**spaces.PAPER_RIDGE, "alpha_mode": "shared",
                                "test_time_adjust": False}
PAPER_ADJUSTED_PARAMS: dict[str, Any] = {**PAPER_PARAMS, "test_time_adjust": True}


# ---------------------------------------------------------------------------------------
# folds and scores
# ---------------------------------------------------------------------------------------

def grouped_folds(groups: np.ndarray, n_splits: int = 5, seed: int | None = None
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_idx, val_idx)`` pairs; no category is in both sides of a fold.

    ``seed`` None: sklearn's deterministic GroupKFold; an int: categories shuffled into
    folds with that seed (another split of the same data, for repeated validation)."""
    groups = np.asarray(groups)
    n_groups = np.unique(groups).size
    if n_splits < 2:
        raise ValueError(f"n_splits must be ≥ 2, got {n_splits}.")
    if n_groups < n_splits:
        raise ValueError(f"Cannot make {n_splits} category folds from {n_groups} categories.")
    dummy = np.zeros((groups.shape[0], 1))
    kfold = (GroupKFold(n_splits=n_splits) if seed is None else
             GroupKFold(n_splits=n_splits, shuffle=True, random_state=int(seed)))
    return [(tr, va) for tr, va in kfold.split(dummy, groups=groups)]


def identification_accuracy(C: np.ndarray, groups: np.ndarray | None = None, n_way: int = 2
                            ) -> tuple[float, float]:
    """Identification from a correlation matrix ``C`` (m × m; ``C[i, j]`` = r(pred i, true j)),
    by :func:`sbd.scores.identification`.

    Distractors of sample i: the other samples of *other categories* when ``groups`` is
    given (``val/ident_othercat_*``), else every other sample.  Returns ``(expected n-way
    accuracy, top-1 accuracy among all distractors)``.
    """
    mask = None if groups is None else other_category_mask(groups)
    per_row, beats_all, n_eff = identification(C, n_way, distractors=mask)
    if n_eff < int(n_way):
        raise ValueError(f"{n_way}-way identification needs ≥ {int(n_way) - 1} distractors "
                         f"per sample; some validation samples have only {n_eff - 1}.")
    return float(np.mean(per_row)), float(np.mean(beats_all))


def score_predictions(P: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None,
                      n_way: int = 2) -> dict[str, float]:
    """Scores of predicted features ``P`` against true ``Y`` (both m × d).

    Returns ``{"r", "ident_othercat_acc", "ident_othercat_top1"}`` (see the module
    docstring); ``groups`` None: every sample is its own category.
    """
    C = pearson_matrix(P, Y)
    acc, top1 = identification_accuracy(C, groups, n_way)
    return {"r": float(np.diag(C).mean()), "ident_othercat_acc": acc, "ident_othercat_top1": top1}


# ---------------------------------------------------------------------------------------
# cached fold decompositions
# ---------------------------------------------------------------------------------------

@dataclass
class FoldFactors:
    """One fold's decomposition, arranged to score many alphas cheaply.

    Validation predictions are ``y_mean + (Xval_processed V) diag(shrink) (Uᵀ Yc)``.
    """

    A: np.ndarray            # (n_val, k) processed validation voxels times V
    s: np.ndarray            # (k,)
    Z: np.ndarray            # (k, d) = Uᵀ Yc_train
    U: np.ndarray            # (n_train, k), for the grouped leave-one-out
    y_mean: np.ndarray       # (d,) training target mean
    y_std: np.ndarray        # (d,) training target sd
    fast: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.A, self.s, self.Z, self.U)) + sum(
            a.nbytes for a in self.fast.values())

    def predict(self, alpha: float | np.ndarray) -> np.ndarray:
        """Validation predictions (n_val × d)."""
        f = shrinkage(self.s, alpha)
        if f.ndim == 1:
            return self.y_mean + (self.A * f) @ self.Z
        return self.y_mean + self.A @ (f * self.Z)

    def prepare_fast(self, Yval: np.ndarray) -> None:
        """Precompute what :meth:`fast_scores` needs (once per fold)."""
        if self.fast:
            return
        Zt = self.Z - self.Z.mean(axis=1, keepdims=True)          # row-centred across features
        yt = self.y_mean - self.y_mean.mean()
        Yt = Yval - Yval.mean(axis=1, keepdims=True)
        self.fast = {"M": Zt @ Zt.T, "zy": Zt @ yt, "yy": np.array(yt @ yt),
                     "G": Zt @ Yt.T, "h": Yt @ yt, "ynorm": np.linalg.norm(Yt, axis=1)}

    def fast_scores(self, alpha: float, groups: np.ndarray | None, n_way: int
                    ) -> dict[str, float]:
        """:func:`score_predictions` for a shared alpha without forming the predictions.

        With ``B = A diag(shrink)`` and row-centred ``Z̃``, ``ỹ``: the centred prediction of
        sample i is ``ỹ + B_i Z̃``, so its dot products with the validation targets are
        ``h + B G`` and its squared norm ``ỹ·ỹ + 2 B_i·(Z̃ỹ) + B_i M B_iᵀ``
        (``M = Z̃Z̃ᵀ``).
        """
        F = self.fast
        B = self.A * shrinkage(self.s, alpha)
        dots = B @ F["G"] + F["h"][None, :]
        sq = F["yy"] + 2.0 * (B @ F["zy"]) + np.einsum("ik,ik->i", B @ F["M"], B)
        pnorm = np.sqrt(np.clip(sq, 0.0, None))
        pnorm[pnorm == 0] = 1.0
        ynorm = np.where(F["ynorm"] == 0, 1.0, F["ynorm"])
        C = dots / pnorm[:, None] / ynorm[None, :]
        acc, top1 = identification_accuracy(C, groups, n_way)
        return {"r": float(np.diag(C).mean()), "ident_othercat_acc": acc,
                "ident_othercat_top1": top1}


class FoldCache:
    """Grouped folds of one data set with their decompositions cached across trials.

    Parameters
    ----------
    X : ndarray (n, v) voxels;  Y : ndarray (n, d) features;  groups : array (n,) categories
    n_splits : number of category folds
    seed : None: GroupKFold's deterministic split; an int: a shuffled split (:func:`grouped_folds`)
    solver : ridge solver (:data:`sbd.decoding.ridge.RIDGE_SOLVERS`)
    max_bytes : memory for cached decompositions (least recently used dropped first)
    """

    def __init__(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray, n_splits: int = 5,
                 solver: str = "auto", max_bytes: float = 2e9, seed: int | None = None):
        self.X = np.asarray(X, dtype=np.float64)
        self.Y = np.asarray(Y, dtype=np.float64)
        self.groups = np.asarray(groups)
        if self.X.ndim != 2 or self.Y.ndim != 2:
            raise ValueError(f"X and Y must be 2-D, got {self.X.shape} and {self.Y.shape}.")
        if not (self.X.shape[0] == self.Y.shape[0] == self.groups.shape[0]):
            raise ValueError(f"X, Y and groups disagree on the number of samples: "
                             f"{self.X.shape[0]}, {self.Y.shape[0]}, {self.groups.shape[0]}.")
        if not (np.all(np.isfinite(self.X)) and np.all(np.isfinite(self.Y))):
            raise ValueError("X or Y contains NaN or infinite values.")
        self.folds = grouped_folds(self.groups, n_splits, seed)
        self.n_splits = n_splits
        self.solver = solver
        self.max_bytes = max_bytes
        self._scores: dict[tuple[int, str], np.ndarray] = {}
        self._factors: OrderedDict[tuple, FoldFactors] = OrderedDict()
        self._loo: dict[tuple, dict[int, np.ndarray]] = {}
        self.n_decompositions = 0

    @property
    def n_voxels(self) -> int:
        return self.X.shape[1]

    def _key(self, fold: int, n_keep: int, selection: str, standardize: bool) -> tuple:
        return (fold, n_keep, selection if n_keep < self.n_voxels else "all", bool(standardize))

    def support(self, fold: int, n_keep: int, selection: str) -> np.ndarray:
        """Kept voxel indices of ``fold``, scored on its training samples only."""
        if n_keep >= self.n_voxels:
            return np.arange(self.n_voxels)
        tr, _ = self.folds[fold]
        if (fold, selection) not in self._scores:
            self._scores[(fold, selection)] = voxel_scores(self.X[tr], self.Y[tr], selection,
                                                           self.groups[tr])
        return select_voxels(self.X[tr], self.Y[tr], n_keep, selection, self.groups[tr],
                             scores=self._scores[(fold, selection)])

    def factors(self, fold: int, n_keep: int, selection: str, standardize: bool) -> FoldFactors:
        key = self._key(fold, n_keep, selection, standardize)
        if key in self._factors:
            self._factors.move_to_end(key)
            return self._factors[key]
        tr, va = self.folds[fold]
        sup = self.support(fold, n_keep, selection)
        Xc, mean, scale = center_scale(self.X[np.ix_(tr, sup)], True, standardize)
        Ytr = self.Y[tr]
        y_mean = Ytr.mean(axis=0)
        dec = decompose(Xc, self.solver, with_V=False)
        self.n_decompositions += 1
        Xv = (self.X[np.ix_(va, sup)] - mean) / scale
        A = Xv @ dec.V if dec.V is not None else ((Xv @ Xc.T) @ dec.U) / dec.s
        fac = FoldFactors(A=A, s=dec.s, Z=dec.U.T @ (Ytr - y_mean), U=dec.U,
                          y_mean=y_mean, y_std=Ytr.std(axis=0))
        self._factors[key] = fac
        self._evict()
        return fac

    def _evict(self) -> None:
        total = sum(f.nbytes for f in self._factors.values())
        while len(self._factors) > 1 and total > self.max_bytes:
            _, old = self._factors.popitem(last=False)
            total -= old.nbytes

    def loo_errors(self, fold: int, n_keep: int, selection: str, standardize: bool,
                   indices: np.ndarray) -> np.ndarray:
        """Leave-one-category-out errors (len(indices) × d) on the training fold, for the
        alphas ``PER_TARGET_GRID[indices]`` (each computed once, then cached)."""
        key = self._key(fold, n_keep, selection, standardize)
        done = self._loo.setdefault(key, {})
        missing = [int(i) for i in indices if int(i) not in done]
        if missing:
            fac = self.factors(fold, n_keep, selection, standardize)
            tr, _ = self.folds[fold]
            Yc = self.Y[tr] - fac.y_mean
            dec = RidgeDecomposition(fac.U, fac.s, None)
            errors = grouped_loo_errors(dec, fac.Z, Yc, self.groups[tr],
                                        PER_TARGET_GRID[missing])
            done.update(zip(missing, errors))
        return np.stack([done[int(i)] for i in indices])


# ---------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------

def normalise_params(params: dict[str, Any]) -> dict[str, Any]:
    """Tuning parameters with types fixed and defaults filled (strings from tags accepted).

    Keys: alpha, alpha_mode, voxel_frac, selection, standardize, test_time_adjust.
    """
    unknown = set(params) - set(PAPER_PARAMS)
    if unknown:
        raise ValueError(f"Unknown ridge parameters {sorted(unknown)}; valid: "
                         f"{', '.join(PAPER_PARAMS)}.")
    p = {**PAPER_PARAMS, **params}
    out = {"alpha": float(p["alpha"]), "alpha_mode": str(p["alpha_mode"]),
           "voxel_frac": round(float(p["voxel_frac"]), 6), "selection": str(p["selection"]),
           "standardize": as_bool(p["standardize"]),
           "test_time_adjust": as_bool(p["test_time_adjust"])}
    if not (math.isfinite(out["alpha"]) and out["alpha"] > 0):
        raise ValueError(f"alpha must be positive, got {p['alpha']!r}.")
    if out["alpha_mode"] not in ALPHA_MODES:
        raise ValueError(f"Unknown alpha_mode={out['alpha_mode']!r}; "
                         f"valid: {', '.join(ALPHA_MODES)}.")
    if out["selection"] not in SELECTIONS:
        raise ValueError(f"Unknown selection={out['selection']!r}; valid: {', '.join(SELECTIONS)}.")
    if not 0 < out["voxel_frac"] <= 1:
        raise ValueError(f"voxel_frac must be in (0, 1], got {p['voxel_frac']!r}.")
    return out


def params_from_tags(tags: dict[str, str]) -> dict[str, Any]:
    """The tuning parameters stored as tags of a registered ridge version (other tags
    ignored), typed: ``out_of_fold_predictions(X, Y, groups, params_from_tags(mv.tags))``."""
    return normalise_params({k: tags[k] for k in PAPER_PARAMS if k in tags})


def suggest_params(trial: optuna.Trial) -> dict[str, Any]:
    """Sample one configuration of :data:`sbd.decoding.tuning.spaces.RIDGE`."""
    return spaces.suggest(trial, spaces.RIDGE)


def per_target_window(centre: float, grid: np.ndarray = PER_TARGET_GRID,
                      width: float = PER_TARGET_WIDTH) -> np.ndarray:
    """Indices of the grid alphas within ``width`` decades of ``centre`` (the nearest one
    when none is that close)."""
    lo, hi = centre / 10 ** width, centre * 10 ** width
    idx = np.flatnonzero((grid >= lo * (1 - 1e-9)) & (grid <= hi * (1 + 1e-9)))
    if idx.size == 0:
        idx = np.array([int(np.argmin(np.abs(np.log10(grid) - math.log10(centre))))])
    return idx


def per_target_alphas(errors: np.ndarray, indices: np.ndarray,
                      grid: np.ndarray = PER_TARGET_GRID) -> np.ndarray:
    """Per-target alphas (d,): for each target the alpha of ``grid[indices]`` with the
    least error (``errors``: len(indices) × d)."""
    return grid[np.asarray(indices)][np.argmin(errors, axis=0)]


def evaluate_params(cache: FoldCache, params: dict[str, Any], n_way: int = 2,
                    objective: str = "ident",
                    on_fold: Callable[[int, float], None] | None = None) -> dict[str, float]:
    """Mean validation scores of one configuration over the cache's folds.

    ``on_fold(fold, running_mean_objective)`` is called after each fold (the tuner reports
    to Optuna there, and prunes by raising ``optuna.TrialPruned``).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective={objective!r}; valid: {', '.join(OBJECTIVES)}.")
    p = normalise_params(params)
    n_keep = n_voxels_kept(p["voxel_frac"], cache.n_voxels)
    folds: list[dict[str, float]] = []
    for f, (_, va) in enumerate(cache.folds):
        fac = cache.factors(f, n_keep, p["selection"], p["standardize"])
        Yv, gv = cache.Y[va], cache.groups[va]
        if p["alpha_mode"] == "shared" and not p["test_time_adjust"]:
            fac.prepare_fast(Yv)
            scores = fac.fast_scores(p["alpha"], gv, n_way)
        else:
            if p["alpha_mode"] == "per_target":
                idx = per_target_window(p["alpha"])
                errors = cache.loo_errors(f, n_keep, p["selection"], p["standardize"], idx)
                alpha = per_target_alphas(errors, idx)
            else:
                alpha = p["alpha"]
            P = fac.predict(alpha)
            if p["test_time_adjust"]:
                P = adjust_predictions(P, fac.y_mean, fac.y_std)
            scores = score_predictions(P, Yv, gv, n_way)
        folds.append(scores)
        if on_fold is not None:
            on_fold(f, float(np.mean([s[OBJECTIVES[objective]] for s in folds])))
    return {k: float(np.mean([s[k] for s in folds])) for k in SCORE_KEYS}


def fit_model(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, params: dict[str, Any],
              solver: str = "auto") -> MultiRidge:
    """A :class:`MultiRidge` fitted on (X, Y) with tuning ``params``.

    For ``alpha_mode="per_target"`` the alphas are chosen first, by leave-one-category-out
    error on these same training data (as within each tuning fold).
    """
    p = normalise_params(params)
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    groups = np.asarray(groups)
    alpha: float | np.ndarray = p["alpha"]
    if p["alpha_mode"] == "per_target":
        sup = select_voxels(X, Y, p["voxel_frac"], p["selection"], groups)
        Xc, _, _ = center_scale(X[:, sup], True, p["standardize"])
        Yc = Y - Y.mean(axis=0)
        dec = decompose(Xc, solver, with_V=False)
        Z = dec.U.T @ Yc
        idx = per_target_window(p["alpha"])
        alpha = per_target_alphas(grouped_loo_errors(dec, Z, Yc, groups, PER_TARGET_GRID[idx]),
                                  idx)
    model = MultiRidge(alpha=alpha, standardize=p["standardize"], fit_intercept=True,
                       n_voxels=p["voxel_frac"], selection=p["selection"],
                       test_time_adjust=p["test_time_adjust"], solver=solver)
    return model.fit(X, Y, groups)


def out_of_fold_predictions(X: np.ndarray, Y: np.ndarray, groups: np.ndarray,
                            params: dict[str, Any], n_splits: int = 5) -> np.ndarray:
    """Predicted features (n × d) of every sample by a model fitted without its category.

    Folds are :func:`grouped_folds`; each fold's model is :func:`fit_model` on the other
    folds (voxel selection, standardisation and per-target alphas from those only).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    groups = np.asarray(groups)
    out = np.empty(Y.shape, dtype=np.float64)
    for tr, va in grouped_folds(groups, n_splits):
        out[va] = fit_model(X[tr], Y[tr], groups[tr], params).predict(X[va])
    return out


# ---------------------------------------------------------------------------------------
# the study (:mod:`sbd.decoding.tuning.study`)
# ---------------------------------------------------------------------------------------

def _study_attrs(X: np.ndarray, Y: np.ndarray, objective: str, n_splits: int, n_way: int
                 ) -> dict[str, Any]:
    return {"objective": objective, "n_samples": int(X.shape[0]), "n_voxels": int(X.shape[1]),
            "n_targets": int(Y.shape[1]), "n_splits": int(n_splits), "n_way": int(n_way)}


@dataclass
class TuneResult(StudyResult):
    """Outcome of :func:`tune` (scores are means over the validation folds)."""

    paper_adjusted_scores: dict[str, float]
    n_trials_added: int
    n_decompositions: int

    @property
    def best_value(self) -> float:
        return self.best_scores[OBJECTIVES[self.objective]]


def tune(X: np.ndarray, Y: np.ndarray, groups: np.ndarray, n_trials: int = 30,
         objective: str = "ident", storage: str | None = None, study_name: str | None = None,
         seed: int = 0, n_splits: int = 5, n_way: int = 2, callbacks: Sequence[Callable] = (),
         progress: bool = False, cache: FoldCache | None = None,
         heartbeat_s: float | None = None) -> TuneResult:
    """Optuna search of ridge hyper-parameters on category folds.

    Parameters
    ----------
    X : ndarray (n, v) voxels;  Y : ndarray (n, d) features;  groups : (n,) category (wnid)
    n_trials : trials added by this call (the paper's alpha is queued first on a new study,
        as a reference point for the sampler)
    objective : ``"ident"`` (identification accuracy) or ``"r"`` (mean Pearson r)
    storage, study_name : RDB URL and name to resume / share a study
        (:func:`sbd.decoding.tuning.study.make_storage`; ``heartbeat_s`` its heartbeat)
    callbacks : Optuna callbacks, called after each trial (the steps log trials with
        :class:`sbd.tracking.TrialLogger`); each fold's running objective is reported
        (step = fold), so unpromising trials are pruned
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"Unknown objective={objective!r}; valid: {', '.join(OBJECTIVES)}.")
    cache = cache or FoldCache(X, Y, groups, n_splits=n_splits)
    extra = {} if heartbeat_s is None else {"heartbeat_s": heartbeat_s}
    study = create_study(storage, study_name, seed,
                         _study_attrs(cache.X, cache.Y, objective, n_splits, n_way), **extra)
    enqueue(study, [PAPER_PARAMS], lambda name, _: name != "test_time_adjust")
    key = OBJECTIVES[objective]

    def run_trial(trial: optuna.Trial) -> float:
        params = suggest_params(trial)
        trial.set_user_attr("params", params)

        def on_fold(fold: int, running: float) -> None:
            trial.report(running, fold)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {fold}")

        scores = evaluate_params(cache, params, n_way, objective, on_fold)
        record(trial, params, scores)
        return scores[key]

    added = optimize(study, run_trial, n_trials, callbacks, progress)
    best = study.best_trial
    best_params = normalise_params(best.params)
    best_scores = {k: best.user_attrs.get(f"val/{k}") for k in SCORE_KEYS}
    if any(v is None for v in best_scores.values()):
        best_scores = evaluate_params(cache, best_params, n_way, objective)
    return TuneResult(
        study=study, objective=objective, best_params=best_params, best_scores=best_scores,
        paper_scores=evaluate_params(cache, PAPER_PARAMS, n_way, objective),
        paper_adjusted_scores=evaluate_params(cache, PAPER_ADJUSTED_PARAMS, n_way, objective),
        n_trials_added=added, n_decompositions=cache.n_decompositions)
