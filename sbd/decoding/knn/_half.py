"""The float16 search path: products of unit-scaled queries with the bank rows as stored
(no float32 copy of the bank), candidates reranked exactly in float32."""

from __future__ import annotations

import warnings
from typing import Any, Iterator

import numpy as np
import torch

from sbd.decoding.knn._common import EPS
from sbd.features.bank import InMemoryBank


def native_half() -> bool:
    """Whether this CPU multiplies float16 natively (AVX-512): the default of ``half``."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def half_matrix(bank: Any, half: bool | None = None) -> np.ndarray | None:
    """The bank's float16 features as an array in memory or memory-mapped (an
    :class:`InMemoryBank` of float16, or a contiguous bank file) when the float16 path is
    taken: ``half`` True, or None and :func:`native_half`; else None (blocks are
    converted to float32)."""
    arr = getattr(bank, "features", None) if isinstance(bank, InMemoryBank) else (
        bank.array() if callable(getattr(bank, "array", None)) else None)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float16 or arr.ndim != 2:
        return None
    use = native_half() if half is None else bool(half)
    return arr if use else None


def as_tensor(block: np.ndarray) -> torch.Tensor:
    """A tensor over ``block`` without a copy (a read-only map is never written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "array is not writable"
        return torch.from_numpy(block)


def row_norms(bank: Any, matrix: np.ndarray, metric: str, block_rows: int = 8192
              ) -> torch.Tensor:
    """(N,) float32 squared norms (euclidean) or norms (cosine) of the bank's rows,
    computed once per bank object (one pass, which also pages a mapped bank in)."""
    cache = bank.__dict__.setdefault("_sbd_row_norms", {})
    if metric not in cache:
        sq = torch.empty(len(matrix))
        for i in range(0, len(matrix), block_rows):
            b = as_tensor(matrix[i:i + block_rows]).float()
            sq[i:i + len(b)] = (b * b).sum(1)
        cache["euclidean"] = sq
        cache["cosine"] = sq.sqrt().clamp_min(EPS)
    return cache[metric]


def half_scores(matrix: np.ndarray, norms: torch.Tensor, q: torch.Tensor, metric: str,
                block_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, scores)`` per block, as ``_search._block_scores`` but from float16 products:
    the queries are scaled to unit norm (so products stay within float16's range) and
    multiplied with the bank rows as stored, with no float32 copy of the bank.  The scores
    carry float16 rounding (relative ~5e-4 of |q||b|); :func:`rerank` makes the returned
    neighbours exact."""
    scale = torch.linalg.vector_norm(q, dim=1).clamp_min(EPS)
    qh = (q / scale[:, None]).half()
    block = max(block_size, 65536)
    for start in range(0, len(matrix), block):
        dots = (as_tensor(matrix[start:start + block]) @ qh.T).float().T  # (nq, m)
        if metric == "cosine":
            yield start, dots.div_(-norms[start:start + block])
        else:
            yield start, dots.mul_(-2.0 * scale[:, None]).add_(norms[start:start + block])


def rerank(matrix: np.ndarray, q: torch.Tensor, cand_d: torch.Tensor, cand_i: torch.Tensor,
           metric: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best of the candidates (nq, k') by exact float32 scores of their rows
    (excluded rows, scored inf, stay inf)."""
    rows = torch.from_numpy(np.asarray(matrix[cand_i.reshape(-1).numpy()], np.float32))
    rows = rows.reshape(*cand_i.shape, -1)                                  # (nq, k', D)
    dots = torch.einsum("nd,nkd->nk", q, rows)
    sq = (rows * rows).sum(-1)
    exact = (-dots / sq.sqrt().clamp_min(EPS) if metric == "cosine" else sq - 2 * dots)
    exact = torch.where(torch.isinf(cand_d), cand_d, exact)
    best, pos = torch.topk(exact, k, dim=1, largest=False, sorted=True)
    return best, torch.gather(cand_i, 1, pos)
