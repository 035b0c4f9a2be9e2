"""Statistics of 2AFC answers: accuracy with a binomial test and an exact interval, and
inter-rater agreement (pairwise agreement on common trials, Fleiss' kappa).

Agreement is computed on what was *chosen* (target or foil), not on the side pressed:
raters see the target on different sides.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats


@dataclass(frozen=True)
class Binomial:
    """``k`` correct of ``n``: accuracy, one-sided p (H0: accuracy = chance, H1: above),
    two-sided exact (Clopper-Pearson) confidence interval."""

    k: int
    n: int
    acc: float
    p: float
    ci_low: float
    ci_high: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def binomial_summary(k: int, n: int, chance: float = 0.5, confidence: float = 0.95) -> Binomial:
    """Accuracy ``k / n`` with ``P(X >= k)`` under Binomial(n, chance) and its exact interval.

    ``n = 0`` gives NaN everywhere but ``k`` and ``n``.
    """
    k, n = int(k), int(n)
    if not 0 <= k <= n:
        raise ValueError(f"Need 0 <= k <= n, got k={k}, n={n}.")
    if n == 0:
        return Binomial(0, 0, float("nan"), float("nan"), float("nan"), float("nan"))
    p = stats.binomtest(k, n, chance, alternative="greater").pvalue
    ci = stats.binomtest(k, n, chance, alternative="two-sided").proportion_ci(confidence, method="exact")
    return Binomial(k, n, k / n, float(p), float(ci.low), float(ci.high))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of an items × categories table of rating counts.

    Parameters
    ----------
    counts : array (n_items, n_categories)
        ``counts[i, j]`` = raters who put item i in category j.  Items may have different
        numbers of raters (at least 2 each; items with fewer are dropped): each item's
        agreement is ``(sum_j n_ij^2 - n_i) / (n_i (n_i - 1))`` and category proportions are
        pooled over all ratings — Fleiss' formula when every item has the same raters.

    Returns
    -------
    float
        ``(P_bar - P_e) / (1 - P_e)``; NaN with no item or when ``P_e = 1`` (one category only).
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2:
        raise ValueError(f"counts must be 2-D (items × categories), got shape {counts.shape}.")
    n_i = counts.sum(axis=1)
    counts, n_i = counts[n_i >= 2], n_i[n_i >= 2]
    if len(counts) == 0:
        return float("nan")
    p_i = ((counts ** 2).sum(axis=1) - n_i) / (n_i * (n_i - 1))
    p_j = counts.sum(axis=0) / n_i.sum()
    p_e = float((p_j ** 2).sum())
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_i.mean() - p_e) / (1 - p_e))


def pairwise_agreement(chosen: pd.DataFrame) -> tuple[float, int, int]:
    """Agreement of every pair of raters on the trials both answered.

    Parameters
    ----------
    chosen : DataFrame (n_raters, n_trials)
        1 = chose the target, 0 = the foil, NaN = not answered.

    Returns
    -------
    (agreement, n_pairs, n_common)
        Pooled proportion of identical choices over all common (pair, trial) cases, the
        number of rater pairs with a common trial, and the number of those cases.
        Agreement is NaN when no pair shares a trial.
    """
    same = total = pairs = 0
    values = chosen.to_numpy(dtype=float)
    for a, b in itertools.combinations(range(len(values)), 2):
        both = ~np.isnan(values[a]) & ~np.isnan(values[b])
        if both.any():
            pairs += 1
            total += int(both.sum())
            same += int((values[a][both] == values[b][both]).sum())
    return (same / total if total else float("nan")), pairs, total


def summarize(answers: pd.DataFrame, chance: float = 0.5) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-rater and overall figures of a study's answers.

    Parameters
    ----------
    answers : DataFrame
        One row per answer with columns ``rater``, ``trial_id``, ``correct`` (0/1).

    Returns
    -------
    per_rater : DataFrame
        One row per rater: rater, k, n, acc, p, ci_low, ci_high.
    overall : dict
        ``k, n, acc, p, ci_low, ci_high`` of all answers pooled, plus ``n_raters``,
        ``n_trials`` (distinct trials answered), ``agreement``, ``agreement_pairs``,
        ``agreement_n`` (pairwise) and ``fleiss_kappa`` (trials answered by ≥ 2 raters).
    """
    rows = []
    for rater, g in answers.groupby("rater", sort=True):
        rows.append({"rater": rater, **binomial_summary(int(g["correct"].sum()), len(g), chance).as_dict()})
    per_rater = pd.DataFrame(rows, columns=["rater", "k", "n", "acc", "p", "ci_low", "ci_high"])
    overall = binomial_summary(int(answers["correct"].sum()), len(answers), chance).as_dict()
    chosen = answers.pivot_table(index="rater", columns="trial_id", values="correct", aggfunc="first")
    agreement, pairs, n_common = pairwise_agreement(chosen)
    counts = np.stack([(chosen == 1).sum(axis=0).to_numpy(), (chosen == 0).sum(axis=0).to_numpy()], axis=1) \
        if len(chosen) else np.zeros((0, 2))
    overall.update(n_raters=len(per_rater), n_trials=int(answers["trial_id"].nunique()),
                   agreement=agreement, agreement_pairs=pairs, agreement_n=n_common,
                   fleiss_kappa=fleiss_kappa(counts))
    return per_rater, overall
