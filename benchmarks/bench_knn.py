"""kNN search: sbd's exact search against sklearn's brute-force NearestNeighbors.

A seeded synthetic bank (default 200,000 x 2048 float16, 1,000 clustered classes) is
written with sbd's own bank writer (``sbd.features.bank.BankWriter``: the contiguous HDF5
layout of real banks) and 50 queries (bank rows plus noise) are searched for their k=5
nearest neighbours by

- sbd: ``sbd.decoding.knn.exact_search`` over the memory-mapped file, path ``--half``:
  ``auto`` (the default's choice: float16 products on AVX-512 CPUs for at most 4 queries,
  else exact float32 products of rows converted in cache-sized pieces), ``on`` (float16
  products, candidates reranked in float32) or ``off`` (the float32 path, as on an
  AVX2-only CPU);
- sklearn: ``FeatureBank.load()`` (the same mapped bank read whole as float32) then
  ``NearestNeighbors(algorithm="brute", metric=<same>).fit(X).kneighbors(queries)``.

Each runs in its own subprocess (timed from opening the file to the answer, so the load
is counted for both; imports excluded).  Memory, per process: ``*_anon_peak_mb`` is the
peak of anonymous memory (``Anonymous`` of ``/proc/self/smaps_rollup``, sampled every
10 ms while timed; ``*_anon_before_mb`` before, imports done): what the process
allocates; ``*_file_peak_mb`` is the peak growth of its file-backed resident pages over the moment before timing (the bank's mapped pages,
shared with the page cache and with every other reader of the file, so not counted as
the process's own); ``*_peak_rss_mb`` is ``getrusage``'s peak RSS (both kinds together,
plus the imported libraries).  The file is read once before both, so both find it in the
page cache.  No FAISS column: this benchmark needs only the README's install.

Prints progress, then, as its last line, one JSON object: ``sbd_queries_per_s``,
``sklearn_queries_per_s``, ``speedup``, ``recall_at_k`` (sbd's neighbours against
sklearn's), ``anon_ratio`` (sbd's anonymous peak over sklearn's), the memory figures
above, the CPU's AVX flags and the load average before and after.

    python benchmarks/bench_knn.py [--n-bank 200000 --dim 2048 --n-queries 50 --k 5
                                    --half auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from _machine import HALF, cpu_flags  # benchmarks/_machine.py (this folder is on sys.path)


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


def memory_mb() -> tuple[float, float]:
    """``(anonymous, file-backed resident)`` MiB of this process (``smaps_rollup``)."""
    f = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        f[key] = int(value.split()[0]) / 1024
    return f["Anonymous"], f["Rss"] - f["Anonymous"] - f.get("Shmem", 0.0)


class MemorySampler(threading.Thread):
    """Peaks of :func:`memory_mb` sampled every ``period`` s until :meth:`stop`."""

    def __init__(self, period: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.period, self.done = period, threading.Event()
        self.base_anon, self.base_file = memory_mb()
        self.anon = self.file = 0.0

    def run(self) -> None:
        while True:
            anon, file = memory_mb()
            self.anon, self.file = max(self.anon, anon), max(self.file, file)
            if self.done.wait(self.period):
                return

    def stop(self) -> dict:
        self.done.set()
        self.join()
        anon, file = memory_mb()
        return {"anon_peak_mb": max(self.anon, anon), "anon_base_mb": self.base_anon,
                "file_peak_mb": max(self.file, file) - self.base_file}


def worker(kind: str, bank_path: str, queries_path: str, out_path: str, k: int,
           metric: str, half: bool | None) -> None:
    """Time one implementation; write its indices; print a JSON line."""
    queries = np.load(queries_path)
    if kind == "sbd":
        import torch  # noqa: F401  (import cost not timed)

        from sbd.decoding.knn import exact_search

        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        nb = exact_search(queries, bank_path, k=k, metric=metric, half=half)
        idx = nb.indices
    else:
        from sklearn.neighbors import NearestNeighbors

        from sbd.features.bank import FeatureBank

        sampler = MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        with FeatureBank(bank_path) as bank:
            X = bank.load(np.float32)
        nn = NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric).fit(X)
        idx = nn.kneighbors(queries, return_distance=False)
    seconds = time.perf_counter() - t0
    mem = sampler.stop()
    np.save(out_path, idx)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb, **mem}))


def run_worker(kind: str, bank: Path, queries: Path, out: Path, k: int, metric: str,
               half: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--bank", str(bank), "--queries",
           str(queries), "--out", str(out), "--k", str(k), "--metric", metric, "--half", half]
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
    p.add_argument("--half", default="auto", choices=tuple(HALF),
                   help="sbd's search path: half= of exact_search (off: as on an AVX2 CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "sbd-bench-knn"),
                   help="where the bank file is kept (reused when present)")
    p.add_argument("--worker", choices=("sbd", "sklearn"), help=argparse.SUPPRESS)
    p.add_argument("--bank", help=argparse.SUPPRESS)
    p.add_argument("--queries", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        worker(a.worker, a.bank, a.queries, a.out, a.k, a.metric, HALF[a.half])
        return
    load_before = os.getloadavg()[0]
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
        figs[kind] = run_worker(kind, bank, queries, work / f"idx_{kind}.npy", a.k, a.metric,
                                a.half)
        print(f"  {kind}: {figs[kind]}", file=sys.stderr, flush=True)
    print(json.dumps(summary(a, figs, work, bank, load_before)))


def summary(a: argparse.Namespace, figs: dict, work: Path, bank: Path,
            load_before: float) -> dict:
    """The JSON line: speed, recall and memory of both, settings, CPU and load."""
    from sbd.decoding.knn import recall_at_k

    recall = recall_at_k(np.load(work / "idx_sbd.npy"), np.load(work / "idx_sklearn.npy"))
    sbd, sk = figs["sbd"], figs["sklearn"]
    out = {"sbd_queries_per_s": round(a.n_queries / sbd["seconds"], 3),
           "sklearn_queries_per_s": round(a.n_queries / sk["seconds"], 3),
           "speedup": round(sk["seconds"] / sbd["seconds"], 3),
           "recall_at_k": recall,
           "anon_ratio": round(sbd["anon_peak_mb"] / sk["anon_peak_mb"], 3)}
    for name, f in (("sbd", sbd), ("sklearn", sk)):
        out.update({f"{name}_anon_peak_mb": round(f["anon_peak_mb"], 1),
                    f"{name}_anon_before_mb": round(f["anon_base_mb"], 1),
                    f"{name}_file_peak_mb": round(f["file_peak_mb"], 1),
                    f"{name}_peak_rss_mb": round(f["peak_rss_mb"], 1),
                    f"{name}_seconds": round(f["seconds"], 3)})
    out.update({"half": a.half, "n_bank": a.n_bank, "dim": a.dim, "n_queries": a.n_queries,
                "k": a.k, "metric": a.metric,
                "bank_file_mb": round(bank.stat().st_size / 2**20, 1),
                "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(),
                "load_before": load_before, "load_after": os.getloadavg()[0]})
    return out


if __name__ == "__main__":
    main()
