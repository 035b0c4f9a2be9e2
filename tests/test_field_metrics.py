"""The field's image metrics (sbd.metrics.field) against reference computations.

- 2-way identification against a brute-force loop (Brain-Diffuser's definition);
- SSIM against scikit-image called directly;
- MinD-Vis's n-way protocol on hand-made cases with known answers;
- every metric at chance on independent images shuffled across samples, and at its
  maximum when the stimuli themselves are scored as generated images, through the
  scorer with every feature space built with random weights (same classes as the real).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sbd.metrics import field

N = 12


def _images(seed: int, n: int = N, size: int = 48) -> list[Image.Image]:
    """Smooth random colour images (low-frequency noise upsampled): structured enough
    for SSIM and CNN features to tell them apart."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        out.append(Image.fromarray(small).resize((size, size), Image.BICUBIC))
    return out


class _ColourClassifier:
    """A deterministic 'classifier' of 1000 classes: scores from the mean colour through a
    fixed random map (stands in for the ImageNet classifier in the scorer test)."""

    def __init__(self):
        self.w = np.random.default_rng(1).normal(size=(3 * 16, 1000))
        self.wnids = tuple(f"n{i:08d}" for i in range(1000))
        self.name = "colour"

    def logits(self, images) -> np.ndarray:
        x = np.stack([np.asarray(im.resize((4, 4)), np.float64).reshape(-1, 3).ravel()
                      for im in images])
        x = x.reshape(len(images), 16, 3).reshape(len(images), -1) / 255.0 - 0.5
        return x @ self.w


@pytest.fixture(scope="module")
def spaces(one_torch_thread):
    import torch

    torch.manual_seed(0)
    loaded, skipped = field.load_spaces(weights=False)
    assert not skipped and set(loaded) == set(field.SPACES)
    return loaded


# --------------------------------------------------------------------------- references
def test_two_way_matches_a_brute_force_loop():
    rng = np.random.default_rng(0)
    gen, stim = rng.normal(size=(15, 30)), rng.normal(size=(15, 30))
    gen[3] = stim[3] + 0.1 * rng.normal(size=30)
    got = field.two_way_identification(gen, stim)
    want = []
    for i in range(15):
        own = np.corrcoef(gen[i], stim[i])[0, 1]
        wins = sum(np.corrcoef(gen[i], stim[j])[0, 1] < own for j in range(15) if j != i)
        want.append(wins / 14)
    np.testing.assert_allclose(got, want)
    assert got[3] == 1.0


def test_retrieval_and_distance_match_loops():
    rng = np.random.default_rng(1)
    gen, stim = rng.normal(size=(10, 20)), rng.normal(size=(10, 20))
    fwd, bwd = field.retrieval_top1(gen, stim)
    r = np.array([[np.corrcoef(g, s)[0, 1] for s in stim] for g in gen])
    np.testing.assert_array_equal(fwd, [float(np.argmax(r[i]) == i) for i in range(10)])
    np.testing.assert_array_equal(bwd, [float(np.argmax(r[:, i]) == i) for i in range(10)])
    from scipy.spatial.distance import correlation

    own, chance = field.correlation_distance(gen, stim)
    np.testing.assert_allclose(own, [correlation(gen[i], stim[i]) for i in range(10)])
    assert chance == pytest.approx(np.mean([correlation(gen[i], stim[j])
                                            for i in range(10) for j in range(10) if i != j]))


def test_ssim_and_pixcorr_match_skimage_and_numpy():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    a, b = rng.random((4, 40, 40)), rng.random((4, 40, 40))
    b[0] = a[0]
    own, chance = field.ssim_scores(a, b, n_shifts=2)
    want = [structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5,
                                  use_sample_covariance=False, data_range=1.0) for i in range(4)]
    np.testing.assert_allclose(own, want)
    assert own[0] == pytest.approx(1.0)
    off = [structural_similarity(a[i], b[(i + k) % 4], gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0)
           for k in (1, 2) for i in range(4)]
    assert chance == pytest.approx(np.mean(off))
    rgb_a, rgb_b = rng.random((3, 8, 8, 3)), rng.random((3, 8, 8, 3))
    own, _ = field.pixcorr(rgb_a, rgb_b)
    np.testing.assert_allclose(own, [np.corrcoef(rgb_a[i].ravel(), rgb_b[i].ravel())[0, 1]
                                     for i in range(3)])


