"""Tracking conventions shared by every step.

Every step is one MLflow run, opened with :func:`step_run`.  Under ``mlflow run`` the
run already exists (``MLFLOW_RUN_ID``) and is resumed; called from Python inside an
active run, the step becomes a nested child run; otherwise a new top-level run.

Tags every step run carries: ``sbd.entry_point``, ``sbd.version`` and, when the code
lives in a git checkout, ``mlflow.source.git.commit``.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow

import sbd

ENTRY_POINT_TAG = "sbd.entry_point"
VERSION_TAG = "sbd.version"
GIT_COMMIT_TAG = "mlflow.source.git.commit"


def git_commit(path: str | Path | None = None) -> str | None:
    """The HEAD commit of the checkout holding ``path`` (default: the sbd package), or None."""
    where = Path(path) if path is not None else Path(sbd.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _param_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@contextmanager
def step_run(entry_point: str, params: dict[str, Any], run_name: str | None = None,
             tags: dict[str, str] | None = None) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run of one step and log its parameters and standard tags.

    Parameters already on the run (``mlflow run`` logs them first) are not logged again,
    so a step may normalise a value (an empty ``data_dir`` to its default) without a
    conflict; normalised values go to tags ``sbd.resolved.<name>``.
    """
    active = mlflow.active_run()
    resuming = active is None and os.environ.get("MLFLOW_RUN_ID")
    if resuming:
        run = mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
    else:
        run = mlflow.start_run(run_name=run_name or entry_point, nested=active is not None)
    with run:
        existing = mlflow.get_run(run.info.run_id).data.params
        new = {k: _param_str(v) for k, v in params.items() if k not in existing}
        if new:
            mlflow.log_params(new)
        for k, v in params.items():
            if k in existing and existing[k] != _param_str(v):
                mlflow.set_tag(f"sbd.resolved.{k}", _param_str(v))
        all_tags = {ENTRY_POINT_TAG: entry_point, VERSION_TAG: sbd.__version__}
        commit = git_commit()
        if commit and GIT_COMMIT_TAG not in mlflow.get_run(run.info.run_id).data.tags:
            all_tags[GIT_COMMIT_TAG] = commit
        all_tags.update(tags or {})
        mlflow.set_tags(all_tags)
        yield run


def log_json_line(figures: dict[str, Any]) -> None:
    """Log the numeric entries of ``figures`` as metrics of the active run."""
    mlflow.log_metrics({k: float(v) for k, v in figures.items() if isinstance(v, (int, float))})
