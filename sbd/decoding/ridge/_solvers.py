"""Decompositions of the centred training matrix (:data:`RIDGE_SOLVERS`) and the ridge
coefficients they give for any penalty (package doc)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.linalg


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


def check_alpha(alpha, n_targets: int | None = None) -> np.ndarray | float:
    """A positive finite penalty, or one per target (shape (n_targets,)); ValueError else."""
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
