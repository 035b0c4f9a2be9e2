""":class:`KNNLabeller`, the sklearn-style estimator over search, label rules and FAISS."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from sbd.decoding.knn._common import BACKENDS, METRICS, NORMALIZATIONS, check_choice
from sbd.decoding.knn._faiss import FaissIndex, retrieved_class_distances
from sbd.decoding.knn._normalize import FeatureNormalizer
from sbd.decoding.knn._rules import RULES, rank_labels
from sbd.decoding.knn._search import (Neighbours, as_queries, centroid_distances,
                                      class_centroids, class_codes, exact_search)
from sbd.features.bank import DEFAULT_BLOCK_SIZE, InMemoryBank, NormalizedBank, open_bank


class KNNLabeller(BaseEstimator):
    """Ranked WordNet labels of feature vectors from their neighbours in a labelled bank.

    Parameters
    ----------
    k : int
        Neighbours that vote (``vote``/``weighted``) — the paper used 5.
    metric : {"euclidean", "cosine"}
    rule : {"nearest", "vote", "weighted", "centroid", "semantic"} (:data:`RULES`)
    temperature : float
        Softmax temperature of ``weighted`` and ``semantic``.
    top_k : int
        Labels returned per query.
    block_size : int
        Bank rows per streamed block.
    backend : {"torch", "faiss-flat", "faiss-ivfpq"}
        ``torch`` = exact streaming search (default); FAISS backends need ``faiss-cpu``.
    faiss_params : dict, optional
        ``nlist``, ``m``, ``nbits``, ``nprobe`` of the IVF-PQ index.
    normalize : {"none", "center", "zscore"}
        Feature normalisation of queries and bank (package doc); the statistics are given
        to :meth:`fit` (``stats``), from the training stimulus features.
    members : int
        A class's distance is the mean distance to its ``members`` nearest bank rows
        (1 = its nearest member, the paper's); used by ``nearest`` and ``semantic`` and to
        fill ranks.  FAISS backends average the members among the retrieved rows, a
        missing one counted at the farthest retrieved distance.
    half : bool, optional
        Search path of the ``torch`` backend over a float16 bank (``half`` of
        :func:`exact_search`): None (default) = float16 products on CPUs that multiply
        float16 natively (AVX-512), else float32 blocks; True / False force one.

    Attributes
    ----------
    bank_ : the fitted bank; ``classes_`` (C,) str; ``codes_`` (N,) int;
    ``centroids_`` (C, D) float32, in the normalised space; ``normalizer_``;
    ``class_similarity_`` (C, C) float32 or None (rule ``semantic``); ``index_`` the FAISS
    index (FAISS backends only).
    """

    def __init__(self, k: int = 5, metric: str = "euclidean", rule: str = "nearest",
                 temperature: float = 1.0, top_k: int = 5, block_size: int = DEFAULT_BLOCK_SIZE,
                 backend: str = "torch", faiss_params: dict | None = None,
                 normalize: str = "none", members: int = 1, half: bool | None = None) -> None:
        self.k = k
        self.metric = metric
        self.rule = rule
        self.temperature = temperature
        self.top_k = top_k
        self.block_size = block_size
        self.backend = backend
        self.faiss_params = faiss_params
        self.normalize = normalize
        self.members = members
        self.half = half

    def _check_params(self) -> None:
        check_choice("metric", self.metric, METRICS)
        check_choice("normalize", self.normalize, NORMALIZATIONS)
        check_choice("rule", self.rule, RULES)
        check_choice("backend", self.backend, BACKENDS)
        if int(self.k) < 1 or int(self.top_k) < 1 or int(self.members) < 1:
            raise ValueError(f"k, top_k and members must be >= 1, got k={self.k}, "
                             f"top_k={self.top_k}, members={self.members}.")
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}.")

    def fit(self, X: Any, y: Any = None, *, centroids: np.ndarray | None = None,
            stats: tuple[np.ndarray, np.ndarray] | FeatureNormalizer | None = None,
            class_similarity: np.ndarray | None = None,
            bank_normalized: bool = False) -> "KNNLabeller":
        """Index a labelled bank: classes, centroids, FAISS index.

        Parameters
        ----------
        X : FeatureBank, InMemoryBank, path to a bank ``.h5``, or array (N, D)
            The bank; an array needs its labels ``y``.
        y : str array (N,), optional
            The wnid of each row of an array ``X`` (a bank carries its own).
        centroids : float array (C, D), optional
            The class means for this metric (saved with a model) instead of one pass
            over the bank.
        stats : ``(mean (D,), sd (D,))`` or FeatureNormalizer, optional
            Of the training stimulus features (or a fitted normaliser); needed unless
            ``normalize="none"``.
        class_similarity : float array (C, C), optional
            Rule ``semantic`` only: Wu-Palmer similarity of the bank's classes (sorted
            wnids); default computed from WordNet.
        bank_normalized : bool
            The bank's features are normalised already (a served model's copy,
            :func:`sbd.registry.knn_model.load_bank`); queries still are.
        """
        self._check_params()
        self.normalizer_ = self._normalizer(stats)
        raw = _as_bank(X, y)
        self.bank_ = (raw if self.normalize == "none" or bank_normalized
                      else NormalizedBank(raw, self.normalizer_))
        if len(self.bank_) == 0:
            raise ValueError("The feature bank is empty.")
        self.classes_, self.codes_ = class_codes(self.bank_.wnids)
        self.centroids_ = self._centroids(centroids)
        self.class_similarity_ = (self._class_similarity(class_similarity)
                                  if self.rule == "semantic" else None)
        if self.backend != "torch":
            kind = self.backend.split("-", 1)[1]
            self.index_ = FaissIndex(kind=kind, metric=self.metric,
                                     **(self.faiss_params or {})).build(self.bank_, self.block_size)
        return self

    def _normalizer(self, stats) -> FeatureNormalizer:
        if isinstance(stats, FeatureNormalizer):
            if stats.mode != self.normalize:
                raise ValueError(f"The normalizer is {stats.mode!r}, not {self.normalize!r}.")
            return stats
        mean, sd = stats if stats is not None else (None, None)
        return FeatureNormalizer(self.normalize, mean, sd)

    def _centroids(self, centroids: np.ndarray | None) -> np.ndarray:
        if centroids is None:
            return class_centroids(self.bank_, self.codes_, len(self.classes_), self.metric,
                                   self.block_size)
        centroids = np.asarray(centroids, dtype=np.float32)
        if centroids.shape != (len(self.classes_), self.bank_.dim):
            raise ValueError(f"centroids have shape {centroids.shape}; expected "
                             f"({len(self.classes_)}, {self.bank_.dim}).")
        return centroids

    def _class_similarity(self, class_similarity: np.ndarray | None) -> np.ndarray:
        if class_similarity is None:
            from sbd.wordnet import wup_matrix  # wordnet: the bottom layer

            class_similarity = wup_matrix(list(self.classes_), list(self.classes_))
        class_similarity = np.asarray(class_similarity, dtype=np.float32)
        c = len(self.classes_)
        if class_similarity.shape != (c, c):
            raise ValueError(f"class_similarity has shape {class_similarity.shape}; "
                             f"expected ({c}, {c}) for the bank's classes.")
        return class_similarity

    @property
    def members_(self) -> int:
        """``members`` (1 for a labeller pickled before it existed)."""
        return int(getattr(self, "members", 1))

    @property
    def n_features_in_(self) -> int:
        return int(self.bank_.dim)

    def search(self, features: Any, k: int | None = None) -> Neighbours:
        """Neighbours (with class distances) of ``features`` (n, D); ``k`` default ``self.k``."""
        k = int(k if k is not None else max(self.k, self.top_k))
        features = self.normalizer_(as_queries(features, self.bank_.dim).numpy())
        if self.backend == "torch":
            nb = exact_search(features, self.bank_, k, self.metric, self.block_size,
                              codes=self.codes_, n_classes=len(self.classes_),
                              class_members=self.members_, half=getattr(self, "half", None))
        else:
            q = as_queries(features, self.bank_.dim).numpy()
            k_search = max(k, 8 * int(self.top_k) * self.members_)
            dist, idx = self.index_.search(q, k_search)
            cls = retrieved_class_distances(dist, idx, self.codes_, len(self.classes_),
                                            self.members_)
            wn = np.asarray(self.bank_.wnids, dtype=str)
            nb = Neighbours(idx[:, :k], dist[:, :k], wn[np.maximum(idx[:, :k], 0)], cls,
                            None, self.metric)
        nb.classes = self.classes_
        return nb

    def kneighbors(self, features: Any, k: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indices (n, k), distances (n, k), wnids (n, k))`` of the nearest bank rows."""
        nb = self.search(features, k if k is not None else self.k)
        return nb.indices, nb.distances, nb.wnids

    def rank(self, neighbours: Neighbours, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (n, top_k), scores (n, top_k))`` from a search result of
        ``features`` (raw, as given to :meth:`search`)."""
        cen = centroid_distances(self.normalizer_(as_queries(features, self.bank_.dim).numpy()),
                                 self.centroids_, self.metric)
        return rank_labels(neighbours, self.classes_, self.rule, int(self.k),
                           float(self.temperature), int(self.top_k), cen,
                           getattr(self, "class_similarity_", None))

    def predict_ranked(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (n, top_k) str, scores (n, top_k) float32)``, rank 1 first."""
        return self.rank(self.search(features), features)

    def predict_labels(self, features: Any) -> list[list[tuple[str, float]]]:
        """Per query, ``top_k`` ``(wnid, score)`` pairs, best first."""
        wnids, scores = self.predict_ranked(features)
        return [[(str(w), float(s)) for w, s in zip(rw, rs)] for rw, rs in zip(wnids, scores)]

    def predict(self, features: Any) -> np.ndarray:
        """Top-1 wnid per query, str array (n,)."""
        return self.predict_ranked(features)[0][:, 0]


def _as_bank(X: Any, y: Any):
    """The bank of ``fit(X, y)``: an :class:`InMemoryBank` of an array ``X`` labelled by
    ``y``, else ``X`` opened as a bank (a path, or a bank object)."""
    if y is not None:
        return InMemoryBank(np.asarray(X), np.asarray(y, dtype=str))
    if isinstance(X, np.ndarray):
        raise ValueError(f"fit(X, y): an array X {X.shape} needs its labels y (one wnid a "
                         "row); or pass a FeatureBank, an InMemoryBank or a bank path.")
    return open_bank(X)
