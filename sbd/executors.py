"""Executors of ``main``'s independent chains (one subject × ROI each).

``sequential`` runs them one after the other in this process; ``ray`` runs each as a Ray
task (:func:`run_chains`), on the cluster at ``ray_address`` or, when it is empty, on a
local cluster started for the sweep and stopped after it.  A chain is the same function
with the same arguments either way, its steps write to the same tracking store (the
tracking and registry URIs travel to the workers), and its step runs are children of the
same ``main`` run, so results are identical and the step cache of
:func:`sbd.tracking.get_or_run` serves every worker: a finished chain is reused by any
later run, wherever it ran.

A chain that fails is reported (:class:`ChainResult` ``error``: the traceback) and the
others go on.  Each task declares its resources (:data:`CHAIN_CPUS`, and ``num_gpus`` when
the chain generates with a GPU model); a GPU asked of a cluster that has none is dropped
with a warning instead of waiting forever.

Workers read the data folder by the same path as the driver: on several machines it must
be on a shared file system (the tracking store need not be: served artifacts go over HTTP).
"""

from __future__ import annotations

import logging
import os
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import mlflow

log = logging.getLogger(__name__)

EXECUTORS = ("sequential", "ray")
CHAIN_CPUS = 1.0


@dataclass
class ChainResult:
    """The outcome of one chain: ``value`` (what the chain function returned) or ``error``
    (its traceback)."""

    kwargs: dict[str, Any]
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_executor(executor: str) -> str:
    if executor not in EXECUTORS:
        raise ValueError(f"Unknown executor={executor!r}; valid: {', '.join(EXECUTORS)}.")
    return executor


@contextmanager
def attached(parent_run_id: str | None) -> Iterator[None]:
    """Make run ``parent_run_id`` (opened by another process) the active run of this one,
    so that steps started here are its children, then detach without ending it (its
    status stays RUNNING: the process that opened it ends it)."""
    if parent_run_id is None or (mlflow.active_run() is not None
                                 and mlflow.active_run().info.run_id == parent_run_id):
        yield
        return
    mlflow.start_run(run_id=parent_run_id)
    try:
        yield
    finally:
        mlflow.end_run("RUNNING")


def _call(func: Callable[..., Any], kwargs: dict[str, Any], parent_run_id: str | None
          ) -> ChainResult:
    try:
        with attached(parent_run_id):
            return ChainResult(kwargs, value=func(**kwargs))
    except Exception:  # noqa: BLE001 — reported with its chain; the others go on
        return ChainResult(kwargs, error=traceback.format_exc())


def _ray_task(func: Callable[..., Any], kwargs: dict[str, Any], parent_run_id: str | None,
              cwd: str, tracking: dict[str, str]) -> ChainResult:
    """One chain in a Ray worker: the driver's tracking store and folder, then :func:`_call`."""
    os.environ.pop("MLFLOW_RUN_ID", None)  # never resume the driver's run as a step
    os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)  # the experiment is the parent run's
    os.environ.update(tracking)
    mlflow.set_tracking_uri(tracking["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(tracking["MLFLOW_REGISTRY_URI"])
    if "MLFLOW_EXPERIMENT_ID" in tracking:
        mlflow.set_experiment(experiment_id=tracking["MLFLOW_EXPERIMENT_ID"])
    if os.path.isdir(cwd):
        os.chdir(cwd)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return _call(func, kwargs, parent_run_id)


def _absolute(uri: str) -> str:
    """A tracking URI that means the same from another working directory."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + os.path.abspath(uri[len("sqlite:///"):])
    if "://" not in uri and uri and not uri.startswith("databricks"):
        return os.path.abspath(uri)
    return uri


def tracking_env(parent_run_id: str | None = None) -> dict[str, str]:
    """This process's tracking and registry URIs, absolute, and the experiment of run
    ``parent_run_id`` (what a worker needs to log where this process does)."""
    tracking = _absolute(mlflow.get_tracking_uri())
    env = {"MLFLOW_TRACKING_URI": tracking,
           "MLFLOW_REGISTRY_URI": _absolute(mlflow.get_registry_uri() or tracking)}
    if parent_run_id is not None:
        env["MLFLOW_EXPERIMENT_ID"] = mlflow.get_run(parent_run_id).info.experiment_id
    return env


def run_chains(func: Callable[..., Any], chains: list[dict[str, Any]],
               executor: str = "sequential", ray_address: str = "",
               num_cpus: float = CHAIN_CPUS, num_gpus: float = 0,
               parent_run_id: str | None = None) -> list[ChainResult]:
    """``func(**kwargs)`` for every ``kwargs`` of ``chains``; results in the same order.

    Parameters
    ----------
    func : a module-level function (Ray sends it to workers by reference)
    executor : ``"sequential"`` or ``"ray"``
    ray_address : the Ray cluster (``"auto"``, ``"ray://host:10001"``, …); empty: a local
        cluster started here (and stopped after), or the one this process already joined
    num_cpus, num_gpus : resources of one chain's task
    parent_run_id : the run whose children the chains' step runs are (default: the
        active run)
    """
    check_executor(executor)
    if parent_run_id is None and mlflow.active_run() is not None:
        parent_run_id = mlflow.active_run().info.run_id
    if executor == "sequential":
        results = []
        for kwargs in chains:
            results.append(_call(func, kwargs, parent_run_id))
            _report(results[-1])
        return results
    return _run_on_ray(func, chains, ray_address, num_cpus, num_gpus, parent_run_id)


def _report(result: ChainResult) -> None:
    if not result.ok:
        log.error("chain %s failed:\n%s", result.kwargs, result.error)


def _run_on_ray(func, chains, ray_address, num_cpus, num_gpus, parent_run_id
                ) -> list[ChainResult]:
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs Ray: pip install 'sbd[lab]' "
                          "(or pip install ray).") from err
    tracking = tracking_env(parent_run_id)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address or None, include_dashboard=False,
                 runtime_env={"env_vars": tracking}, log_to_driver=True)
    try:
        if num_gpus and not ray.cluster_resources().get("GPU"):
            log.warning("the Ray cluster has no GPU: chains run without one")
            num_gpus = 0
        task = ray.remote(_ray_task).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                             max_retries=1)
        refs = [task.remote(func, kwargs, parent_run_id, os.getcwd(), tracking)
                for kwargs in chains]
        log.info("%d chains submitted to Ray (%s CPU, %s GPU each; cluster: %s)", len(refs),
                 num_cpus, num_gpus, ray.cluster_resources())
        results: list[ChainResult] = []
        for kwargs, ref in zip(chains, refs):
            try:
                result = ray.get(ref)
            except Exception as err:  # noqa: BLE001 — a worker that died, a lost node
                result = ChainResult(kwargs, error=f"{type(err).__name__}: {err}")
            _report(result)
            results.append(result)
        return results
    finally:
        if started_here:
            ray.shutdown()
