"""The one definition of each score that tuning, evaluation, the field table and the judge
share: Pearson r, n-way identification, top-k hits, Wu-Palmer of ranked answers and the
shuffled score behind ``wup_specific``.

Everything that reports one of these figures calls this module: the ridge tuning's
``val/r`` and ``val/ident_othercat_*`` (:mod:`sbd.decoding.tuning`), the decoder tuning's
validation scores, the evaluation's ``test/*`` (:mod:`sbd.metrics.decoding`), the field
table's 2-way identification and retrieval (:mod:`sbd.metrics.field`) and the automatic
2AFC judge (:mod:`sbd.metrics.images`).  ``tests/test_one_definition.py`` walks every public
function of the library and fails when one computes such a score without coming here.

**Ties** (:data:`TIE_RULE`) count as a fair coin: a distractor exactly as similar as the
own item is beaten with probability ½ in 2-way identification, and in an n-way trial with
``j`` tied distractors (and none better) the own item wins with probability ``1/(1+j)``.
Uninformative rows (a constant prediction, whose Pearson r is 0 with everything) therefore
score chance (½ in 2-way), not 0.  *Top-1* identification ("beats every distractor") needs
strict wins.

The module is bottom-layer (NumPy and :mod:`sbd.wordnet` only) and pure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import gammaln

__all__ = [
    "TIE_RULE", "pearson_matrix", "pearson_rows", "identification", "other_category_mask",
    "topk_hits", "ranked_wup", "wup_table", "shuffled_mean",
]

TIE_RULE = "a tie with a distractor counts as a fair coin (1/(1+j) with j tied distractors)"


# --------------------------------------------------------------------------- Pearson r
def _as_2d(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, D), got shape {a.shape}.")
    return a


def _z(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm; a constant row becomes 0 (so its r is 0)."""
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def pearson_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r between every row of ``a`` (m, D) and every row of ``b`` (n, D):
    (m, n) float64; a constant row gives r = 0."""
    a, b = _as_2d("a", a), _as_2d("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"Feature dimensions differ: a is {a.shape}, b is {b.shape}.")
    return _z(a) @ _z(b).T


def pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of each row of ``a`` with the same row of ``b`` (both (n, D)): (n,)
    float64, the diagonal of :func:`pearson_matrix` without the off-diagonal work."""
    a, b = _as_2d("a", a), _as_2d("b", b)
    if a.shape != b.shape:
        raise ValueError(f"a has shape {a.shape} but b has shape {b.shape}.")
    return np.einsum("ij,ij->i", _z(a), _z(b))


# --------------------------------------------------------------------------- identification
def other_category_mask(groups: Sequence) -> np.ndarray:
    """(m, m) bool: column ``j`` is an allowed distractor of row ``i`` when their groups
    (categories) differ."""
    g = np.asarray(groups)
    return g[:, None] != g[None, :]


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    n, k = np.asarray(n, np.float64), np.asarray(k, np.float64)
    ok = (k >= 0) & (k <= n)
    out = gammaln(n + 1) - gammaln(np.where(ok, k, 0) + 1) - gammaln(np.where(ok, n - k, 0) + 1)
    return np.where(ok, out, -np.inf)


def _tie_credit(beaten: np.ndarray, tied: np.ndarray, m: np.ndarray, k: int) -> np.ndarray:
    """Expected extra credit of tied distractors (:data:`TIE_RULE`) over all C(m, k)
    distractor sets: sum over j >= 1 of C(t, j) C(b, k - j) / C(m, k) / (1 + j)."""
    credit = np.zeros(len(beaten))
    for j in range(1, k + 1):
        log_p = _log_comb(tied, j) + _log_comb(beaten, k - j) - _log_comb(m, k)
        credit += np.exp(log_p) / (1 + j)
    return credit


