"""Decoding and image metrics against hand-computed values and reference implementations.

Wu-Palmer is checked against NLTK's own ``Synset.wup_similarity``; identification against
brute-force enumeration of distractor sets; correlations against numpy/scipy; the chance
level against its exact expectation on a tiny label set.
"""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import pytest
from scipy import stats

from sbd import scores
from sbd.metrics import decoding, images

NAMES = ["dog.n.01", "cat.n.01", "ostrich.n.02", "car.n.01", "banana.n.02", "milk.n.01",
         "whole_milk.n.01", "dairy_product.n.01", "apple.n.01", "truck.n.01"]


@pytest.fixture(scope="module")
def wn():
    from sbd.wordnet import get_wordnet

    return get_wordnet()


@pytest.fixture(scope="module")
def ids(wn):
    """name → wnid, e.g. ids["dog.n.01"] == "n02084071"."""
    return {n: "n%08d" % wn.synset(n).offset() for n in NAMES}


def nltk_wup(wn, a: str, b: str) -> float:
    sa = wn.synset_from_pos_and_offset("n", int(a[1:]))
    sb = wn.synset_from_pos_and_offset("n", int(b[1:]))
    return sa.wup_similarity(sb)


# --------------------------------------------------------------------------- Wu-Palmer
def test_wup_scores_match_nltk(wn, ids):
    true = [ids["dog.n.01"], ids["milk.n.01"], ids["car.n.01"]]
    ranked = [[ids["cat.n.01"], ids["dog.n.01"], ids["banana.n.02"]],
              [ids["whole_milk.n.01"], ids["dairy_product.n.01"]],
              [ids["banana.n.02"], ids["truck.n.01"], ids["ostrich.n.02"]]]
    top1, best, best_rank = decoding.wup_scores(true, ranked)
    for i, (t, r) in enumerate(zip(true, ranked)):
        ref = [nltk_wup(wn, t, w) for w in r]
        assert top1[i] == pytest.approx(ref[0], abs=1e-12)
        assert best[i] == pytest.approx(max(ref), abs=1e-12)
        assert best_rank[i] == int(np.argmax(ref)) + 1
    assert best_rank[0] == 2  # the true label at rank 2 (NLTK: wup(dog, dog) = 13/14, not 1)
    # order matters as in NLTK: (true, decoded)
    assert decoding.wup_cached(ids["milk.n.01"], ids["whole_milk.n.01"]) == pytest.approx(
        nltk_wup(wn, ids["milk.n.01"], ids["whole_milk.n.01"]))
    # best-of-top-k restricted to k=1 is the top-1
    _, best1, _ = decoding.wup_scores(true, ranked, k=1)
    np.testing.assert_allclose(best1, top1)


def test_wup_matrix_matches_nltk(wn, ids):
    w = list(ids.values())
    m = decoding.wup_matrix(w[:4], w)
    ref = np.array([[nltk_wup(wn, a, b) for b in w] for a in w[:4]])
    np.testing.assert_allclose(m, ref, atol=1e-12)


def test_unknown_wnid_raises(ids):
    with pytest.raises(ValueError, match="n99999999"):
        decoding.wup_scores([ids["dog.n.01"]], [["n99999999"]])
    with pytest.raises(ValueError, match="ranked"):
        decoding.wup_scores([ids["dog.n.01"]], [])


# --------------------------------------------------------------------------- chance
def test_chance_level_exact_on_tiny_label_set(wn, ids):
    true = [ids["dog.n.01"], ids["car.n.01"]]
    labels = [ids["cat.n.01"], ids["truck.n.01"], ids["banana.n.02"], ids["cat.n.01"]]  # dup
    uniq = sorted(set(labels))
    w = np.array([[nltk_wup(wn, t, l) for l in uniq] for t in true])
    exact = w.mean()  # E over uniform labels, mean over samples
    # sd of the per-draw mean: sqrt(sum_i Var_i) / n, Var_i the variance over labels of row i
    sd = np.sqrt(w.var(axis=1).sum()) / len(true)
    c = decoding.wup_chance(true, labels, n_draws=20000, seed=1)
    assert c.exact == pytest.approx(exact, abs=1e-12)
    assert abs(c.mean - exact) < 4 * sd / np.sqrt(20000)
    assert c.sd == pytest.approx(sd, rel=0.05)
    assert c.draws.shape == (20000,) and c.pair_values.shape == (2 * 3,)
    # seeded: same seed, same draws
    c2 = decoding.wup_chance(true, labels, n_draws=20000, seed=1)
    np.testing.assert_array_equal(c.draws, c2.draws)


