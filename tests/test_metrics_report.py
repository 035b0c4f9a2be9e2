"""The pure library behind the steps' logging: evaluate's report helpers, the baselines'
registry, the generation table, main's plan and summary, prepare_data's report figures.
Small inputs, no MLflow run, no data folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sbd.metrics import generation, report, summary


def test_ranked_names_in_rank_order_or_empty():
    out = pd.DataFrame({"wnid_1": ["a"], "name_10": ["ten"], "name_2": ["two"], "name_1": ["one"]})
    assert report.ranked_names(out, [["a"]]) == [["one", "two", "ten"]]
    assert report.ranked_names(out.drop(columns=["name_10", "name_2", "name_1"]),
                               [["a", "b"], ["c"]]) == [["", ""], [""]]


def test_category_table_means_per_true_category():
    samples = pd.DataFrame({"true_wnid": ["n1", "n1", "n2"], "true_name": ["a", "a", "b"],
                            "best_rank": [1, 2, 3], "wup_top1": [0.2, 0.4, 1.0],
                            "top1_correct": [True, False, True], "top1_wnid": ["x", "y", "z"]})
    table = report.category_table(samples)
    assert list(table.columns) == ["true_wnid", "true_name", "n", "wup_top1", "top1_acc"]
    assert table["n"].tolist() == [2, 1]
    assert table["wup_top1"].tolist() == pytest.approx([0.3, 1.0])
    assert table["top1_acc"].tolist() == [0.5, 1.0]


def test_imagery_features_are_category_means_of_imaged_test_samples():
    feats = np.array([[1, 1], [3, 3], [np.nan, np.nan], [5, 7]], np.float32)
    out = report.imagery_features(["a", "a", "b", "b"], feats, ["b", "a", "b"])
    assert out.tolist() == [[5, 7], [2, 2], [5, 7]]
    assert report.imagery_features(["a", "b"], feats[[0, 2]], ["a", "b"]) is None


def test_headline_reads_missing_figures_as_nan():
    line = report.headline({"test/wup_top1": 0.5})
    assert line.startswith("wup_top1 0.500 (paper nan")


def test_baselines_come_from_the_registry():
    from sbd.decoding.baseline import BASELINES, PaperPipeline
    from sbd.metrics.baselines import make_baseline

    assert isinstance(make_baseline("paper"), PaperPipeline)
    with pytest.raises(ValueError, match="Unknown baseline='knn'; valid: " + ", ".join(BASELINES)):
        make_baseline("knn")


def test_generation_table(tmp_path):
    csv = tmp_path / "generation.csv"
    pd.DataFrame({"sample_id": ["000_a"], "image_id": ["a"],
                  "image_paths": ["generated/000_a/rank2_n1_0.png;generated/000_a/x.png"]}
                 ).to_csv(csv, index=False)
    table = generation.read_generation(csv, "run r1")
    assert generation.image_folders(table) == ["generated"]
    table = generation.with_local_paths(table, tmp_path)
    assert table["ranks"][0] == [2, 2]  # no rank in the name: its position
    assert table["local_paths"][0][0] == tmp_path / "generated/000_a/rank2_n1_0.png"
    pd.DataFrame({"sample_id": ["x"]}).to_csv(csv, index=False)
    with pytest.raises(ValueError, match=r"generation.csv of run r1 lacks columns \['image_id'"):
        generation.read_generation(csv, "run r1")
    generation.check_run_tags("r1", {"sbd.subject": "1"}, {"sbd.subject": "1", "sbd.roi": "VC"})
    with pytest.raises(ValueError, match="sbd.subject='2' \\(expected '1'\\)"):
        generation.check_run_tags("r1", {"sbd.subject": "2"}, {"sbd.subject": "1"})


def test_main_plan_and_outcome():
    from types import SimpleNamespace

    from sbd import chains

    p = chains.plan("phantom", "/d", "small", "1, 2", "VC,V1", "", "", 5, 0, False)
    assert p.generator == "tiny" and p.gen_opts == {"tiny_preset": "small"} and p.num_gpus == 0
    assert [(c["subject"], c["roi"]) for c in p.chains] == [(1, "VC"), (1, "V1"), (2, "VC"),
                                                            (2, "V1")]
    with pytest.raises(ValueError, match="Unknown rois=\\['V9'\\]"):
        chains.plan("phantom", "/d", "small", "1", "V9", "", "", 5, 0, False)
    ok = SimpleNamespace(ok=True, value={"row": {"subject": 1}, "grid": (1, "VC", "g"),
                                         "reused": {"generate:g": True}}, kwargs={})
    bad = SimpleNamespace(ok=False, error="Traceback\nValueError: boom\n",
                          kwargs={"subject": 2, "roi": "V1"})
    out = chains.collect([ok, bad], {"prepare_data:p": False})
    assert out.rows == [{"subject": 1}] and out.reused == {"prepare_data:p": False,
                                                           "generate:g": True}
    assert out.failure_message(2) == ("1 of 2 chains failed (the others finished and are "
                                      "logged): s2 V1: ValueError: boom")


def test_summary_metrics():
    row = summary.summary_row(1, "VC", "e", {"test/wup_top1": 0.5})
    assert row["test/wup_top1"] == 0.5 and row["test/feature_r"] is None
    assert summary.chain_metrics(pd.DataFrame([row])) == {"s1/VC/test/wup_top1": 0.5}
    gains = [{"roi": "VC", "metric": "wup_top1", "gain": 0.1, "ci_low": 0.0, "ci_high": 0.2,
              "wilcoxon_p": 0.04}]
    assert summary.gain_metrics(gains) == {
        "images/VC/gain_wup_top1": 0.1, "images/VC/gain_wup_top1_ci_low": 0.0,
        "images/VC/gain_wup_top1_ci_high": 0.2, "images/VC/gain_wup_top1_p": 0.04}
    t = pd.DataFrame({"image_id": ["b", "a"], "wup_top1": [1.0, 0.0], "paper_wup_top1": [0.5, 0.0]})
    assert summary.image_gains("VC", [t, t.iloc[:1]]) == []  # other images: no comparison


def test_prepare_data_report_figures():
    from sbd.data.reports import report_figures

    god = {"ok": True, "subjects": {"1": {"samples_without_image": {"train": 2}}},
           "missing_images": {"test": ["x", "y"]}, "problems": []}
    metrics, tags = report_figures(god, "god")
    assert metrics == {"data/n_subjects": 1, "data/n_problems": 0, "data/n_missing_images": 2,
                       "data/n_unreadable_images": 0, "data/n_train_trials_without_image": 2,
                       "data/n_test_trials_without_image": 0}
    assert tags == {"sbd.data.valid": "true"}
    npz = {"ok": False, "problems": ["p"], "images": {"test": {"n": 50}},
           "subjects": {"1": {"normalisation": {"zscored": True}}}}
    metrics, tags = report_figures(npz, "god-npz")
    assert metrics == {"data/n_subjects": 1, "data/n_problems": 1, "data/n_test_images": 50}
    assert tags == {"sbd.data.valid": "false",
                    "sbd.data.normalisation": "z-scored per voxel (used as it is)"}
