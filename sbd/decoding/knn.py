"""Exact k-nearest-neighbour search over a feature bank, and label rules on top of it.

The bank streams from its HDF5 file in blocks (float16 storage, float32 accumulation), so
banks larger than memory work; each block is one matrix product in torch and a running
top-k merge.  Besides the k nearest neighbours, one pass also keeps, per query, the
distance to the nearest member of every class (``class_distances``) — the exact
extension of the paper's "labels of the nearest neighbours, in order" to any number of
ranks — or, with ``members`` m > 1, the mean distance to its m nearest members: a class
is then judged by more than its single closest image, which one noisy prediction can
land next to by chance (on the default phantom m = 2 raised test top-5 accuracy at equal
ridges, and the decoder tuning searches m, :mod:`sbd.decoding.decoder_tuning`).

Label rules (:data:`RULES`), each giving ``top_k`` distinct wnids ranked best first with a
score (higher = better):

``nearest`` (the paper's)
    classes ranked by their nearest member (by the mean of their ``members`` nearest);
    score = similarity of that member (cosine similarity, or ``-distance`` for
    euclidean).
``vote``
    share of the k neighbours carrying the label; ties broken by the nearest member.
``weighted``
    softmax of ``-d / (temperature * mean(d))`` over the k neighbours, summed per label
    (scale-free, so one temperature range suits any feature space).
``centroid``
    classes ranked by the distance of their mean feature (nearest class mean); score as
    for ``nearest``.

``semantic``
    a posterior over classes, softmax of ``-d_c / (temperature * mean(d))`` over each
    class's distance ``d_c`` (nearest member, or the mean of its ``members`` nearest).
    Rank 1 is the label of highest *expected* Wu-Palmer similarity to the truth,
    ``sum_c' p(c') wup(c', c)`` (minimum Bayes risk for the reported top-1 metric: when
    the evidence is split between "dog" and "wolf", "canine" wins); ranks 2.. are the
    most probable other classes, in posterior order (what top-k accuracy rewards).
    Score = the label's expected Wu-Palmer similarity.
    Needs the class similarity matrix (``class_similarity``, C × C).

Ranks that the rule leaves empty (fewer than ``top_k`` labels among the k neighbours) are
filled by nearest member, then by centroid distance, with score 0 for ``vote`` and
``weighted``.

Feature normalisation (:data:`NORMALIZATIONS`), applied to the queries and to every bank
row alike, with statistics of the *training* stimulus features (stored with the model, so
a sample's labels never depend on the other samples of a request):

``none``    raw features (the paper's);
``center``  minus the training-feature mean (so cosine compares directions around the
            typical image, not around the origin, where every ReLU feature vector
            points the same way);
``zscore``  centred and divided by the training-feature sd per dimension (a diagonal
            whitening: every feature counts alike).

An optional FAISS backend (extra ``faiss``) gives exact flat indexes and an approximate
IVF-PQ index; :func:`recall_at_k` measures the latter against exact search.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator

METRICS = ("euclidean", "cosine")
RULES = ("nearest", "vote", "weighted", "centroid", "semantic")
NORMALIZATIONS = ("none", "center", "zscore")
BACKENDS = ("torch", "faiss-flat", "faiss-ivfpq")
DEFAULT_BLOCK_SIZE = 8192
_EPS = 1e-12


def _check_choice(kind: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {kind}={value!r}; valid: {', '.join(valid)}.")


# ----------------------------------------------------------------------------- banks


class InMemoryBank:
    """A bank held in memory, with the reading interface of ``sbd.features.bank.FeatureBank``.

    Parameters
    ----------
    features : array (N, D)
        Bank features (any float dtype; blocks are served as float32).
    wnids : sequence of str, length N
        The label of each row.
    image_ids : sequence of str, length N, optional
        Row identifiers (default ``"row<i>"``).
    backbone : str
        Name of the backbone that produced the features.
    """

    def __init__(self, features: np.ndarray, wnids: Sequence[str],
                 image_ids: Sequence[str] | None = None, backbone: str = "") -> None:
        features = np.asarray(features)
        if features.ndim != 2:
            raise ValueError(f"Bank features must be 2-D (N, D), got shape {features.shape}.")
        if len(wnids) != features.shape[0]:
            raise ValueError(f"Bank has {features.shape[0]} rows but {len(wnids)} wnids.")
        self.features = features
        self.wnids = np.asarray(wnids, dtype=str)
        self.image_ids = (np.asarray(image_ids, dtype=str) if image_ids is not None
                          else np.asarray([f"row{i}" for i in range(len(wnids))]))
        self.backbone = backbone
        self.dim = int(features.shape[1])

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def iter_blocks(self, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(self), block_size):
            yield start, np.asarray(self.features[start:start + block_size], dtype=np.float32)

    def close(self) -> None:
        pass


class FeatureNormalizer:
    """``x -> (x - shift) / scale`` per dimension, from training-feature statistics.

    Parameters
    ----------
    mode : {"none", "center", "zscore"} (:data:`NORMALIZATIONS`)
    mean, std : arrays (D,) of the training stimulus features (needed unless ``none``)
    """

    def __init__(self, mode: str = "none", mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        _check_choice("normalize", mode, NORMALIZATIONS)
        self.mode = mode
        self.shift = self.scale = None
        if mode == "none":
            return
        if mean is None or (mode == "zscore" and std is None):
            raise ValueError(f"normalize={mode!r} needs the training features' mean"
                             f"{' and sd' if mode == 'zscore' else ''} (stats=).")
        self.shift = np.asarray(mean, dtype=np.float32).ravel()
        if mode == "zscore":
            sd = np.asarray(std, dtype=np.float32).ravel()
            if sd.shape != self.shift.shape:
                raise ValueError(f"Feature mean {self.shift.shape} and sd {sd.shape} differ.")
            self.scale = np.where(sd > 1e-6 * max(float(sd.max()), _EPS), sd, 1.0
                                  ).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalised copy of ``x`` (n, D), float32."""
        x = np.asarray(x, dtype=np.float32)
        if self.shift is None:
            return x
        if x.shape[-1] != self.shift.shape[0]:
            raise ValueError(f"Features have {x.shape[-1]} columns; the normalisation "
                             f"statistics have {self.shift.shape[0]}.")
        out = x - self.shift
        return out / self.scale if self.scale is not None else out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its statistics as plain arrays (for ``np.savez``)."""
        out = {"mode": np.array(self.mode)}
        if self.shift is not None:
            out["shift"] = self.shift
        if self.scale is not None:
            out["scale"] = self.scale
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "FeatureNormalizer":
        norm = cls("none")
        norm.mode = str(arrays["mode"])
        _check_choice("normalize", norm.mode, NORMALIZATIONS)
        norm.shift = np.asarray(arrays["shift"], np.float32) if "shift" in arrays else None
        norm.scale = np.asarray(arrays["scale"], np.float32) if "scale" in arrays else None
        return norm


class NormalizedBank:
    """A bank whose blocks are served through a :class:`FeatureNormalizer`."""

    def __init__(self, bank: Any, normalizer: FeatureNormalizer) -> None:
        self.inner = bank
        self.normalizer = normalizer
        self.wnids = bank.wnids
        self.image_ids = getattr(bank, "image_ids", None)
        self.backbone = getattr(bank, "backbone", "")
        self.dim = bank.dim

    def __len__(self) -> int:
        return len(self.inner)

    def iter_blocks(self, block_size: int) -> Iterator[tuple[int, np.ndarray]]:
        for start, block in iter_blocks(self.inner, block_size):
            yield start, self.normalizer(block)

    def close(self) -> None:
        self.inner.close()


def open_bank(bank: Any):
    """A bank object from a path to a bank ``.h5`` (``FeatureBank``) or a bank object as is."""
    if isinstance(bank, (str, Path)):
        from sbd.features.bank import FeatureBank

        path = Path(bank)
        if not path.is_file():
            raise FileNotFoundError(f"Feature bank file {path} does not exist.")
        return FeatureBank(path)
    for attr in ("iter_blocks", "wnids", "dim"):
        if not hasattr(bank, attr):
            raise TypeError(f"Not a feature bank (no {attr!r}): {type(bank).__name__}; "
                            "pass a FeatureBank, an InMemoryBank or a path to a bank .h5.")
    return bank


def _unshuffle(buf: np.ndarray, itemsize: int, dtype: np.dtype) -> np.ndarray:
    """Undo HDF5's byte-shuffle filter: ``buf`` holds byte 0 of every element, then byte 1..."""
    n = buf.size // itemsize
    planes = buf.reshape(itemsize, n)
    if dtype.byteorder in ("<", "=", "|") and np.little_endian and itemsize in (2, 4, 8):
        utype = {2: np.uint16, 4: np.uint32, 8: np.uint64}[itemsize]
        acc = planes[0].astype(utype)
        for j in range(1, itemsize):
            acc |= planes[j].astype(utype) << utype(8 * j)
        return acc.view(dtype.newbyteorder("="))
    plain = np.empty(n * itemsize, np.uint8)
    plain.reshape(n, itemsize)[:] = planes.T
    return plain.view(dtype)


