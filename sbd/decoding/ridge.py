"""Closed-form multi-target ridge regression: voxels (n × v) → CNN features (n × d).

One decomposition of the (centred, optionally standardised) training matrix serves every
ridge penalty: with ``Xc = U diag(s) Vᵀ`` the coefficients for a penalty ``α`` are

    W(α) = V diag(s / (s² + α)) Uᵀ Yc        (v × d)

so a grid of shared alphas, or one alpha per target, costs one decomposition plus
small products.  Two solvers compute ``(U, s, V)`` in float64 (:data:`RIDGE_SOLVERS`):

- ``"svd"``  — thin SVD of ``Xc`` (used when v ≤ n),
- ``"eigh"`` — eigendecomposition of the n × n Gram matrix ``Xc Xcᵀ`` (used when v > n,
  the fMRI case: far cheaper than an SVD of a wide matrix).

:class:`MultiRidge` is the sklearn-style estimator built on them; it also selects voxels
(:func:`select_voxels`, computed on the data given to ``fit`` only), an inductive feature
rescaling with stored statistics (:meth:`MultiRidge.set_rescale`), and the paper's
transductive test-time adjustment (:func:`adjust_predictions`) as a batch-mode option for
the paper's baseline only (never served: a sample's prediction would depend on its batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg
from sklearn.base import BaseEstimator, RegressorMixin

__all__ = [
    "RIDGE_SOLVERS", "SELECTIONS", "RidgeDecomposition", "MultiRidge", "decompose",
    "resolve_solver",
    "shrinkage", "ridge_weights", "center_scale", "voxel_scores", "select_voxels",
    "n_voxels_kept", "adjust_predictions", "grouped_loo_errors",
]


@dataclass
class RidgeDecomposition:
    """Thin SVD ``Xc = U diag(s) Vᵀ`` of a training matrix, null directions dropped.

    Attributes
    ----------
    U : ndarray (n, k)
    s : ndarray (k,), singular values, all > 0
    V : ndarray (v, k), or None when not asked for (``decompose(..., with_V=False)``)
    """

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray | None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.U, self.s, self.V) if a is not None)


def _keep_positive(s: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Mask of singular values above numerical zero (numpy ``pinv``'s rule)."""
    if s.size == 0:
        return np.zeros(0, dtype=bool)
    tol = max(shape) * np.finfo(np.float64).eps * float(s.max())
    return s > tol


def _decompose_svd(X: np.ndarray, with_V: bool = True) -> RidgeDecomposition:
    U, s, Vt = scipy.linalg.svd(X, full_matrices=False, check_finite=False,
                                lapack_driver="gesdd")
    keep = _keep_positive(s, X.shape)
    return RidgeDecomposition(U[:, keep], s[keep], Vt[keep].T)


def _decompose_eigh(X: np.ndarray, with_V: bool = True) -> RidgeDecomposition:
    gram = X @ X.T
    lam, U = scipy.linalg.eigh(gram, check_finite=False, overwrite_a=True, driver="evd")
    lam = np.clip(lam, 0.0, None)
    s = np.sqrt(lam)
    keep = _keep_positive(s, X.shape)
    U, s = U[:, keep], s[keep]
    return RidgeDecomposition(U, s, (X.T @ U) / s if with_V else None)


RIDGE_SOLVERS: dict[str, Callable[..., RidgeDecomposition]] = {
    "svd": _decompose_svd,
    "eigh": _decompose_eigh,
}


def resolve_solver(solver: str, shape: tuple[int, int]) -> str:
    """``"auto"`` → ``"eigh"`` when v > n, else ``"svd"``; unknown names → ValueError."""
    if solver == "auto":
        return "eigh" if shape[1] > shape[0] else "svd"
    if solver not in RIDGE_SOLVERS:
        raise ValueError(f"Unknown solver={solver!r}; valid: auto, {', '.join(RIDGE_SOLVERS)}.")
    return solver


def decompose(X: np.ndarray, solver: str = "auto", with_V: bool = True) -> RidgeDecomposition:
    """Decompose a centred training matrix ``X`` (n × v) in float64.

    ``solver="auto"`` takes ``"eigh"`` (Gram matrix) when v > n, else ``"svd"``.  With
    ``with_V=False`` the eigh solver skips ``V = Xᵀ U / s`` (products with new samples can
    then go through the kernel: ``Xnew V = (Xnew Xᵀ) U / s``).
    """
    X = np.asarray(X, dtype=np.float64)
    return RIDGE_SOLVERS[resolve_solver(solver, X.shape)](X, with_V=with_V)


