"""Reference decoders scored beside sbd's own in every evaluation.

:class:`PaperPipeline` is the fixed pipeline of Ferrante, Boccato & Toschi (2022), as their
code runs it: ``Ridge(alpha=1000)`` on the run-z-scored training trials; the predictions
of the *whole test batch* z-scored per feature across the test samples and rescaled to the
training features' mean and sd (transductive: a sample's answer depends on its batch, so it
is never served); the 5 nearest bank images by Euclidean distance; labels in neighbour
order (rule ``nearest``: distinct classes ranked by their nearest member).

:class:`RidgeCVNearest` is the obvious inductive alternative: sklearn's ``RidgeCV``
(efficient leave-one-out over a log grid of alphas) and the nearest bank image by cosine
similarity around the training-feature mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sbd.decoding.knn import KNNLabeller
from sbd.decoding.ridge import MultiRidge
from sbd.decoding.tuning.spaces import PAPER

__all__ = ["PaperPipeline", "RidgeCVNearest", "BASELINES"]


class PaperPipeline:
    """The paper's fixed decoder (module doc).

    Parameters
    ----------
    alpha : ridge penalty (the paper's, :data:`sbd.decoding.tuning.spaces.PAPER`: 1000)
    k : neighbours (the paper's: 5)
    top_k : labels returned per sample
    """

    name = "paper"

    def __init__(self, alpha: float = PAPER["alpha"], k: int = PAPER["k"],
                 top_k: int = 5) -> None:
        self.alpha, self.k, self.top_k = alpha, k, top_k

    def fit(self, X: np.ndarray, Y: np.ndarray, bank: Any) -> "PaperPipeline":
        """Fit on training voxels ``X`` (n, v) and their stimulus features ``Y`` (n, D);
        ``bank``: FeatureBank, InMemoryBank or path."""
        self.ridge_ = MultiRidge(alpha=self.alpha, test_time_adjust=True).fit(X, Y)
        self.labeller_ = KNNLabeller(k=self.k, metric=PAPER["metric"], rule=PAPER["rule"],
                                     top_k=self.top_k).fit(bank)
        return self

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        """Adjusted predicted features (m, D) of a batch of m ≥ 2 samples."""
        return self.ridge_.predict(X).astype(np.float32)

    def predict_ranked(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (m, top_k), scores (m, top_k))`` of a batch of m ≥ 2 samples."""
        return self.labeller_.predict_ranked(self.predict_features(X))


class RidgeCVNearest:
    """sklearn ``RidgeCV`` + the nearest bank image, cosine around the training mean.

    Parameters
    ----------
    alphas : the RidgeCV grid (default ``logspace(0, 6, 13)``)
    top_k : labels returned per sample
    """

    name = "ridgecv_nn"

    def __init__(self, alphas: np.ndarray | None = None, top_k: int = 5) -> None:
        self.alphas = np.logspace(0, 6, 13) if alphas is None else np.asarray(alphas)
        self.top_k = top_k

    def fit(self, X: np.ndarray, Y: np.ndarray, bank: Any) -> "RidgeCVNearest":
        from sklearn.linear_model import RidgeCV

        Y = np.asarray(Y, dtype=np.float64)
        self.ridge_ = RidgeCV(alphas=self.alphas).fit(np.asarray(X, np.float64), Y)
        self.labeller_ = KNNLabeller(k=1, metric="cosine", rule="nearest", top_k=self.top_k,
                                     normalize="center").fit(bank, stats=(Y.mean(0), Y.std(0)))
        return self

    def predict_features(self, X: np.ndarray) -> np.ndarray:
        return self.ridge_.predict(np.asarray(X, np.float64)).astype(np.float32)

    def predict_ranked(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.labeller_.predict_ranked(self.predict_features(X))


BASELINES = {"paper": PaperPipeline, "ridgecv_nn": RidgeCVNearest}