def _decode_chunk(ds, row: int, rows: int, dim: int, shuffle: bool, dest: np.ndarray,
                  lock: threading.Lock) -> None:
    """Read one raw HDF5 chunk (gzip [+ shuffle]) and decode it into ``dest`` (rows, D) f32."""
    with lock:
        mask, raw = ds.id.read_direct_chunk((row, 0))
    if mask:  # a filter was skipped for this chunk: let HDF5 decode it
        with lock:
            dest[:] = ds[row:row + rows]
        return
    buf = np.frombuffer(zlib.decompress(raw), np.uint8)
    values = (_unshuffle(buf, ds.dtype.itemsize, ds.dtype) if shuffle
              else buf.view(ds.dtype)).reshape(-1, dim)[:rows]
    # torch converts float16 -> float32 with SIMD, several times faster than numpy
    torch.from_numpy(dest).copy_(torch.from_numpy(np.ascontiguousarray(values)))


def _fast_layout(bank: Any):
    """``(h5 file, dataset, chunk rows, shuffle)`` when the bank's features can be read
    as raw chunks in parallel (chunked by whole rows, gzip [+ shuffle] only), else None."""
    path = getattr(bank, "path", None)
    if path is None or not Path(path).is_file():
        return None
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError:
        return None
    ds = f.get("features")
    ok = (isinstance(ds, h5py.Dataset) and ds.ndim == 2 and ds.dtype.kind == "f"
          and ds.chunks is not None and ds.chunks[1] == ds.shape[1]
          and ds.compression == "gzip" and not ds.fletcher32 and ds.scaleoffset is None)
    if ok:
        plist = ds.id.get_create_plist()
        codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        ok = codes in ([1], [2, 1])  # deflate, or shuffle then deflate
    if not ok:
        f.close()
        return None
    return f, ds, int(ds.chunks[0]), bool(ds.shuffle)