def _check_alpha(alpha, n_targets: int | None = None) -> np.ndarray | float:
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 0:
        if not np.isfinite(a) or a <= 0:
            raise ValueError(f"alpha must be a positive finite number, got {alpha!r}.")
        return float(a)
    if a.ndim != 1 or (n_targets is not None and a.shape[0] != n_targets):
        raise ValueError(f"alpha must be a number or one value per target (shape ({n_targets},)), "
                         f"got shape {a.shape}.")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError("alpha values must all be positive and finite.")
    return a


def shrinkage(s: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """``s / (s² + α)``: shape (k,) for a shared alpha, (k, d) for per-target alphas (d,)."""
    a = np.asarray(alpha, dtype=np.float64)
    if a.ndim == 0:
        return s / (s * s + a)
    return s[:, None] / ((s * s)[:, None] + a[None, :])


def ridge_weights(dec: RidgeDecomposition, Z: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Ridge coefficients (v × d) from a decomposition and ``Z = Uᵀ Yc`` (k × d)."""
    f = shrinkage(dec.s, alpha)
    return dec.V @ (f[:, None] * Z if f.ndim == 1 else f * Z)


def center_scale(X: np.ndarray, fit_intercept: bool = True, standardize: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (when fitting an intercept) and scale (when standardising) the columns of ``X``.

    Returns ``(Xc, mean (v,), scale (v,))`` with ``Xc = (X - mean) / scale``; constant columns
    keep scale 1. The scale is the standard deviation in both cases, as sklearn's
    ``StandardScaler(with_mean=fit_intercept)`` computes it.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=0) if fit_intercept else np.zeros(X.shape[1])
    if standardize:
        scale = X.std(axis=0)
        scale = np.where(scale < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(X.mean(axis=0)),
                                                                            1.0), 1.0, scale)
    else:
        scale = np.ones(X.shape[1])
    Xc = X - mean if fit_intercept else X.copy()
    if standardize:
        Xc /= scale
    return Xc, mean, scale


# ---------------------------------------------------------------------------------------
# voxel selection
# ---------------------------------------------------------------------------------------

SELECTIONS = ("corr", "f")


def _zscore_columns(A: np.ndarray) -> np.ndarray:
    A = A - A.mean(axis=0)
    sd = A.std(axis=0)
    sd[sd == 0] = 1.0
    return A / sd


def voxel_scores(X: np.ndarray, Y: np.ndarray | None, method: str = "corr",
                 groups: np.ndarray | None = None) -> np.ndarray:
    """One relevance score per voxel, computed from the given (training) samples only.

    Parameters
    ----------
    X : ndarray (n, v)
    Y : ndarray (n, d) — targets (used by ``"corr"``)
    method : ``"corr"`` — mean |Pearson r| between the voxel and every target;
             ``"f"`` — one-way ANOVA F of the voxel across categories ``groups``.
    groups : array (n,) of category labels (needed by ``"f"``)

    Returns
    -------
    ndarray (v,), higher = more relevant; never NaN.
    """
    X = np.asarray(X, dtype=np.float64)
    if method == "corr":
        if Y is None:
            raise ValueError("voxel selection 'corr' needs the targets Y.")
        Xz, Yz = _zscore_columns(X), _zscore_columns(np.asarray(Y, dtype=np.float64))
        return np.abs(Xz.T @ Yz).mean(axis=1) / X.shape[0]
    if method == "f":
        if groups is None:
            raise ValueError("voxel selection 'f' needs the category of each sample (groups=).")
        _, codes = np.unique(np.asarray(groups), return_inverse=True)
        n_groups, n = codes.max() + 1, X.shape[0]
        if n_groups < 2 or n_groups >= n:
            raise ValueError(f"voxel selection 'f' needs 2 ≤ categories < samples; got "
                             f"{n_groups} categories for {n} samples.")
        counts = np.bincount(codes, minlength=n_groups).astype(np.float64)
        grand = X.mean(axis=0)
        sums = np.zeros((n_groups, X.shape[1]))
        np.add.at(sums, codes, X)
        means = sums / counts[:, None]
        ss_between = (counts[:, None] * (means - grand) ** 2).sum(axis=0)
        ss_within = ((X - means[codes]) ** 2).sum(axis=0)
        between = ss_between / (n_groups - 1)
        within = ss_within / (n - n_groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(within > 0, between / within, 0.0)
        return np.nan_to_num(f, nan=0.0, posinf=0.0)
    raise ValueError(f"Unknown selection={method!r}; valid: {', '.join(SELECTIONS)}.")


def n_voxels_kept(n_voxels: int | float | None, v: int) -> int:
    """Voxels kept of ``v``: None → all; int → that many; float in (0, 1] → that fraction."""
    if n_voxels is None:
        return v
    if isinstance(n_voxels, (bool, np.bool_)):
        raise ValueError(f"n_voxels must be None, a count or a fraction, got {n_voxels!r}.")
    if isinstance(n_voxels, (int, np.integer)):
        if n_voxels < 1:
            raise ValueError(f"n_voxels must be ≥ 1, got {n_voxels}.")
        return min(int(n_voxels), v)
    frac = float(n_voxels)
    if not 0 < frac <= 1:
        raise ValueError(f"A fractional n_voxels must be in (0, 1], got {n_voxels!r}.")
    return max(1, min(v, int(round(frac * v))))


def select_voxels(X: np.ndarray, Y: np.ndarray | None, n_voxels: int | float | None,
                  method: str = "corr", groups: np.ndarray | None = None,
                  scores: np.ndarray | None = None) -> np.ndarray:
    """Sorted indices of the ``n_voxels`` best voxels by :func:`voxel_scores` (all when None).

    ``scores`` may be given precomputed (same data, same method).
    """
    v = X.shape[1]
    keep = n_voxels_kept(n_voxels, v)
    if keep == v:
        return np.arange(v)
    if method not in SELECTIONS:
        raise ValueError(f"Unknown selection={method!r}; valid: {', '.join(SELECTIONS)}.")
    if scores is None:
        scores = voxel_scores(X, Y, method, groups)
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:keep])


# ---------------------------------------------------------------------------------------
# test-time adjustment and grouped leave-one-out
# ---------------------------------------------------------------------------------------

def adjust_predictions(P: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray
                       ) -> np.ndarray:
    """The paper's test-time adjustment.

    Each predicted feature is z-scored across the samples of the batch ``P`` (m × d), then
    rescaled to the training targets' ``target_mean`` / ``target_std`` (d,). Needs m ≥ 2.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.shape[0] < 2:
        raise ValueError("The test-time adjustment z-scores predictions across samples: it needs "
                         f"at least 2 samples in a batch, got {P.shape[0]}.")
    mu = P.mean(axis=0)
    sd = P.std(axis=0)
    sd[sd == 0] = 1.0
    return (P - mu) / sd * target_std + target_mean


def grouped_loo_errors(dec: RidgeDecomposition, Z: np.ndarray, Yc: np.ndarray,
                       groups: np.ndarray, alphas: np.ndarray, fit_intercept: bool = True
                       ) -> np.ndarray:
    """Exact leave-one-group-out mean squared error per alpha and target.

    For a linear smoother ``Ŷ = H Y`` (ridge with an unpenalised intercept:
    ``H = 11ᵀ/n + U diag(s²/(s²+α)) Uᵀ``) the residuals of group G left out are
    ``(I - H_GG)⁻¹ (Y_G - Ŷ_G)``; no refit is needed.

    Parameters
    ----------
    dec : decomposition of the centred training matrix (n × v)
    Z : ndarray (k, d), ``Uᵀ Yc``
    Yc : ndarray (n, d), centred training targets
    groups : array (n,), category of each sample
    alphas : ndarray (a,)

    Returns
    -------
    ndarray (a, d), mean squared left-out error.
    """
    n = Yc.shape[0]
    _, codes = np.unique(np.asarray(groups), return_inverse=True)
    by_size: dict[int, list[np.ndarray]] = {}
    for g in range(codes.max() + 1):
        idx = np.flatnonzero(codes == g)
        by_size.setdefault(idx.size, []).append(idx)
    blocks = {size: np.stack(idxs) for size, idxs in by_size.items()}
    s2 = dec.s * dec.s
    out = np.empty((len(alphas), Yc.shape[1]))
    for a_i, alpha in enumerate(np.asarray(alphas, dtype=np.float64)):
        g = s2 / (s2 + alpha)
        R = Yc - dec.U @ (g[:, None] * Z)
        sse = np.zeros(Yc.shape[1])
        for size, idx in blocks.items():
            Ug = dec.U[idx]                                  # (G, size, k)
            H = np.einsum("gik,k,gjk->gij", Ug, g, Ug)       # (G, size, size)
            if fit_intercept:
                H += 1.0 / n
            A = np.eye(size)[None] - H
            E = np.linalg.solve(A, R[idx])                   # (G, size, d)
            sse += (E * E).sum(axis=(0, 1))
        out[a_i] = sse / n
    return out


# ---------------------------------------------------------------------------------------
# the estimator
# ---------------------------------------------------------------------------------------

def _as_2d_float(A, what: str) -> np.ndarray:
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {A.dtype}.")
    A = A.astype(np.float64, copy=False)
    if A.ndim != 2:
        raise ValueError(f"{what} must be 2-D, got shape {A.shape}.")
    if A.shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {A.shape}).")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{what} contains NaN or infinite values.")
    return A


