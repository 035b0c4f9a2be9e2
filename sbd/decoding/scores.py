"""What an answer scores against the *other* samples' truths: the one definition of the
shuffled score behind ``wup_shuffled`` / ``wup_specific``, for tuning
(:mod:`sbd.decoding.decoder_tuning`, held-out categories) and evaluation
(:mod:`sbd.metrics.decoding`, the test set) alike."""

from __future__ import annotations

import numpy as np

__all__ = ["shuffled_mean"]


def shuffled_mean(w: np.ndarray, same: np.ndarray | None = None) -> np.ndarray:
    """Per answer ``i``: the mean of ``w[j, i]`` over the other samples ``j``.

    Parameters
    ----------
    w : (n, n) score of answer ``i`` (column) against the truth of sample ``j`` (row)
    same : (n, n) bool, optional; pairs left out besides ``j == i`` (e.g. samples of the
        same category, whose truth is the answer's own)

    Returns
    -------
    (n,) float64; a sample with no other sample gets its own score ``w[i, i]``.
    """
    w = np.asarray(w, dtype=np.float64)
    n = w.shape[0]
    if w.shape != (n, n):
        raise ValueError(f"w must be square (truths × answers), got shape {w.shape}.")
    keep = ~np.eye(n, dtype=bool) if same is None else ~(np.asarray(same, bool) | np.eye(n, dtype=bool))
    count = keep.sum(axis=0)
    total = np.where(keep, w, 0.0).sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.diag(w))
