"""The ImageNet-sized bank: storage, serving and search at 1,281,167 x 2048 float16.

All figures come from one run on one synthetic, clustered bank (1,000 ImageNet-1k wnids,
rows = class centre + noise) written with sbd's own writer (``BankWriter``, today's
contiguous storage):

- ``write_s``: writing the bank; ``stream_mb_s`` / ``gzip_stream_mb_s``: reading it as
  float32 blocks the way a streaming search does (``sbd.decoding.knn.iter_blocks``), today's
  contiguous file against the chunked gzip file of earlier sbd (the first ``--gzip-rows``
  rows, written in the same run), both after ``posix_fadvise(DONTNEED)`` (from disk) and
  again from the page cache (``*_cached``);
- ``scan_limit_ms``: the bank's bytes over this machine's memory read bandwidth, measured
  as a numpy sum over the same (memory-mapped, cached) array;
- ``serve_p50_ms`` / ``serve_p95_ms``: one-sample requests over HTTP on 127.0.0.1 to a
  decoder (ridge + kNN over the bank) served by ``mlflow models serve``; ``cold_load_s``:
  from the server's start to the first answer; ``peak_rss_gb``: the server's peak RSS
  (VmHWM, largest process);
- ``batch50_s``: 50 queries, exact (``exact_search`` on the mapped bank) against FAISS
  ``IndexFlatL2`` on the same data in memory as float32 (``faiss_flat_s``), recall@5 of
  ours against FAISS; ``ivf_recall_at_5`` / ``ivf_ms``: FAISS IVF (fp16 scalar quantizer,
  nlist 1024, nprobe 32) per one-sample query, recall against the exact answer;
- ``list_s``: listing a 1,281,167-file ILSVRC-layout tree (empty files) with
  ``extract.list_bank``, beside ``list_old_s``, the listing of earlier sbd (a Path and a
  stat per file), in the same run.

``--half auto|on|off`` picks the kNN search path of the served model and of the batch
(``KNNLabeller(half=)``, kept in the model's config): ``off`` is the path of CPUs without
AVX-512 (exact float32 products of rows converted in cache-sized pieces), so both paths
can be measured on one AVX-512 machine; ``cpu_flags`` says which CPU the figures hold for.
``server_anon_gb`` / ``server_file_rss_gb``: the server's anonymous and file-backed
(the mapped bank) resident memory after the requests.  ``--skip stream`` / ``--skip list``
leave those figures out.

Prints progress on stderr and, last, one JSON line.  Needs ~16 GiB of memory, ~12 GB of
disk; the FAISS columns need ``faiss-cpu`` (the ``faiss`` extra) and are left out, with
``faiss_skipped`` saying why, without it; run it alone on a quiet machine.

    python benchmarks/bench_bank.py [--rows 1281167 --dim 2048 --work /tmp/bench_bank
                                     --half auto --skip list]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _machine import HALF, cpu_flags  # benchmarks/_machine.py (this folder is on sys.path)


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wnid_list(n: int) -> list[str]:
    from sbd.data.label_sets import imagenet1k_wnids

    return list(imagenet1k_wnids())[:n]


def write_bank(path: Path, rows: int, dim: int, wnids: list[str], storage: str,
               seed: int = 0) -> float:
    from sbd.features.bank import BankWriter

    rng = np.random.default_rng(seed)
    centres = (np.abs(rng.normal(size=(len(wnids), dim))) * 2).astype(np.float32)
    t0 = time.perf_counter()
    with BankWriter(path, dim, "float16", {"backbone": "synthetic"}, storage=storage) as w:
        for start in range(0, rows, 65536):
            m = min(65536, rows - start)
            labels = (np.arange(start, start + m) * 7919) % len(wnids)
            x = centres[labels] + rng.standard_normal((m, dim), dtype=np.float32)
            w.append(x, [wnids[c] for c in labels], [f"img{start + i}" for i in range(m)],
                     [f"{wnids[c]}/img{start + i}.JPEG" for i, c in enumerate(labels)])
    return time.perf_counter() - t0


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def stream_mb_s(path: Path) -> float:
    from sbd.decoding.knn import iter_blocks
    from sbd.features.bank import FeatureBank

    with FeatureBank(path) as bank:
        t0 = time.perf_counter()
        for _ in iter_blocks(bank, 65536):
            pass
        return len(bank) * bank.dim * 2 / 2**20 / (time.perf_counter() - t0)


def read_bandwidth(arr: np.ndarray) -> float:
    """Bytes/s of a numpy sum over ``arr`` (viewed as int64 words), best of 3."""
    flat = arr.reshape(-1).view(np.int64)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        flat.sum()
        best = min(best, time.perf_counter() - t0)
    return arr.nbytes / best


def make_queries(path: Path, n: int, seed: int = 1) -> np.ndarray:
    from sbd.features.bank import FeatureBank

    rng = np.random.default_rng(seed)
    with FeatureBank(path) as bank:
        rows = np.sort(rng.choice(len(bank), n, replace=False))
        return bank.rows(rows) + 0.5 * rng.standard_normal((n, bank.dim), dtype=np.float32)


def log_decoder(bank: Path, dim: int, n_voxels: int, tracking: str, half: bool | None) -> str:
    """Ridge (random voxels → features) + kNN over ``bank``, logged as one decoder; the
    labeller's ``half`` travels in the kNN model's config, so the server takes that path."""
    import mlflow

    from sbd.decoding.knn import KNNLabeller
    from sbd.decoding.ridge import MultiRidge
    from sbd.registry import ridge_model
    from sbd.registry.decoder_model import log_decoder_model
    from sbd.registry.knn_model import log_knn_model

    mlflow.set_tracking_uri(tracking)
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, n_voxels))
    ridge = MultiRidge(alpha=10.0).fit(X, rng.standard_normal((300, dim)) + 2.0)
    with mlflow.start_run(run_name="bench_bank"):
        ridge_uri = ridge_model.log_ridge_model(ridge, name="ridge").model_uri
        t0 = time.perf_counter()
        labeller = KNNLabeller(k=5, top_k=5, half=half).fit(bank)
        knn_uri = log_knn_model(labeller, bank, name="knn").model_uri
        say(f"kNN labeller fitted and logged in {time.perf_counter() - t0:.0f} s")
        return log_decoder_model(ridge_uri, knn_uri, name="decoder").model_uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_gb(root_pid: int) -> tuple[float, dict]:
    """Largest VmHWM among ``root_pid`` and its descendants, GiB, and that process's
    memory now: anonymous and file-backed resident GiB (``smaps_rollup``; the mapped
    bank's pages are file-backed)."""
    pids, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    best, top = 0, root_pid
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:") and int(line.split()[1]) > best:
                    best, top = int(line.split()[1]), pid
        except OSError:
            pass
    f = {}
    for line in Path(f"/proc/{top}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        f[key] = int(value.split()[0]) / 2**20
    return best / 2**20, {"server_anon_gb": round(f["Anonymous"], 2),
                          "server_file_rss_gb": round(f["Rss"] - f["Anonymous"], 2)}


def serve(uri: str, tracking: str, n_voxels: int, n_requests: int) -> dict:
    import requests

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", uri,
                             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port),
                             "--workers", "1"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/invocations"
    rng = np.random.default_rng(3)

    def one() -> requests.Response:
        row = {f"v{i}": float(v) for i, v in enumerate(rng.standard_normal(n_voxels))}
        return requests.post(url, json={"dataframe_records": [row]}, timeout=600)

    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("mlflow models serve exited before answering")
            try:
                r = one()
                if r.status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.5)
        cold = time.perf_counter() - t0
        times = []
        for _ in range(n_requests):
            t = time.perf_counter()
            r = one()
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text[:500]
        rss, mem = peak_rss_gb(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    ms = np.array(times) * 1000
    return {"cold_load_s": round(cold, 1), "serve_p50_ms": round(float(np.percentile(ms, 50)), 1),
            "serve_p95_ms": round(float(np.percentile(ms, 95)), 1), "peak_rss_gb": round(rss, 2),
            "n_requests": n_requests, **mem}


def searches(path: Path, queries: np.ndarray, half: bool | None, k: int = 5) -> dict:
    from sbd.decoding.knn import exact_search
    from sbd.features.bank import FeatureBank

    out = {}
    with FeatureBank(path) as bank:
        arr = bank.array()
        exact_search(queries[:1], bank, k, half=half)  # row norms once, bank paged in
        t0 = time.perf_counter()
        ours = exact_search(queries, bank, k, half=half)
        out["batch50_s"] = round(time.perf_counter() - t0, 2)
        say(f"exact_search of {len(queries)}: {out['batch50_s']} s")
        try:
            import faiss
        except ImportError:  # the optional extra: the README's install does not add it
            out["faiss_skipped"] = ("faiss-cpu is not installed (pip install -e '.[faiss]'); "
                                    "the FAISS columns are left out")
            say(out["faiss_skipped"])
            return out
        t0 = time.perf_counter()
        flat = faiss.IndexFlatL2(arr.shape[1])
        for i in range(0, len(arr), 65536):
            flat.add(np.asarray(arr[i:i + 65536], np.float32))
        out["faiss_flat_build_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        _, fi = flat.search(queries, k)
        out["faiss_flat_s"] = round(time.perf_counter() - t0, 2)
        out["speed_vs_faiss"] = round(out["faiss_flat_s"] / out["batch50_s"], 2)
        out["recall_at_5"] = float(np.mean([len(set(a) & set(b)) / k
                                            for a, b in zip(ours.indices, fi)]))
        say(f"FAISS flat: {out['faiss_flat_s']} s, recall of ours {out['recall_at_5']}")
        del flat
        quant = faiss.IndexFlatL2(arr.shape[1])
        ivf = faiss.IndexIVFScalarQuantizer(quant, arr.shape[1], 1024,
                                            faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
        rng = np.random.default_rng(4)
        t0 = time.perf_counter()
        ivf.train(np.asarray(arr[np.sort(rng.choice(len(arr), min(65536, len(arr)), replace=False))], np.float32))
        for i in range(0, len(arr), 65536):
            ivf.add(np.asarray(arr[i:i + 65536], np.float32))
        out["ivf_build_s"] = round(time.perf_counter() - t0, 1)
        ivf.nprobe = 32
        times, hits = [], []
        for q, want in zip(queries, ours.indices):
            t = time.perf_counter()
            _, got = ivf.search(q[None], k)
            times.append(time.perf_counter() - t)
            hits.append(len(set(got[0]) & set(want)) / k)
        out["ivf_ms"] = round(float(np.median(times)) * 1000, 1)
        out["ivf_recall_at_5"] = float(np.mean(hits))
        say(f"FAISS IVF: {out['ivf_ms']} ms/query, recall {out['ivf_recall_at_5']}")
    return out


def old_listing(data_dir: Path) -> int:
    """The bank listing of earlier sbd (Path objects, a stat per file), the baseline."""
    from sbd.data import layout
    from sbd.data.images import is_image_file

    root = layout.bank_dir(data_dir)
    n = 0
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted((p for p in d.iterdir() if is_image_file(p)), key=lambda p: p.name):
            f.relative_to(data_dir).as_posix()
            n += 1
    return n


def listing(work: Path, rows: int, wnids: list[str]) -> dict:
    from sbd.data import layout
    from sbd.features.extract import list_bank

    data = work / "tree"
    root = layout.bank_dir(data)
    t0 = time.perf_counter()
    per = -(-rows // len(wnids))
    made = 0
    for w in wnids:
        (root / w).mkdir(parents=True, exist_ok=True)
        for i in range(min(per, rows - made)):
            os.close(os.open(root / w / f"{w}_{i}.JPEG", os.O_CREAT | os.O_WRONLY, 0o644))
        made += min(per, rows - made)
    say(f"tree of {made} files made in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    kept, _ = list_bank(data)
    new_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_old = old_listing(data)
    old_s = time.perf_counter() - t0
    assert len(kept) == n_old == made, (len(kept), n_old, made)
    shutil.rmtree(data)
    return {"list_s": round(new_s, 1), "list_old_s": round(old_s, 1), "list_files": made}


def storage_figures(work: Path, bank: Path, args: argparse.Namespace, wnids: list[str]
                    ) -> dict:
    """Write the bank (and the gzip one, unless skipped), stream both, the scan limit."""
    out = {"write_s": round(write_bank(bank, args.rows, args.dim, wnids, "contiguous"), 1)}
    say(f"bank written in {out['write_s']} s")
    if "stream" not in args.skip:
        old = work / "gzip.h5"
        out["gzip_write_s"] = round(write_bank(old, args.gzip_rows, args.dim, wnids, "gzip"), 1)
        for name, path in (("stream", bank), ("gzip_stream", old)):
            evict(path)
            out[f"{name}_mb_s"] = round(stream_mb_s(path), 0)
            out[f"{name}_cached_mb_s"] = round(stream_mb_s(path), 0)
        say(f"streaming: {out['stream_mb_s']} MB/s vs gzip {out['gzip_stream_mb_s']}")
    from sbd.features.bank import FeatureBank

    with FeatureBank(bank) as fb:
        bw = read_bandwidth(fb.array())
    out["read_gb_s"] = round(bw / 1e9, 2)
    out["scan_limit_ms"] = round(args.rows * args.dim * 2 / bw * 1000, 1)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_281_167)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--gzip-rows", type=int, default=131_072)
    ap.add_argument("--n-voxels", type=int, default=4466)
    ap.add_argument("--requests", type=int, default=30)
    ap.add_argument("--half", default="auto", choices=tuple(HALF),
                    help="the kNN search path (KNNLabeller half=, kept in the served model's "
                         "config): auto, on (float16 products), off (float32, as on AVX2)")
    ap.add_argument("--skip", action="append", default=[], choices=("stream", "list"),
                    help="leave out the gzip/streaming or the listing figures (repeatable)")
    ap.add_argument("--work", default="/tmp/bench_bank")
    args = ap.parse_args(argv)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    wnids = wnid_list(1000)
    figures: dict = {"rows": args.rows, "dim": args.dim, "half": args.half,
                     "bank_gb": round(args.rows * args.dim * 2 / 2**30, 2),
                     "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
                     "load_before": os.getloadavg()[0]}
    try:
        bank = work / "bank.h5"
        figures.update(storage_figures(work, bank, args, wnids))
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        uri = log_decoder(bank, args.dim, args.n_voxels, tracking, HALF[args.half])
        evict(bank)  # a server that starts after a reboot reads the bank from disk
        figures.update(serve(uri, tracking, args.n_voxels, args.requests))
        figures["p50_over_scan_limit"] = round(figures["serve_p50_ms"]
                                               / figures["scan_limit_ms"], 2)
        say(f"served: p50 {figures['serve_p50_ms']} ms, cold {figures['cold_load_s']} s")
        figures["rss_over_bank"] = round(figures["peak_rss_gb"] / figures["bank_gb"], 2)
        figures.update(searches(bank, make_queries(bank, 50), HALF[args.half]))
        if "list" not in args.skip:
            figures.update(listing(work, args.rows, wnids))
    finally:
        figures["load_after"] = os.getloadavg()[0]
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