def test_chance_best_of_k():
    # E[max of 2 distinct of (0.2, 0.5, 0.9)] = (0.5 + 0.9 + 0.9) / 3
    assert decoding._expected_max_of_k(np.array([0.9, 0.2, 0.5]), 2) == pytest.approx(2.3 / 3)
    assert decoding._expected_max_of_k(np.array([0.9, 0.2, 0.5]), 1) == pytest.approx(1.6 / 3)
    assert decoding._expected_max_of_k(np.array([0.9, 0.2, 0.5]), 3) == pytest.approx(0.9)


def test_chance_best_of_k_draws(wn, ids):
    true = [ids["dog.n.01"]]
    labels = [ids["cat.n.01"], ids["truck.n.01"], ids["banana.n.02"]]
    vals = np.array([nltk_wup(wn, true[0], l) for l in sorted(labels)])
    c = decoding.wup_chance(true, labels, n_draws=3000, seed=0, k=2)
    assert c.exact == pytest.approx(decoding._expected_max_of_k(vals, 2))
    assert c.mean == pytest.approx(c.exact, abs=0.01)
    # k larger than the label set: every label, the max
    assert decoding.wup_chance(true, labels, n_draws=10, k=9).mean == pytest.approx(vals.max())


def test_chance_errors(ids):
    with pytest.raises(ValueError, match="label_set"):
        decoding.wup_chance([ids["dog.n.01"]], [])
    with pytest.raises(ValueError, match="n_draws"):
        decoding.wup_chance([ids["dog.n.01"]], [ids["cat.n.01"]], n_draws=0)


# --------------------------------------------------------------------------- permutation p
def test_permutation_p(ids):
    true = list(ids.values())  # 10 distinct concepts
    # perfect decoding: no permutation (other than identity) reaches wup 1.0 everywhere
    assert decoding.wup_permutation_p(true, true, n_perm=999, seed=0) == pytest.approx(1 / 1000)
    # one label for every sample: every permutation ties with the observed mean
    assert decoding.wup_permutation_p(true, [true[0]] * 10, n_perm=200, seed=0) == 1.0
    # decoded labels unrelated to their samples: p is not small, reproducible with the seed
    rng = np.random.default_rng(3)
    shuffled = list(rng.permutation(true))
    p1 = decoding.wup_permutation_p(true, shuffled, n_perm=500, seed=7)
    assert p1 == decoding.wup_permutation_p(true, shuffled, n_perm=500, seed=7)
    assert 0.01 < p1 <= 1.0
    assert decoding.wup_permutation_p(true[:1], true[:1]) == 1.0
    with pytest.raises(ValueError, match="decoded"):
        decoding.wup_permutation_p(true, true[:3])


# --------------------------------------------------------------------------- accuracy
def test_topk_accuracy():
    true = ["a", "b", "c", "d"]
    ranked = [["a", "x"], ["x", "b"], ["x", "y", "z", "w", "v", "c"], ["x"]]
    assert decoding.topk_accuracy(true, ranked, 1) == 0.25
    assert decoding.topk_accuracy(true, ranked, 2) == 0.5
    assert decoding.topk_accuracy(true, ranked, 5) == 0.5
    assert decoding.topk_accuracy(true, ranked, 6) == 0.75
    np.testing.assert_array_equal(decoding.topk_hits(true, ranked, 5), [True, True, False, False])


def test_rank1_diversity():
    assert decoding.rank1_diversity(["dog", "dog", "dog", "cat"]) == (0.5, 0.75)
    assert decoding.rank1_diversity(["a", "b", "c", "d"]) == (1.0, 0.25)
    with pytest.raises(ValueError, match="at least one"):
        decoding.rank1_diversity([])


# --------------------------------------------------------------------------- features
def test_pearson_matches_numpy_and_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 20)), rng.normal(size=(6, 20))
    ref = np.corrcoef(np.vstack([a, b]))[:4, 4:]
    np.testing.assert_allclose(decoding.pearson_matrix(a, b), ref, atol=1e-12)
    b4 = b[:4]
    r = decoding.feature_correlation(a, b4)
    np.testing.assert_allclose(r, [stats.pearsonr(x, y)[0] for x, y in zip(a, b4)], atol=1e-12)
    unit = np.mean([stats.pearsonr(x, y)[0] for x, y in zip(a.T, b4.T)])
    assert decoding.unit_correlation(a, b4) == pytest.approx(unit)
    # a constant vector correlates 0 with everything (no NaN)
    assert decoding.pearson_matrix(np.ones((1, 5)), a[:, :5])[0].tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="shape"):
        decoding.feature_correlation(a, b)