class MultiRidge(RegressorMixin, BaseEstimator):
    """Multi-target ridge regression, closed form, from one float64 decomposition.

    Parameters
    ----------
    alpha : float or ndarray (d,)
        Penalty, shared or one per target.
    standardize : bool
        Scale each (kept) voxel to unit variance on the training data.
    fit_intercept : bool
        Centre voxels and targets (unpenalised intercept), as sklearn's Ridge.
    n_voxels : None, int or float
        Voxels kept: None → all; int → that many; float in (0, 1] → that fraction.
    selection : {"corr", "f"}
        How kept voxels are chosen from the training data (:func:`voxel_scores`).
    test_time_adjust : bool
        Batch mode, the paper's baseline only: apply :func:`adjust_predictions` to every
        predicted batch (transductive; needs ≥ 2 rows; never registered or served).
    solver : {"auto", "svd", "eigh"}

    Attributes
    ----------
    coef_ : ndarray (v, d), in the units of the input voxels (0 for dropped voxels)
    intercept_ : ndarray (d,)
    support_ : ndarray (k,) of int, the kept voxel indices
    target_mean_, target_std_ : ndarray (d,), of the training targets
    rescale_mean_, rescale_std_ : ndarray (d,) or None — set by :meth:`set_rescale`:
        predictions are then mapped ``(P - rescale_mean_) / rescale_std_ * target_std_ +
        target_mean_`` (the paper's adjustment with statistics fixed at training time)
    n_features_in_ : int, v
    """

    def __init__(self, alpha: float | np.ndarray = 1.0, standardize: bool = False,
                 fit_intercept: bool = True, n_voxels: int | float | None = None,
                 selection: str = "corr", test_time_adjust: bool = False, solver: str = "auto"):
        self.alpha = alpha
        self.standardize = standardize
        self.fit_intercept = fit_intercept
        self.n_voxels = n_voxels
        self.selection = selection
        self.test_time_adjust = test_time_adjust
        self.solver = solver

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None) -> "MultiRidge":
        """Fit on voxels ``X`` (n × v) and targets ``Y`` (n × d or n,); ``groups`` (n,) are
        the sample categories, needed only by ``selection="f"``."""
        X = _as_2d_float(X, "X")
        Y = np.asarray(Y)
        self._single_target = Y.ndim == 1
        Y = _as_2d_float(Y.reshape(-1, 1) if Y.ndim == 1 else Y, "Y")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}.")
        if self.selection not in SELECTIONS:
            raise ValueError(f"Unknown selection={self.selection!r}; "
                             f"valid: {', '.join(SELECTIONS)}.")
        alpha = _check_alpha(self.alpha, Y.shape[1])
        support = select_voxels(X, Y, self.n_voxels, self.selection, groups)
        Xc, x_mean, x_scale = center_scale(X[:, support], self.fit_intercept, self.standardize)
        y_mean = Y.mean(axis=0) if self.fit_intercept else np.zeros(Y.shape[1])
        Yc = Y - y_mean
        dec = decompose(Xc, self.solver)
        W = ridge_weights(dec, dec.U.T @ Yc, alpha) / x_scale[:, None]
        coef = np.zeros((X.shape[1], Y.shape[1]))
        coef[support] = W
        self.coef_ = coef
        self.intercept_ = y_mean - x_mean @ W
        self.support_ = support
        self.target_mean_ = Y.mean(axis=0)
        self.target_std_ = Y.std(axis=0)
        self.rescale_mean_ = self.rescale_std_ = None
        self.n_features_in_ = X.shape[1]
        return self

    def set_rescale(self, pred_mean: np.ndarray | None, pred_std: np.ndarray | None
                    ) -> "MultiRidge":
        """Rescale every prediction with fixed statistics (inductive; one row works).

        ``pred_mean`` / ``pred_std`` (d,): the mean and sd of held-out predictions made at
        training time (e.g. category-averaged out-of-fold predictions); None switches
        the rescaling off.
        """
        self._check_fitted()
        if pred_mean is None or pred_std is None:
            self.rescale_mean_ = self.rescale_std_ = None
            return self
        m = np.asarray(pred_mean, dtype=np.float64).ravel()
        sd = np.asarray(pred_std, dtype=np.float64).ravel()
        d = self.coef_.shape[1]
        if m.shape != (d,) or sd.shape != (d,):
            raise ValueError(f"Rescale statistics must have shape ({d},), got {m.shape} and "
                             f"{sd.shape}.")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(sd))):
            raise ValueError("Rescale statistics contain NaN or infinite values.")
        self.rescale_mean_, self.rescale_std_ = m, np.where(sd > 0, sd, 1.0)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ValueError("This MultiRidge is not fitted yet: call fit(X, Y) first.")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets (m × d) for voxels ``X`` (m × v)."""
        self._check_fitted()
        X = _as_2d_float(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} voxels; this model was fitted on "
                             f"{self.n_features_in_}.")
        if len(self.support_) == self.n_features_in_:  # every voxel kept: no copy of coef_
            P = X @ self.coef_ + self.intercept_
        else:
            P = X[:, self.support_] @ self.coef_[self.support_] + self.intercept_
        if self.test_time_adjust:
            P = adjust_predictions(P, self.target_mean_, self.target_std_)
        elif getattr(self, "rescale_std_", None) is not None:
            P = (P - self.rescale_mean_) / self.rescale_std_ * self.target_std_ + self.target_mean_
        return P[:, 0] if getattr(self, "_single_target", False) else P

    # -- plain-array persistence (never pickles) ---------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (for ``np.savez``)."""
        self._check_fitted()
        return {
            "coef": self.coef_, "intercept": self.intercept_, "support": self.support_,
            "target_mean": self.target_mean_, "target_std": self.target_std_,
            "alpha": np.atleast_1d(np.asarray(self.alpha, dtype=np.float64)),
            "standardize": np.array(bool(self.standardize)),
            "fit_intercept": np.array(bool(self.fit_intercept)),
            "test_time_adjust": np.array(bool(self.test_time_adjust)),
            **({"rescale_mean": self.rescale_mean_, "rescale_std": self.rescale_std_}
               if getattr(self, "rescale_std_", None) is not None else {}),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "MultiRidge":
        """Rebuild a fitted model from :meth:`to_arrays` output; predicts identically."""
        missing = {"coef", "intercept", "support", "target_mean", "target_std",
                   "test_time_adjust"} - set(arrays)
        if missing:
            raise ValueError(f"Ridge weights are missing arrays: {sorted(missing)}.")
        alpha = np.asarray(arrays.get("alpha", [1.0]), dtype=np.float64)
        model = cls(alpha=float(alpha[0]) if alpha.size == 1 else alpha,
                    standardize=bool(arrays.get("standardize", False)),
                    fit_intercept=bool(arrays.get("fit_intercept", True)),
                    test_time_adjust=bool(arrays["test_time_adjust"]))
        model.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        model.support_ = np.asarray(arrays["support"], dtype=np.int64)
        model.target_mean_ = np.asarray(arrays["target_mean"], dtype=np.float64)
        model.target_std_ = np.asarray(arrays["target_std"], dtype=np.float64)
        model.n_features_in_ = model.coef_.shape[0]
        model.rescale_mean_ = model.rescale_std_ = None
        if "rescale_std" in arrays:
            model.set_rescale(arrays["rescale_mean"], arrays["rescale_std"])
        if model.coef_.ndim != 2 or model.intercept_.shape != (model.coef_.shape[1],):
            raise ValueError(f"Inconsistent ridge weights: coef {model.coef_.shape}, "
                             f"intercept {model.intercept_.shape}.")
        return model
