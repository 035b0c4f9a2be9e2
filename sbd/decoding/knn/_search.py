"""Exact k-nearest-neighbour search, streaming the bank in blocks (float32 accumulation),
with each class's distance kept in the same pass; class centroids and their distances."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sbd.decoding.knn._common import EPS, METRICS, check_choice
from sbd.decoding.knn._half import (converted_scores, float16_matrix, half_scores, rerank,
                                    row_norms, use_half)
from sbd.features.bank import DEFAULT_BLOCK_SIZE, iter_blocks, open_bank


def class_codes(wnids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct labels and the integer code of each row: ``(classes (C,), codes (N,))``."""
    classes, codes = np.unique(np.asarray(wnids, dtype=str), return_inverse=True)
    return classes, codes.astype(np.int64)


@dataclass
class Neighbours:
    """Result of a neighbour search for ``n`` queries.

    Attributes
    ----------
    indices : int64 array (n, k)
        Bank rows of the k nearest neighbours, nearest first.
    distances : float32 array (n, k)
        Their distances (euclidean, or cosine distance ``1 - cos``).
    wnids : str array (n, k)
        Their labels.
    class_distances : float32 array (n, C) or None
        Distance to the nearest member of each class of ``classes`` (``inf`` when unknown).
    classes : str array (C,) or None
        The class labels indexing ``class_distances``.
    metric : str
    """

    indices: np.ndarray
    distances: np.ndarray
    wnids: np.ndarray
    class_distances: np.ndarray | None = None
    classes: np.ndarray | None = None
    metric: str = "euclidean"

    def truncate(self, k: int) -> "Neighbours":
        """The same search result with only the first ``k`` neighbours."""
        return Neighbours(self.indices[:, :k], self.distances[:, :k], self.wnids[:, :k],
                          self.class_distances, self.classes, self.metric)


