"""The Optuna study that every tuner shares: creation and resumption, the pruner, the
storage with heartbeats and retry, the lock of a shared study, and the optimisation loop.

Logging is not done here: a tuner takes ``callbacks`` (Optuna's
``callbacks=[f(study, frozen_trial)]``), and the steps pass
:class:`sbd.tracking.TrialLogger`, which makes each finished trial a nested MLflow run.
Each trial's full configuration (searched and fixed values) is in its user attribute
``params`` and its scores in user attributes ``val/<score>``, for the callbacks to read.
"""

from __future__ import annotations

import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import optuna

__all__ = ["HEARTBEAT_S", "MAX_RETRY", "make_storage", "study_lock", "create_study",
           "enqueue", "optimize", "record", "StudyResult"]

logger = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
"""Default seconds between the heartbeats of a running trial in an RDB study (0 turns
them off).  A trial silent for three of them (its worker killed, its machine gone) is
marked FAILED by the next worker that starts a trial, and queued again once
(:data:`MAX_RETRY`)."""
MAX_RETRY = 1


def make_storage(storage: str | None, heartbeat_s: float = HEARTBEAT_S
                 ) -> optuna.storages.BaseStorage | None:
    """None/"" → in memory; an RDB URL (``sqlite:///study.db``, ``postgresql://…``) → an
    RDBStorage (sqlite with a 60 s lock timeout, so several processes can write), with
    heartbeats every ``heartbeat_s`` seconds: a trial whose worker died is failed and
    retried (``RetryFailedTrialCallback``) instead of staying RUNNING for ever."""
    if storage in (None, ""):
        return None
    if "://" not in storage:
        raise ValueError(f"storage={storage!r} is not an RDB URL; use e.g. "
                         f"'sqlite:///{storage}' or 'postgresql://user@host/db'.")
    engine: dict[str, Any] = {}
    if storage.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 60}}
    kwargs: dict[str, Any] = {}
    heartbeat = int(float(heartbeat_s))
    if heartbeat > 0:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryFailedTrialCallback(max_retry=MAX_RETRY)
        kwargs = {"heartbeat_interval": heartbeat, "grace_period": 3 * heartbeat,
                  "failed_trial_callback": retry}
    return _rdb_storage(storage, engine, kwargs)


