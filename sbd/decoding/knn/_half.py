"""Searches over a float16 bank held as an array (in memory or memory-mapped), with no
float32 copy of the bank: the float16 path (products of unit-scaled queries with the rows
as stored, candidates reranked exactly in float32; AVX-512 CPUs) and its exact float32
fallback (rows converted to float32 in cache-sized pieces, one reused buffer)."""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import torch

from sbd.decoding.knn._common import EPS
from sbd.features.bank import InMemoryBank


# The float16 products are a matrix-vector kernel's: beyond a few queries torch's float16
# matrix product is slower than the converted float32 one (200,000 x 2048 bank, AVX-512
# without AVX512-FP16: 4 queries 81 vs 90 ms, 8: 179 vs 127 ms, 50: 1.18 vs 0.36 s).
HALF_MAX_QUERIES = 4


def native_half() -> bool:
    """Whether this CPU multiplies float16 natively (AVX-512): the default of ``half``."""
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def use_half(half: bool | None, n_queries: int, class_distances: bool) -> bool:
    """The float16 path's choice of ``half`` (see ``exact_search``): True / False as given;
    None: on AVX-512 CPUs, for a batch of at most :data:`HALF_MAX_QUERIES` queries or when
    class distances are asked for (their float16 rounding is part of the default's figures)."""
    if half is not None:
        return bool(half)
    return native_half() and (n_queries <= HALF_MAX_QUERIES or class_distances)


# Rows converted per piece by :func:`converted_scores`: 512 x 2048 float32 is 4 MiB, which
# stays in this machine's caches between its conversion and its product (measured best of
# 256..8192 rows; README, "An ImageNet-sized bank").
CONVERT_ROWS = 512


def float16_matrix(bank: Any) -> np.ndarray | None:
    """The bank's float16 features as an array in memory or memory-mapped (an
    :class:`InMemoryBank` of float16, or a contiguous bank file); else None."""
    arr = getattr(bank, "features", None) if isinstance(bank, InMemoryBank) else (
        bank.array() if callable(getattr(bank, "array", None)) else None)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float16 or arr.ndim != 2:
        return None
    return arr


def as_tensor(block: np.ndarray) -> torch.Tensor:
    """A tensor over ``block`` without a copy (a read-only map is never written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "array is not writable"
        return torch.from_numpy(block)


def row_norms(bank: Any, matrix: np.ndarray, metric: str, block_rows: int = CONVERT_ROWS
              ) -> torch.Tensor:
    """(N,) float32 squared norms (euclidean) or norms (cosine) of the bank's rows,
    computed once per bank object (one pass, which also pages a mapped bank in), the rows
    converted ``block_rows`` at a time into one reused buffer (fresh block-sized
    temporaries cost a page fault per page: 1.2 s of 1.5 s for 200,000 x 2048)."""
    cache = bank.__dict__.setdefault("_sbd_row_norms", {})
    if metric not in cache:
        sq = torch.empty(len(matrix))
        buf = torch.empty((min(block_rows, len(matrix)), matrix.shape[1]))
        for i in range(0, len(matrix), block_rows):
            b = buf[:len(matrix[i:i + block_rows])]
            b.copy_(as_tensor(matrix[i:i + block_rows]))
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


def converted_scores(matrix: np.ndarray, norms: torch.Tensor, q: torch.Tensor, metric: str,
                     block_size: int, piece_rows: int = CONVERT_ROWS,
                     threads: int | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, scores)`` per block as :func:`half_scores`, but exact float32 products: the
    float16 rows are converted ``piece_rows`` at a time into a float32 buffer small enough
    to stay in cache until it is multiplied, by ``threads`` threads (default: torch's
    intra-op thread count) with one reused buffer each, so neither a float32 copy of the
    bank nor a block-sized float32 temporary is made; the scores of a block are valid until
    the next one is asked for.  The path of CPUs without native float16 products; no
    rerank is needed."""
    n, dim = matrix.shape
    piece = max(1, min(int(piece_rows), n))
    n_threads = max(1, int(threads or torch.get_num_threads()))
    bufs = [torch.empty((piece, dim)) for _ in range(n_threads)]
    block = max(block_size, 65536)

    def work(j: int, start: int, dots: torch.Tensor) -> None:
        with torch.inference_mode():  # thread-local: the caller's mode is not inherited
            for s in range(start + j * piece, start + len(dots), n_threads * piece):
                rows = bufs[j][:min(piece, start + len(dots) - s)]
                rows.copy_(as_tensor(matrix[s:s + len(rows)]))
                torch.mm(rows, q.T, out=dots[s - start:s - start + len(rows)])

    out = torch.empty((min(block, n), q.shape[0]))  # reused: a block's scores live until
    with ThreadPoolExecutor(n_threads) as pool:     # the caller asks for the next block
        for start in range(0, n, block):
            stop = min(start + block, n)
            dots = out[:stop - start]                                       # (m, nq)
            list(pool.map(work, range(n_threads), [start] * n_threads, [dots] * n_threads))
            if metric == "cosine":
                yield start, dots.T.div_(-norms[start:stop])
            else:
                yield start, dots.T.mul_(-2.0).add_(norms[start:stop])