def _ident(sim, n, target=None):
    per_row, _, n_eff = scores.identification(sim, n, target)
    return per_row, n_eff


def _brute_identification(sim, n):
    """Average over every distractor set, enumerated."""
    r, c = sim.shape
    out = []
    for i in range(r):
        others = [j for j in range(c) if j != i]
        wins = [all(sim[i, i] > sim[i, j] for j in d)
                for d in itertools.combinations(others, n - 1)]
        out.append(np.mean(wins))
    return np.array(out)


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_identification_matches_enumeration(n):
    rng = np.random.default_rng(n)
    sim = rng.normal(size=(6, 6))
    per_row, n_eff = _ident(sim, n)
    assert n_eff == n
    np.testing.assert_allclose(per_row, _brute_identification(sim, n), atol=1e-12)


def test_identification_constructed_cases():
    # row 0 beats both others, row 1 beats one, row 2 beats none
    sim = np.array([[0.9, 0.1, 0.2],
                    [0.5, 0.4, 0.3],
                    [0.8, 0.9, 0.1]])
    per_row, _ = _ident(sim, 2)
    np.testing.assert_allclose(per_row, [1.0, 0.5, 0.0])
    per_row, _ = _ident(sim, 3)
    np.testing.assert_allclose(per_row, [1.0, 0.0, 0.0])
    # ties count half (sbd.scores.TIE_RULE): an uninformative row scores chance
    per_row, _ = _ident(np.ones((3, 3)), 2)
    np.testing.assert_allclose(per_row, 0.5)
    # n capped at the number of candidates; explicit targets
    per_row, n_eff = _ident(sim, 50, target=[0, 0, 2])
    assert n_eff == 3
    np.testing.assert_allclose(per_row, [1.0, 1.0, 0.0])
    assert comb(4, 1) / comb(5, 1) == 0.8  # the formula's n = 2 case: b / m
    with pytest.raises(ValueError, match="n >= 2"):
        _ident(sim, 1)


def test_n_way_identification_of_features():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(8, 32))
    acc, per, n_eff = decoding.n_way_identification(true + 0.01 * rng.normal(size=true.shape), true, 2)
    assert acc == 1.0 and n_eff == 2
    acc, per, n_eff = decoding.n_way_identification(true, true, 50)
    assert acc == 1.0 and n_eff == 8
    # predictions equal to another sample's features: never beat that sample
    acc, _, n_eff = decoding.n_way_identification(np.roll(true, 1, axis=0), true, 8)
    assert acc == 0.0 and n_eff == 8
    acc, _, _ = decoding.n_way_identification(np.roll(true, 1, axis=0), true, 2)
    assert acc <= 6 / 7


# --------------------------------------------------------------------------- all at once
def test_topk_chance_hand_computed():
    labels = ["n1", "n2", "n3", "n4", "n2"]  # 4 unique labels
    assert decoding.topk_chance(["n1", "n2"], labels, 1) == pytest.approx(1 / 4)
    assert decoding.topk_chance(["n1", "n9"], labels, 2) == pytest.approx((2 / 4 + 0) / 2)
    assert decoding.topk_chance(["n3"], labels, 5) == 1.0  # 5 labels of 4: all drawn
    with pytest.raises(ValueError, match="label_set"):
        decoding.topk_chance(["n1"], [], 5)


