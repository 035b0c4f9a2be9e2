"""The prepare_data step and entry point: phantom build (reused when unchanged), GOD
validation report as run artifacts, non-zero exit on a problem."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from sbd.data import phantom
from sbd.steps import prepare_data

REPO = Path(__file__).resolve().parents[1]


def _artifact_text(run_id: str, path: str) -> str:
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path)
    return Path(local).read_text()


def test_phantom_step_reuses_the_build_and_logs_the_manifest(phantom_dir, tmp_path):
    root = shutil.copytree(phantom_dir, tmp_path / "p")
    run_id = prepare_data.run(dataset="phantom", data_dir=str(root), preset="small", seed=0,
                              progress=False)
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["sbd.entry_point"] == "prepare_data"
    assert run.data.tags["sbd.data.reused"] == "true"  # same params: no rebuild
    assert run.data.params["snr"] == "-1.0" and run.data.params["preset"] == "small"
    assert run.data.metrics["data/n_test_categories"] == phantom.PRESETS["small"].n_test_categories
    manifest = json.loads(_artifact_text(run_id, "data/phantom_manifest.json"))
    assert manifest == phantom.read_manifest(root)
    assert run.data.tags["sbd.data.fmri_key"] == manifest["fmri_key"]


def test_god_step_logs_the_report(phantom_dir, tmp_path):
    # the phantom is a valid GOD folder
    root = shutil.copytree(phantom_dir, tmp_path / "god")
    run_id = prepare_data.run(dataset="god", data_dir=str(root))
    run = mlflow.get_run(run_id)
    assert run.data.tags["sbd.data.valid"] == "true"
    text = _artifact_text(run_id, "data/validation.txt")
    assert "status: OK" in text and "subject 1:" in text and "VC" in text
    report = json.loads(_artifact_text(run_id, "data/validation.json"))
    assert report["ok"] and set(report["subjects"]) == {"1", "2"}

    # a problem: missing stimulus images → the run fails with the report logged
    shutil.rmtree(root / "fMRI" / "imagenet" / "images" / "test")
    with pytest.raises(prepare_data.DataProblem, match="stimulus image folder .*test not found"):
        prepare_data.run(dataset="god", data_dir=str(root))
    failed = mlflow.search_runs(filter_string="tags.`sbd.entry_point` = 'prepare_data' "
                                "and tags.`sbd.data.valid` = 'false'", output_format="list")
    assert failed and failed[0].info.status == "FAILED"
    assert "PROBLEM" in _artifact_text(failed[0].info.run_id, "data/validation.txt")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="Unknown dataset='imagenet'"):
        prepare_data.run(dataset="imagenet")


def test_entry_point_exits_non_zero_on_an_empty_god_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "entrypoints/prepare_data.py", "--dataset", "god", "--data-dir",
         str(tmp_path), "--preset", "default", "--snr", "-1.0", "--seed", "0.0",
         "--n-subjects", "0.0"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "no fMRI files" in out.stderr and "figshare" in out.stderr
