"""Decoder-level tuning (sbd.decoding.tuning.decoder) on the small phantom, checked against
the reference code paths: grouped out-of-fold ridge predictions, the kNN labeller, and
the metrics module's Wu-Palmer and top-k figures."""

from __future__ import annotations

import numpy as np
import pytest

from sbd.data.layout import features_file
from sbd.decoding.tuning import decoder as dt
from sbd.decoding.knn import InMemoryBank, KNNLabeller
from sbd.decoding.training_data import load_training_data
from sbd.decoding.tuning import out_of_fold_predictions
from sbd.features.bank import FeatureBank
from sbd.metrics.decoding import topk_accuracy, wup_scores
from sbd.wordnet import wup

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BACKBONE = "efficientnet-lite0"


@pytest.fixture(scope="module")
def data(phantom_features):
    X, Y, groups, _ = load_training_data(phantom_features, 1, "VC", BACKBONE)
    bank = FeatureBank(features_file(phantom_features, BACKBONE, "bank"))
    return X, Y, groups, bank


@pytest.fixture(scope="module")
def search(data):
    X, Y, groups, bank = data
    return dt.DecoderSearch(X, Y, groups, bank, n_splits=4)


PARAMS = {**dt.PAPER_LIKE, "normalize": "center", "metric": "cosine", "k": 1, "alpha": 50.0,
          "voxel_frac": 0.7, "selection": "f", "standardize": True}


def test_out_of_fold_predictions_equal_refitted_ridges(data, search):
    X, Y, groups, _ = data
    want = out_of_fold_predictions(X, Y, groups, dt.ridge_params(PARAMS), n_splits=4)
    np.testing.assert_allclose(search.out_of_fold(PARAMS), want, rtol=1e-6, atol=1e-8)


def test_mixed_targets_equal_a_ridge_fitted_to_them(data, search):
    """target_mix: the search mixes the image and category-mean predictions of one
    decomposition; that is the ridge fitted to the mixed targets (it is linear in them)."""
    X, Y, groups, _ = data
    _, codes = np.unique(groups, return_inverse=True)
    means = np.stack([Y[codes == c].mean(0) for c in range(codes.max() + 1)])[codes]
    p = {**PARAMS, "target_mix": 0.75}
    want = out_of_fold_predictions(X, 0.25 * Y + 0.75 * means, groups, dt.ridge_params(p),
                                   n_splits=4)
    np.testing.assert_allclose(search.out_of_fold(p), want, rtol=1e-6, atol=1e-8)
    ridge, _ = dt.fit_decoder(X, Y, groups, {**p, "feature_norm": "rescale_category"}, data[3],
                              n_splits=4)
    # the rescaling maps onto the image features' scale, from category-averaged statistics
    np.testing.assert_allclose(ridge.target_std_, Y.std(0))
    cat_means = np.stack([want[codes == c].mean(0) for c in range(codes.max() + 1)])
    sd = cat_means.std(0)
    np.testing.assert_allclose(ridge.rescale_std_, np.where(sd > 0, sd, 1.0), rtol=1e-6)


def test_hidden_categories_are_never_answered(data, search):
    """absent_fraction: each fold's queries are labelled without 60 % of its held-out
    categories' bank images, as GOD's bank lacks 30 of its 50 test categories."""
    X, Y, groups, bank = data
    Q, cats, fold = search.queries(search.out_of_fold(PARAMS))
    ranked = search.rank(Q, PARAMS, fold=fold)
    for f in range(search.n_splits):
        held = np.unique(cats[fold == f])
        hidden = set(search.bank_wnids[search.hidden[f]]) & set(search.categories[held])
        assert len(hidden) == round(0.6 * len(held))
        assert not hidden & set(search.classes[ranked[fold == f]].ravel())
    none = dt.DecoderSearch(X, Y, groups, bank, n_splits=4, absent_fraction=0.0)
    assert all(h is None for h in none.hidden)
    with pytest.raises(ValueError, match="absent_fraction"):
        dt.DecoderSearch(X, Y, groups, bank, n_splits=4, absent_fraction=1.0)


def test_queries_average_trials_of_one_held_out_category(data, search):
    X, Y, groups, _ = data
    P = search.out_of_fold(PARAMS)
    Q, cats, fold = search.queries(P)
    # 24 categories × 4 trials in pairs: 48 queries, each the mean of two trials of one
    # category, all of whose trials were held out in the same fold
    assert Q.shape == (48, P.shape[1]) and np.bincount(cats).tolist() == [2] * 24
    first = np.flatnonzero(search.codes == cats[0])[:2]
    np.testing.assert_allclose(Q[0], P[first].mean(0))
    assert len(set(search.fold_of[first])) == 1 and fold[0] == search.fold_of[first[0]]


