"""Time the default ``main`` from scratch (cold) and again with every step reused (warm).

Runs in a temporary folder with its own tracking store and data folder, as a user's
first and second ``mlflow run . --env-manager local`` would (the same entry-point script,
in a subprocess each). Prints, as its last line, one JSON object:
``{"cold_s", "warm_s", "ratio" (= warm / cold, target <= 0.1), "preset", "new_child_runs_warm"}``.

    python benchmarks/bench_main.py                 # the default, GOD-sized phantom
    python benchmarks/bench_main.py --preset small  # a quick check
    python benchmarks/bench_main.py --keep /tmp/bm  # keep data + tracking store to inspect

The JSON also holds, per subject, the cold run's ``test/wup_top1``, ``test/wup_chance``,
``test/wup_p``, ``test/top5_acc`` and the top-5 chance level (5 / test categories).
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
    parser.add_argument("--n-trials", default="30")
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
        cold = _main(args, env)
        import mlflow

        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        before = len(mlflow.search_runs(search_all_experiments=True))
        figures = _figures()
        warm = _main(args, env)
        after = len(mlflow.search_runs(search_all_experiments=True))
    print(json.dumps({"cold_s": round(cold, 1), "warm_s": round(warm, 1),
                      "ratio": round(warm / cold, 4), "preset": opts.preset,
                      "new_child_runs_warm": after - before - 1, "subjects": figures}))


def _figures() -> dict[str, dict[str, float]]:
    """Per subject (and ROI), the cold run's headline test metrics from its evaluate runs."""
    import mlflow

    runs = mlflow.search_runs(search_all_experiments=True,
                              filter_string="tags.`sbd.entry_point` = 'evaluate'")
    out = {}
    for _, r in runs.iterrows():
        key = f"s{r.get('params.subject')} {r.get('params.roi')}"
        out[key] = {m: round(float(r.get(f"metrics.{m}", float("nan"))), 4)
                    for m in ("test/wup_top1", "test/wup_chance", "test/wup_p", "test/top1_acc",
                              "test/top5_acc", "test/top5_chance", "test/ident2_acc",
                              "test/judge2afc_acc")}
    return out


if __name__ == "__main__":
    main()
