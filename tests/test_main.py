"""The multistep ``main`` end to end on the medium phantom, and decoding by ROI (small phantom)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest

import sbd
from sbd.data import god
from sbd.data.layout import features_file
from sbd.decoding.knn import KNNLabeller
from sbd.decoding.tuning import out_of_fold_predictions
from sbd.features.bank import FeatureBank
from sbd.metrics.decoding import wup_scores

# The end-to-end runs use the ``medium`` phantom (40 test categories; the small one's 10 test
# images give too little power for a permutation p < 0.01) nearly noiseless, so that the test
# checks the chain, not the luck of one noise draw.
E2E_PRESET, E2E_SNR = "medium", 30.0


def _child_runs(parent_id: str) -> list:
    return mlflow.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              output_format="list", search_all_experiments=True)


def _main_in(copy: Path, **kwargs) -> str:
    """``main(**kwargs)`` in a fresh process that imports ``sbd`` from ``copy``, a copy of the
    package (so that a test can edit its code, uncommitted); returns the parent run id."""
    code = ("import sys; import sbd; assert sbd.__file__.startswith(sys.argv[1]), sbd.__file__; "
            f"from sbd.steps import main; print('PARENT', main.run(**{kwargs!r}))")
    out = subprocess.run([sys.executable, "-c", code, str(copy)], cwd=copy.parent,
                         env={**os.environ, "PYTHONPATH": str(copy.parent)},
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split("PARENT")[-1].strip()


@pytest.fixture(scope="module")
def main_runs(tmp_path_factory):
    """Two ``main`` runs (cold, then warm) from scratch on the E2E_PRESET phantom at E2E_SNR,
    each in a process of its own running a copy of the package; and the copy."""
    tmp = tmp_path_factory.mktemp("main")
    copy = tmp / "src" / "sbd"
    shutil.copytree(Path(sbd.__file__).resolve().parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    kwargs = dict(dataset="phantom", data_dir=str(tmp / "phantom"), preset=E2E_PRESET,
                  snr=E2E_SNR, subjects="1,2", rois="VC", n_trials=4, seed=0)
    cold = _main_in(copy, **kwargs)
    warm = _main_in(copy, **kwargs)
    return cold, warm, copy, kwargs


def test_main_decodes_above_chance_for_every_subject(main_runs):
    cold = main_runs[0]
    summary = mlflow.load_table("summary.json", run_ids=[cold])
    assert sorted(summary["subject"]) == [1, 2]
    n_bank_classes = len(set(FeatureBank(
        features_file(mlflow.get_run(cold).data.params["data_dir"], "efficientnet-lite0",
                      "bank")).wnids))
    rows = summary.to_dict("records")
    print(f"\nmain on the {E2E_PRESET} phantom (snr {E2E_SNR:g}):", rows,
          "bank classes", n_bank_classes)
    for row in rows:
        evaluation = mlflow.get_run(row["evaluate_run"]).data.metrics
        assert row["test/wup_top1"] > row["test/wup_chance"], row
        assert row["test/wup_p"] < 0.01, row
        # exact top-5 counts only where the bank holds the sample's category (40 % of the
        # test categories here, as 20 of GOD's 50 are in ILSVRC-1k)
        n_inbank = evaluation["test/n_inbank"]
        assert 0 < n_inbank < evaluation["test/n_samples"]
        assert evaluation["test/top5_chance_inbank"] == pytest.approx(5 / n_bank_classes)
        assert evaluation["test/top5_chance"] == pytest.approx(
            5 / n_bank_classes * n_inbank / evaluation["test/n_samples"])
        assert evaluation["test/top5_acc_inbank"] > 5 * evaluation["test/top5_chance_inbank"]
        # the answers say something about their own sample, not only about the test set
        assert evaluation["test/wup_specific"] > 0, row
        assert row["test/ident2_acc"] >= 0.9 and row["test/ident10_acc"] >= 0.5, row
        # the paper's pipeline is scored beside it, on the same samples: it decodes too on
        # this nearly noiseless phantom (a baseline fitted to the wrong data would not), and
        # the gain's interval is a real one (images resampled, not a single value)
        assert row["baseline/paper/wup_top1"] > row["test/wup_chance"], row
        assert evaluation["baseline/paper/gain_wup_specific_ci_low"] < \
            evaluation["baseline/paper/gain_wup_specific_ci_high"]


def test_main_logs_one_child_run_per_step_and_the_summary(main_runs):
    cold = main_runs[0]
    children = _child_runs(cold)
    steps = sorted(r.data.tags["sbd.entry_point"] for r in children)
    # prepare + extract once; decoder, generate, evaluate per subject
    assert steps == sorted(["prepare_data", "extract_features"]
                           + 2 * ["train_decoder", "generate", "evaluate"])
    assert all(r.info.status == "FINISHED" for r in children)
    # each chain evaluates the decoder that chain tuned, not another's champion
    by_step = {}
    for r in children:
        by_step.setdefault((r.data.tags["sbd.entry_point"], r.data.params.get("subject")), r)
    for subject in ("1", "2"):
        assert by_step[("evaluate", subject)].data.params["decoder"] == \
            by_step[("train_decoder", subject)].data.tags["sbd.decoder_uri"]
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(cold)}
    assert {"summary.json", "summary.csv", "overview"} <= artifacts


def test_second_main_reuses_every_step(main_runs):
    cold, warm = main_runs[:2]
    assert _child_runs(warm) == []
    metrics = mlflow.get_run(warm).data.metrics
    assert metrics["main/n_steps_run"] == 0
    assert metrics["main/n_steps_reused"] == 8
    assert mlflow.load_table("summary.json", run_ids=[warm]).equals(
        mlflow.load_table("summary.json", run_ids=[cold]))


def test_higher_visual_rois_decode_semantics_better_than_v1(phantom_features):
    """Out-of-fold (held-out category) predictions of the 96 training images, default snr."""
    bank = FeatureBank(features_file(phantom_features, "efficientnet-lite0", "bank"))
    train_bank = FeatureBank(features_file(phantom_features, "efficientnet-lite0", "training"))
    labeller = KNNLabeller(k=5, metric="cosine", rule="vote").fit(bank)
    wup = {}
    for roi in ("V1", "HVC"):
        per_subject = []
        for subject in (1, 2):
            s = god.load(phantom_features, subject, roi, "train")
            Y = train_bank.lookup(s.image_ids)
            P = out_of_fold_predictions(s.voxels, Y, np.asarray(s.wnids), {"alpha": 100.0})
            ranked = [[w for w, _ in row] for row in labeller.predict_labels(P)]
            per_subject.append(wup_scores(s.wnids, ranked)[0].mean())
        wup[roi] = float(np.mean(per_subject))
    assert wup["HVC"] > wup["V1"] + 0.03, wup



def test_an_uncommitted_edit_reruns_the_steps_whose_code_it_touches(main_runs):
    """Edit (without committing) a file of the package's copy and run ``main`` again: the
    steps that import it, directly or not, run again; the others are reused.  (Last in
    this module: it edits the copy the other tests' runs came from.)"""
    cold, _, copy, kwargs = main_runs
    target = copy / "metrics" / "decoding.py"  # imported by evaluate, not by the steps before
    target.write_text(target.read_text() + "\n# an uncommitted edit\n")
    edited = _main_in(copy, **kwargs)
    assert sorted(r.data.tags["sbd.entry_point"] for r in _child_runs(edited)) == \
        ["evaluate", "evaluate"]
    assert mlflow.get_run(edited).data.metrics["main/n_steps_reused"] == 6
    assert mlflow.load_table("summary.json", run_ids=[edited])["test/wup_top1"].tolist() == \
        mlflow.load_table("summary.json", run_ids=[cold])["test/wup_top1"].tolist()