@pytest.mark.parametrize("rule,members", [("nearest", 1), ("semantic", 1), ("semantic", 2)])
def test_scores_equal_the_labeller_and_the_metrics_module(data, search, rule, members):
    """The search's fast path (in-memory normalised bank, Wu-Palmer matrix lookups) gives
    the figures of a KNNLabeller and of sbd.metrics on the same queries."""
    X, Y, groups, bank = data
    p = {**PARAMS, "rule": rule, "temperature": 0.1, "members": members}
    Q, cats, _ = search.queries(search.out_of_fold(p))
    lab = KNNLabeller(**dt.label_params(p), top_k=5).fit(
        InMemoryBank(bank.load(np.float32), bank.wnids), stats=(Y.mean(0), Y.std(0)),
        class_similarity=search.class_similarity if rule == "semantic" else None)
    ranked = [list(r) for r in lab.predict_ranked(Q)[0]]
    true = list(search.categories[cats])
    got = search.score_ranked(search.rank(Q, p), cats)
    top1, best, _ = wup_scores(true, ranked, 5)
    assert got["wup_top1"] == pytest.approx(top1.mean())
    assert got["wup_best_top5"] == pytest.approx(best.mean())
    assert got["top5_acc"] == pytest.approx(topk_accuracy(true, ranked, 5))
    assert got["top1_acc"] == pytest.approx(topk_accuracy(true, ranked, 1))
    # wup_specific: the answers against the queries of other categories, by hand
    w = np.array([[wup(t, r[0]) for r in ranked] for t in true])
    other = np.array([[a != b for b in true] for a in true])
    shuffled = [w[other[:, i], i].mean() for i in range(len(true))]
    assert got["wup_specific"] == pytest.approx(top1.mean() - np.mean(shuffled))


def test_fitted_decoder_is_inductive(data):
    """Rescaling and normalisation use statistics fixed at training: a sample decodes the
    same alone as in any batch (the paper's adjustment would not)."""
    X, Y, groups, bank = data
    ridge, lab = dt.fit_decoder(X, Y, groups, {**PARAMS, "feature_norm": "rescale",
                                               "members": 2}, bank, n_splits=4)
    assert lab.members == 2
    assert ridge.rescale_std_ is not None and not ridge.test_time_adjust
    batch = ridge.predict(X[:6])
    for i in range(6):
        np.testing.assert_allclose(ridge.predict(X[i:i + 1])[0], batch[i], rtol=1e-10)
    w_batch = lab.predict_ranked(batch)[0]
    assert [lab.predict_ranked(batch[i:i + 1])[0][0].tolist() for i in range(6)] == \
        w_batch.tolist()


def test_tuning_starts_from_the_paper_and_reports_it(search):
    result = dt.tune_decoder(search, n_trials=5, seed=0, n_recheck=3, n_resplits=1)
    first = result.trials[0]
    assert {k: first[k] for k in ("alpha", "rule", "target_mix", "feature_norm")} == \
        {k: dt.PAPER_LIKE[k] for k in ("alpha", "rule", "target_mix", "feature_norm")}
    # the label stage's similarity is fixed, in every trial and in the choice
    assert {(t["normalize"], t["metric"]) for t in result.trials} == {("zscore", "cosine")}
    assert {k: result.best_params[k] for k in dt.SIMILARITY} == dt.SIMILARITY
    assert len(result.trials) == 5
    assert set(result.paper_scores) == set(dt.SCORE_KEYS)
    # re-checked on a second category split: the choice's objective is its mean over both
    # splits, and no other re-checked candidate has a higher mean (the winner's curse)
    other = search.resplit(1)  # seed 0, first re-split

    def rechecked(p):
        return dt.OBJECTIVES["specific"](dt._mean_scores([search.score(p), other.score(p)]))

    assert result.best_value == pytest.approx(rechecked(result.best_params))
    ranked = sorted(result.trials, key=lambda t: t["objective"], reverse=True)[:3]
    for t in ranked:
        p = dt.normalise_decoder_params({**dt.SIMILARITY,
                                         **{k: t[k] for k in dt.PAPER_LIKE if k in t}})
        assert rechecked(p) <= result.best_value + 1e-12, p
    with pytest.raises(ValueError, match="Unknown objective='accuracy'"):
        dt.tune_decoder(search, n_trials=1, objective="accuracy")
    with pytest.raises(ValueError, match="Unknown rule='best'"):
        dt.normalise_decoder_params({"rule": "best"})
    with pytest.raises(ValueError, match="members must be ≥ 1.*members=0"):
        dt.normalise_decoder_params({"members": 0})