def test_nway_protocol_on_hand_made_cases():
    # 3 classes, 2-way: true class top -> 1, bottom -> 0, middle -> wins iff the drawn
    # other class is the lowest one: 1/2
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3]])
    acc = field.nway_top1(probs, [0, 0, 2], n_way=2, n_trials=4000, seed=0)
    assert acc[0] == 1.0 and acc[1] == 0.0 and acc[2] == pytest.approx(0.5, abs=0.03)
    # 51 classes, 50-way: one class beats the true one and is left out of a trial's 49
    # draws from the 50 others with probability 1/50
    p = np.linspace(0, 1, 51)[None, :].repeat(2, 0)
    acc = field.nway_top1(p, [49, -1], n_way=50, n_trials=5000, seed=1)
    assert acc[0] == pytest.approx(1 / 50, abs=0.006) and np.isnan(acc[1])
    # 50 classes, 50-way: every class is in every trial, so exactly "is it the top-1"
    p = np.random.default_rng(0).random((5, 50))
    acc = field.nway_top1(p, p.argmax(1), n_way=50, n_trials=3)
    np.testing.assert_array_equal(acc, 1.0)
    with pytest.raises(ValueError, match="n_way"):
        field.nway_top1(p, p.argmax(1), n_way=51)


def test_functions_at_chance_on_independent_shuffled_data():
    rng = np.random.default_rng(3)
    stim, gen = rng.normal(size=(20, 30)), rng.normal(size=(20, 30))
    two, fwd = [], []
    for _ in range(200):
        g = gen[rng.permutation(20)]
        two.append(field.two_way_identification(g, stim).mean())
        fwd.append(field.retrieval_top1(g, stim)[0].mean())
    assert np.mean(two) == pytest.approx(0.5, abs=0.01)
    assert np.mean(fwd) == pytest.approx(1 / 20, abs=0.01)
    probs = rng.random((4000, 1000))
    acc = field.nway_top1(probs, rng.integers(0, 1000, 4000), n_trials=5, seed=0)
    assert acc.mean() == pytest.approx(1 / 50, abs=0.005)


def test_bootstrap_ci_and_max_statistic():
    v = np.column_stack([np.r_[np.ones(50), np.zeros(50)], np.ones(100)])
    lo, hi = field.bootstrap_ci(v[:, :1], n_boot=500)
    assert lo < 0.5 < hi and hi - lo < 0.25
    assert field.bootstrap_ci(v, "max", n_boot=50) == (1.0, 1.0)
    assert field._nway_max_chance(50, 1, 1000, 50, 50) == 1 / 50
    assert field._nway_max_chance(50, 4, 1000, 50, 50) > 1 / 50


# --------------------------------------------------------------------------- the scorer
@pytest.fixture(scope="module")
def scorer(spaces):
    stim = _images(0)
    clf = _ColourClassifier()
    # GOD labels: the classifier's own answer for all but two stimuli, whose wnids are
    # none of its classes (so the GOD-label variant is at its maximum on the stimuli too)
    top = clf.logits(stim).argmax(axis=1)
    wnids = [clf.wnids[c] for c in top[:N - 2]] + ["n99999999", "n99999998"]
    return field.FieldScorer(stim, wnids, spaces, clf, n_boot=200), stim


def test_scorer_gives_the_maximum_on_the_stimuli(scorer):
    sc, stim = scorer
    res = sc.score([[s, s] for s in stim])  # two slots, both the stimulus
    assert set(res) == {m.key for m in field.METRICS}
    for m in field.METRICS:
        best = 1.0 if m.higher else 0.0
        assert res[m.key].value == pytest.approx(best, abs=1e-5), m.key
        assert res[m.key].n == (N - 2 if m.key == "nway_top1_god" else N), m.key
    # the GOD label of a stimulus is scored only when it is one of the classifier's classes
    assert np.sum(sc.god_class >= 0) == N - 2 and res["nway_top1_god"].n == N - 2