def as_queries(features: Any, dim: int | None = None) -> torch.Tensor:
    """Query features (n, D) (one row may come as (D,)) as a float32 tensor, checked."""
    q = np.asarray(features, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise ValueError(f"Query features must be 2-D (n, D), got shape {q.shape}.")
    if dim is not None and q.shape[1] != dim:
        raise ValueError(f"Query features have {q.shape[1]} columns; the bank has dim {dim}.")
    if not np.isfinite(q).all():
        raise ValueError("Query features contain NaN or infinite values.")
    return torch.from_numpy(np.ascontiguousarray(q))


def _prepare_queries(q: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit queries (cosine) or queries and their squared norms (euclidean)."""
    if metric == "cosine":
        return q / q.norm(dim=1, keepdim=True).clamp_min(EPS), torch.zeros(q.shape[0])
    return q, (q * q).sum(1)


def _block_scores(q: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """A distance up to a per-query constant, (n, m): ``|b|^2 - 2 q.b`` for euclidean
    (add ``|q|^2`` for the squared distance), ``-cos`` for cosine (add 1)."""
    norms = torch.linalg.vector_norm(b, dim=1)
    if metric == "cosine":
        return torch.mm(q, b.T).mul_(-1.0 / norms.clamp_min(EPS))
    return torch.addmm(norms.square_()[None, :], q, b.T, alpha=-2.0)


def _finish(scores: torch.Tensor, q_const: torch.Tensor, metric: str) -> torch.Tensor:
    """Distances from :func:`_block_scores` values."""
    if metric == "cosine":
        return scores + 1.0
    return (scores + q_const[:, None]).clamp_min_(0.0).sqrt_()


def exact_search(queries: Any, bank: Any, k: int = 5, metric: str = "euclidean",
                 block_size: int = DEFAULT_BLOCK_SIZE, codes: np.ndarray | None = None,
                 n_classes: int | None = None, exclude: np.ndarray | None = None,
                 query_batch: int = 2048, workers: int | None = None,
                 progress: bool = False, class_members: int = 1,
                 half: bool | None = None) -> Neighbours:
    """Exact k nearest neighbours of ``queries`` in ``bank``, streaming it in blocks.

    Parameters
    ----------
    queries : array (n, D)
    bank : FeatureBank, InMemoryBank or path to a bank ``.h5``
    k : int
        Number of neighbours (capped at the bank size).
    metric : {"euclidean", "cosine"}
    block_size : int
        Bank rows per block (memory ~ ``block_size * (2 D + n) * 4`` bytes).
    codes : int array (N,), optional
        Class code of each bank row; when given, ``class_distances`` (n, n_classes) is
        filled with the distance to each class's nearest member, or the mean distance to
        its ``class_members`` nearest (all of them when it has fewer rows left).
    n_classes : int, optional
        Number of classes (default ``codes.max() + 1``).
    exclude : bool array (N,), optional
        Bank rows never returned (e.g. the query stimuli themselves).
    query_batch : int
        Queries per pass over the bank.
    workers : int, optional
        Decompression threads (see :func:`sbd.features.bank.iter_blocks`).
    class_members : int
        Members averaged into ``class_distances`` (≥ 1).
    half : bool, optional
        Float16 products over a float16 bank held in memory or memory-mapped, neighbours
        reranked exactly (class distances then carry float16 rounding, ~1e-3 relative).
        None (default): when this CPU multiplies float16 natively (AVX-512) and the
        queries are at most ``HALF_MAX_QUERIES`` (4) or ``codes`` are given (beyond, the
        float32 path is faster and its neighbours are the same); True / False force it
        on / off.  Off, such a bank is searched in exact float32 products, its
        rows converted in cache-sized pieces into one reused buffer (no float32 copy of
        the bank).  Other banks are read as float32 blocks.

    Returns
    -------
    Neighbours
        Index -1 / wnid "" / distance inf where fewer than k rows are left.
    """
    check_choice("metric", metric, METRICS)
    bank = open_bank(bank)
    n_bank = len(bank)
    k, members = _check_counts(n_bank, k, class_members)
    q_all = as_queries(queries, bank.dim)
    codes_t, n_classes = _check_codes(codes, n_classes, n_bank)
    matrix = float16_matrix(bank)
    search = _BlockSearch(bank, matrix, matrix is not None and use_half(
                              half, q_all.shape[0], codes_t is not None),
                          k, metric, block_size, workers, progress,
                          _check_exclude(exclude, n_bank), codes_t, n_classes, members)
    n = q_all.shape[0]
    out_d = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    out_c = np.empty((n, n_classes), np.float32) if codes_t is not None else None
    with torch.inference_mode():
        for q0 in range(0, n, query_batch):
            dist, idx, cls = search.batch(q_all[q0:q0 + query_batch])
            out_d[q0:q0 + len(dist)] = dist
            out_i[q0:q0 + len(dist)] = idx
            if out_c is not None:
                out_c[q0:q0 + len(dist)] = cls
    wn = getattr(bank, "wnids", None)
    wn = np.asarray(wn if wn is not None else np.full(n_bank, ""), dtype=str)
    labels = wn[out_i]
    missing = ~np.isfinite(out_d)  # fewer than k rows left after `exclude`
    if missing.any():
        out_i[missing] = -1
        labels[missing] = ""
    return Neighbours(out_i, out_d, labels, out_c, None, metric)


def _check_counts(n_bank: int, k: int, class_members: int) -> tuple[int, int]:
    """``k`` (capped at the bank size) and the class members, checked."""
    if n_bank == 0:
        raise ValueError("The feature bank is empty.")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    m = int(class_members)
    if m < 1:
        raise ValueError(f"class_members must be >= 1, got {class_members!r}.")
    return min(k, n_bank), m


def _check_codes(codes: np.ndarray | None, n_classes: int | None, n_bank: int
                 ) -> tuple[torch.Tensor | None, int | None]:
    """The class codes as a tensor and the class count, checked against the bank."""
    if codes is None:
        return None, n_classes
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape != (n_bank,):
        raise ValueError(f"codes has shape {codes.shape}; expected ({n_bank},).")
    return torch.from_numpy(codes), int(n_classes if n_classes is not None else codes.max() + 1)


def _check_exclude(exclude: np.ndarray | None, n_bank: int) -> torch.Tensor | None:
    """The excluded rows as a bool tensor (N,), checked; None when none are."""
    if exclude is None:
        return None
    exclude = np.asarray(exclude, dtype=bool)
    if exclude.shape != (n_bank,):
        raise ValueError(f"exclude has shape {exclude.shape}; expected ({n_bank},).")
    if exclude.all():
        raise ValueError("exclude removes every row of the bank.")
    return torch.from_numpy(exclude)


@dataclass
class _BlockSearch:
    """One search's settings (checked by :func:`exact_search`); :meth:`batch` runs one
    pass over the bank for a batch of queries."""

    bank: Any
    matrix: np.ndarray | None  # the float16 rows as an array (in memory or mapped), or None
    half: bool                 # float16 products (reranked) over ``matrix``, else float32
    k: int
    metric: str
    block_size: int
    workers: int | None
    progress: bool
    excl_t: torch.Tensor | None
    codes_t: torch.Tensor | None
    n_classes: int | None
    members: int

    def batch(self, q: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Distances (nq, k) float32, rows (nq, k) int64 and class distances (nq, C) or None."""
        n_bank = len(self.bank)
        q, q_const = _prepare_queries(q, self.metric)
        if self.matrix is not None:
            norms = row_norms(self.bank, self.matrix, self.metric)
            scores = (half_scores if self.half else converted_scores)(
                self.matrix, norms, q, self.metric, self.block_size)
        else:
            scores = _stream_scores(self.bank, q, self.metric, self.block_size, self.workers)
        if self.progress:
            from tqdm.auto import tqdm

            scores = tqdm(scores, total=-(-n_bank // self.block_size), desc="kNN", unit="block")
        # float16 products (the bank's own precision) pick k + 16 candidates, reranked
        best_d, best_i, cls_d = _merge_blocks(
            scores, q.shape[0], min(n_bank, self.k + 16) if self.half else self.k,
            self.excl_t, self.codes_t, self.n_classes, self.members)
        if self.half:
            best_d, best_i = rerank(self.matrix, q, best_d, best_i, self.metric, self.k)
        cls = None
        if cls_d is not None:
            fin = _finish(cls_d.reshape(q.shape[0], -1), q_const, self.metric)
            cls = _finite_mean(fin.reshape(cls_d.shape).numpy())
        return _finish(best_d, q_const, self.metric).numpy(), best_i.numpy(), cls


def _merge_blocks(scores: Iterator[tuple[int, torch.Tensor]], nq: int, k: int,
                  excl_t: torch.Tensor | None, codes_t: torch.Tensor | None,
                  n_classes: int | None, m: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The running top ``k`` (scores, indices; (nq, k), sorted) over the blocks' scores, with
    excluded rows left out, and each class's ``m`` nearest scores (nq, C, m) when ``codes_t``."""
    best_d = torch.full((nq, k), float("inf"))
    best_i = torch.zeros((nq, k), dtype=torch.int64)
    cls_d = torch.full((nq, n_classes, m), float("inf")) if codes_t is not None else None
    for start, d in scores:
        stop = start + d.shape[1]
        if excl_t is not None:
            mask = excl_t[start:stop]
            if mask.any():
                d[:, mask] = float("inf")
        bd, bi = torch.topk(d, min(k, d.shape[1]), dim=1, largest=False, sorted=False)
        cat_d = torch.cat([best_d, bd], 1)
        cat_i = torch.cat([best_i, bi + start], 1)
        best_d, pos = torch.topk(cat_d, k, dim=1, largest=False, sorted=True)
        best_i = torch.gather(cat_i, 1, pos)
        if cls_d is not None:
            cls_d = _merge_class_nearest(cls_d, d, codes_t[start:stop])
    return best_d, best_i, cls_d


def _stream_scores(bank: Any, q: torch.Tensor, metric: str, block_size: int,
                   workers: int | None) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, scores)`` per block of the bank read as float32 (:func:`iter_blocks`);
    scores (nq, m) as :func:`_block_scores`."""
    for start, block in iter_blocks(bank, block_size, workers):
        yield start, _block_scores(q, torch.from_numpy(np.asarray(block, dtype=np.float32)),
                                   metric)


def _merge_class_nearest(best: torch.Tensor, d: torch.Tensor, codes: torch.Tensor
                         ) -> torch.Tensor:
    """The ``m`` smallest values per class (sorted, inf-padded) of ``best`` (n, C, m) and of
    a block ``d`` (n, B) whose columns belong to classes ``codes`` (B,)."""
    n, n_classes, m = best.shape
    idx = codes.expand(n, -1)
    if m == 1:
        return best.squeeze(2).scatter_reduce_(1, idx, d, reduce="amin",
                                               include_self=True).unsqueeze(2)
    work, found = d.clone(), []
    col = torch.arange(d.shape[1]).expand(n, -1)
    for j in range(m):
        low = torch.full((n, n_classes), float("inf")).scatter_reduce_(
            1, idx, work, reduce="amin", include_self=True)
        found.append(low)
        if j < m - 1:  # take out the one column that gave each class's minimum
            hit = work == low.gather(1, idx)
            pos = torch.where(hit, col, d.shape[1])
            first = torch.full((n, n_classes), d.shape[1]).scatter_reduce_(
                1, idx, pos, reduce="amin", include_self=True)
            work = work.masked_fill(hit & (pos == first.gather(1, idx)), float("inf"))
    merged = torch.cat([best, torch.stack(found, 2)], 2)
    return torch.topk(merged, m, dim=2, largest=False, sorted=True).values


def _finite_mean(d: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries (inf where there is none)."""
    if d.shape[-1] == 1:
        return d[..., 0]
    ok = np.isfinite(d)
    count = ok.sum(-1)
    total = np.where(ok, d, 0.0).sum(-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.inf).astype(np.float32)


def class_centroids(bank: Any, codes: np.ndarray, n_classes: int, metric: str = "euclidean",
                    block_size: int = DEFAULT_BLOCK_SIZE) -> np.ndarray:
    """Mean feature of each class, float32 (C, D); for cosine, the mean of unit vectors."""
    check_choice("metric", metric, METRICS)
    bank = open_bank(bank)
    sums = torch.zeros((n_classes, bank.dim), dtype=torch.float64)
    counts = np.bincount(codes, minlength=n_classes)
    with torch.inference_mode():
        for start, block in iter_blocks(bank, block_size):
            b = torch.from_numpy(np.asarray(block, dtype=np.float32))
            if metric == "cosine":
                b = b / b.norm(dim=1, keepdim=True).clamp_min(EPS)
            idx = torch.from_numpy(codes[start:start + b.shape[0]])
            sums.index_add_(0, idx, b.double())
    means = sums / torch.from_numpy(np.maximum(counts, 1)).double()[:, None]
    return means.float().numpy()


def centroid_distances(queries: Any, centroids: np.ndarray, metric: str) -> np.ndarray:
    """Distances (n, C) from queries to class centroids."""
    q = as_queries(queries, centroids.shape[1])
    c = torch.from_numpy(np.asarray(centroids, dtype=np.float32))
    with torch.inference_mode():
        q, q_const = _prepare_queries(q, metric)
        return _finish(_block_scores(q, c, metric), q_const, metric).numpy()
