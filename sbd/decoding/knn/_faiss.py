"""The optional FAISS backend (extra ``faiss``): exact flat indexes and an approximate
IVF-PQ index; :func:`recall_at_k` measures the latter against exact search."""

from __future__ import annotations

from typing import Any

import numpy as np

from sbd.decoding.knn._common import EPS, METRICS, check_choice
from sbd.features.bank import DEFAULT_BLOCK_SIZE, iter_blocks, open_bank


def _import_faiss():
    try:
        import faiss  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("The FAISS backend needs faiss-cpu: pip install 'sbd[faiss]'.") from e
    return faiss


class FaissIndex:
    """A FAISS index over a bank: ``flat`` (exact) or ``ivfpq`` (approximate).

    Parameters
    ----------
    kind : {"flat", "ivfpq"}
    metric : {"euclidean", "cosine"}
        cosine = inner product of unit vectors.
    nlist, m, nbits, nprobe : int
        IVF cells, PQ sub-quantisers (must divide D), bits per code, cells probed.
    train_size : int
        Rows sampled (the first ones, in blocks) to train IVF-PQ.
    """

    def __init__(self, kind: str = "flat", metric: str = "euclidean", nlist: int = 256,
                 m: int = 16, nbits: int = 8, nprobe: int = 16, train_size: int = 50_000) -> None:
        check_choice("faiss index kind", kind, ("flat", "ivfpq"))
        check_choice("metric", metric, METRICS)
        self.kind, self.metric = kind, metric
        self.nlist, self.m, self.nbits, self.nprobe = nlist, m, nbits, nprobe
        self.train_size = train_size

    def _prep(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), EPS)
        return x

    def build(self, bank: Any, block_size: int = DEFAULT_BLOCK_SIZE) -> "FaissIndex":
        """Add every row of ``bank``, streamed in blocks (IVF-PQ trained on the first rows)."""
        faiss = _import_faiss()
        bank = open_bank(bank)
        d = bank.dim
        ip = self.metric == "cosine"
        if self.kind == "flat":
            index = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
        else:
            index = self._ivfpq(faiss, bank, block_size)
        for _, block in iter_blocks(bank, block_size):
            index.add(self._prep(block))
        self.index_ = index
        return self

    def _ivfpq(self, faiss, bank: Any, block_size: int):
        """An IVF-PQ index trained on the bank's first ``train_size`` rows."""
        d = bank.dim
        ip = self.metric == "cosine"
        if d % self.m:
            raise ValueError(f"IVF-PQ m={self.m} must divide the feature dim {d}.")
        sample = []
        got = 0
        for _, block in iter_blocks(bank, block_size):
            sample.append(self._prep(block).copy())
            got += len(block)
            if got >= self.train_size:
                break
        train = np.concatenate(sample)[:self.train_size]
        # small banks: fewer cells (>= 39 points each) and fewer PQ centroids (2**nbits)
        nlist = max(1, min(self.nlist, len(train) // 39))
        self.nbits_ = max(1, min(self.nbits, int(np.log2(len(train)))))
        quant = faiss.IndexFlatIP(d) if ip else faiss.IndexFlatL2(d)
        mt = faiss.METRIC_INNER_PRODUCT if ip else faiss.METRIC_L2
        index = faiss.IndexIVFPQ(quant, d, nlist, self.m, self.nbits_, mt)
        index.train(train)
        index.nprobe = min(self.nprobe, nlist)
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(distances (n, k) float32, indices (n, k) int64)``, in the metric's distance."""
        d, i = self.index_.search(self._prep(queries), int(k))
        if self.metric == "cosine":
            d = 1.0 - d
        else:
            d = np.sqrt(np.maximum(d, 0.0))
        return d.astype(np.float32), i.astype(np.int64)


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean share of the exact k neighbours (n, k) found in the approximate ones (n, k')."""
    approx, exact = np.asarray(approx), np.asarray(exact)
    if approx.shape[0] != exact.shape[0]:
        raise ValueError(f"recall_at_k: {approx.shape[0]} vs {exact.shape[0]} queries.")
    hits = [len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, exact)]
    return float(np.sum(hits) / exact.size)


def retrieved_class_distances(dist: np.ndarray, idx: np.ndarray, codes: np.ndarray,
                              n_classes: int, members: int = 1) -> np.ndarray:
    """Class distances (n, C) from an approximate search's ``dist`` / ``idx`` (n, k',
    nearest first, index -1 = none): the mean of each class's ``members`` nearest
    retrieved rows, a member not retrieved counted at the farthest retrieved distance
    (a lower bound of its own); inf for a class with no row retrieved."""
    n = idx.shape[0]
    out = np.full((n, n_classes), np.inf, np.float32)
    for r in range(n):
        ok = idx[r] >= 0
        if not ok.any():
            continue
        dv = dist[r][ok].astype(np.float64)
        o = np.argsort(dv, kind="stable")
        dv, c = dv[o], codes[idx[r][ok]][o]
        by_class = np.argsort(c, kind="stable")  # nearest first within each class
        cs, ds = c[by_class], dv[by_class]
        start = np.searchsorted(cs, cs, side="left")
        rank = np.arange(len(cs)) - start
        keep = rank < members
        total = np.zeros(n_classes)
        count = np.zeros(n_classes)
        np.add.at(total, cs[keep], ds[keep])
        np.add.at(count, cs[keep], 1)
        seen = count > 0
        out[r, seen] = (total[seen] + (members - count[seen]) * dv[-1]) / members
    return out