def _rdb_storage(storage: str, engine: dict[str, Any], kwargs: dict[str, Any],
                 attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage, whose first use creates the schema.  Workers that start
    together on a fresh PostgreSQL database race to create it (CI saw "duplicate key value
    violates unique constraint pg_type_typname_nsp_index" from the second worker's CREATE
    TYPE): the loser tries again, and then finds the schema made."""
    import sqlalchemy

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(storage, engine_kwargs=engine, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as err:
            if attempt == attempts - 1:
                raise
            logger.info("creating the study schema raced another worker (%s); again", err)
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _server_lock(storage: str, key: int):
    """PostgreSQL's advisory lock or MySQL's GET_LOCK on a connection of its own."""
    import sqlalchemy

    backend = sqlalchemy.engine.make_url(storage).get_backend_name()
    take = {"postgresql": "SELECT pg_advisory_lock(:k)", "mysql": "SELECT GET_LOCK(:k, -1)"}
    give = {"postgresql": "SELECT pg_advisory_unlock(:k)", "mysql": "SELECT RELEASE_LOCK(:k)"}
    arg = {"k": key if backend == "postgresql" else str(key)}

    @contextmanager
    def held() -> Iterator[None]:
        engine = sqlalchemy.create_engine(storage, poolclass=sqlalchemy.pool.NullPool)
        try:
            with engine.connect() as conn:
                if backend in take:
                    conn.execute(sqlalchemy.text(take[backend]), arg)
                else:
                    logger.warning("no lock for %s storages: workers may register twice",
                                   backend)
                try:
                    yield
                finally:
                    if backend in give:
                        conn.execute(sqlalchemy.text(give[backend]), arg)
        finally:
            engine.dispose()
    return held()


@contextmanager
def study_lock(storage: str | None, study_name: str | None) -> Iterator[None]:
    """Mutual exclusion among the processes working on study ``study_name`` of ``storage``
    (e.g. around "is the best already registered? else register it", so that the workers
    of one study register its best once): a PostgreSQL advisory lock, MySQL's GET_LOCK, a
    :class:`filelock.FileLock` beside an sqlite file; a no-op for an in-memory study."""
    if not storage or not study_name:
        yield
        return
    import sqlalchemy
    from filelock import FileLock

    key = int.from_bytes(hashlib.sha256(f"sbd:{study_name}".encode()).digest()[:8], "big",
                         signed=True)
    url = sqlalchemy.engine.make_url(storage)
    if url.get_backend_name() == "sqlite":
        with FileLock(f"{url.database or 'optuna'}.{key & 0xFFFFFFFF:08x}.lock"):
            yield
        return
    with _server_lock(storage, key):
        yield


def create_study(storage: str | None = None, study_name: str | None = None, seed: int = 0,
                 attrs: dict[str, Any] | None = None, heartbeat_s: float = HEARTBEAT_S
                 ) -> optuna.Study:
    """Create or resume (same ``study_name`` in ``storage``) a maximising study with a TPE
    sampler and a median pruner (after 5 trials, from the second reported step).

    ``attrs`` are recorded on a new study and must match on a resumed one (same data,
    objective and folds), else ValueError.  The TPE sampler is seeded with ``seed`` plus the
    number of trials already in the study (give parallel workers different seeds).
    """
    storage_obj = make_storage(storage, heartbeat_s)
    if storage_obj is not None and not study_name:
        raise ValueError("A persistent storage needs a study_name to resume the study by.")
    study = optuna.create_study(
        storage=storage_obj, study_name=study_name or None, direction="maximize",
        load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=int(seed)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    # a resumed study continues the seeded sequence instead of repeating its first trials
    study.sampler = optuna.samplers.TPESampler(seed=int(seed) + len(study.trials))
    existing = study.user_attrs
    for k, v in (attrs or {}).items():
        if k in existing and existing[k] != v:
            raise ValueError(f"Study {study.study_name!r} in {storage} was made with {k}="
                             f"{existing[k]!r}, not {v!r}; use another study_name.")
        if k not in existing:
            study.set_user_attr(k, v)
    return study


def enqueue(study: optuna.Study, configurations: Sequence[dict[str, Any]],
            searched: Callable[[str, dict[str, Any]], bool] = lambda name, p: True) -> None:
    """Queue configurations to be tried first (once per study: a resumed study does not
    queue them again); ``searched(name, config)`` keeps only the searched parameters."""
    for config in configurations:
        study.enqueue_trial({k: v for k, v in config.items() if searched(k, config)},
                            skip_if_exists=True)


def record(trial: optuna.Trial, params: dict[str, Any], scores: dict[str, float]) -> None:
    """Keep a trial's full configuration and its scores on it, for the callbacks."""
    trial.set_user_attr("params", params)
    for key, value in scores.items():
        trial.set_user_attr(f"val/{key}", float(value))


def optimize(study: optuna.Study, objective: Callable[[optuna.Trial], float], n_trials: int,
             callbacks: Sequence[Callable] = (), progress: bool = False) -> int:
    """Run ``n_trials`` more trials (Optuna's experimental-feature warnings and per-trial
    INFO lines silenced); returns the number of trials added.  RuntimeError when the study
    has no completed trial afterwards."""
    if int(n_trials) < 0:
        raise ValueError(f"n_trials must be ≥ 0, got {n_trials}.")
    before = len(study.trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=int(n_trials), callbacks=list(callbacks),
                       show_progress_bar=progress, gc_after_trial=False)
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise RuntimeError(f"Study {study.study_name!r} has no completed trial.")
    return len(study.trials) - before


@dataclass
class StudyResult:
    """What every tuner returns: its study, objective, the chosen parameters and their
    validation scores beside the paper's settings' on the same folds or queries."""

    study: optuna.Study
    objective: str
    best_params: dict[str, Any]
    best_scores: dict[str, float]
    paper_scores: dict[str, float]
