"""Label rules: ranked wnids from a search result (:data:`LABEL_RULES`, the package doc
describes each rule).

A rule is a function of one :class:`RuleInput` that returns ``(order (n, top_k) int,
scores (n, top_k))``: the ranked class indices, best first, and their scores (higher =
better); :func:`rank_labels` checks the inputs, calls the rule by name and maps the
indices to wnids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sbd.decoding.knn._common import EPS, check_choice
from sbd.decoding.knn._search import Neighbours


def similarity(distances: np.ndarray, metric: str) -> np.ndarray:
    """Score of a distance, higher = closer: ``1 - d`` (cosine similarity) or ``-d``."""
    return 1.0 - distances if metric == "cosine" else -distances


def _scaled_softmax(distances: np.ndarray, found: np.ndarray, temperature: float
                    ) -> np.ndarray:
    """Row-wise softmax of ``-d / (temperature * mean(d))`` over the ``found`` entries
    (0 elsewhere): scale-free, so one temperature range suits any feature space."""
    d = np.where(found, distances, 0.0).astype(np.float64)
    mean = d.sum(1, keepdims=True) / np.maximum(found.sum(1, keepdims=True), 1)
    logits = np.where(found, -d / (np.maximum(mean, EPS) * float(temperature)), -np.inf)
    logits -= logits.max(1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(1, keepdims=True)


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}.")


@dataclass
class RuleInput:
    """What a label rule reads, for n queries and C classes.

    Attributes
    ----------
    neighbours : Neighbours
    classes : str array (C,)
    class_dist : float array (n, C)
        Distance of each class (its nearest members); inf where unknown.
    centroid_dist : float array (n, C) or None
        Distances to the class centroids, as given.
    fill_dist : float array (n, C)
        ``centroid_dist``, or zeros when not given: the last key that fills ranks.
    k, temperature, top_k, class_similarity
        As :func:`rank_labels` (``top_k`` capped at C).
    """

    neighbours: Neighbours
    classes: np.ndarray
    class_dist: np.ndarray
    centroid_dist: np.ndarray | None
    fill_dist: np.ndarray
    k: int
    temperature: float
    top_k: int
    class_similarity: np.ndarray | None


def _top(primary: np.ndarray, secondary: np.ndarray, tertiary: np.ndarray, top_k: int
         ) -> np.ndarray:
    """Class indices (n, top_k) by ``primary`` (higher first), ties by the distances
    ``secondary`` then ``tertiary`` (lower first)."""
    # lexsort sorts by its last key first, ascending: negate "higher is better".
    return np.lexsort((tertiary, secondary, -primary), axis=-1)[:, :top_k]


def _take(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values[i, order[i]]`` row by row: (n, top_k)."""
    return values[np.arange(order.shape[0])[:, None], order]


def _nearest(x: RuleInput) -> tuple[np.ndarray, np.ndarray]:
    """Classes by their nearest member(s); score = that member's similarity."""
    finite = np.isfinite(x.class_dist)
    order = _top(np.where(finite, -x.class_dist, -np.inf), x.fill_dist, x.fill_dist, x.top_k)
    chosen, fallback = _take(x.class_dist, order), _take(x.fill_dist, order)
    return order, similarity(np.where(np.isfinite(chosen), chosen, fallback),
                             x.neighbours.metric)


