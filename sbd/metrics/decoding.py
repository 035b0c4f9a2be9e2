"""Semantic and feature-space metrics of a decoder.

Given, for ``n`` samples, the true wnid, the decoder's ranked wnids and (optionally) the
predicted and true CNN features, this module computes:

- Wu-Palmer similarity (WordNet 3.0, :func:`sbd.wordnet.wup`) of the top-1 label and
  the best of the top-k labels;
- its **chance level**: every sample gets a label drawn uniformly from the bank's label set;
  the mean top-1 Wu-Palmer of one such draw, averaged over ``n_draws`` seeded draws (mean and
  sd; the exact expectation is also returned);
- a **permutation p-value** (``wup_p``): the decoded top-1 labels are shuffled across samples
  (the null hypothesis: a decoded label says nothing about *its* sample); ``p = (1 + #{perm
  >= obs}) / (1 + n_perm)``, so it is never 0. ``wup_chance_p`` is the same fraction over the
  chance draws (null: labels drawn at random from the bank). The two differ: a decoder that
  always answers within the test categories' part of WordNet beats random bank labels
  without being sample-specific, which only the permutation p detects;
- exact top-1 / top-5 accuracy;
- n-way identification from the predicted features (Pearson r), averaged exactly over all
  distractor sets;
- the mean Pearson r between predicted and true feature vectors.

Wu-Palmer pairs are cached for the life of the process by :mod:`sbd.wordnet`.
Everything here is pure: arrays and lists in, numbers and a table out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import comb
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import permutation_test

from sbd.scores import (identification, pearson_matrix, pearson_rows, ranked_wup, shuffled_mean,
                        topk_hits as _topk_hits, wup_table)

IDENTIFICATION_NS = (2, 10, 50)


# --------------------------------------------------------------------------- Wu-Palmer
def wup_cached(a: str, b: str) -> float:
    """Wu-Palmer similarity of ``(true, decoded)`` wnids: :func:`sbd.wordnet.wup`.

    That function equals NLTK's ``synset(a).wup_similarity(synset(b))`` and caches every
    pair. NLTK's definition is not quite symmetric (the subsumer is ``a`` itself when it ties
    with another lowest common hypernym), so the order here is always (true, decoded).
    """
    from sbd.wordnet import wup

    return float(wup(a, b))


def wup_matrix(rows: Sequence[str], cols: Sequence[str]) -> np.ndarray:
    """Wu-Palmer similarity of every (row, col) pair of wnids (rows: true labels):
    :func:`sbd.scores.wup_table`.  (len(rows), len(cols)) float64."""
    return wup_table(rows, cols)


def _check_ranked(true_wnids: Sequence[str], ranked: Sequence[Sequence[str]]) -> None:
    if len(true_wnids) != len(ranked):
        raise ValueError(f"{len(true_wnids)} true wnids but {len(ranked)} ranked label lists.")
    for i, r in enumerate(ranked):
        if len(r) == 0:
            raise ValueError(f"Sample {i} ({true_wnids[i]}) has no decoded label.")


def wup_scores(true_wnids: Sequence[str], ranked: Sequence[Sequence[str]],
               k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample Wu-Palmer of the top-1 label and of the best of the top-``k`` labels.

    Parameters
    ----------
    true_wnids : n wnids
    ranked : n lists of decoded wnids, best first
    k : labels considered for the best-of-top-k (default: all given)

    Returns
    -------
    top1 : (n,) float64
    best : (n,) float64, max over the first k labels
    best_rank : (n,) int, 1-based rank of the best label (first on ties)
    """
    _check_ranked(true_wnids, ranked)
    return ranked_wup([[wup_cached(t, w) for w in list(r)[: k or len(r)]]
                       for t, r in zip(true_wnids, ranked)])


@dataclass
class ChanceLevel:
    """Chance level of the mean Wu-Palmer of ``n`` samples with labels drawn at random.

    Attributes
    ----------
    mean, sd : mean and standard deviation over the draws of the per-draw mean
    exact : the exact expectation (mean over samples of the mean over the label set)
    draws : (n_draws,) the per-draw means
    pair_values : (n * n_labels,) Wu-Palmer of every (sample, label) pair, for plots
    """

    mean: float
    sd: float
    exact: float
    draws: np.ndarray = field(repr=False)
    pair_values: np.ndarray = field(repr=False)


