"""Voxel selection from the training samples only (:data:`SELECTIONS`, the scores by
name in :data:`VOXEL_SCORES`)."""

from __future__ import annotations

from typing import Callable

import numpy as np


def _zscore_columns(A: np.ndarray) -> np.ndarray:
    A = A - A.mean(axis=0)
    sd = A.std(axis=0)
    sd[sd == 0] = 1.0
    return A / sd


def _corr_scores(X: np.ndarray, Y: np.ndarray | None, groups: np.ndarray | None) -> np.ndarray:
    """Mean |Pearson r| between each voxel and every target."""
    if Y is None:
        raise ValueError("voxel selection 'corr' needs the targets Y.")
    Xz, Yz = _zscore_columns(X), _zscore_columns(np.asarray(Y, dtype=np.float64))
    return np.abs(Xz.T @ Yz).mean(axis=1) / X.shape[0]


def _anova_f_scores(X: np.ndarray, Y: np.ndarray | None, groups: np.ndarray | None
                    ) -> np.ndarray:
    """One-way ANOVA F of each voxel across the categories ``groups``."""
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


VOXEL_SCORES: dict[str, Callable[[np.ndarray, np.ndarray | None, np.ndarray | None],
                                 np.ndarray]] = {
    "corr": _corr_scores,
    "f": _anova_f_scores,
}
SELECTIONS = tuple(VOXEL_SCORES)


def check_selection(method: str) -> None:
    """ValueError listing :data:`SELECTIONS` when ``method`` is not one of them."""
    if method not in VOXEL_SCORES:
        raise ValueError(f"Unknown selection={method!r}; valid: {', '.join(SELECTIONS)}.")


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
    check_selection(method)
    return VOXEL_SCORES[method](X, Y, groups)


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
    check_selection(method)
    if scores is None:
        scores = voxel_scores(X, Y, method, groups)
    order = np.argsort(-scores, kind="stable")
    return np.sort(order[:keep])
