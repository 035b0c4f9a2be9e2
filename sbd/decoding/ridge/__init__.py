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

Layout (private modules, re-exported here): ``_solvers`` (:data:`RIDGE_SOLVERS`,
:func:`decompose`, :func:`ridge_weights`, :func:`center_scale`), ``_selection``
(:data:`VOXEL_SCORES` by name, :func:`select_voxels`), ``_adjust``
(:func:`adjust_predictions`), ``_loo`` (:func:`grouped_loo_errors`), ``_estimator``
(:class:`MultiRidge`).
"""

from sbd.decoding.ridge._adjust import adjust_predictions
from sbd.decoding.ridge._estimator import MultiRidge
from sbd.decoding.ridge._loo import grouped_loo_errors
from sbd.decoding.ridge._selection import (SELECTIONS, VOXEL_SCORES, n_voxels_kept,
                                           select_voxels, voxel_scores)
from sbd.decoding.ridge._solvers import (RIDGE_SOLVERS, RidgeDecomposition, center_scale,
                                         decompose, resolve_solver, ridge_weights, shrinkage)

__all__ = [
    "RIDGE_SOLVERS", "SELECTIONS", "VOXEL_SCORES", "RidgeDecomposition", "MultiRidge",
    "decompose", "resolve_solver", "shrinkage", "ridge_weights", "center_scale",
    "voxel_scores", "select_voxels", "n_voxels_kept", "adjust_predictions",
    "grouped_loo_errors",
]
