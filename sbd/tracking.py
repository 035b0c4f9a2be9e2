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
import numpy as np

import sbd

ENTRY_POINT_TAG = "sbd.entry_point"
VERSION_TAG = "sbd.version"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
# which data a step ran on (chain_tags) and what it produced (model_tags)
DATASET_TAG = "sbd.dataset"
SUBJECT_TAG = "sbd.subject"
ROI_TAG = "sbd.roi"
BACKBONE_TAG = "sbd.backbone"
GENERATOR_TAG = "sbd.generator"
GENERATE_RUN_TAG = "sbd.generate_run"
MODEL_ID_TAG = "sbd.model_id"
OBJECTIVE_TAG = "sbd.objective"
RIDGE_PARAMS_SOURCE_TAG = "sbd.ridge_params_source"
DECODER_VERSION_TAG = "sbd.decoder_version"
FIELD_CLASSIFIER_TAG = "sbd.field_classifier"
FIELD_SKIPPED_TAG = "sbd.field_skipped"
FIELD_BASELINE_SKIPPED_TAG = "sbd.field_baseline_skipped"
CIRCULAR_TAG = "sbd.circular_backbone"
DATA_ID_TAG = "sbd.data_id"
DATA_DIR_TAG = "sbd.data_dir"
DATA_MISMATCH_TAG = "sbd.data_mismatch"


def chain_tags(dataset: str, subject: int | str | None = None, roi: str | None = None,
               backbone: str | None = None) -> dict[str, str]:
    """``sbd.dataset`` / ``sbd.subject`` / ``sbd.roi`` / ``sbd.backbone`` of a step run (the
    ones given), as the UI filters and ``evaluate`` checks them."""
    tags = {DATASET_TAG: dataset}
    if subject is not None:
        tags[SUBJECT_TAG] = str(int(subject))
    if roi is not None:
        tags[ROI_TAG] = roi
    if backbone is not None:
        tags[BACKBONE_TAG] = backbone
    return tags


def data_tags(identity) -> dict[str, str]:
    """``sbd.data_id`` / ``sbd.data_dir`` of a :class:`sbd.data.identity.DataIdentity`:
    which data a step run read (the UI filters and compares runs by them)."""
    return {DATA_ID_TAG: identity.data_id, DATA_DIR_TAG: identity.data_dir}


def mark_circular(reason: str) -> None:
    """Warn about, and tag the active run with, a circular backbone that was allowed
    (:func:`sbd.features.backbones.check_circular`); nothing when ``reason`` is empty."""
    if reason:
        import warnings

        warnings.warn(f"decoding with a circular backbone: {reason}", stacklevel=2)
        mlflow.set_tag(CIRCULAR_TAG, reason)


def model_tag(kind: str) -> str:
    """``sbd.<kind>_uri``: the registered version a step produced (kind: ridge, knn,
    decoder, tiny)."""
    return f"sbd.{kind}_uri"


def model_tags(kind: str, uri: str, champion: bool) -> dict[str, str]:
    """``sbd.<kind>_uri`` and ``sbd.<kind>_champion`` of a step that registered ``uri``."""
    return {model_tag(kind): uri, f"sbd.{kind}_champion": str(bool(champion)).lower()}


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


SOURCE_TAG = "sbd.source_sha"


def source_hash(module: str | None = None, root: str | Path | None = None) -> str:
    """A hash of the code that runs: the files :func:`source_files` lists for ``module`` (the
    package files it imports, directly or not), by relative path and content.  Unlike the
    git commit it sees uncommitted edits, so a dirty tree gets its own cache key, and an
    edit reruns only the steps whose code it touches."""
    import hashlib

    root = Path(root) if root is not None else Path(sbd.__file__).resolve().parent
    h = hashlib.sha256()
    for path in source_files(module, root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def source_files(module: str | None = None, root: str | Path | None = None) -> list[Path]:
    """The files of the package (``root``, default the imported ``sbd``'s folder) that
    importing ``module`` runs or reads, sorted: its module, every module it imports directly
    or not (lazy imports included; grimp's import graph), the ``__init__`` of every package
    on the way (Python runs them) with what they import, and those packages' data files.
    Every file of the package when ``module`` is None or outside it.  What
    :func:`source_hash` hashes, and the code a registered model ships."""
    root = Path(root) if root is not None else Path(sbd.__file__).resolve().parent
    every = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in (".pyc", ".pyo"))
    package = root.name
    if module is None or not (module == package or module.startswith(package + ".")):
        return every
    import grimp

    graph = grimp.build_graph(package, cache_dir=None)
    if module not in graph.modules:
        return every
    modules: set[str] = set()
    todo = {module}
    while todo:  # close over imports and the packages that hold each module
        name = todo.pop()
        modules.add(name)
        parents = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        todo |= (graph.find_upstream_modules(name) | parents) - modules
    folders = {root.joinpath(*m.split(".")[1:]) for m in modules}
    keep = []
    for path in every:
        rel = path.relative_to(root).with_suffix("")
        name = ".".join((package, *rel.parts))
        if path.suffix == ".py":
            if name in modules or (rel.name == "__init__" and name[:-9] in modules):
                keep.append(path)
        elif any(_data_of(path, folder) for folder in folders):
            keep.append(path)
    return keep


