"""Step runs and the get-or-run cache of the multistep main, on a real tracking store."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

import sbd
from sbd import tracking


CALLS: list[int] = []


def toy_step(x: int) -> str:
    with tracking.step_run("toy", {"x": x}) as run:
        CALLS.append(x)
        mlflow.log_metric("double", 2 * x)
        return run.info.run_id


def failing_step(x: int) -> str:
    with tracking.step_run("toy", {"x": x}):
        raise RuntimeError("boom")


def test_step_run_logs_params_and_tags(mlflow_store):
    run_id = toy_step(3)
    run = mlflow.get_run(run_id)
    assert run.data.params == {"x": "3"}
    assert run.data.tags[tracking.ENTRY_POINT_TAG] == "toy"
    assert run.data.metrics["double"] == 6
    assert run.info.status == "FINISHED"


def test_default_run_names_tell_subject_and_roi_apart():
    assert tracking.default_run_name("evaluate", {"subject": 2, "roi": "V1"}) == "evaluate s2 V1"
    assert tracking.default_run_name("prepare_data", {"dataset": "phantom"}) == "prepare_data"


def test_step_run_nests_under_an_active_run(mlflow_store):
    with mlflow.start_run() as parent:
        child = toy_step(1)
    assert mlflow.get_run(child).data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_under_mlflow_run_child_steps_get_their_own_runs(mlflow_store, monkeypatch):
    """``mlflow run`` creates the run and passes it in MLFLOW_RUN_ID: the step resumes it,
    and the steps it calls are child runs of it, not the same run again."""
    client = mlflow.MlflowClient()
    project_run = client.create_run(mlflow.get_experiment_by_name("sbd-tests").experiment_id)
    monkeypatch.setenv("MLFLOW_RUN_ID", project_run.info.run_id)
    with tracking.step_run("parent", {"y": 1}) as parent:
        first, second = toy_step(1), toy_step(2)
    assert parent.info.run_id == project_run.info.run_id
    assert len({first, second, parent.info.run_id}) == 3
    for child in (first, second):
        assert mlflow.get_run(child).data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert mlflow.get_run(parent.info.run_id).data.tags[tracking.ENTRY_POINT_TAG] == "parent"


def test_get_or_run_reuses_finished_runs_with_the_same_key(mlflow_store):
    CALLS.clear()
    with mlflow.start_run():
        first, reused1 = tracking.get_or_run("toy", toy_step, {"x": 1})
        again, reused2 = tracking.get_or_run("toy", toy_step, {"x": 1})
        other, reused3 = tracking.get_or_run("toy", toy_step, {"x": 2})
        upstream, reused4 = tracking.get_or_run("toy", toy_step, {"x": 1},
                                                upstream=["some-run"])
        forced, reused5 = tracking.get_or_run("toy", toy_step, {"x": 1},
                                              force=True)
    assert (reused1, reused2, reused3, reused4, reused5) == (False, True, False, False, False)
    assert again == first
    assert len({first, other, upstream, forced}) == 4
    assert CALLS == [1, 2, 1, 1]


def test_a_cached_run_whose_outputs_changed_is_not_reused(mlflow_store):
    with mlflow.start_run():
        first, _ = tracking.get_or_run("toy", toy_step, {"x": 7})
        again, reused = tracking.get_or_run("toy", toy_step, {"x": 7},
                                            still_valid=lambda run: False)
    assert not reused and again != first


def test_a_failed_step_is_never_reused(mlflow_store):
    with mlflow.start_run():
        with pytest.raises(RuntimeError, match="boom"):
            tracking.get_or_run("toy", failing_step, {"x": 5})
        key = tracking.cache_key("toy", {"x": 5}, (), tracking.source_hash())
        assert tracking.find_finished_run(key) is None


def test_an_uncommitted_source_edit_changes_the_key_and_reruns(mlflow_store, tmp_path,
                                                              monkeypatch):
    """The key covers the code that runs, not the last commit: editing a file of (a copy
    of) the package, without committing, makes a cached step run again."""
    copy = tmp_path / "sbd"
    shutil.copytree(Path(sbd.__file__).resolve().parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    hash_of = tracking.source_hash
    before = hash_of(root=copy)
    assert before == hash_of()  # the copy hashes like the package itself
    monkeypatch.setattr(tracking, "source_hash",
                        lambda module=None, root=None: hash_of(module, copy))
    with mlflow.start_run():
        first, _ = tracking.get_or_run("toy", toy_step, {"x": 11})
        again, reused = tracking.get_or_run("toy", toy_step, {"x": 11})
        assert reused and again == first
        target = copy / "decoding" / "ridge" / "_estimator.py"
        target.write_text(target.read_text() + "\n# an uncommitted edit\n")
        assert hash_of(root=copy) != before
        edited, reused = tracking.get_or_run("toy", toy_step, {"x": 11})
    assert not reused and edited != first
    assert mlflow.get_run(edited).data.tags[tracking.SOURCE_TAG] == hash_of(root=copy)