def identification(sim: np.ndarray, n: int, target: Sequence[int] | None = None,
                   distractors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact n-way identification of every row of a similarity matrix.

    Row ``i`` is identified in an n-way trial when its similarity to its own column
    ``target[i]`` is higher than to each of ``n - 1`` distractor columns (ties:
    :data:`TIE_RULE`).  The figure is the exact mean over *all* ``C(m, n-1)`` distractor
    sets drawn from the row's ``m`` allowed distractors (``C(b, n-1) / C(m, n-1)`` without
    ties, ``b`` the distractors it beats) — no sampling.

    Parameters
    ----------
    sim : (r, c) similarity of row items to column items (higher = more alike)
    n : ways (≥ 2), capped at one plus the fewest allowed distractors of any row
    target : (r,) column of each row's own item (default: column ``i`` for row ``i``)
    distractors : (r, c) bool, allowed distractor columns (default: every other column; a
        row's own column is never one).  Other categories only: :func:`other_category_mask`.

    Returns
    -------
    per_row : (r,) float64 in [0, 1]; NaN for a row with no allowed distractor
    beats_all : (r,) bool, the row strictly beats every allowed distractor (top-1)
    n_eff : the ways used
    """
    sim = _as_2d("sim", sim)
    r, c = sim.shape
    if int(n) < 2:
        raise ValueError(f"n-way identification needs n >= 2, got {n}.")
    target = np.arange(r) if target is None else np.asarray(target, dtype=int)
    if target.shape != (r,) or (r and (target.min() < 0 or target.max() >= c)):
        raise ValueError(f"target must be {r} column indices in [0, {c}).")
    allowed = np.ones((r, c), bool) if distractors is None else np.asarray(distractors, bool)
    if allowed.shape != (r, c):
        raise ValueError(f"distractors has shape {allowed.shape}; expected ({r}, {c}).")
    allowed = allowed.copy()
    allowed[np.arange(r), target] = False
    own = sim[np.arange(r), target][:, None]
    m = allowed.sum(axis=1)
    beaten = ((sim < own) & allowed).sum(axis=1)
    tied = ((sim == own) & allowed).sum(axis=1)
    have = m > 0
    n_eff = int(min(int(n), 1 + (int(m[have].min()) if have.any() else 1)))
    k = n_eff - 1
    t = np.arange(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip(beaten[:, None] - t, 0, None) / (m[:, None] - t)
    per_row = np.prod(ratio, axis=1)
    if tied.any():
        per_row = per_row + _tie_credit(beaten, tied, m, k)
    return np.where(have, per_row, np.nan), have & (beaten == m), n_eff


# --------------------------------------------------------------------------- ranked labels
def topk_hits(truth: Sequence, ranked: Sequence[Sequence], k: int) -> np.ndarray:
    """(n,) bool: is ``truth[i]`` among the first ``k`` answers of ``ranked[i]``?  Any
    labels (wnids, class indices); a sample with fewer than ``k`` answers uses all of them."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if len(truth) != len(ranked):
        raise ValueError(f"{len(truth)} true labels but {len(ranked)} ranked lists.")
    if isinstance(ranked, np.ndarray) and ranked.ndim == 2:
        return (ranked[:, :k] == np.asarray(truth)[:, None]).any(axis=1)
    return np.array([t in list(r)[:k] for t, r in zip(truth, ranked)], dtype=bool)


def ranked_wup(w: np.ndarray | Sequence[Sequence[float]], k: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wu-Palmer of ranked answers: ``w[i]`` holds sample ``i``'s Wu-Palmer to its true
    label of each answer, best-ranked first (an (n, K) array, or n lists of any length).

    Returns ``top1`` (n,), ``best`` (n,: the best of the first ``k``; default all) and
    ``best_rank`` (n,: 1-based rank of that best answer, the first on ties)."""
    if isinstance(w, np.ndarray) and w.ndim == 2 and w.shape[1] > 0:
        a = np.asarray(w, dtype=np.float64)[:, : k or None]
        rank = a.argmax(axis=1)
        return a[:, 0].copy(), a[np.arange(len(a)), rank], rank + 1
    rows = [np.asarray(v, dtype=np.float64)[: k or None] for v in w]
    if any(len(v) == 0 for v in rows):
        raise ValueError("ranked_wup: every sample needs at least one answer.")
    best_rank = np.array([int(np.argmax(v)) for v in rows], dtype=int)
    top1 = np.array([v[0] for v in rows])
    best = np.array([v[b] for v, b in zip(rows, best_rank)])
    return top1, best, best_rank + 1


def wup_table(rows: Sequence[str], cols: Sequence[str]) -> np.ndarray:
    """Wu-Palmer similarity (WordNet 3.0, NLTK's definition, :func:`sbd.wordnet.wup_matrix`)
    of every (row, col) pair of wnids; rows are the true labels (the definition is not quite
    symmetric).  (len(rows), len(cols)) float64."""
    from sbd import wordnet

    return np.asarray(wordnet.wup_matrix(list(rows), list(cols)), dtype=np.float64)


# --------------------------------------------------------------------------- shuffled score
def shuffled_mean(w: np.ndarray, same: np.ndarray | None = None) -> np.ndarray:
    """What an answer scores against the *other* samples' truths: per answer ``i``, the mean
    of ``w[j, i]`` over the other samples ``j`` (``wup_shuffled``; ``wup_specific`` is the
    top-1 score minus it).

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
