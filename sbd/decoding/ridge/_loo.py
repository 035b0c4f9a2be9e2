"""Exact grouped leave-one-out errors of ridge, from one decomposition (no refit)."""

from __future__ import annotations

import numpy as np

from sbd.decoding.ridge._solvers import RidgeDecomposition


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
