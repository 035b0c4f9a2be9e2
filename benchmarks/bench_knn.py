"""kNN search: sbd's streaming exact search against sklearn's brute-force NearestNeighbors.

A seeded synthetic bank (default 200,000 x 2048 float16, 1,000 clustered classes) is
written with sbd's own bank writer (``sbd.features.bank.BankWriter``: the contiguous HDF5
layout of real banks) and 50 queries (bank rows plus noise) are searched for their k=5
nearest neighbours by

- sbd: ``sbd.decoding.knn.exact_search`` over the memory-mapped file (float16 products on
  AVX-512 CPUs, candidates reranked in float32; else float32 blocks);
- sklearn: ``FeatureBank.load()`` (whole bank as float32) then
  ``NearestNeighbors(algorithm="brute", metric=<same>).fit(X).kneighbors(queries)``.

Each runs in its own subprocess (timed from opening the file to the answer, so the load
is counted for both; imports excluded) with its peak RSS taken from ``getrusage``.  The
file is read once before both, so both find it in the page cache.

Prints progress, then, as its last line, one JSON object: ``sbd_queries_per_s``,
``sklearn_queries_per_s``, ``speedup``, ``recall_at_k`` (sbd's neighbours against
sklearn's), ``sbd_peak_rss_mb``, ``sklearn_peak_rss_mb`` and the settings.

    python benchmarks/bench_knn.py [--n-bank 200000 --dim 2048 --n-queries 50 --k 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_bank(path: Path, n_bank: int, dim: int, n_classes: int, seed: int) -> None:
    """A clustered synthetic bank written block by block with sbd's BankWriter."""
    from sbd.features.bank import BankWriter

    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(n_classes, dim))).astype(np.float32)
    block = 10_000
    with BankWriter(path, dim, dtype="float16", attrs={"backbone": "synthetic"},
                    chunk_rows=256) as w:
        for start in range(0, n_bank, block):
            m = min(block, n_bank - start)
            labels = rng.integers(0, n_classes, m)
            x = centres[labels] + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
            w.append(x, [f"n{9_000_000 + c:08d}" for c in labels],
                     [f"img{start + i}" for i in range(m)], [""] * m)
            print(f"  bank rows {start + m}/{n_bank}", file=sys.stderr, flush=True)


def make_queries(bank_path: Path, n_queries: int, seed: int) -> np.ndarray:
    from sbd.features.bank import FeatureBank

    rng = np.random.default_rng(seed + 1)
    with FeatureBank(bank_path) as bank:
        rows = np.sort(rng.choice(len(bank), n_queries, replace=False))
        base = bank.rows(rows)
    return (base + 0.25 * rng.standard_normal(base.shape, dtype=np.float32)).astype(np.float32)


def worker(kind: str, bank_path: str, queries_path: str, out_path: str, k: int,
           metric: str) -> None:
    """Time one implementation; write its indices; print a JSON line."""
    queries = np.load(queries_path)
    if kind == "sbd":
        import torch  # noqa: F401  (import cost not timed)

        from sbd.decoding.knn import exact_search

        t0 = time.perf_counter()
        nb = exact_search(queries, bank_path, k=k, metric=metric)
        idx = nb.indices
    else:
        from sklearn.neighbors import NearestNeighbors

        from sbd.features.bank import FeatureBank

        t0 = time.perf_counter()
        with FeatureBank(bank_path) as bank:
            X = bank.load(np.float32)
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X)
        idx = nn.kneighbors(queries, return_distance=False)
    seconds = time.perf_counter() - t0
    np.save(out_path, idx)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb}))


def run_worker(kind: str, bank: Path, queries: Path, out: Path, k: int, metric: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--bank", str(bank), "--queries",
           str(queries), "--out", str(out), "--k", str(k), "--metric", metric]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{kind} worker failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-bank", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--n-classes", type=int, default=1000)
    p.add_argument("--n-queries", type=int, default=50)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--metric", default="euclidean", choices=("euclidean", "cosine"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sbd-bench-knn"),
                   help="where the bank file is kept (reused when present)")
    p.add_argument("--worker", choices=("sbd", "sklearn"), help=argparse.SUPPRESS)
    p.add_argument("--bank", help=argparse.SUPPRESS)
    p.add_argument("--queries", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.bank, a.queries, a.out, a.k, a.metric)
        return

    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    bank = work / f"bank_{a.n_bank}x{a.dim}_c{a.n_classes}_s{a.seed}.h5"
    if not bank.is_file():
        print(f"writing synthetic bank {bank} ...", file=sys.stderr, flush=True)
        make_bank(bank, a.n_bank, a.dim, a.n_classes, a.seed)
    queries = work / f"queries_{a.n_queries}_s{a.seed}.npy"
    np.save(queries, make_queries(bank, a.n_queries, a.seed))
    with open(bank, "rb") as f:  # warm the page cache for both contenders
        while f.read(1 << 24):
            pass
    figs = {}
    for kind in ("sklearn", "sbd"):
        print(f"running {kind} ...", file=sys.stderr, flush=True)
        figs[kind] = run_worker(kind, bank, queries, work / f"idx_{kind}.npy", a.k, a.metric)
        print(f"  {kind}: {figs[kind]}", file=sys.stderr, flush=True)
    from sbd.decoding.knn import recall_at_k

    recall = recall_at_k(np.load(work / "idx_sbd.npy"), np.load(work / "idx_sklearn.npy"))
    sbd_qps = a.n_queries / figs["sbd"]["seconds"]
    sk_qps = a.n_queries / figs["sklearn"]["seconds"]
    print(json.dumps({
        "sbd_queries_per_s": round(sbd_qps, 3),
        "sklearn_queries_per_s": round(sk_qps, 3),
        "speedup": round(sbd_qps / sk_qps, 3),
        "recall_at_k": recall,
        "sbd_peak_rss_mb": round(figs["sbd"]["peak_rss_mb"], 1),
        "sklearn_peak_rss_mb": round(figs["sklearn"]["peak_rss_mb"], 1),
        "sbd_seconds": round(figs["sbd"]["seconds"], 3),
        "sklearn_seconds": round(figs["sklearn"]["seconds"], 3),
        "n_bank": a.n_bank, "dim": a.dim, "n_queries": a.n_queries, "k": a.k,
        "metric": a.metric, "bank_file_mb": round(bank.stat().st_size / 2**20, 1),
        "cpu_count": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
