"""Every figure of sbd.metrics.plots renders and is written as a PNG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sbd.metrics import plots

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def ids():
    from sbd.wordnet import get_wordnet

    wn = get_wordnet()
    return {n: "n%08d" % wn.synset(n).offset()
            for n in ("dog.n.01", "cat.n.01", "car.n.01", "truck.n.01", "banana.n.02", "milk.n.01",
                      "whole_milk.n.01")}


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_wup_vs_chance(tmp_path):
    rng = np.random.default_rng(0)
    fig = plots.plot_wup_vs_chance(rng.uniform(0.4, 1, 30), rng.uniform(0.1, 0.6, 300),
                                   rng.normal(0.35, 0.02, 1000))
    assert len(fig.axes) == 2
    assert _is_png(plots.save_png(fig, tmp_path / "wup.png"))
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary name is gone
    fig = plots.plot_wup_vs_chance([0.5, 0.7], [0.2, 0.3])
    assert len(fig.axes) == 1


def test_lcs_chain(ids):
    from sbd.wordnet import get_wordnet

    wn = get_wordnet()
    chain, lcs = plots.lcs_chain(ids["dog.n.01"], ids["cat.n.01"])
    assert chain[0] == ids["dog.n.01"] and chain[-1] == ids["cat.n.01"]
    ref = wn.synset("dog.n.01").lowest_common_hypernyms(wn.synset("cat.n.01"), use_min_depth=True)
    assert lcs == "n%08d" % ref[0].offset()  # carnivore
    assert lcs in chain
    # one label subsumes the other: the chain goes straight down
    chain, lcs = plots.lcs_chain(ids["milk.n.01"], ids["whole_milk.n.01"])
    assert lcs == ids["milk.n.01"] and chain == [ids["milk.n.01"], ids["whole_milk.n.01"]]


def test_wordnet_graph(tmp_path, ids):
    pairs = [(ids["dog.n.01"], ids["cat.n.01"]), (ids["car.n.01"], ids["banana.n.02"]),
             (ids["truck.n.01"], ids["truck.n.01"]), (ids["milk.n.01"], ids["whole_milk.n.01"])]
    fig = plots.plot_wordnet_graph(pairs, max_hops=2)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "dog" in texts and "cat" in texts and "carnivore" in texts
    assert any(t.startswith("…") for t in texts)  # car ↔ banana is shortened
    assert _is_png(plots.save_png(fig, tmp_path / "graph.png"))
    assert _is_png(plots.save_png(plots.plot_wordnet_graph([]), tmp_path / "empty.png"))


def test_categories(tmp_path):
    table = pd.DataFrame({"true_name": ["dog", "cat", "car"], "wup_top1": [0.9, 0.5, 0.7]})
    fig = plots.plot_categories(table, "wup_top1", chance=0.4)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["dog", "car", "cat"]
    assert _is_png(plots.save_png(fig, tmp_path / "cat.png"))
    with pytest.raises(ValueError, match="top1_acc"):
        plots.plot_categories(table, "top1_acc")


def test_by_roi(tmp_path):
    table = pd.DataFrame({
        "subject": [1, 1, 1, 2, 2, 2],
        "roi": ["VC", "V1", "HVC", "VC", "V1", "HVC"],
        "test/wup_top1": [0.7, 0.4, 0.75, 0.65, 0.42, 0.7],
        "test/wup_chance": [0.38] * 6,
    })
    fig = plots.plot_by_roi(table, "wup_top1")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["V1", "HVC", "VC"]  # canonical order
    heights = [p.get_height() for p in ax.patches]
    np.testing.assert_allclose(heights, [0.41, 0.725, 0.675])
    assert any("chance" in t.get_text() for t in ax.get_legend().get_texts())
    assert _is_png(plots.save_png(fig, tmp_path / "roi.png"))
    fig = plots.plot_by_roi(table.drop(columns="subject"), "test/wup_top1", chance=None)
    assert fig.axes[0].get_legend() is None
    with pytest.raises(ValueError, match="top5_acc"):
        plots.plot_by_roi(table, "top5_acc")
    with pytest.raises(ValueError, match="roi"):
        plots.plot_by_roi(table.drop(columns="roi"), "wup_top1")
