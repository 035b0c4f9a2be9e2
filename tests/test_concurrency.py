"""Two ``main`` runs at once on one data folder and one tracking store, each in a fresh
process with ``force=true`` (every step rerun): both finish, the second waits for what the
first is writing into the folder (and says who holds it), and both log the same figures,
so the same parameters give the same results whatever else runs beside them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow

ROOT = Path(__file__).resolve().parents[1]
# figures that are measured times (or depend on which run came first), not results
TIMING = ("seconds", "_s", "images_per_s", "main/n_steps_reused", "main/n_steps_run",
          "build_seconds", "tiny_time/")


def _is_timing(key: str) -> bool:
    return any(t in key for t in TIMING)


def _child_metrics(parent: str) -> dict[tuple[str, str], dict[str, float]]:
    runs = mlflow.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
                              output_format="list", search_all_experiments=True)
    out = {}
    for r in runs:
        key = (r.data.tags["sbd.entry_point"], r.data.params.get("subject", ""))
        out[key] = {k: v for k, v in r.data.metrics.items() if not _is_timing(k)}
    return out


def test_two_concurrent_main_runs_on_one_folder_both_finish_with_the_same_figures(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # the store is new: its experiments are its own
    args = [sys.executable, str(ROOT / "entrypoints" / "main.py"), "--preset", "small",
            "--data-dir", str(tmp_path / "phantom"), "--subjects", "1", "--n-trials", "4",
            "--force", "true"]
    procs = []
    for i in range(2):
        log = open(tmp_path / f"main{i}.log", "w")
        procs.append((subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log,
                                       stderr=subprocess.STDOUT), log))
        time.sleep(3)
    for i, (p, log) in enumerate(procs):
        rc = p.wait(timeout=1100)
        log.close()
        assert rc == 0, (tmp_path / f"main{i}.log").read_text()[-3000:]
    logs = [(tmp_path / f"main{i}.log").read_text() for i in range(2)]
    # the second waited for the first's phantom (and said who held it)
    assert "waiting for phantom" in logs[1] and "held by pid" in logs[1]
    # each ends with the console summary: the headline measures beside the paper's
    for text in logs:
        assert "wup_specific" in text and "paper" in text and "Look: " in text
    parents = [line.split()[2].rstrip(":") for text in logs for line in text.splitlines()
               if line.startswith("main run ")]
    assert len(parents) == 2 and parents[0] != parents[1]
    mlflow.set_tracking_uri(store)
    first, second = (_child_metrics(p) for p in parents)
    assert set(first) == set(second) and ("evaluate", "1") in first
    for step in first:
        assert first[step] == second[step], step
    # one build in the folder; no stray partial or staging folders
    assert not list((tmp_path / "phantom").glob(".phantom-stage-*"))
    assert not list((tmp_path / "phantom").rglob("*.partial"))