def wup_chance(true_wnids: Sequence[str], label_set: Sequence[str], n_draws: int = 1000,
               seed: int = 0, k: int = 1) -> ChanceLevel:
    """Chance level of (best-of-``k``) Wu-Palmer when labels are drawn from ``label_set``.

    Each draw gives every sample ``k`` distinct labels drawn uniformly from the unique
    labels of ``label_set`` and scores the best of them (``k=1``: the top-1 chance level);
    the draw's statistic is the mean over samples.

    Parameters
    ----------
    true_wnids : n wnids
    label_set : the bank's labels (duplicates are ignored)
    n_draws : number of seeded draws (>= 1)
    seed : seed of ``numpy.random.default_rng``
    k : labels per sample per draw (capped at the number of labels)
    """
    labels = sorted(set(label_set))
    if not labels:
        raise ValueError("wup_chance needs a non-empty label_set.")
    if len(true_wnids) == 0:
        raise ValueError("wup_chance needs at least one true wnid.")
    if n_draws < 1:
        raise ValueError(f"n_draws must be >= 1, got {n_draws}.")
    uniq, inverse = np.unique(np.asarray(true_wnids, dtype=str), return_inverse=True)
    w = wup_matrix(list(uniq), labels)[inverse]  # (n, L)
    n, L = w.shape
    k = max(1, min(int(k), L))
    rng = np.random.default_rng(seed)
    if k == 1:
        idx = rng.integers(0, L, size=(n_draws, n))
        draws = w[np.arange(n)[None, :], idx].mean(axis=1)
        exact = float(w.mean())
    else:
        # k distinct labels per sample: the k smallest of uniform noise over the labels.
        draws = np.empty(n_draws)
        for d in range(n_draws):
            noise = rng.random((n, L))
            idx = np.argpartition(noise, k - 1, axis=1)[:, :k] if k < L else np.argsort(noise, axis=1)
            draws[d] = np.take_along_axis(w, idx, axis=1).max(axis=1).mean()
        exact = float(np.mean([_expected_max_of_k(row, k) for row in w]))
    return ChanceLevel(mean=float(draws.mean()), sd=float(draws.std(ddof=1)) if n_draws > 1 else 0.0,
                       exact=exact, draws=draws, pair_values=w.ravel())


def topk_chance(true_wnids: Sequence[str], label_set: Sequence[str], k: int) -> float:
    """Expected top-``k`` accuracy of ``k`` distinct labels drawn uniformly from ``label_set``:
    ``min(k, L) / L`` for a true wnid among the L unique labels, 0 for one outside them."""
    labels = set(label_set)
    if not labels:
        raise ValueError("topk_chance needs a non-empty label_set.")
    if len(true_wnids) == 0:
        raise ValueError("topk_chance needs at least one true wnid.")
    hit = min(int(k), len(labels)) / len(labels)
    return float(np.mean([hit if w in labels else 0.0 for w in true_wnids]))


def _expected_max_of_k(values: np.ndarray, k: int) -> float:
    """E[max of k values drawn without replacement from ``values``] (exact)."""
    v = np.sort(values)  # ascending; v[j] is the max when it and k-1 of the j below are drawn
    L = len(v)
    total = comb(L, k)
    return float(sum(v[j] * comb(j, k - 1) for j in range(k - 1, L)) / total)


def wup_permutation_p(true_wnids: Sequence[str], decoded_wnids: Sequence[str],
                      n_perm: int = 1000, seed: int = 0) -> float:
    """Permutation p-value of the mean top-1 Wu-Palmer.

    The decoded labels are shuffled across samples ``n_perm`` times (seeded;
    :func:`scipy.stats.permutation_test`, one-sided): the p-value is
    ``(1 + #{permuted mean >= observed mean}) / (1 + n_perm)``, never 0, or the exact
    fraction over all ``n!`` orders when there are no more than ``n_perm`` of them.
    With fewer than two samples it is 1.
    """
    if len(true_wnids) != len(decoded_wnids):
        raise ValueError(f"{len(true_wnids)} true wnids but {len(decoded_wnids)} decoded wnids.")
    n = len(true_wnids)
    if n < 2 or n_perm < 1:
        return 1.0
    ut, it = np.unique(np.asarray(true_wnids, dtype=str), return_inverse=True)
    ud, id_ = np.unique(np.asarray(decoded_wnids, dtype=str), return_inverse=True)
    w = wup_matrix(list(ut), list(ud))  # (unique true, unique decoded)
    res = permutation_test((id_,), lambda d, axis=-1: w[it, d].mean(axis=axis),
                           permutation_type="pairings", vectorized=True, n_resamples=n_perm,
                           alternative="greater", rng=np.random.default_rng(seed))
    return float(res.pvalue)


