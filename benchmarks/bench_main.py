"""Time the default ``main`` from scratch (cold) and again with every step reused (warm).

Runs in a temporary folder with its own tracking store and data folder, as a user's
first and second ``mlflow run . --env-manager local`` would (the same entry-point script,
in a subprocess each). Prints, as its last line, one JSON object:
``{"cold_s", "warm_s", "ratio" (= warm / cold, target <= 0.1), "preset", "new_child_runs_warm",
"cold_step_minutes" (per entry point), "load_1min_before", "load_1min_after"}``.

    python benchmarks/bench_main.py                 # the default, GOD-sized phantom
    python benchmarks/bench_main.py --preset small  # a quick check
    python benchmarks/bench_main.py --keep /tmp/bm  # keep data + tracking store to inspect

The JSON also holds, per subject, the cold run's headline measures beside the paper's
pipeline and their floors (``test/wup_top1``, ``test/wup_specific``, exact top-5 in the bank,
``ident2``, the generated images' 50-way top-1, …).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _main(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "entrypoints" / "main.py"), *args],
                   env=env, check=True, cwd=env["SBD_BENCH_DIR"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--n-trials", default="60", help="as the main entry point's default")
    parser.add_argument("--subjects", default="1")
    parser.add_argument("--keep", default="", help="work in this (new) folder and keep it")
    opts = parser.parse_args()
    if opts.keep:
        Path(opts.keep).mkdir(parents=True, exist_ok=False)
    with (nullcontext(str(Path(opts.keep).resolve())) if opts.keep
          else tempfile.TemporaryDirectory()) as tmp:
        env = dict(os.environ, SBD_BENCH_DIR=tmp, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        env.pop("MLFLOW_RUN_ID", None)
        args = ["--preset", opts.preset, "--n-trials", opts.n_trials, "--subjects", opts.subjects,
                "--data-dir", f"{tmp}/data/phantom"]
        load_before = os.getloadavg()[0]
        cold = _main(args, env)
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        before = len(mlflow.search_runs(search_all_experiments=True))
        figures = _figures()
        steps = _step_minutes()
        warm = _main(args, env)
        after = len(mlflow.search_runs(search_all_experiments=True))
    print(json.dumps({"cold_s": round(cold, 1), "warm_s": round(warm, 1),
                      "ratio": round(warm / cold, 4), "preset": opts.preset,
                      "new_child_runs_warm": after - before - 1, "n_trials": opts.n_trials,
                      "cold_step_minutes": steps, "subjects": figures,
                      "load_1min_before": round(load_before, 2),
                      "load_1min_after": round(os.getloadavg()[0], 2)}))


def _step_minutes() -> dict[str, float]:
    """Wall minutes of the cold run's child steps, summed per entry point."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string="tags.`sbd.entry_point` != 'main'")
    out: dict[str, float] = {}
    for _, r in runs.iterrows():
        step = r.get("tags.sbd.entry_point")
        if step and r["end_time"] is not None and r["start_time"] is not None:
            minutes = (r["end_time"] - r["start_time"]).total_seconds() / 60
            out[step] = round(out.get(step, 0.0) + minutes, 2)
    return out


def _figures() -> dict[str, dict[str, float]]:
    """Per subject (and ROI), the cold run's headline test metrics from its evaluate runs."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string="tags.`sbd.entry_point` = 'evaluate'")
    out = {}
    for _, r in runs.iterrows():
        key = f"s{r.get('params.subject')} {r.get('params.roi')}"
        out[key] = {m: round(float(r.get(f"metrics.{m}", float("nan"))), 4)
                    for m in ("test/wup_top1", "baseline/paper/wup_top1", "test/wup_chance",
                              "test/wup_constant", "test/wup_specific",
                              "baseline/paper/wup_specific", "test/top5_acc_inbank",
                              "baseline/paper/top5_acc_inbank", "test/top5_chance_inbank",
                              "test/ident2_acc", "baseline/paper/ident2_acc",
                              "test/gen/nway_top1", "test/judge2afc_acc")}
    return out


if __name__ == "__main__":
    main()
