"""The paper's transductive test-time adjustment (the paper's baseline only: a sample's
prediction would depend on its batch, so it is never served)."""

from __future__ import annotations

import numpy as np


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
