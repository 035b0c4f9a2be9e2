"""A lab's shared setup, for real on this machine: ``main`` through a PostgreSQL-backed
``mlflow server`` (served artifacts), and its chains on Ray.

``main`` on the small phantom through the server (subject 1 × ROIs V1, HVC), then the
same with ``executor="ray"`` on a local 2-CPU Ray cluster in another experiment (its own
step cache): the same per-chain metrics; a warm rerun on Ray makes no new child run; the
champion decoder registered on the server answers from ``mlflow models serve``.
"""

from __future__ import annotations

import json
import time

import mlflow
import numpy as np
import pytest

from lab_services import use_server

pytestmark = pytest.mark.lab

SWEEP = dict(dataset="phantom", preset="small", subjects="1", rois="V1,HVC", n_trials=2,
             seed=0)
CHAINS = [(1, r) for r in ("V1", "HVC")]  # two chains: Ray runs them side by side
CHAIN_METRICS = ("test/wup_top1", "test/top5_acc", "test/ident2_acc", "test/feature_r",
                 "test/judge2afc_acc")


def _children(parent_id: str) -> list:
    return mlflow.search_runs(filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'",
                              output_format="list", search_all_experiments=True)


@pytest.fixture(scope="module")
def sweep(mlflow_server, tmp_path_factory):
    """``main`` sequentially (experiment lab-seq), then on Ray (lab-ray: its own step
    cache), then on Ray again (warm), all through the server on one data folder."""
    import ray

    from sbd.steps import main

    data = str(tmp_path_factory.mktemp("lab") / "phantom")
    times = {}
    with use_server(mlflow_server, "lab-seq"):
        start = time.perf_counter()
        seq = main.run(data_dir=data, **SWEEP)
        times["sequential"] = time.perf_counter() - start
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with use_server(mlflow_server, "lab-ray"):
            start = time.perf_counter()
            on_ray = main.run(data_dir=data, executor="ray", **SWEEP)
            times["ray"] = time.perf_counter() - start
            start = time.perf_counter()
            warm = main.run(data_dir=data, executor="ray", **SWEEP)
            times["ray_warm"] = time.perf_counter() - start
    finally:
        ray.shutdown()
    print("\nlab sweep wall times (s):", {k: round(v, 1) for k, v in times.items()})
    with use_server(mlflow_server, "lab-seq"):
        yield {"seq": seq, "ray": on_ray, "warm": warm, "data": data, "url": mlflow_server}


def test_main_runs_through_the_mlflow_server(sweep):
    with use_server(sweep["url"], "lab-seq"):
        run = mlflow.get_run(sweep["seq"])
        assert run.info.status == "FINISHED"
        # served artifacts: the client reads them over HTTP, with no path to the store
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        summary = mlflow.load_table("summary.json", run_ids=[sweep["seq"]])
        assert sorted(zip(summary["subject"], summary["roi"])) == sorted(CHAINS)
        steps = sorted(r.data.tags["sbd.entry_point"] for r in _children(sweep["seq"]))
        assert steps.count("train_decoder") == steps.count("evaluate") == len(CHAINS)
        for subject, roi in CHAINS:
            assert run.data.metrics[f"s{subject}/{roi}/test/wup_top1"] > 0


def test_ray_chains_log_the_same_metrics_as_the_sequential_run(sweep):
    with use_server(sweep["url"], "lab-ray"):
        seq, on_ray = mlflow.get_run(sweep["seq"]), mlflow.get_run(sweep["ray"])
        assert on_ray.data.params["executor"] == "ray" and on_ray.info.status == "FINISHED"
        assert on_ray.info.experiment_id != seq.info.experiment_id  # its own step cache
        children = _children(sweep["ray"])
        chain_steps = [r for r in children if r.data.tags["sbd.entry_point"] in
                       ("train_decoder", "generate", "evaluate")]
        assert len(chain_steps) == 3 * len(CHAINS)  # ran on Ray, not reused from lab-seq
        assert all(r.info.status == "FINISHED" for r in children)
        # the same steps with the same seeds: the same figures, up to float rounding (a Ray
        # task runs torch on 1 thread, the driver on all cores: a near-tie between two
        # labels may fall the other way, a few hundredths of Wu-Palmer on one sample)
        differ = []
        for subject, roi in CHAINS:
            for m in CHAIN_METRICS:
                key = f"s{subject}/{roi}/{m}"
                a, b = on_ray.data.metrics[key], seq.data.metrics[key]
                assert a == pytest.approx(b, abs=0.02), key
                if abs(a - b) > 1e-6:
                    differ.append((key, a, b))
        print("\nper-chain metrics that differ (ray, sequential):", differ)
        assert len(differ) <= 2, differ
        assert on_ray.data.metrics["main/n_chains_failed"] == 0


def test_a_warm_rerun_on_ray_creates_no_new_child_run(sweep):
    with use_server(sweep["url"], "lab-ray"):
        assert _children(sweep["warm"]) == []
        metrics = mlflow.get_run(sweep["warm"]).data.metrics
        assert metrics["main/n_steps_run"] == 0
        assert metrics["main/n_steps_reused"] == 2 + 3 * len(CHAINS)


def test_the_champion_registered_on_the_server_is_served(sweep, serve):
    from sbd.data import god

    with use_server(sweep["url"], "lab-seq"):
        server = serve("models:/sbd-phantom-s1-HVC-decoder@champion")
        voxels = god.load(sweep["data"], 1, "HVC", "test").voxels[:2]
        status, body = server.post({"inputs": np.asarray(voxels, float).tolist()})
    assert status == 200, body
    assert len(json.loads(body)["predictions"]) == 2