def wup_shuffled(true_wnids: Sequence[str], decoded_wnids: Sequence[str]) -> np.ndarray:
    """Per sample ``i``: the mean Wu-Palmer of its rank-1 answer against the *other*
    samples' true categories, ``mean_{j != i} wup(true_j, decoded_i)`` — what the answer
    scores whichever sample it is given for (the exact expectation of the top-1 Wu-Palmer
    with the answers shuffled across samples).

    Returns
    -------
    (n,) float64; with one sample, its top-1 Wu-Palmer (nothing to shuffle with).
    """
    if len(true_wnids) != len(decoded_wnids):
        raise ValueError(f"{len(true_wnids)} true wnids but {len(decoded_wnids)} decoded wnids.")
    n = len(true_wnids)
    if n == 0:
        raise ValueError("wup_shuffled needs at least one sample.")
    ut, it = np.unique(np.asarray(true_wnids, dtype=str), return_inverse=True)
    ud, id_ = np.unique(np.asarray(decoded_wnids, dtype=str), return_inverse=True)
    return shuffled_mean(wup_matrix(list(ut), list(ud))[it][:, id_])  # (true j, answer i)


def wup_specific(true_wnids: Sequence[str], decoded_wnids: Sequence[str]) -> np.ndarray:
    """Per sample: top-1 Wu-Palmer minus :func:`wup_shuffled` — what the answer says about
    *its* sample.  Its mean is 0 for any constant answer and ``1 - wup_shuffled`` for the
    true labels; central labels that score well everywhere do not raise it.  (n,)"""
    top1 = np.array([wup_cached(t, d) for t, d in zip(true_wnids, decoded_wnids)])
    return top1 - wup_shuffled(true_wnids, decoded_wnids)


def wup_constant(true_wnids: Sequence[str], label_set: Sequence[str]) -> tuple[str, float]:
    """The best constant answer: the one label of ``label_set`` that, given for every
    sample, scores the highest mean top-1 Wu-Palmer; ``(wnid, score)`` (ties: first in
    sorted order).  A figure at or below it is no evidence of decoding."""
    labels = sorted(set(label_set))
    if not labels or len(true_wnids) == 0:
        raise ValueError("wup_constant needs a non-empty label_set and at least one true wnid.")
    ut, counts = np.unique(np.asarray(true_wnids, dtype=str), return_counts=True)
    mean = counts @ wup_matrix(list(ut), labels) / counts.sum()
    best = int(np.argmax(mean))
    return labels[best], float(mean[best])


def label_set_context(true_wnids: Sequence[str], label_set: Sequence[str]) -> dict[str, object]:
    """What answering alone scores on top-1 Wu-Palmer, for true categories ``true_wnids``
    and answers from ``label_set``, with no data at all: ``n``, ``n_in_set`` (categories
    in the label set: exact top-1 can only hit these), ``uniform`` (a label drawn at random
    from the set, exact expectation), ``constant`` / ``constant_wnid`` (the best constant
    answer, :func:`wup_constant`) and ``oracle`` (the best label of the set for each
    category: the ceiling)."""
    labels = sorted(set(label_set))
    ut, counts = np.unique(np.asarray(true_wnids, dtype=str), return_counts=True)
    w = wup_matrix(list(ut), labels)
    wnid, constant = wup_constant(true_wnids, labels)
    return {"n": int(counts.sum()), "n_in_set": int(counts[np.isin(ut, labels)].sum()),
            "n_labels": len(labels), "uniform": float(counts @ w.mean(axis=1) / counts.sum()),
            "constant": constant, "constant_wnid": wnid,
            "oracle": float(counts @ w.max(axis=1) / counts.sum())}


