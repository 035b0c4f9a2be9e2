"""MultiRidge against sklearn's Ridge, voxel selection, test-time adjustment, grouped LOO."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sbd.decoding.ridge import (
    RIDGE_SOLVERS, SELECTIONS, VOXEL_SCORES, MultiRidge, adjust_predictions, center_scale,
    decompose, grouped_loo_errors, ridge_weights, select_voxels, voxel_scores,
)

SHAPES = {"v<n": (70, 25), "v>n": (30, 90)}


def _data(n, v, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, v)) * rng.uniform(0.5, 3, v) + rng.uniform(-2, 2, v)
    Y = X[:, :5] @ rng.standard_normal((5, d)) + rng.standard_normal((n, d)) + 3.0
    Xt = rng.standard_normal((12, v)) * rng.uniform(0.5, 3, v)
    return X, Y, Xt


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("solver", ["auto", *RIDGE_SOLVERS])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("standardize", [False, True])
def test_equals_sklearn_ridge(solver, shape, fit_intercept, standardize):
    X, Y, Xt = _data(*SHAPES[shape])
    for alpha in (0.3, 1000.0, np.geomspace(0.1, 1e4, Y.shape[1])):
        ours = MultiRidge(alpha=alpha, solver=solver, fit_intercept=fit_intercept,
                          standardize=standardize).fit(X, Y)
        ref = Ridge(alpha=alpha, fit_intercept=fit_intercept)
        if standardize:
            ref = make_pipeline(StandardScaler(with_mean=fit_intercept), ref)
        ref.fit(X, Y)
        assert _rel(ours.predict(Xt), ref.predict(Xt)) <= 1e-5
        if not standardize:
            assert _rel(ours.coef_, ref.coef_.T) <= 1e-5
            assert ours.coef_.shape == (X.shape[1], Y.shape[1])


def test_many_alphas_from_one_decomposition():
    X, Y, _ = _data(40, 60)
    Xc, _, _ = center_scale(X)
    Yc = Y - Y.mean(axis=0)
    dec = decompose(Xc)
    Z = dec.U.T @ Yc
    for alpha in (0.01, 1.0, 100.0, 1e6):
        ref = Ridge(alpha=alpha).fit(X, Y).coef_.T
        assert _rel(ridge_weights(dec, Z, alpha), ref) <= 1e-5


def test_single_target_and_predict_formula():
    X, Y, Xt = _data(50, 20)
    m = MultiRidge(alpha=2.0).fit(X, Y[:, 0])
    assert m.predict(Xt).shape == (12,)
    assert _rel(m.predict(Xt), Ridge(alpha=2.0).fit(X, Y[:, 0]).predict(Xt)) <= 1e-5
    m = MultiRidge(alpha=2.0, n_voxels=7, standardize=True).fit(X, Y)
    np.testing.assert_allclose(m.predict(Xt), Xt @ m.coef_ + m.intercept_, rtol=1e-10)


def test_voxel_selection_counts_and_methods():
    X, Y, _ = _data(60, 40)
    groups = np.repeat(np.arange(12), 5)
    assert select_voxels(X, Y, None, "corr").size == 40
    assert select_voxels(X, Y, 10, "corr").size == 10
    assert select_voxels(X, Y, 0.25, "f", groups).size == 10
    # the 5 voxels that drive Y rank first by correlation
    assert set(select_voxels(X, Y, 5, "corr")) == set(range(5))
    assert np.all(np.isfinite(voxel_scores(np.c_[X, np.ones(60)], Y, "f", groups)))
    with pytest.raises(ValueError, match="groups"):
        MultiRidge(n_voxels=5, selection="f").fit(X, Y)
    with pytest.raises(ValueError, match="Unknown selection='x'; valid: corr, f"):
        MultiRidge(n_voxels=5, selection="x").fit(X, Y)
    m = MultiRidge(n_voxels=0.5, selection="f").fit(X, Y, groups)
    assert m.support_.size == 20 and np.all(m.coef_[np.setdiff1d(np.arange(40), m.support_)] == 0)



@pytest.mark.parametrize("method", VOXEL_SCORES)
def test_voxel_scores_match_a_reference(method):
    """Each registered score against its textbook form: mean |Pearson r| over targets
    (numpy's corrcoef), one-way ANOVA F across categories (sklearn's f_classif)."""
    from sklearn.feature_selection import f_classif

    X, Y, _ = _data(60, 40)
    groups = np.repeat(np.arange(12), 5)
    got = voxel_scores(X, Y, method, groups)
    if method == "corr":
        r = np.corrcoef(X.T, Y.T)[:40, 40:]
        want = np.abs(r).mean(axis=1)
    else:
        want = f_classif(X, groups)[0]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert SELECTIONS == tuple(VOXEL_SCORES)

def test_test_time_adjustment():
    X, Y, Xt = _data(50, 20)
    m = MultiRidge(alpha=5.0, test_time_adjust=True).fit(X, Y)
    P = m.predict(Xt)
    np.testing.assert_allclose(P.mean(axis=0), Y.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(P.std(axis=0), Y.std(axis=0), rtol=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        m.predict(Xt[:1])
    raw = MultiRidge(alpha=5.0).fit(X, Y).predict(Xt)
    np.testing.assert_allclose(adjust_predictions(raw, Y.mean(0), Y.std(0)), P, rtol=1e-9)


def test_grouped_leave_one_out_equals_refits():
    X, Y, _ = _data(36, 50, d=4, seed=3)
    groups = np.repeat(np.arange(9), 4)
    groups[:3] = 100                                    # an odd-sized group too
    Xc, _, _ = center_scale(X)
    Yc = Y - Y.mean(axis=0)
    dec = decompose(Xc)
    alphas = np.array([0.5, 50.0])
    got = grouped_loo_errors(dec, dec.U.T @ Yc, Yc, groups, alphas)
    for i, a in enumerate(alphas):
        sse = np.zeros(Y.shape[1])
        for g in np.unique(groups):
            out = groups == g
            r = Y[out] - Ridge(alpha=a).fit(X[~out], Y[~out]).predict(X[out])
            sse += (r ** 2).sum(axis=0)
        np.testing.assert_allclose(got[i], sse / len(Y), rtol=1e-8)


def test_array_round_trip_is_exact():
    X, Y, Xt = _data(50, 30)
    groups = np.repeat(np.arange(10), 5)
    m = MultiRidge(alpha=np.geomspace(1, 100, Y.shape[1]), n_voxels=12, selection="f",
                   standardize=True, test_time_adjust=True).fit(X, Y, groups)
    back = MultiRidge.from_arrays(m.to_arrays())
    assert np.array_equal(back.predict(Xt), m.predict(Xt))


def test_bad_input_errors():
    X, Y, Xt = _data(30, 10)
    with pytest.raises(ValueError, match="NaN"):
        MultiRidge().fit(np.where(X > 2, np.nan, X), Y)
    with pytest.raises(ValueError, match="samples"):
        MultiRidge().fit(X, Y[:-1])
    with pytest.raises(ValueError, match="positive"):
        MultiRidge(alpha=0.0).fit(X, Y)
    with pytest.raises(ValueError, match="one value per target"):
        MultiRidge(alpha=[1.0, 2.0]).fit(X, Y)
    with pytest.raises(ValueError, match="Unknown solver='qr'; valid: auto, svd, eigh"):
        MultiRidge(solver="qr").fit(X, Y)
    with pytest.raises(ValueError, match="not fitted"):
        MultiRidge().predict(Xt)
    m = MultiRidge().fit(X, Y)
    with pytest.raises(ValueError, match="9 voxels; this model was fitted on 10"):
        m.predict(Xt[:, :9])
    with pytest.raises(ValueError, match="numeric"):
        m.predict(Xt.astype(str))