def _data_of(path: Path, folder: Path) -> bool:
    """Whether non-Python file ``path`` is data of package ``folder``: inside it, and not
    inside a subpackage of it (a folder with an ``__init__.py``)."""
    try:
        rel = path.parent.relative_to(folder)
    except ValueError:
        return False
    parent = folder
    for part in rel.parts:
        parent = parent / part
        if (parent / "__init__.py").is_file():
            return False
    return True


def _param_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def default_run_name(entry_point: str, params: dict[str, Any]) -> str:
    """``<entry point> [s<subject>] [<roi>]``: runs of one sweep tell apart in the UI."""
    parts = [entry_point]
    if params.get("subject") not in (None, ""):
        parts.append(f"s{_param_str(params['subject'])}")
    if params.get("roi"):
        parts.append(str(params["roi"]))
    return " ".join(parts)


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
        # Consume the variable (as mlflow.start_run() does): left set, the first nested
        # start_run() of a child step would resume this run instead of opening its own.
        run = mlflow.start_run(run_id=os.environ.pop("MLFLOW_RUN_ID"))
    else:
        run = mlflow.start_run(run_name=run_name or default_run_name(entry_point, params),
                               nested=active is not None)
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


CACHE_KEY_TAG = "sbd.cache_key"


def cache_key(entry_point: str, params: dict[str, Any], upstream: list[str] | tuple[str, ...] = (),
              source: str | None = None) -> str:
    """A hash of what determines a step's result: entry point, params, code and inputs.

    ``upstream`` are the run ids the step reads from (so a rebuilt dataset invalidates
    everything downstream of it); ``source`` the code (:func:`source_hash`).
    """
    import hashlib
    import json

    payload = json.dumps({"entry_point": entry_point,
                          "params": {k: _param_str(v) for k, v in sorted(params.items())},
                          "upstream": list(upstream), "source": source or ""},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def find_finished_run(key: str, experiment_ids: list[str] | None = None) -> str | None:
    """The newest FINISHED run tagged with cache key ``key``, or None."""
    client = mlflow.MlflowClient()
    if experiment_ids is None:
        active = mlflow.active_run()
        experiment_ids = ([active.info.experiment_id] if active else
                          [e.experiment_id for e in client.search_experiments()])
    runs = client.search_runs(
        experiment_ids,
        filter_string=f"tags.`{CACHE_KEY_TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


def get_or_run(entry_point: str, func, params: dict[str, Any], upstream: list[str] | tuple[str, ...] = (),
               force: bool = False, still_valid=None) -> tuple[str, bool]:
    """Run step ``func(**params)`` unless a finished run with the same cache key exists.

    Returns ``(run_id, reused)``. The key covers entry point, params, the code's
    :func:`source_hash` (committed or not) and the upstream run ids (see
    :func:`cache_key`); it is set as tag ``sbd.cache_key`` on the step's run once the step
    has finished, so a failed or killed step is never reused.  ``still_valid(run)``, when
    given, refuses a cached run whose outputs are gone or changed since (a deleted
    features folder, a data folder rebuilt with other parameters by another run).
    """
    source = source_hash(getattr(func, "__module__", None))
    key = cache_key(entry_point, params, upstream, source)
    if not force:
        found = find_finished_run(key)
        if found is not None and (still_valid is None
                                  or still_valid(mlflow.MlflowClient().get_run(found))):
            return found, True
    run_id = func(**params)
    client = mlflow.MlflowClient()
    client.set_tag(run_id, CACHE_KEY_TAG, key)
    client.set_tag(run_id, SOURCE_TAG, source)
    return run_id, False


# --------------------------------------------------------------------- tuning
class TrialLogger:
    """Optuna callback: each finished trial becomes a nested MLflow run ``<prefix>-NNN`` of
    the active run — the one logger of every tuner (:mod:`sbd.decoding.tuning`).

    It logs the trial's configuration (user attribute ``params``, searched and fixed values;
    else ``trial.params``) as params, its ``val/*`` user attributes as metrics, each
    reported intermediate value as ``running`` (``val/<objective>_running``) at step = fold,
    and tags ``optuna.study``, ``optuna.trial``, ``optuna.state`` (COMPLETE, PRUNED, FAIL)
    and the objective.  A pruned trial did its job: its run is FINISHED; a failed one FAILED.
    With no active run it does nothing."""

    def __init__(self, prefix: str = "trial", objective: str | None = None,
                 running: str | None = None) -> None:
        self.prefix, self.objective, self.running = prefix, objective, running

    def __call__(self, study, trial) -> None:
        if mlflow.active_run() is None:
            return
        state = trial.state.name
        status = "FAILED" if state == "FAIL" else "FINISHED"
        with mlflow.start_run(run_name=f"{self.prefix}-{trial.number:03d}", nested=True):
            mlflow.log_params(trial.user_attrs.get("params", trial.params))
            if self.running:
                for step, value in sorted(trial.intermediate_values.items()):
                    mlflow.log_metric(self.running, value, step=int(step))
            mlflow.log_metrics({k: float(v) for k, v in trial.user_attrs.items()
                                if k.startswith("val/")})
            tags = {"optuna.study": study.study_name, "optuna.trial": str(trial.number),
                    "optuna.state": state}
            if self.objective:
                tags[OBJECTIVE_TAG] = self.objective
            mlflow.set_tags(tags)
            mlflow.end_run(status)


def log_study_summary(result, artifact_dir: str = "tuning") -> None:
    """Log a ridge tuning result (:class:`sbd.decoding.tuning.TuneResult`) to the active
    run: best params (``best_<name>``), validation metrics of the best trial
    (``val/<score>``) and of the paper's settings (``val/<score>_paper``,
    ``val/<score>_paper_adjusted``), the trials table, best params JSON, and the
    optimisation-history and parameter-importance figures (PNG)."""
    import json
    import logging
    import tempfile
    import warnings

    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    mlflow.log_params({f"best_{k}": v for k, v in result.best_params.items()})
    metrics = {f"val/{k}": v for k, v in result.best_scores.items()}
    metrics.update({f"val/{k}_paper": v for k, v in result.paper_scores.items()})
    metrics.update({f"val/{k}_paper_adjusted": v for k, v in result.paper_adjusted_scores.items()})
    metrics["tuning/n_trials"] = len(result.study.trials)
    metrics["tuning/n_decompositions"] = result.n_decompositions
    mlflow.log_metrics(metrics)
    mlflow.log_text(json.dumps({"objective": result.objective, "params": result.best_params,
                                "scores": result.best_scores, "paper": result.paper_scores,
                                "paper_adjusted": result.paper_adjusted_scores}, indent=2),
                    f"{artifact_dir}/best_params.json")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trials.csv")
        result.study.trials_dataframe().to_csv(path, index=False)
        mlflow.log_artifact(path, artifact_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fname, plot in (("optimization_history.png", ovm.plot_optimization_history),
                            ("param_importances.png", ovm.plot_param_importances)):
            try:
                ax = plot(result.study)
            except (ValueError, RuntimeError, ZeroDivisionError) as err:
                logging.getLogger(__name__).warning("No %s: %s", fname, err)
                continue
            fig = np.ravel(ax)[0].figure
            fig.tight_layout()
            mlflow.log_figure(fig, f"{artifact_dir}/{fname}")
            plt.close(fig)


def log_training_data(data) -> None:
    """Metrics ``data/n_train_dropped`` and ``data/n_train`` of a
    :class:`sbd.decoding.training_data.TrainingData` in the active run, and the dropped
    image ids as ``data/dropped_training_samples.txt`` when there are any."""
    mlflow.log_metrics({"data/n_train_dropped": float(len(data.dropped)),
                        "data/n_train": float(len(data.X))})
    if data.dropped:
        mlflow.log_text("\n".join(data.dropped) + "\n", "data/dropped_training_samples.txt")


def heartbeat_s(default: float = 10.0) -> float:
    """Seconds between an RDB study's trial heartbeats: ``SBD_OPTUNA_HEARTBEAT_S`` when set
    (0 turns them off), else ``default`` (:data:`sbd.decoding.tuning.HEARTBEAT_S`)."""
    return float(os.environ.get("SBD_OPTUNA_HEARTBEAT_S", default))
