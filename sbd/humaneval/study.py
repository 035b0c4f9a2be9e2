"""A human study of one generate run: where it lives, its trials, its image cache.

Where the answers live (one folder per generate run, *the study folder*):

1. ``store_dir`` when given (``--store``), else ``$SBD_HUMANEVAL_DIR/<run_id>`` when set;
2. else, when the run's artifacts are on the local disk (``file:`` artifact URI, as with
   ``mlruns/``), the folder ``humaneval/`` *beside* the run's ``artifacts/`` folder —
   next to the run, deleted with it, and not itself an artifact;
3. else (remote artifact store) ``~/.cache/sbd/humaneval/<run_id>``.

Inside: ``answers-<foil>.sqlite`` (one study per foil condition), ``cache/`` (the images,
downloaded from the run's artifacts with ``mlflow.artifacts.download_artifacts``; bank
foils are copied in from the bank folder) and CSV exports.  The server only ever sends
files of ``cache/``, looked up by trial id.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlparse

import mlflow
from mlflow.exceptions import MlflowException
from tqdm import tqdm

import sbd
from sbd import tracking
from sbd.data import layout
from sbd.files import replace_path, staged_path
from sbd.metrics.generation import GENERATION_CSV
from sbd.humaneval.schedule import (FOILS, Trial, build_trials, check_relative_path,
                                    read_generation_table)
from sbd.humaneval.store import AnswerStore, now

log = logging.getLogger(__name__)


ROLES = ("stimulus", "target", "foil")


def get_run(run_id: str) -> mlflow.entities.Run:
    """The MLflow run ``run_id``, or a ValueError naming it and the tracking URI."""
    try:
        return mlflow.MlflowClient().get_run(run_id)
    except MlflowException as e:
        raise ValueError(f"No MLflow run {run_id!r} in tracking store {mlflow.get_tracking_uri()}: {e.message}") from e


def study_dir(run_id: str, store_dir: str | Path | None = None) -> Path:
    """The study folder of ``run_id`` (see the module docstring for the rule)."""
    if store_dir not in (None, ""):
        return Path(store_dir)
    if os.environ.get("SBD_HUMANEVAL_DIR"):
        return Path(os.environ["SBD_HUMANEVAL_DIR"]) / run_id
    uri = get_run(run_id).info.artifact_uri
    parsed = urlparse(uri)
    if parsed.scheme in ("file", "") and uri:
        artifacts = Path(unquote(parsed.path))
        return artifacts.parent / "humaneval"
    return Path.home() / ".cache" / "sbd" / "humaneval" / run_id


def db_path(root: Path, foil: str) -> Path:
    if foil not in FOILS:
        raise ValueError(f"Unknown foil={foil!r}; valid: {', '.join(FOILS)}.")
    return root / f"answers-{foil}.sqlite"


def _bank_dir_of(run: mlflow.entities.Run, data_dir: str | Path | None) -> Path:
    """The bank folder: from ``data_dir``, else from the run's data_dir/dataset params and tags."""
    if data_dir in (None, ""):
        p, t = run.data.params, run.data.tags
        data_dir = t.get("sbd.resolved.data_dir") or p.get("data_dir") or ""
        dataset = p.get("dataset") or t.get(tracking.DATASET_TAG) or "phantom"
        data_dir = layout.resolve_data_dir(dataset, data_dir)
    return layout.bank_dir(data_dir)


@dataclass
class Study:
    """An opened study: its run, foil condition, seed, folder, store and image cache."""

    run_id: str
    foil: str
    seed: int
    root: Path
    store: AnswerStore

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def image_file(self, trial: Trial, role: str) -> Path:
        """The cached file of ``role`` ("stimulus", "target", "foil") of ``trial``."""
        if role not in ROLES:
            raise ValueError(f"Unknown role={role!r}; valid: {', '.join(ROLES)}.")
        rel = getattr(trial, role)
        prefix = "bank" if role == "foil" and trial.foil_kind == "bank" else "run"
        path = (self.cache / prefix / check_relative_path(rel, role)).resolve()
        if not path.is_relative_to(self.cache.resolve()):
            raise ValueError(f"{role} path {rel!r} leaves the cache folder.")
        return path


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow progress bar per downloaded file (ours counts them all)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def _fill_cache(study: Study, trials: list[Trial], bank_dir: Path | None) -> None:
    """Download (or copy from the bank) every image of ``trials`` missing from the cache."""
    with _quiet_downloads():
        _fetch_missing(study, trials, bank_dir)


