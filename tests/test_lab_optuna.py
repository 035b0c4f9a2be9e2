"""Optuna workers of a lab, for real on this machine: ``train_ridge`` processes on one
PostgreSQL study, tracked by a PostgreSQL-backed ``mlflow server``.

- Two workers at once: the trials add up and the study's best is registered once.
- A worker SIGKILLed mid-trial: the next worker fails the stale trial (Optuna heartbeat),
  retries it (``RetryFailedTrialCallback``) and finishes the study.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from lab_services import use_server

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[1]


def _worker(data: Path, storage: str, study: str, n_trials: int, seed: int, log: Path,
            env: dict[str, str]) -> subprocess.Popen:
    """``train_ridge`` in a process of its own, as a worker on another machine would."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "entrypoints" / "train_ridge.py"), "--data-dir", str(data),
         "--subject", "1", "--roi", "VC", "--n-trials", str(n_trials), "--storage", storage,
         "--study-name", study, "--seed", str(seed), "--n-splits", "3"],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _states(storage: str, study: str, beating: bool = False) -> list[tuple[int, str]]:
    """(number, state) of the study's trials, read straight from PostgreSQL; with
    ``beating``, only the trials whose heartbeat has been recorded."""
    import psycopg

    with psycopg.connect(storage) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass('trials') IS NOT NULL, "
                    "to_regclass('trial_heartbeats') IS NOT NULL")
        trials, beats = cur.fetchone()
        if not trials or (beating and not beats):  # no worker has made the tables yet
            return []
        join = "JOIN trial_heartbeats h ON h.trial_id = t.trial_id " if beating else ""
        cur.execute("SELECT t.number, t.state FROM trials t JOIN studies s "
                    f"ON s.study_id = t.study_id {join}WHERE s.study_name = %s "
                    "ORDER BY t.number", (study,))
        return [(n, str(s)) for n, s in cur.fetchall()]


@pytest.fixture
def workers_env(mlflow_server):
    with use_server(mlflow_server, "lab-workers"):
        yield {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_two_workers_on_one_postgresql_study(postgres, phantom_features, workers_env,
                                             tmp_path):
    import optuna

    storage = postgres.create_database("optuna_two")
    procs = [_worker(phantom_features, storage, "two-workers", 4, seed, tmp_path / f"w{seed}",
                     workers_env) for seed in (1, 2)]
    for seed, p in zip((1, 2), procs):
        assert p.wait(timeout=300) == 0, (tmp_path / f"w{seed}").read_text()[-3000:]
    study = optuna.load_study(study_name="two-workers", storage=storage)
    states = [t.state for t in study.trials]
    assert len(states) == 8 and all(s.is_finished() and s != optuna.trial.TrialState.FAIL
                                    for s in states), states  # complete or pruned
    versions = mlflow.MlflowClient().search_model_versions(
        "name = 'sbd-phantom-s1-VC-ridge' and tags.optuna_study = 'two-workers'")
    registered = [v.tags["optuna_trial"] for v in versions]
    # each best the workers saw registered once, the study's final best among them
    assert len(registered) == len(set(registered)) >= 1, registered
    assert str(study.best_trial.number) in registered
    runs = mlflow.search_runs(filter_string="tags.`sbd.entry_point` = 'train_ridge' and "
                              "params.study_name = 'two-workers'", output_format="list")
    assert len(runs) == 2
    assert {r.data.tags["sbd.ridge_uri"] for r in runs} <= {
        f"models:/{v.name}/{v.version}" for v in versions}


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(postgres, phantom_features,
                                                               workers_env, tmp_path):
    import optuna

    storage = postgres.create_database("optuna_killed")
    env = {**workers_env, "SBD_OPTUNA_HEARTBEAT_S": "1"}  # stale after 3 s of silence
    stale = None
    for attempt in range(3):
        proc = _worker(phantom_features, storage, "killed", 200, attempt, tmp_path / "k.log",
                       env)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            # a few trials done, one under way whose heartbeat is recorded (a trial killed
            # before its first heartbeat is never seen as stale: Optuna's blind spot)
            running = [n for n, s in _states(storage, "killed", beating=True)
                       if s == "RUNNING"]
            if running and running[0] >= 2:
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        running = [n for n, s in _states(storage, "killed") if s == "RUNNING"]
        if running:
            stale = running[0]
            break
    assert stale is not None, "never caught a worker mid-trial"
    done_before = sum(s in ("COMPLETE", "PRUNED") for _, s in _states(storage, "killed"))
    time.sleep(3.5)
    resumed = _worker(phantom_features, storage, "killed", 3, 7, tmp_path / "r.log", env)
    assert resumed.wait(timeout=300) == 0, (tmp_path / "r.log").read_text()[-3000:]
    study = optuna.load_study(study_name="killed", storage=storage)
    by_number = {t.number: t for t in study.trials}
    assert by_number[stale].state == optuna.trial.TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == stale]
    assert len(retried) == 1 and retried[0].state.is_finished(), retried
    assert retried[0].state != optuna.trial.TrialState.FAIL
    # the same configuration (what it had drawn when killed; the rest is drawn again)
    assert by_number[stale].params.items() <= retried[0].params.items()
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert sum(t.state in finished for t in study.trials) == done_before + 3
