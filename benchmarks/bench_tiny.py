"""Train the tiny generator on a bank and measure how recognisable its samples are.

Prints one JSON line: training figures (steps, seconds, CPU seconds, threads, loss), the
kNN figures of :func:`sbd.generate.tiny.evaluate` (top-1 / vote / top-5 accuracy of the
samples' nearest bank images, chance, and the ceiling of real bank images at the model's
size), sampling seconds, and the load average (the machine is often shared).

    python benchmarks/bench_tiny.py --data-dir data/phantom --out /tmp/tiny-bench
    python benchmarks/bench_tiny.py --data-dir data/phantom --set time_budget_s=120 --set crop=false
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _value(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data/phantom")
    p.add_argument("--out", default="", help="working folder (default: <data-dir>/tiny/bench)")
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TinyConfig field (repeatable)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    p.add_argument("--eval-classes", type=int, default=0, help="classes to sample (0: all)")
    p.add_argument("--eval-per-class", type=int, default=2)
    p.add_argument("--guidance", type=float, action="append", default=[],
                   help="guidance scale(s) to evaluate (default: the model's)")
    p.add_argument("--no-resume", action="store_true")
    a = p.parse_args(argv)

    import torch

    from sbd.generate import tiny

    if a.threads:
        torch.set_num_threads(a.threads)
    overrides = dict(kv.split("=", 1) for kv in a.set)
    overrides = {k: _value(v) for k, v in overrides.items()}
    out = Path(a.out) if a.out else Path(a.data_dir) / "tiny" / "bench"
    t0, c0 = time.perf_counter(), time.process_time()
    pipe = tiny.train(a.data_dir, out, a.preset, resume=not a.no_resume, progress=True, **overrides)
    figures = {"preset": a.preset, "overrides": {k: str(v) for k, v in overrides.items()},
               **pipe.info, "total_seconds": round(time.perf_counter() - t0, 1),
               "total_cpu_seconds": round(time.process_time() - c0, 1)}
    for g in a.guidance or [pipe.default_guidance]:
        m = tiny.evaluate(pipe, a.data_dir, n_classes=a.eval_classes, n_per_class=a.eval_per_class,
                          guidance=g)
        figures[f"guidance_{g:g}"] = m
    tiny.sample_sheet(pipe, n_classes=16, n_per_class=6).save(out / "samples.png")
    figures["sheet"] = str(out / "samples.png")
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