def iter_blocks(bank: Any, block_size: int = DEFAULT_BLOCK_SIZE,
                workers: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, block)`` with block = bank rows ``start..`` as float32 (≤block_size, D).

    For sbd bank files (gzip-compressed HDF5 chunks of whole rows) the raw chunks are
    decompressed by ``workers`` threads (default: CPU count) while the caller works on
    the previous block; otherwise the bank's own ``iter_blocks`` is used.  Blocks live in
    two reused buffers: a block is valid until the next one is requested (copy to keep).
    """
    if block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size!r}.")
    layout = _fast_layout(bank)
    if layout is None:
        yield from bank.iter_blocks(block_size)
        return
    f, ds, chunk, shuffle = layout
    n, dim = ds.shape
    block_size = max(chunk, block_size // chunk * chunk)
    n_blocks = -(-n // block_size)
    bufs = [np.empty((min(block_size, n), dim), np.float32) for _ in range(min(2, n_blocks))]
    lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)

    def submit(b: int) -> list:
        start = b * block_size
        stop = min(start + block_size, n)
        buf = bufs[b % len(bufs)]
        return [pool.submit(_decode_chunk, ds, r, min(chunk, stop - r), dim, shuffle,
                            buf[r - start:min(r + chunk, stop) - start], lock)
                for r in range(start, stop, chunk)]

    try:
        pending = submit(0)
        for b in range(n_blocks):
            current = pending
            if b + 1 < n_blocks:
                pending = submit(b + 1)
            for fut in current:
                fut.result()
            start = b * block_size
            yield start, bufs[b % len(bufs)][:min(block_size, n - start)]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        f.close()


def class_codes(wnids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct labels and the integer code of each row: ``(classes (C,), codes (N,))``."""
    classes, codes = np.unique(np.asarray(wnids, dtype=str), return_inverse=True)
    return classes, codes.astype(np.int64)


# ----------------------------------------------------------------------------- search


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


def _as_queries(features: Any, dim: int | None = None) -> torch.Tensor:
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
        return q / q.norm(dim=1, keepdim=True).clamp_min(_EPS), torch.zeros(q.shape[0])
    return q, (q * q).sum(1)