def test_scorer_at_chance_on_unrelated_shuffled_images(scorer):
    sc, _ = scorer
    gen = _images(5)
    res = sc.score([[g] for g in (gen[i] for i in np.random.default_rng(0).permutation(N))])
    for key, r in res.items():
        assert r.ci_low <= r.value <= r.ci_high, key
        # a 95 % CI is about 4 standard errors wide; a hit rate of 12 samples may have a
        # degenerate bootstrap CI (0 hits), hence also 3 binomial standard errors
        c = min(max(r.chance, 0.0), 1.0)
        tol = max(r.ci_high - r.ci_low, 3 * np.sqrt(c * (1 - c) / r.n))
        assert abs(r.value - r.chance) <= tol, (key, r)
    assert res["alex2"].chance == 0.5 and res["retrieval_fwd"].chance == pytest.approx(1 / N)
    assert res["nway_top1"].chance == pytest.approx(1 / 50)


def test_table_figure_and_metric_names(scorer, tmp_path):
    import matplotlib.pyplot as plt

    sc, stim = scorer
    best = sc.score([[s] for s in stim])
    rows = {"sbd": best, "nearest bank image": {k: v for k, v in best.items() if k != "clip"}}
    table, long = field.field_table(rows)
    assert list(table["method"]) == ["sbd", "nearest bank image", "chance"]
    assert list(table.columns[1:]) == [m.label for m in field.METRICS]
    assert np.isnan(table.loc[1, "CLIP"]) and table.loc[2, "Alex(2)"] == 0.5
    assert len(long) == 2 * len(field.METRICS) - 1
    fig = field.plot_field_table(long, {"swav": "weights absent"})
    fig.savefig(tmp_path / "t.png")
    plt.close(fig)
    other = {k: field.MetricResult(v.value, v.chance + 0.1, v.ci_low, v.ci_high, v.n)
             for k, v in best.items()}
    table, long = field.field_table({"sbd": best, "other": other})
    assert list(table["method"]) == ["sbd", "other", "chance (sbd)", "chance (other)"]
    fig = field.plot_field_table(long)
    plt.close(fig)
    m = field.metric_dict(best)
    assert {"test/gen/ssim", "test/gen/ssim_chance", "test/gen/ssim_ci_low",
            "test/gen/ssim_ci_high"} <= set(m)


def test_absent_weights_are_skipped_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded, skipped = field.load_spaces(["alex2", "swav", "clip"])
    assert not loaded and set(skipped) == {"alex2", "swav", "clip"}
    assert "alexnet" in skipped["alex2"].lower() and "absent" in skipped["swav"]
    with pytest.raises(ValueError, match="valid"):
        field.load_spaces(["vgg"])
    with pytest.raises(field.WeightsMissing, match="no classifier"):
        field.load_classifier(("vit_h_14",))


def test_nearest_bank_images(tmp_path):
    from sbd.features.bank import FeatureBank, write_bank

    rng = np.random.default_rng(0)
    feats = rng.normal(size=(30, 8)).astype(np.float32)
    path = write_bank(tmp_path / "bank.h5", feats, ["n00000001"] * 30,
                      [f"i{i}" for i in range(30)], [f"w/{i}.png" for i in range(30)],
                      attrs={"root": str(tmp_path), "backbone": "test"}, dtype="float32")
    pred = np.vstack([feats[[7, 21]] + 0.01, np.full((1, 8), np.nan)])
    with FeatureBank(path) as bank:
        near = field.nearest_bank_images(pred, bank, k=2)
        with pytest.raises(ValueError, match="dim"):
            field.nearest_bank_images(pred[:, :3], bank)
    assert near[0][0] == tmp_path / "w/7.png" and near[1][0] == tmp_path / "w/21.png"
    assert len(near[0]) == 2 and near[2] == []


def test_generated_images_follow_the_test_order():
    import pandas as pd

    table = pd.DataFrame({"image_id": ["b", "a"],
                          "local_paths": [["b1.png", "b2.png", "b1x.png"], ["a1.png", "a2.png"]],
                          "ranks": [[1, 2, 1], [1, 2]]})
    assert field.generated_images(table, ["a", "b", "c"]) == [["a1.png"], ["b1.png", "b1x.png"], []]
