"""sbd.scores, the one definition of each shared score, against references written out the
long way: every distractor set enumerated (ties as a fair coin), scipy's Pearson r, plain
loops for top-k and Wu-Palmer of ranked answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from sbd import scores


def _brute(sim, n, mask=None, target=None):
    """Mean over every distractor set of the chance to pick the own item: 0 when a
    distractor is more similar, else 1 / (1 + tied distractors in the set)."""
    r, c = sim.shape
    target = range(r) if target is None else target
    out = []
    for i, t in enumerate(target):
        others = [j for j in range(c) if j != t and (mask is None or mask[i, j])]
        wins = []
        for d in itertools.combinations(others, n - 1):
            better = any(sim[i, j] > sim[i, t] for j in d)
            tied = sum(sim[i, j] == sim[i, t] for j in d)
            wins.append(0.0 if better else 1.0 / (1 + tied))
        out.append(np.mean(wins))
    return np.array(out)


@pytest.mark.parametrize("n", [2, 3, 4])
@pytest.mark.parametrize("other_category", [False, True])
def test_identification_enumerates_every_distractor_set_with_ties_as_a_coin(n, other_category):
    rng = np.random.default_rng(n)
    sim = rng.integers(0, 4, size=(8, 8)).astype(float)  # few values: ties happen
    assert (sim == np.diag(sim)[:, None]).sum() > 8
    groups = np.array([0, 0, 1, 1, 2, 3, 4, 5])
    mask = scores.other_category_mask(groups) if other_category else None
    per_row, beats_all, n_eff = scores.identification(sim, n, distractors=mask)
    assert n_eff == n
    np.testing.assert_allclose(per_row, _brute(sim, n, mask), atol=1e-12)
    allowed = np.ones_like(sim, bool) if mask is None else mask.copy()
    np.fill_diagonal(allowed, False)
    np.testing.assert_array_equal(
        beats_all, [(sim[i, i] > sim[i, allowed[i]]).all() for i in range(8)])


def test_identification_targets_cap_and_errors():
    sim = np.array([[0.9, 0.1, 0.2], [0.5, 0.4, 0.3], [0.8, 0.9, 0.1]])
    per_row, _, n_eff = scores.identification(sim, 50, target=[0, 0, 2])
    assert n_eff == 3
    np.testing.assert_allclose(per_row, _brute(sim, 3, target=[0, 0, 2]))
    np.testing.assert_allclose(scores.identification(np.ones((4, 4)), 3)[0], 1 / 3)
    with pytest.raises(ValueError, match="n >= 2"):
        scores.identification(sim, 1)
    with pytest.raises(ValueError, match="distractors has shape"):
        scores.identification(sim, 2, distractors=np.ones((2, 3), bool))


def test_pearson_is_scipys():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(5, 30))
    want = [[stats.pearsonr(x, y)[0] for y in b] for x in a]
    np.testing.assert_allclose(scores.pearson_matrix(a, b), want, atol=1e-12)
    np.testing.assert_allclose(scores.pearson_rows(a, b[:4]),
                               [stats.pearsonr(x, y)[0] for x, y in zip(a, b[:4])], atol=1e-12)
    assert scores.pearson_matrix(np.ones((1, 30)), a)[0].tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="shape"):
        scores.pearson_rows(a, b)


def test_topk_hits_of_arrays_and_ragged_lists_agree():
    rng = np.random.default_rng(1)
    ranked = rng.integers(0, 6, size=(50, 5))
    truth = rng.integers(0, 6, size=50)
    for k in (1, 3, 5, 9):
        want = [t in list(r[:k]) for t, r in zip(truth, ranked)]
        np.testing.assert_array_equal(scores.topk_hits(truth, ranked, k), want)
        np.testing.assert_array_equal(scores.topk_hits(list(truth), [list(r) for r in ranked], k),
                                      want)
    assert scores.topk_hits(["a", "b"], [["b", "a"], ["b"]], 1).tolist() == [False, True]
    with pytest.raises(ValueError, match="k must be"):
        scores.topk_hits(truth, ranked, 0)


def test_ranked_wup_picks_the_first_best():
    top1, best, rank = scores.ranked_wup([[0.2, 0.9, 0.9], [0.5]])
    assert top1.tolist() == [0.2, 0.5] and best.tolist() == [0.9, 0.5]
    assert rank.tolist() == [2, 1]
    top1, best, rank = scores.ranked_wup(np.array([[0.2, 0.1, 0.9]]), k=2)
    assert best.tolist() == [0.2] and rank.tolist() == [1]


def test_shuffled_mean_leaves_out_the_own_and_same_category_truths():
    rng = np.random.default_rng(2)
    w = rng.random((5, 5))
    same = np.zeros((5, 5), bool)
    same[0, 1] = same[1, 0] = True
    got = scores.shuffled_mean(w, same)
    want = [np.mean([w[j, i] for j in range(5) if j != i and not same[j, i]]) for i in range(5)]
    np.testing.assert_allclose(got, want)
    assert scores.shuffled_mean(np.array([[0.7]])).tolist() == [0.7]