def _block_scores(q: torch.Tensor, b: torch.Tensor, metric: str) -> torch.Tensor:
    """A distance up to a per-query constant, (n, m): ``|b|^2 - 2 q.b`` for euclidean
    (add ``|q|^2`` for the squared distance), ``-cos`` for cosine (add 1)."""
    norms = torch.linalg.vector_norm(b, dim=1)
    if metric == "cosine":
        return torch.mm(q, b.T).mul_(-1.0 / norms.clamp_min(_EPS))
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
                 progress: bool = False, class_members: int = 1) -> Neighbours:
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
        Decompression threads (see :func:`iter_blocks`).
    class_members : int
        Members averaged into ``class_distances`` (≥ 1).

    Returns
    -------
    Neighbours
        Index -1 / wnid "" / distance inf where fewer than k rows are left.
    """
    _check_choice("metric", metric, METRICS)
    bank = open_bank(bank)
    n_bank = len(bank)
    if n_bank == 0:
        raise ValueError("The feature bank is empty.")
    k = int(k)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    k = min(k, n_bank)
    m = int(class_members)
    if m < 1:
        raise ValueError(f"class_members must be >= 1, got {class_members!r}.")
    q_all = _as_queries(queries, bank.dim)
    codes_t, n_classes = _check_codes(codes, n_classes, n_bank)
    excl_t = None
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=bool)
        if exclude.shape != (n_bank,):
            raise ValueError(f"exclude has shape {exclude.shape}; expected ({n_bank},).")
        if exclude.all():
            raise ValueError("exclude removes every row of the bank.")
        excl_t = torch.from_numpy(exclude)

    n = q_all.shape[0]
    out_d = np.empty((n, k), np.float32)
    out_i = np.empty((n, k), np.int64)
    out_c = np.empty((n, n_classes), np.float32) if codes_t is not None else None
    matrix = _half_matrix(bank)
    with torch.inference_mode():
        for q0 in range(0, n, query_batch):
            q, q_const = _prepare_queries(q_all[q0:q0 + query_batch], metric)
            if matrix is not None:
                scores = _half_scores(matrix, _row_norms(bank, matrix, metric), q, metric,
                                      block_size)
            else:
                scores = _stream_scores(bank, q, metric, block_size, workers)
            if progress:
                from tqdm.auto import tqdm

                scores = tqdm(scores, total=-(-n_bank // block_size), desc="kNN", unit="block")
            # float16 products (the bank's own precision) pick k + 16 candidates, reranked
            best_d, best_i, cls_d = _merge_blocks(scores, q.shape[0], min(n_bank, k + 16)
                                                  if matrix is not None else k,
                                                  excl_t, codes_t, n_classes, m)
            if matrix is not None:
                best_d, best_i = _rerank(matrix, q, best_d, best_i, metric, k)
            nq = q.shape[0]
            out_d[q0:q0 + nq] = _finish(best_d, q_const, metric).numpy()
            out_i[q0:q0 + nq] = best_i.numpy()
            if out_c is not None:
                fin = _finish(cls_d.reshape(nq, -1), q_const, metric).reshape(cls_d.shape)
                out_c[q0:q0 + nq] = _finite_mean(fin.numpy())
    wn = getattr(bank, "wnids", None)
    wn = np.asarray(wn if wn is not None else np.full(n_bank, ""), dtype=str)
    labels = wn[out_i]
    missing = ~np.isfinite(out_d)  # fewer than k rows left after `exclude`
    if missing.any():
        out_i[missing] = -1
        labels[missing] = ""
    return Neighbours(out_i, out_d, labels, out_c, None, metric)


def _check_codes(codes: np.ndarray | None, n_classes: int | None, n_bank: int
                 ) -> tuple[torch.Tensor | None, int | None]:
    """The class codes as a tensor and the class count, checked against the bank."""
    if codes is None:
        return None, n_classes
    codes = np.asarray(codes, dtype=np.int64)
    if codes.shape != (n_bank,):
        raise ValueError(f"codes has shape {codes.shape}; expected ({n_bank},).")
    return torch.from_numpy(codes), int(n_classes if n_classes is not None else codes.max() + 1)


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


def _half_matrix(bank: Any) -> np.ndarray | None:
    """The bank's float16 features as an array in memory or memory-mapped (an
    :class:`InMemoryBank` of float16, or a contiguous bank file), when this CPU multiplies
    float16 natively (AVX-512); else None (blocks are converted to float32)."""
    arr = getattr(bank, "features", None) if isinstance(bank, InMemoryBank) else (
        bank.array() if callable(getattr(bank, "array", None)) else None)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.float16 or arr.ndim != 2:
        return None
    return arr if _native_half() else None


def _native_half() -> bool:
    env = os.environ.get("SBD_KNN_HALF", "").lower()
    if env in ("0", "1"):
        return env == "1"
    return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def _as_tensor(block: np.ndarray) -> torch.Tensor:
    """A tensor over ``block`` without a copy (a read-only map is never written)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "array is not writable"
        return torch.from_numpy(block)