def test_evaluate_decoding(wn, ids):
    true = [ids["dog.n.01"], ids["cat.n.01"], ids["car.n.01"]]
    ranked = [[ids["dog.n.01"], ids["cat.n.01"]], [ids["dog.n.01"], ids["cat.n.01"]],
              [ids["truck.n.01"], ids["banana.n.02"]]]
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(3, 16))
    ev = decoding.evaluate_decoding(true, ranked, list(ids.values()), feats, feats,
                                    n_chance=200, seed=0, prefix="test/")
    m = ev.metrics
    ref_top1 = np.mean([nltk_wup(wn, t, r[0]) for t, r in zip(true, ranked)])
    assert m["test/wup_top1"] == pytest.approx(ref_top1)
    assert m["test/wup_best_topk"] == pytest.approx(
        np.mean([max(nltk_wup(wn, t, w) for w in r) for t, r in zip(true, ranked)]))
    assert m["test/top1_acc"] == pytest.approx(1 / 3)
    assert m["test/top5_acc"] == pytest.approx(2 / 3)
    # every true wnid is in the label set of len(NAMES) labels: 5 random ones hold it
    # with probability 5 / len(NAMES)
    assert m["test/top5_chance"] == pytest.approx(5 / len(NAMES))
    assert m["test/top1_chance"] == pytest.approx(1 / len(NAMES))
    assert m["test/feature_r"] == pytest.approx(1.0)
    assert m["test/ident2_acc"] == 1.0 and m["test/ident50_n"] == 3
    for key in ("wup_chance", "wup_chance_sd", "wup_p", "wup_best_topk_chance", "ident10_acc"):
        assert np.isfinite(m["test/" + key])
    assert list(ev.samples.columns[:3]) == ["true_wnid", "decoded_wnids", "top1_wnid"]
    assert len(ev.samples) == 3
    assert 1 / 201 <= m["test/wup_chance_p"] <= 1.0
    perfect = decoding.evaluate_predictions(true, [[t] for t in true], list(ids.values()),
                                            n_chance=200, seed=0)
    assert perfect["test/wup_chance_p"] == pytest.approx(1 / 201)
    assert perfect["test/top1_acc"] == 1.0
    only = decoding.evaluate_predictions(true, ranked, list(ids.values()), n_chance=50,
                                         prefix="imagery/")
    assert "imagery/wup_top1" in only and "imagery/feature_r" not in only
    with pytest.raises(ValueError, match="both"):
        decoding.evaluate_decoding(true, ranked, list(ids.values()), feats, None)


def test_a_constant_answer_says_nothing_about_its_sample(wn, ids):
    """One label for every sample: what it scores is what it scores whichever sample it is
    given for, so wup_specific is 0, and it cannot beat the best constant answer."""
    true = [ids[n] for n in ("dog.n.01", "cat.n.01", "car.n.01", "milk.n.01", "apple.n.01",
                             "truck.n.01")]
    label_set = list(ids.values())
    for answer in label_set:
        m = decoding.evaluate_decoding(true, [[answer]] * len(true), label_set, n_chance=50,
                                       prefix="").metrics
        assert abs(m["wup_specific"]) < 0.01, answer
        assert m["wup_shuffled"] == pytest.approx(m["wup_top1"])
        assert m["wup_top1"] <= m["wup_constant"] + 1e-12
        assert m["wup_specific_ci_low"] <= m["wup_specific"] <= m["wup_specific_ci_high"]
    # the best constant answer, by brute force over the label set with NLTK
    best = max(np.mean([nltk_wup(wn, t, a) for t in true]) for a in label_set)
    assert decoding.wup_constant(true, label_set)[1] == pytest.approx(best)


def test_the_true_label_is_all_specific(wn, ids):
    """Answering the truth: wup_specific = 1 - wup_shuffled, and wup_shuffled is the mean
    of each true label against the other samples' truths (NLTK by hand)."""
    # (not dog or apple: NLTK gives dog.n.01 with itself 13/14, apple.n.01 10/11, their
    # hypernym paths differing in depth)
    true = [ids[n] for n in ("cat.n.01", "car.n.01", "milk.n.01", "truck.n.01", "ostrich.n.02")]
    m = decoding.evaluate_decoding(true, [[t] for t in true], list(ids.values()),
                                   n_chance=50, prefix="").metrics
    assert m["wup_top1"] == 1.0
    assert m["wup_specific"] == pytest.approx(1 - m["wup_shuffled"])
    by_hand = np.mean([np.mean([nltk_wup(wn, t, a) for t in true if t != a]) for a in true])
    assert m["wup_shuffled"] == pytest.approx(by_hand)
    assert m["wup_specific_ci_low"] > 0