def _fetch_missing(study: Study, trials: list[Trial], bank_dir: Path | None) -> None:
    base_uri = get_run(study.run_id).info.artifact_uri.rstrip("/")    # one lookup, not one per file
    needed: dict[Path, tuple[str, str]] = {}
    for t in trials:
        for role in ROLES:
            path = study.image_file(t, role)
            if not path.exists():
                kind = "bank" if role == "foil" and t.foil_kind == "bank" else "run"
                needed[path] = (kind, getattr(t, role))
    for path, (kind, rel) in tqdm(needed.items(), desc="humaneval: caching images", disable=len(needed) < 50):
        if kind == "run":
            path.parent.mkdir(parents=True, exist_ok=True)     # a file lands as <dst_path>/<basename>
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as staging:
                got = mlflow.artifacts.download_artifacts(artifact_uri=f"{base_uri}/{rel}", dst_path=staging)
                replace_path(got, path)                         # whole, under its cache name
        else:
            if bank_dir is None:
                raise ValueError(f"Bank image {rel!r} is missing from the cache and no bank folder is known.")
            with staged_path(path) as tmp:
                shutil.copyfile(bank_dir / rel, tmp)
        if not path.is_file():
            raise ValueError(f"Image {rel!r} of run {study.run_id} could not be fetched into {path}.")


def open_study(run_id: str, foil: str = "generated", seed: int | None = None, store_dir: str | Path | None = None,
               data_dir: str | Path | None = None, create: bool = True) -> Study:
    """Open the study of ``run_id`` for ``foil``, creating it (trials + image cache) if needed.

    Parameters
    ----------
    run_id : str
        A generate run (artifacts ``generation.csv``, ``generated/…``, ``stimuli/…``).
    foil : {"generated", "bank"}
        The foil condition; each has its own database.
    seed : int, optional
        Seeds the foils and every rater's schedule (default 0 for a new study); an
        existing study keeps its own, and a different explicit seed is an error.
    store_dir : path, optional
        The study folder (default: see :func:`study_dir`).
    data_dir : path, optional
        Data folder with the bank, for ``foil="bank"`` (default: from the run's params).
    create : bool
        When False, a missing study is an error (``report`` and ``export`` use this).
    """
    root = study_dir(run_id, store_dir)
    path = db_path(root, foil)
    run = get_run(run_id)
    bank = _bank_dir_of(run, data_dir) if foil == "bank" else None
    if path.exists():
        store = AnswerStore(path)
        meta = store.meta()
        if meta.get("run_id") != run_id:
            raise ValueError(f"{path} belongs to run {meta.get('run_id')!r}, not {run_id!r}.")
        if seed is not None and int(meta["seed"]) != int(seed):
            raise ValueError(f"{path} was created with seed={meta['seed']}; pass --seed {meta['seed']} "
                             f"or another --store for a new study.")
        study = Study(run_id, foil, int(meta["seed"]), root, store)
        _fill_cache(study, store.trials(), bank if bank is not None and bank.is_dir() else None)
        return study
    if not create:
        raise ValueError(f"No human study of run {run_id} with foil={foil!r} at {path}; "
                         f"serve it first (python -m sbd.humaneval serve --run-id {run_id}).")
    seed = 0 if seed is None else int(seed)
    cache = root / "cache"
    with _quiet_downloads():
        csv_path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=GENERATION_CSV,
                                                       dst_path=str(cache / "run"))
    trials = build_trials(read_generation_table(csv_path), foil=foil, seed=seed, bank_dir=bank)
    study = Study(run_id, foil, int(seed), root, AnswerStore(path))
    _fill_cache(study, trials, bank)
    meta = {"run_id": run_id, "foil": foil, "seed": int(seed), "n_trials": len(trials),
            "created_at": now(), "sbd_version": sbd.__version__,
            "secret_key": os.urandom(32).hex()}
    study.store = AnswerStore.create(path, meta, trials)
    log.info("Created human study %s (%d trials, foil=%s)", path, len(trials), foil)
    return study
