"""Time a 4-chain sweep of ``main`` (small phantom, subjects 1,2 × ROIs V1,HVC) run one
chain after the other and as Ray tasks on a local cluster, on this machine.

Works in a temporary folder with its own tracking store (sqlite) and data folder. The data,
features and tiny generator are made first (a one-chain ``main``), so both timings cover
the same work: the four chains (train_decoder → generate → evaluate), each in an
experiment of its own (its own step cache). Prints, as its last line, one JSON object:

``sequential_s``, ``ray_s`` (wall time of each sweep, Ray's cluster start included),
``speedup``, ``ray_start_s`` (ray.init of a local cluster + one empty task),
``ray_overhead_per_chain_s`` (a chain task that does nothing but import the chain's code,
per chain, on a started cluster), ``chain_s_sequential`` / ``chain_s_ray`` (mean wall time
of one chain's three steps from their runs), ``cpus``, ``estimate_16_cores_50_chains_s``
(50 chains on 16 cores: ceil(50 / 16) waves of one chain each per core, plus the start).

    python benchmarks/bench_sweep.py
    python benchmarks/bench_sweep.py --n-trials 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time


def _noop_chain(**_: object) -> None:
    """What every chain task pays before its first step: the chain's imports."""
    import sbd.steps.main  # noqa: F401


def _chain_seconds(parent_id: str) -> float:
    """Mean wall time of one chain (its train_decoder, generate and evaluate runs)."""
    import mlflow

    runs = mlflow.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              output_format="list", search_all_experiments=True)
    chains: dict[tuple[str, str], float] = {}
    for r in runs:
        if r.data.tags.get("sbd.entry_point") in ("train_decoder", "generate", "evaluate"):
            key = (r.data.params.get("subject"), r.data.params.get("roi"))
            chains[key] = chains.get(key, 0.0) + (r.info.end_time - r.info.start_time) / 1000
    return sum(chains.values()) / max(1, len(chains))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-trials", type=int, default=2)
    opts = parser.parse_args()
    import mlflow
    import ray

    from sbd import executors
    from sbd.steps import main as main_step

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        os.environ.update(MLFLOW_TRACKING_URI=uri, MLFLOW_REGISTRY_URI=uri)
        os.environ.pop("MLFLOW_EXPERIMENT_NAME", None)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        common = dict(dataset="phantom", data_dir=f"{tmp}/phantom", preset="small",
                      n_trials=opts.n_trials, seed=0)
        mlflow.set_experiment("prepare")
        main_step.run(subjects="1", rois="VC", **common)  # data, features, tiny generator

        sweep = dict(subjects="1,2", rois="V1,HVC", **common)
        mlflow.set_experiment("sequential")
        start = time.perf_counter()
        seq = main_step.run(executor="sequential", **sweep)
        sequential_s = time.perf_counter() - start

        mlflow.set_experiment("ray")
        start = time.perf_counter()
        on_ray = main_step.run(executor="ray", **sweep)
        ray_s = time.perf_counter() - start

        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        ray.get(ray.remote(lambda: None).remote())
        ray_start_s = time.perf_counter() - start
        cpus = int(ray.cluster_resources().get("CPU", 0))
        start = time.perf_counter()
        executors.run_chains(_noop_chain, [{}] * 4, "ray")
        overhead = (time.perf_counter() - start) / 4
        ray.shutdown()
        chain_seq, chain_ray = _chain_seconds(seq), _chain_seconds(on_ray)
    print(json.dumps({
        "chains": 4, "cpus": cpus, "n_trials": opts.n_trials,
        "sequential_s": round(sequential_s, 1), "ray_s": round(ray_s, 1),
        "speedup": round(sequential_s / ray_s, 2), "ray_start_s": round(ray_start_s, 1),
        "ray_overhead_per_chain_s": round(overhead, 2),
        "chain_s_sequential": round(chain_seq, 1), "chain_s_ray": round(chain_ray, 1),
        "estimate_16_cores_50_chains_s": round(math.ceil(50 / 16) * chain_ray + ray_start_s, 1),
    }))


if __name__ == "__main__":
    main()