def test_exact_accuracy_over_the_categories_the_bank_holds(ids):
    true = [ids["dog.n.01"], ids["cat.n.01"], ids["car.n.01"], ids["milk.n.01"]]
    label_set = [ids["dog.n.01"], ids["cat.n.01"], ids["truck.n.01"]]  # car and milk absent
    ranked = [[ids["dog.n.01"]], [ids["dog.n.01"], ids["cat.n.01"]], [ids["truck.n.01"]],
              [ids["cat.n.01"]]]
    ev = decoding.evaluate_decoding(true, ranked, label_set, n_chance=20, prefix="")
    m = ev.metrics
    assert m["n_inbank"] == 2 and m["top1_acc"] == 0.25
    assert m["top1_acc_inbank"] == 0.5 and m["top5_acc_inbank"] == 1.0
    assert list(ev.samples["in_bank"]) == [True, True, False, False]


def test_label_set_context_by_brute_force(wn, ids):
    true = [ids["dog.n.01"], ids["car.n.01"], ids["car.n.01"]]
    labels = [ids["cat.n.01"], ids["truck.n.01"], ids["dog.n.01"]]
    c = decoding.label_set_context(true, labels)
    w = np.array([[nltk_wup(wn, t, a) for a in labels] for t in true])
    assert c["n"] == 3 and c["n_in_set"] == 1 and c["n_labels"] == 3
    assert c["uniform"] == pytest.approx(w.mean())
    assert c["constant"] == pytest.approx(w.mean(axis=0).max())
    assert c["constant_wnid"] == labels[int(np.argmax(w.mean(axis=0)))]
    assert c["oracle"] == pytest.approx(w.max(axis=1).mean())


def test_god_context_figures():
    """GOD's test categories against ILSVRC-1k, from the shipped public lists: the figures
    the README's context table states."""
    from sbd.data.label_sets import god_test_wnids, imagenet1k_wnids

    c = decoding.label_set_context(god_test_wnids(), imagenet1k_wnids())
    assert (c["n"], c["n_in_set"]) == (50, 20)
    assert c["constant_wnid"] == "n04423845"  # thimble
    assert (round(c["uniform"], 3), round(c["constant"], 3), round(c["oracle"], 3)) == (
        0.453, 0.576, 0.937)


# --------------------------------------------------------------------------- images
def test_judge_2afc_constructed():
    # stimuli on three axes; generated images close to their own stimulus, one confused
    stim = np.eye(3) * 10
    gen = np.array([[9.0, 1.0, 0.0],   # own 0: closer to 0 than to 1 and 2 → 2/2
                    [0.0, 8.0, 3.0],   # own 1: 2/2
                    [6.0, 0.0, 5.0]])  # own 2: closer to 0 than to 2 → wins vs 1 only: 1/2
    for sim in images.SIMILARITIES:
        j = images.judge_2afc(gen, stim, [0, 1, 2], similarity=sim)
        np.testing.assert_allclose(j.per_image, [1.0, 1.0, 0.5])
        assert j.accuracy == pytest.approx(2.5 / 3)
        assert j.n_pairs == 6 and j.n_trials == 3
        assert j.p_value == pytest.approx(stats.binomtest(2, 3, 0.5, alternative="greater").pvalue)
    # two images of one sample average into that sample; a sample without images is NaN
    j = images.judge_2afc(gen[[0, 1]], stim, [0, 0])
    np.testing.assert_allclose(j.per_image, [1.0, 0.0])
    assert j.per_sample[0] == 0.5 and np.isnan(j.per_sample[1])
    with pytest.raises(ValueError, match="similarity"):
        images.judge_2afc(gen, stim, [0, 1, 2], similarity="l1")
    with pytest.raises(ValueError, match="sample_index"):
        images.judge_2afc(gen, stim, [0, 1])


def test_judge_2afc_significance():
    rng = np.random.default_rng(0)
    stim = rng.normal(size=(40, 64))
    good = images.judge_2afc(stim + 0.3 * rng.normal(size=stim.shape), stim, np.arange(40))
    assert good.accuracy == 1.0 and good.p_value < 1e-9
    noise = images.judge_2afc(rng.normal(size=stim.shape), stim, np.arange(40))
    assert 0.3 < noise.accuracy < 0.7 and noise.p_value > 0.01


def test_generated_identification():
    stim = np.eye(4)
    gen = np.array([[1.0, 0.1, 0, 0], [0, 0, 0.2, 1.0]])
    acc, per, n_eff = images.generated_identification(gen, stim, [0, 3], 10)
    assert n_eff == 4 and acc == 1.0
    acc, per, _ = images.generated_identification(gen, stim, [1, 3], 2)
    # image 0 (own 1) beats stimuli 2 and 3 but not 0: 2/3
    np.testing.assert_allclose(per, [2 / 3, 1.0])