def _row_norms(bank: Any, matrix: np.ndarray, metric: str,
               block_rows: int = 8192) -> torch.Tensor:
    """(N,) float32 squared norms (euclidean) or norms (cosine) of the bank's rows,
    computed once per bank object (one pass, which also pages a mapped bank in)."""
    cache = bank.__dict__.setdefault("_sbd_row_norms", {})
    if metric not in cache:
        sq = torch.empty(len(matrix))
        for i in range(0, len(matrix), block_rows):
            b = _as_tensor(matrix[i:i + block_rows]).float()
            sq[i:i + len(b)] = (b * b).sum(1)
        cache["euclidean"] = sq
        cache["cosine"] = sq.sqrt().clamp_min(_EPS)
    return cache[metric]


def _half_scores(matrix: np.ndarray, norms: torch.Tensor, q: torch.Tensor, metric: str,
                 block_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, scores)`` per block, as :func:`_block_scores` but from float16 products:
    the queries are scaled to unit norm (so products stay within float16's range) and
    multiplied with the bank rows as stored, with no float32 copy of the bank.  The scores
    carry float16 rounding (relative ~5e-4 of |q||b|); :func:`_rerank` makes the returned
    neighbours exact."""
    scale = torch.linalg.vector_norm(q, dim=1).clamp_min(_EPS)
    qh = (q / scale[:, None]).half()
    block = max(block_size, 65536)
    for start in range(0, len(matrix), block):
        dots = (_as_tensor(matrix[start:start + block]) @ qh.T).float().T  # (nq, m)
        if metric == "cosine":
            yield start, dots.div_(-norms[start:start + block])
        else:
            yield start, dots.mul_(-2.0 * scale[:, None]).add_(norms[start:start + block])


def _rerank(matrix: np.ndarray, q: torch.Tensor, cand_d: torch.Tensor, cand_i: torch.Tensor,
            metric: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best of the candidates (nq, k') by exact float32 scores of their rows
    (excluded rows, scored inf, stay inf)."""
    rows = torch.from_numpy(np.asarray(matrix[cand_i.reshape(-1).numpy()], np.float32))
    rows = rows.reshape(*cand_i.shape, -1)                                  # (nq, k', D)
    dots = torch.einsum("nd,nkd->nk", q, rows)
    sq = (rows * rows).sum(-1)
    exact = (-dots / sq.sqrt().clamp_min(_EPS) if metric == "cosine" else sq - 2 * dots)
    exact = torch.where(torch.isinf(cand_d), cand_d, exact)
    best, pos = torch.topk(exact, k, dim=1, largest=False, sorted=True)
    return best, torch.gather(cand_i, 1, pos)


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
    _check_choice("metric", metric, METRICS)
    bank = open_bank(bank)
    sums = torch.zeros((n_classes, bank.dim), dtype=torch.float64)
    counts = np.bincount(codes, minlength=n_classes)
    with torch.inference_mode():
        for start, block in iter_blocks(bank, block_size):
            b = torch.from_numpy(np.asarray(block, dtype=np.float32))
            if metric == "cosine":
                b = b / b.norm(dim=1, keepdim=True).clamp_min(_EPS)
            idx = torch.from_numpy(codes[start:start + b.shape[0]])
            sums.index_add_(0, idx, b.double())
    means = sums / torch.from_numpy(np.maximum(counts, 1)).double()[:, None]
    return means.float().numpy()


def centroid_distances(queries: Any, centroids: np.ndarray, metric: str) -> np.ndarray:
    """Distances (n, C) from queries to class centroids."""
    q = _as_queries(queries, centroids.shape[1])
    c = torch.from_numpy(np.asarray(centroids, dtype=np.float32))
    with torch.inference_mode():
        q, q_const = _prepare_queries(q, metric)
        return _finish(_block_scores(q, c, metric), q_const, metric).numpy()


# ----------------------------------------------------------------------------- label rules


def similarity(distances: np.ndarray, metric: str) -> np.ndarray:
    """Score of a distance, higher = closer: ``1 - d`` (cosine similarity) or ``-d``."""
    return 1.0 - distances if metric == "cosine" else -distances


def _scaled_softmax(distances: np.ndarray, found: np.ndarray, temperature: float
                    ) -> np.ndarray:
    """Row-wise softmax of ``-d / (temperature * mean(d))`` over the ``found`` entries
    (0 elsewhere): scale-free, so one temperature range suits any feature space."""
    d = np.where(found, distances, 0.0).astype(np.float64)
    mean = d.sum(1, keepdims=True) / np.maximum(found.sum(1, keepdims=True), 1)
    logits = np.where(found, -d / (np.maximum(mean, _EPS) * float(temperature)), -np.inf)
    logits -= logits.max(1, keepdims=True)
    w = np.exp(logits)
    return w / w.sum(1, keepdims=True)


def rank_labels(neighbours: Neighbours, classes: np.ndarray, rule: str = "nearest",
                k: int = 5, temperature: float = 1.0, top_k: int = 5,
                centroid_dist: np.ndarray | None = None,
                class_similarity: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Apply a label rule to a search result.

    Parameters
    ----------
    neighbours : Neighbours
        With ``class_distances`` (n, C) indexed like ``classes``; at least ``k`` neighbours.
    classes : str array (C,)
    rule : {"nearest", "vote", "weighted", "centroid"}
    k : int
        Neighbours that vote (``vote``, ``weighted``).
    temperature : float
        Softmax temperature of ``weighted`` (> 0).
    top_k : int
        Ranks returned (capped at C).
    centroid_dist : float array (n, C), optional
        Distances to class centroids; needed by ``centroid``, used to fill ranks otherwise.
    class_similarity : float array (C, C), optional
        ``[c_true, c_decoded]`` similarity (Wu-Palmer) of the classes; needed by ``semantic``.

    Returns
    -------
    wnids : str array (n, top_k)
    scores : float32 array (n, top_k)
    """
    _check_choice("rule", rule, RULES)
    n = neighbours.indices.shape[0]
    n_classes = len(classes)
    top_k = min(int(top_k), n_classes)
    cls_d = neighbours.class_distances
    if cls_d is None:
        cls_d = np.full((n, n_classes), np.inf, np.float32)
    cen_d = centroid_dist if centroid_dist is not None else np.zeros((n, n_classes), np.float32)
    if rule == "centroid":
        if centroid_dist is None:
            raise ValueError("rule='centroid' needs centroid distances (fit the labeller first).")
        primary = -centroid_dist
        secondary, tertiary = cls_d, cls_d
    elif rule == "semantic":
        if class_similarity is None:
            raise ValueError("rule='semantic' needs the class similarity matrix "
                             "(class_similarity, C × C).")
        if class_similarity.shape != (n_classes, n_classes):
            raise ValueError(f"class_similarity has shape {class_similarity.shape}; expected "
                             f"({n_classes}, {n_classes}).")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}.")
        post = _scaled_softmax(cls_d, np.isfinite(cls_d), temperature)
        expected = post @ np.asarray(class_similarity, dtype=np.float64)
        rows = np.arange(n)
        # a class with no bank image left (all excluded) is not an answer
        first = np.lexsort((-post, -np.where(np.isfinite(cls_d), expected, -np.inf)),
                           axis=-1)[:, 0]
        rest = np.lexsort((cen_d, cls_d, -post), axis=-1)
        rest = rest[rest != first[:, None]].reshape(n, n_classes - 1)
        order = np.concatenate([first[:, None], rest], axis=1)[:, :top_k]
        return classes[order], expected[rows[:, None], order].astype(np.float32)
    else:
        if rule == "nearest":
            primary = np.where(np.isfinite(cls_d), -cls_d, -np.inf)
        else:
            k = min(int(k), neighbours.indices.shape[1])
            if k < 1:
                raise ValueError(f"k must be >= 1, got {k}.")
            pos = np.searchsorted(classes, neighbours.wnids[:, :k])
            found = np.isfinite(neighbours.distances[:, :k])  # fewer rows than k left
            if rule == "vote":
                w = found / k
            else:
                if not temperature > 0:
                    raise ValueError(f"temperature must be > 0, got {temperature!r}.")
                w = _scaled_softmax(neighbours.distances[:, :k], found, temperature)
            primary = np.zeros((n, n_classes))
            np.add.at(primary, (np.repeat(np.arange(n), k), pos.ravel()), w.ravel())
        secondary, tertiary = (cen_d, cen_d) if rule == "nearest" else (cls_d, cen_d)
    # lexsort sorts by its last key first, ascending: negate "higher is better".
    order = np.lexsort((tertiary, secondary, -primary), axis=-1)[:, :top_k]
    rows = np.arange(n)[:, None]
    if rule in ("vote", "weighted"):
        scores = primary[rows, order]
    elif rule == "centroid":
        scores = similarity(centroid_dist[rows, order], neighbours.metric)
    else:
        chosen = cls_d[rows, order]
        fallback = cen_d[rows, order]
        scores = similarity(np.where(np.isfinite(chosen), chosen, fallback), neighbours.metric)
    return classes[order], scores.astype(np.float32)


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


def label_scores(wup: np.ndarray, classes: np.ndarray, categories: np.ndarray,
                 ranked: np.ndarray, cats: np.ndarray) -> dict[str, float]:
    """``wup_top1``, ``wup_best_top5``, ``top1_acc``, ``top5_acc`` of ranked class indices
    ``ranked`` (m, K) into ``classes`` (C,), for queries of true category indices ``cats``
    (m,) into ``categories``; ``wup`` (n_categories, C) is their Wu-Palmer table."""
    w = wup[cats[:, None], ranked]
    hit = classes[ranked] == categories[cats][:, None]
    return {"wup_top1": float(w[:, 0].mean()), "wup_best_top5": float(w.max(1).mean()),
            "top1_acc": float(hit[:, 0].mean()), "top5_acc": float(hit.any(1).mean())}


# ----------------------------------------------------------------------------- estimator


class KNNLabeller(BaseEstimator):
    """Ranked WordNet labels of feature vectors from their neighbours in a labelled bank.

    Parameters
    ----------
    k : int
        Neighbours that vote (``vote``/``weighted``) — the paper used 5.
    metric : {"euclidean", "cosine"}
    rule : {"nearest", "vote", "weighted", "centroid"}
    temperature : float
        Softmax temperature of ``weighted``.
    top_k : int
        Labels returned per query.
    block_size : int
        Bank rows per streamed block.
    backend : {"torch", "faiss-flat", "faiss-ivfpq"}
        ``torch`` = exact streaming search (default); FAISS backends need ``faiss-cpu``.
    normalize : {"none", "center", "zscore"}
        Feature normalisation of queries and bank (module doc); the statistics are given
        to :meth:`fit` (``stats``), from the training stimulus features.
    faiss_params : dict, optional
        ``nlist``, ``m``, ``nbits``, ``nprobe`` of the IVF-PQ index.
    members : int
        A class's distance is the mean distance to its ``members`` nearest bank rows
        (1 = its nearest member, the paper's); used by ``nearest`` and ``semantic`` and to
        fill ranks.  FAISS backends average the members among the retrieved rows, a
        missing one counted at the farthest retrieved distance.

    Attributes
    ----------
    bank_ : the fitted bank; ``classes_`` (C,) str; ``codes_`` (N,) int;
    ``centroids_`` (C, D) float32, in the normalised space; ``normalizer_``;
    ``class_similarity_`` (C, C) float32 or None (rule ``semantic``); ``index_`` the FAISS
    index (FAISS backends only).
    """

    def __init__(self, k: int = 5, metric: str = "euclidean", rule: str = "nearest",
                 temperature: float = 1.0, top_k: int = 5, block_size: int = DEFAULT_BLOCK_SIZE,
                 backend: str = "torch", faiss_params: dict | None = None,
                 normalize: str = "none", members: int = 1) -> None:
        self.k = k
        self.metric = metric
        self.rule = rule
        self.temperature = temperature
        self.top_k = top_k
        self.block_size = block_size
        self.backend = backend
        self.faiss_params = faiss_params
        self.normalize = normalize
        self.members = members

    def _check_params(self) -> None:
        _check_choice("metric", self.metric, METRICS)
        _check_choice("normalize", self.normalize, NORMALIZATIONS)
        _check_choice("rule", self.rule, RULES)
        _check_choice("backend", self.backend, BACKENDS)
        if int(self.k) < 1 or int(self.top_k) < 1 or int(self.members) < 1:
            raise ValueError(f"k, top_k and members must be >= 1, got k={self.k}, "
                             f"top_k={self.top_k}, members={self.members}.")
        if not float(self.temperature) > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}.")

    def fit(self, bank: Any, centroids: np.ndarray | None = None,
            stats: tuple[np.ndarray, np.ndarray] | FeatureNormalizer | None = None,
            class_similarity: np.ndarray | None = None,
            bank_normalized: bool = False) -> "KNNLabeller":
        """Index ``bank`` (FeatureBank, InMemoryBank or path): classes, centroids, FAISS index.

        ``centroids`` (C, D), when given, are taken as the class means for this metric
        (saved with a model) instead of one pass over the bank.  ``stats``: ``(mean (D,),
        sd (D,))`` of the training stimulus features (or a fitted :class:`FeatureNormalizer`),
        needed unless ``normalize="none"``.  ``class_similarity`` (C, C), rule ``semantic``
        only: Wu-Palmer similarity of the bank's classes (sorted wnids); default computed
        from WordNet.  ``bank_normalized``: the bank's features are normalised already (a
        served model's copy, :func:`sbd.registry.knn_model.load_bank`); queries still are.
        """
        self._check_params()
        if isinstance(stats, FeatureNormalizer):
            if stats.mode != self.normalize:
                raise ValueError(f"The normalizer is {stats.mode!r}, not {self.normalize!r}.")
            self.normalizer_ = stats
        else:
            mean, sd = stats if stats is not None else (None, None)
            self.normalizer_ = FeatureNormalizer(self.normalize, mean, sd)
        raw = open_bank(bank)
        self.bank_ = (raw if self.normalize == "none" or bank_normalized
                      else NormalizedBank(raw, self.normalizer_))
        if len(self.bank_) == 0:
            raise ValueError("The feature bank is empty.")
        self.classes_, self.codes_ = class_codes(self.bank_.wnids)
        if centroids is not None:
            centroids = np.asarray(centroids, dtype=np.float32)
            if centroids.shape != (len(self.classes_), self.bank_.dim):
                raise ValueError(f"centroids have shape {centroids.shape}; expected "
                                 f"({len(self.classes_)}, {self.bank_.dim}).")
            self.centroids_ = centroids
        else:
            self.centroids_ = class_centroids(self.bank_, self.codes_, len(self.classes_),
                                              self.metric, self.block_size)
        self.class_similarity_ = None
        if self.rule == "semantic":
            if class_similarity is None:
                from sbd.wordnet import wup_matrix  # wordnet: the bottom layer

                class_similarity = wup_matrix(list(self.classes_), list(self.classes_))
            class_similarity = np.asarray(class_similarity, dtype=np.float32)
            c = len(self.classes_)
            if class_similarity.shape != (c, c):
                raise ValueError(f"class_similarity has shape {class_similarity.shape}; "
                                 f"expected ({c}, {c}) for the bank's classes.")
            self.class_similarity_ = class_similarity
        if self.backend != "torch":
            kind = self.backend.split("-", 1)[1]
            self.index_ = FaissIndex(kind=kind, metric=self.metric,
                                     **(self.faiss_params or {})).build(self.bank_, self.block_size)
        return self

    @property
    def members_(self) -> int:
        """``members`` (1 for a labeller pickled before it existed)."""
        return int(getattr(self, "members", 1))

    @property
    def n_features_in_(self) -> int:
        return int(self.bank_.dim)

    def search(self, features: Any, k: int | None = None) -> Neighbours:
        """Neighbours (with class distances) of ``features`` (n, D); ``k`` default ``self.k``."""
        k = int(k if k is not None else max(self.k, self.top_k))
        features = self.normalizer_(_as_queries(features, self.bank_.dim).numpy())
        if self.backend == "torch":
            nb = exact_search(features, self.bank_, k, self.metric, self.block_size,
                              codes=self.codes_, n_classes=len(self.classes_),
                              class_members=self.members_)
        else:
            q = _as_queries(features, self.bank_.dim).numpy()
            k_search = max(k, 8 * int(self.top_k) * self.members_)
            dist, idx = self.index_.search(q, k_search)
            cls = retrieved_class_distances(dist, idx, self.codes_, len(self.classes_),
                                            self.members_)
            wn = np.asarray(self.bank_.wnids, dtype=str)
            nb = Neighbours(idx[:, :k], dist[:, :k], wn[np.maximum(idx[:, :k], 0)], cls,
                            None, self.metric)
        nb.classes = self.classes_
        return nb

    def kneighbors(self, features: Any, k: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indices (n, k), distances (n, k), wnids (n, k))`` of the nearest bank rows."""
        nb = self.search(features, k if k is not None else self.k)
        return nb.indices, nb.distances, nb.wnids

    def rank(self, neighbours: Neighbours, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (n, top_k), scores (n, top_k))`` from a search result of
        ``features`` (raw, as given to :meth:`search`)."""
        cen = centroid_distances(self.normalizer_(_as_queries(features, self.bank_.dim).numpy()),
                                 self.centroids_, self.metric)
        return rank_labels(neighbours, self.classes_, self.rule, int(self.k),
                           float(self.temperature), int(self.top_k), cen,
                           getattr(self, "class_similarity_", None))

    def predict_ranked(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Ranked ``(wnids (n, top_k) str, scores (n, top_k) float32)``, rank 1 first."""
        return self.rank(self.search(features), features)

    def predict_labels(self, features: Any) -> list[list[tuple[str, float]]]:
        """Per query, ``top_k`` ``(wnid, score)`` pairs, best first."""
        wnids, scores = self.predict_ranked(features)
        return [[(str(w), float(s)) for w, s in zip(rw, rs)] for rw, rs in zip(wnids, scores)]

    def predict(self, features: Any) -> np.ndarray:
        """Top-1 wnid per query, str array (n,)."""
        return self.predict_ranked(features)[0][:, 0]


# ----------------------------------------------------------------------------- FAISS


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
        _check_choice("faiss index kind", kind, ("flat", "ivfpq"))
        _check_choice("metric", metric, METRICS)
        self.kind, self.metric = kind, metric
        self.nlist, self.m, self.nbits, self.nprobe = nlist, m, nbits, nprobe
        self.train_size = train_size

    def _prep(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
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
        for _, block in iter_blocks(bank, block_size):
            index.add(self._prep(block))
        self.index_ = index
        return self

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