def mean_ci(values: np.ndarray, seed: int = 0, n_resamples: int = 2000,
            level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (n,) over its samples
    (:func:`scipy.stats.bootstrap`; NaNs dropped); NaN with fewer than 2 values or no
    spread."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.ptp(v) == 0:
        return (float(v.mean()),) * 2 if len(v) >= 2 else (float("nan"),) * 2
    res = bootstrap((v,), np.mean, n_resamples=n_resamples, confidence_level=level,
                    method="percentile", rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_gain(ours: Sequence[np.ndarray], theirs: Sequence[np.ndarray], seed: int = 0
                ) -> dict[str, float]:
    """Gain of one method over another on the same test images, several subjects as
    repeated measures: per image, each method's figure is averaged over the subjects
    (``ours[s]``, ``theirs[s]``: (n_images,) in the same image order for every subject),
    then the images are resampled.  Returns ``gain`` (mean over images), ``ci_low`` /
    ``ci_high`` (95 % bootstrap over images, :func:`mean_ci`), ``wilcoxon_p`` (signed-rank
    test of the per-image gains; 1 when all are 0) and ``n_images``, ``n_subjects``."""
    from scipy.stats import wilcoxon

    a = np.mean([np.asarray(x, dtype=np.float64) for x in ours], axis=0)
    b = np.mean([np.asarray(x, dtype=np.float64) for x in theirs], axis=0)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"per-image figures disagree in shape: {a.shape} vs {b.shape}.")
    d = a - b
    lo, hi = mean_ci(d, seed=seed)
    return {"gain": float(d.mean()), "ci_low": lo, "ci_high": hi,
            "wilcoxon_p": float(wilcoxon(d).pvalue) if np.any(d) else 1.0,
            "n_images": float(len(d)), "n_subjects": float(len(ours))}


# --------------------------------------------------------------------------- accuracy
def topk_hits(true_wnids: Sequence[str], ranked: Sequence[Sequence[str]], k: int) -> np.ndarray:
    """(n,) bool: is the true wnid among the first ``k`` decoded labels?

    When the decoder returned fewer than ``k`` labels, all of them are used.
    """
    _check_ranked(true_wnids, ranked)
    return _topk_hits(true_wnids, ranked, k)


def rank1_diversity(decoded: Sequence[str]) -> tuple[float, float]:
    """How varied the rank-1 answers are: ``(distinct labels / n, share of the most frequent
    label)``.  A decoder that answers a few central labels ("dog" for every animal) can win
    on Wu-Palmer while telling samples apart less; these two figures show it."""
    if len(decoded) == 0:
        raise ValueError("rank1_diversity needs at least one label.")
    _, counts = np.unique(np.asarray(decoded, dtype=str), return_counts=True)
    return float(len(counts) / len(decoded)), float(counts.max() / len(decoded))


def topk_accuracy(true_wnids: Sequence[str], ranked: Sequence[Sequence[str]], k: int) -> float:
    """Fraction of samples whose true wnid is among the first ``k`` decoded labels."""
    return float(topk_hits(true_wnids, ranked, k).mean())


# --------------------------------------------------------------------------- features
def _as_2d(name: str, a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n, D), got shape {a.shape}.")
    return a


def feature_correlation(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per-sample Pearson r between predicted and true feature vectors (across the D units).

    Parameters
    ----------
    pred, true : (n, D)

    Returns
    -------
    (n,) float64
    """
    pred, true = _as_2d("pred", pred), _as_2d("true", true)
    if pred.shape != true.shape:
        raise ValueError(f"pred has shape {pred.shape} but true has shape {true.shape}.")
    return pearson_rows(pred, true)


def unit_correlation(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over feature units of the Pearson r across samples (constant units count as 0)."""
    pred, true = _as_2d("pred", pred), _as_2d("true", true)
    if pred.shape != true.shape:
        raise ValueError(f"pred has shape {pred.shape} but true has shape {true.shape}.")
    if pred.shape[0] < 2:
        return float("nan")
    return float(np.mean(pearson_rows(pred.T, true.T)))


def n_way_identification(pred: np.ndarray, true: np.ndarray, n: int,
                         target: Sequence[int] | None = None) -> tuple[float, np.ndarray, int]:
    """n-way identification of predicted features among true features by Pearson r.

    Parameters
    ----------
    pred : (r, D) predicted (or generated-image) features
    true : (c, D) candidate true features
    n : ways (2, 10, 50, …), capped at ``c``
    target : (r,) index into ``true`` of each row's own item (default: row ``i`` ↔ ``true[i]``)

    Returns
    -------
    accuracy : mean over rows
    per_row : (r,)
    n_eff : ``min(n, c)``
    """
    per_row, _, n_eff = identification(pearson_matrix(pred, true), n, target)
    acc = float(np.nanmean(per_row)) if np.isfinite(per_row).any() else float("nan")
    return acc, per_row, n_eff


# --------------------------------------------------------------------------- all at once
@dataclass
class DecodingEvaluation:
    """Everything :func:`evaluate_decoding` computed.

    Attributes
    ----------
    metrics : metric name (with prefix) → value
    samples : one row per sample (see :func:`evaluate_decoding`)
    chance : the top-1 chance level
    constant_wnid : the best constant answer (:func:`wup_constant`)
    """

    metrics: dict[str, float]
    samples: pd.DataFrame
    chance: ChanceLevel
    constant_wnid: str = ""


def _label_metrics(true_wnids: Sequence[str], ranked: list[list[str]],
                   label_set: Sequence[str], n_chance: int, seed: int
                   ) -> tuple[dict[str, float], pd.DataFrame, ChanceLevel, str]:
    """The label half of :func:`evaluate_decoding`: Wu-Palmer, chance, shuffled and
    constant answers, exact top-k; the metrics (unprefixed), the sample table, the chance
    level and the best constant answer."""
    k = max(len(r) for r in ranked)
    top1, best, best_rank = wup_scores(true_wnids, ranked)
    chance = wup_chance(true_wnids, label_set, n_draws=n_chance, seed=seed)
    chance_k = wup_chance(true_wnids, label_set, n_draws=n_chance, seed=seed, k=k)
    decoded1 = [r[0] for r in ranked]
    hits1, hits5 = topk_hits(true_wnids, ranked, 1), topk_hits(true_wnids, ranked, 5)
    shuffled = wup_shuffled(true_wnids, decoded1)
    specific = top1 - shuffled
    constant_wnid, constant = wup_constant(true_wnids, label_set)
    labels = set(label_set)
    in_bank = np.array([t in labels for t in true_wnids], dtype=bool)
    m = {
        "n_samples": float(len(true_wnids)),
        "wup_top1": float(top1.mean()),
        "wup_best_topk": float(best.mean()),
        "wup_chance": chance.mean,
        "wup_chance_sd": chance.sd,
        "wup_chance_exact": chance.exact,
        "wup_best_topk_chance": chance_k.mean,
        "wup_p": wup_permutation_p(true_wnids, decoded1, n_perm=n_chance, seed=seed),
        "wup_chance_p": float((1 + np.sum(chance.draws >= top1.mean() - 1e-12)) / (1 + n_chance)),
        "wup_shuffled": float(shuffled.mean()),
        "wup_specific": float(specific.mean()),
        "wup_constant": constant,
        "top1_acc": float(hits1.mean()),
        "top5_acc": float(hits5.mean()),
        "top1_chance": topk_chance(true_wnids, label_set, 1),
        "top5_chance": topk_chance(true_wnids, label_set, 5),
        "n_inbank": float(in_bank.sum()),
    }
    m["wup_specific_ci_low"], m["wup_specific_ci_high"] = mean_ci(specific, seed=seed)
    if in_bank.any():
        m["top1_acc_inbank"] = float(hits1[in_bank].mean())
        m["top5_acc_inbank"] = float(hits5[in_bank].mean())
        m["top5_chance_inbank"] = topk_chance([t for t, b in zip(true_wnids, in_bank) if b],
                                              label_set, 5)
    m["rank1_distinct"], m["rank1_top_share"] = rank1_diversity(decoded1)
    samples = pd.DataFrame({
        "true_wnid": list(true_wnids), "decoded_wnids": [";".join(r) for r in ranked],
        "top1_wnid": decoded1, "wup_top1": top1, "wup_shuffled": shuffled,
        "wup_specific": specific, "wup_best_topk": best, "best_rank": best_rank,
        "in_bank": in_bank, "top1_correct": hits1, "top5_correct": hits5,
    })
    return m, samples, chance, constant_wnid


def _feature_metrics(pred_features: np.ndarray, true_features: np.ndarray, n: int,
                     ns: Sequence[int], samples: pd.DataFrame) -> dict[str, float]:
    """The feature half of :func:`evaluate_decoding`: Pearson r per sample and per unit,
    n-way identification; adds ``feature_r`` / ``ident{n}`` columns to ``samples``.

    A sample whose stimulus image is missing has NaN true features: it is left out of the
    feature metrics only (counted as ``feature_n``)."""
    pred, true = _as_2d("pred_features", pred_features), _as_2d("true_features", true_features)
    if pred.shape != true.shape or pred.shape[0] != n:
        raise ValueError(f"pred_features {pred.shape} and true_features {true.shape} must both "
                         f"be ({n}, D).")
    ok = np.isfinite(true).all(axis=1)
    m = {"feature_n": float(ok.sum())}
    if ok.sum() < 2:
        return m
    pred, true = pred[ok], true[ok]
    r = np.full(len(ok), np.nan)
    r[ok] = feature_correlation(pred, true)
    samples["feature_r"] = r
    m["feature_r"] = float(np.nanmean(r))
    m["feature_unit_r"] = unit_correlation(pred, true)
    sim = pearson_matrix(pred, true)
    for ways in ns:
        per_row, _, n_eff = identification(sim, ways)
        full = np.full(len(ok), np.nan)
        full[ok] = per_row
        samples[f"ident{ways}"] = full
        m[f"ident{ways}_acc"] = float(np.nanmean(per_row)) if n_eff >= 2 else float("nan")
        m[f"ident{ways}_n"] = float(n_eff)
    return m


def evaluate_decoding(true_wnids: Sequence[str], ranked: Sequence[Sequence[str]],
                      label_set: Sequence[str], pred_features: np.ndarray | None = None,
                      true_features: np.ndarray | None = None, n_chance: int = 1000,
                      seed: int = 0, prefix: str = "test/",
                      ns: Sequence[int] = IDENTIFICATION_NS) -> DecodingEvaluation:
    """All decoding metrics of one split.

    Parameters
    ----------
    true_wnids : n true wnids
    ranked : n lists of decoded wnids, best first (the decoder's K labels)
    label_set : the bank's labels, for the chance level
    pred_features, true_features : (n, D) or None (then no feature metrics); a row of
        ``true_features`` that is NaN (no stimulus image) is left out of the feature metrics
    n_chance : number of chance draws and of permutations
    seed : seed of both
    prefix : prepended to every metric name (``"test/"``, ``"imagery/"``)
    ns : ways of the identification metrics

    Returns
    -------
    DecodingEvaluation with metrics ``wup_top1, wup_best_topk, wup_chance, wup_chance_sd,
    wup_chance_exact, wup_best_topk_chance, wup_p, wup_chance_p, top1_acc, top5_acc, top1_chance,
    top5_chance, rank1_distinct, rank1_top_share (:func:`rank1_diversity`), feature_r,
    feature_unit_r, feature_n, ident{n}_acc, ident{n}_n, n_samples`` (prefixed) and a sample table with
    columns ``true_wnid, decoded_wnids, top1_wnid, wup_top1, wup_best_topk, best_rank,
    top1_correct, top5_correct`` (+ ``feature_r, ident{n}`` with features).
    """
    _check_ranked(true_wnids, ranked)
    if len(true_wnids) == 0:
        raise ValueError("evaluate_decoding needs at least one sample.")
    if (pred_features is None) != (true_features is None):
        raise ValueError("Give both pred_features and true_features, or neither.")
    ranked = [list(r) for r in ranked]
    m, samples, chance, constant_wnid = _label_metrics(true_wnids, ranked, label_set,
                                                       n_chance, seed)
    if pred_features is not None:
        m.update(_feature_metrics(pred_features, true_features, len(true_wnids), ns, samples))
    metrics = {f"{prefix}{key}": value for key, value in m.items()}
    return DecodingEvaluation(metrics=metrics, samples=samples, chance=chance,
                              constant_wnid=constant_wnid)


def evaluate_predictions(true_wnids: Sequence[str], ranked: Sequence[Sequence[str]],
                         label_set: Sequence[str], pred_features: np.ndarray | None = None,
                         true_features: np.ndarray | None = None, n_chance: int = 1000,
                         seed: int = 0, prefix: str = "test/") -> dict[str, float]:
    """The metrics dict of :func:`evaluate_decoding` (metric name → value)."""
    return evaluate_decoding(true_wnids, ranked, label_set, pred_features, true_features,
                             n_chance=n_chance, seed=seed, prefix=prefix).metrics