def _neighbour_weights(x: RuleInput, weigh: Callable[[np.ndarray, np.ndarray, int],
                                                      np.ndarray]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Classes by the summed ``weigh(distances (n, k), found (n, k), k)`` of the k nearest
    neighbours carrying them; ties by class distance, then centroid distance."""
    nb = x.neighbours
    n, n_classes = x.class_dist.shape
    k = min(int(x.k), nb.indices.shape[1])
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    pos = np.searchsorted(x.classes, nb.wnids[:, :k])
    found = np.isfinite(nb.distances[:, :k])  # fewer rows than k left
    w = weigh(nb.distances[:, :k], found, k)
    primary = np.zeros((n, n_classes))
    np.add.at(primary, (np.repeat(np.arange(n), k), pos.ravel()), w.ravel())
    order = _top(primary, x.class_dist, x.fill_dist, x.top_k)
    return order, _take(primary, order)


def _vote(x: RuleInput) -> tuple[np.ndarray, np.ndarray]:
    """Share of the k neighbours carrying the label."""
    return _neighbour_weights(x, lambda d, found, k: found / k)


def _weighted(x: RuleInput) -> tuple[np.ndarray, np.ndarray]:
    """Softmax weights of the k neighbours' scaled distances, summed per label."""
    def weigh(d: np.ndarray, found: np.ndarray, k: int) -> np.ndarray:
        _check_temperature(x.temperature)
        return _scaled_softmax(d, found, x.temperature)

    return _neighbour_weights(x, weigh)


def _centroid(x: RuleInput) -> tuple[np.ndarray, np.ndarray]:
    """Classes by the distance of their mean feature; score = its similarity."""
    if x.centroid_dist is None:
        raise ValueError("rule='centroid' needs centroid distances (fit the labeller first).")
    order = _top(-x.centroid_dist, x.class_dist, x.class_dist, x.top_k)
    return order, similarity(_take(x.centroid_dist, order), x.neighbours.metric)


def _semantic(x: RuleInput) -> tuple[np.ndarray, np.ndarray]:
    """Rank 1: highest expected Wu-Palmer similarity under the class posterior; ranks 2..:
    the most probable other classes; score = expected similarity."""
    n, n_classes = x.class_dist.shape
    if x.class_similarity is None:
        raise ValueError("rule='semantic' needs the class similarity matrix "
                         "(class_similarity, C × C).")
    if x.class_similarity.shape != (n_classes, n_classes):
        raise ValueError(f"class_similarity has shape {x.class_similarity.shape}; expected "
                         f"({n_classes}, {n_classes}).")
    _check_temperature(x.temperature)
    cls_d = x.class_dist
    post = _scaled_softmax(cls_d, np.isfinite(cls_d), x.temperature)
    expected = post @ np.asarray(x.class_similarity, dtype=np.float64)
    # a class with no bank image left (all excluded) is not an answer
    first = np.lexsort((-post, -np.where(np.isfinite(cls_d), expected, -np.inf)),
                       axis=-1)[:, 0]
    rest = np.lexsort((x.fill_dist, cls_d, -post), axis=-1)
    rest = rest[rest != first[:, None]].reshape(n, n_classes - 1)
    order = np.concatenate([first[:, None], rest], axis=1)[:, :x.top_k]
    return order, _take(expected, order)


LABEL_RULES: dict[str, Callable[[RuleInput], tuple[np.ndarray, np.ndarray]]] = {
    "nearest": _nearest,
    "vote": _vote,
    "weighted": _weighted,
    "centroid": _centroid,
    "semantic": _semantic,
}
RULES = tuple(LABEL_RULES)


def rank_labels(neighbours: Neighbours, classes: np.ndarray, rule: str = "nearest",
                k: int = 5, temperature: float = 1.0, top_k: int = 5,
                centroid_dist: np.ndarray | None = None,
                class_similarity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply a label rule to a search result.

    Parameters
    ----------
    neighbours : Neighbours
        With ``class_distances`` (n, C) indexed like ``classes``; at least ``k`` neighbours.
    classes : str array (C,)
    rule : str, one of :data:`RULES` (the functions of :data:`LABEL_RULES`)
    k : int
        Neighbours that vote (``vote``, ``weighted``).
    temperature : float
        Softmax temperature of ``weighted`` and ``semantic`` (> 0).
    top_k : int
        Ranks returned (capped at C).
    centroid_dist : float array (n, C), optional
        Distances to class centroids; needed by ``centroid``, used to fill ranks otherwise.
    class_similarity : float array (C, C), optional
        ``[c_true, c_decoded]`` similarity (Wu-Palmer) of the classes; needed by ``semantic``.

    Returns
    -------
    wnids : str array (n, top_k)
    scores : float32 array (n, top_k)
    """
    check_choice("rule", rule, RULES)
    n = neighbours.indices.shape[0]
    n_classes = len(classes)
    cls_d = neighbours.class_distances
    if cls_d is None:
        cls_d = np.full((n, n_classes), np.inf, np.float32)
    fill = (centroid_dist if centroid_dist is not None
            else np.zeros((n, n_classes), np.float32))
    order, scores = LABEL_RULES[rule](RuleInput(
        neighbours, classes, cls_d, centroid_dist, fill, k, temperature,
        min(int(top_k), n_classes), class_similarity))
    return classes[order], scores.astype(np.float32)
