"""Exact k-nearest-neighbour search over a feature bank, and label rules on top of it.

The bank streams from its HDF5 file in blocks (float16 storage, float32 accumulation), so
banks larger than memory work; each block is one matrix product in torch and a running
top-k merge.  Besides the k nearest neighbours, one pass also keeps, per query, the
distance to the nearest member of every class (``class_distances``) — the exact
extension of the paper's "labels of the nearest neighbours, in order" to any number of
ranks — or, with ``members`` m > 1, the mean distance to its m nearest members: a class
is then judged by more than its single closest image, which one noisy prediction can
land next to by chance (on the default phantom m = 2 raised test top-5 accuracy at equal
ridges, and the decoder tuning searches m, :mod:`sbd.decoding.decoder_tuning`).

Label rules (:data:`RULES`), each giving ``top_k`` distinct wnids ranked best first with a
score (higher = better):

``nearest`` (the paper's)
    classes ranked by their nearest member (by the mean of their ``members`` nearest);
    score = similarity of that member (cosine similarity, or ``-distance`` for
    euclidean).
``vote``
    share of the k neighbours carrying the label; ties broken by the nearest member.
``weighted``
    softmax of ``-d / (temperature * mean(d))`` over the k neighbours, summed per label
    (scale-free, so one temperature range suits any feature space).
``centroid``
    classes ranked by the distance of their mean feature (nearest class mean); score as
    for ``nearest``.

``semantic``
    a posterior over classes, softmax of ``-d_c / (temperature * mean(d))`` over each
    class's distance ``d_c`` (nearest member, or the mean of its ``members`` nearest).
    Rank 1 is the label of highest *expected* Wu-Palmer similarity to the truth,
    ``sum_c' p(c') wup(c', c)`` (minimum Bayes risk for the reported top-1 metric: when
    the evidence is split between "dog" and "wolf", "canine" wins); ranks 2.. are the
    most probable other classes, in posterior order (what top-k accuracy rewards).
    Score = the label's expected Wu-Palmer similarity.
    Needs the class similarity matrix (``class_similarity``, C × C).

Ranks that the rule leaves empty (fewer than ``top_k`` labels among the k neighbours) are
filled by nearest member, then by centroid distance, with score 0 for ``vote`` and
``weighted``.

Feature normalisation (:data:`NORMALIZATIONS`), applied to the queries and to every bank
row alike, with statistics of the *training* stimulus features (stored with the model, so
a sample's labels never depend on the other samples of a request):

``none``    raw features (the paper's);
``center``  minus the training-feature mean (so cosine compares directions around the
            typical image, not around the origin, where every ReLU feature vector
            points the same way);
``zscore``  centred and divided by the training-feature sd per dimension (a diagonal
            whitening: every feature counts alike).

An optional FAISS backend (extra ``faiss``) gives exact flat indexes and an approximate
IVF-PQ index; :func:`recall_at_k` measures the latter against exact search.

Layout (private modules, re-exported here): ``_search`` (exact search, class distances,
centroids), ``_half`` (its float16 path), ``_rules`` (:data:`LABEL_RULES`, the rules by
name, and :func:`rank_labels`), ``_normalize`` (:class:`FeatureNormalizer`), ``_faiss``,
``_scores`` (:func:`label_scores`), ``_estimator`` (:class:`KNNLabeller`).  The bank
readers (:class:`~sbd.features.bank.InMemoryBank`, :func:`~sbd.features.bank.open_bank`,
:func:`~sbd.features.bank.iter_blocks`) live in :mod:`sbd.features.bank` and are
re-exported here too.
"""

from sbd.decoding.knn._common import BACKENDS, METRICS, NORMALIZATIONS
from sbd.decoding.knn._estimator import KNNLabeller
from sbd.decoding.knn._faiss import FaissIndex, recall_at_k, retrieved_class_distances
from sbd.decoding.knn._normalize import FeatureNormalizer
from sbd.decoding.knn._rules import LABEL_RULES, RULES, RuleInput, rank_labels, similarity
from sbd.decoding.knn._scores import label_scores
from sbd.decoding.knn._search import (Neighbours, centroid_distances, class_centroids,
                                      class_codes, exact_search)
from sbd.features.bank import (DEFAULT_BLOCK_SIZE, InMemoryBank, NormalizedBank, iter_blocks,
                               open_bank)

__all__ = [
    # names
    "METRICS", "RULES", "NORMALIZATIONS", "BACKENDS", "DEFAULT_BLOCK_SIZE", "LABEL_RULES",
    # banks (from sbd.features.bank)
    "InMemoryBank", "NormalizedBank", "open_bank", "iter_blocks",
    # search
    "Neighbours", "exact_search", "class_codes", "class_centroids", "centroid_distances",
    # label rules and scores
    "RuleInput", "rank_labels", "similarity", "label_scores",
    # normalisation, FAISS, the estimator
    "FeatureNormalizer", "FaissIndex", "recall_at_k", "retrieved_class_distances",
    "KNNLabeller",
]
