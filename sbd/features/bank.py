"""HDF5 feature banks: labelled CNN features, written once and read lazily.

A bank file holds, for N images::

    features   (N, D)  float16 (default) or float32, contiguous and uncompressed, so that
                       a reader memory-maps it (:meth:`FeatureBank.array`); banks of sbd
                       before 0.2 hold it chunked + gzip-compressed: they still open
                       (slower), and ``python -m sbd.features.bank migrate FILE`` rewrites one
    wnid       (N,)    utf-8 strings, the WordNet id of each image ("" when unknown)
    image_id   (N,)    utf-8 strings, the file stem ("n01518878_5958")
    path       (N,)    utf-8 strings, the image file relative to attrs["root"]
    excluded/  image_id, wnid, path, reason, matched_stimulus, cosine: images left out
               on purpose (stimulus images found in a bank folder)
    failed/    path, error: images that could not be read

and attrs ``backbone``, ``layer``, ``preprocessing``, ``sbd_version``, ``created``,
``source``, ``root``, ``n_images``, ``n_failed``, ``n_excluded``, ``exclude_threshold``,
``manifest`` (hash of the image list and extraction parameters).

The stimulus features (``training.h5``, ``test.h5``) use the same format; the ridge
targets come from them, the kNN bank from ``bank.h5``; :func:`check_same_backbone`
refuses to pair files of different backbones.

Readers of banks: :class:`FeatureBank` (a file), :class:`InMemoryBank` (arrays),
:class:`NormalizedBank` (another bank's blocks through a transform); :func:`open_bank`
takes a path or any of them, and :func:`iter_blocks` streams one as float32 blocks (the
gzip chunks of earlier sbd inflated in parallel).
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import h5py
import numpy as np

import sbd
from sbd.data.files import open_hdf5
from sbd.files import staged_path

STR_DTYPE = h5py.string_dtype("utf-8")
REQUIRED = ("features", "wnid", "image_id", "path")
FEATURE_DTYPES = ("float16", "float32")
# "contiguous": uncompressed, memory-mappable (the default, chosen by benchmarks/bench_bank.py);
# "gzip": chunked + gzip level 1 + shuffle, the format of earlier sbd (kept for comparison)
STORAGES = ("contiguous", "gzip")
DEFAULT_BLOCK_SIZE = 8192  # bank rows per block of a streamed search (:func:`iter_blocks`)


def _strings(values: Iterable[str]) -> np.ndarray:
    return np.array([str(v) for v in values], dtype=object)


def _read_strings(ds: h5py.Dataset) -> np.ndarray:
    return np.asarray(ds.asstr()[()], dtype=str) if len(ds) else np.array([], dtype=str)


class BankWriter:
    """Write a bank to a temporary file, appending rows block by block; :meth:`commit`
    renames it to ``path`` (nothing half-written ever has the final name).

    Parameters
    ----------
    path : the final file.
    dim : feature dimension D.
    dtype : "float16" or "float32" storage.
    attrs : file attributes (backbone, layer, preprocessing, source, ...).
    """

    def __init__(self, path: str | Path, dim: int, dtype: str = "float16",
                 attrs: dict | None = None, chunk_rows: int = 256, storage: str = "contiguous"):
        if dtype not in FEATURE_DTYPES:
            raise ValueError(f"Unknown dtype={dtype!r}; valid: {', '.join(FEATURE_DTYPES)}.")
        if storage not in STORAGES:
            raise ValueError(f"Unknown storage={storage!r}; valid: {', '.join(STORAGES)}.")
        self.path = Path(path)
        self._staged = staged_path(self.path)  # entered here, left by commit() or abort()
        self.tmp = self._staged.__enter__()
        self.dim, self.dtype, self.storage = int(dim), np.dtype(dtype), storage
        self.n = 0
        self._h5 = h5py.File(self.tmp, "w")
        self._rows = None  # contiguous: the rows go to a raw file, copied in at commit
        if storage == "gzip":
            self._h5.create_dataset("features", shape=(0, self.dim), maxshape=(None, self.dim),
                                    dtype=dtype, chunks=(chunk_rows, self.dim),
                                    compression="gzip", compression_opts=1, shuffle=True)
        else:
            self._rows = open(self.tmp.with_suffix(".rows"), "wb")
        for key in ("wnid", "image_id", "path"):
            self._h5.create_dataset(key, shape=(0,), maxshape=(None,), dtype=STR_DTYPE,
                                    chunks=(max(chunk_rows, 1024),), compression="gzip",
                                    compression_opts=1)
        base = {"sbd_version": sbd.__version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "dtype": dtype, "dim": self.dim}
        base.update(attrs or {})
        self.set_attrs(base)

    def set_attrs(self, attrs: dict) -> None:
        for k, v in attrs.items():
            self._h5.attrs[k] = "" if v is None else v

    def append(self, features: np.ndarray, wnids: Sequence[str], image_ids: Sequence[str],
               paths: Sequence[str]) -> None:
        """Append k rows: features (k, D) and k labels, ids and paths."""
        features = np.asarray(features)
        k = len(features)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must be (k, {self.dim}), got {features.shape} for {self.path}.")
        if not (len(wnids) == len(image_ids) == len(paths) == k):
            raise ValueError(f"{k} feature rows but {len(wnids)} wnids, {len(image_ids)} image ids, "
                             f"{len(paths)} paths for {self.path}.")
        if k == 0:
            return
        if self._rows is not None:
            self._rows.write(np.ascontiguousarray(features, dtype=self.dtype).tobytes())
        else:
            ds = self._h5["features"]
            ds.resize(self.n + k, axis=0)
            ds[self.n:] = features.astype(ds.dtype, copy=False)
        for key, vals in (("wnid", wnids), ("image_id", image_ids), ("path", paths)):
            self._h5[key].resize(self.n + k, axis=0)
            self._h5[key][self.n:] = _strings(vals)
        self.n += k

    def set_table(self, group: str, columns: dict[str, Sequence]) -> None:
        """A small table (e.g. ``excluded``, ``failed``) as a group of equal-length datasets."""
        g = self._h5.require_group(group)
        for name, values in columns.items():
            values = list(values)
            if values and isinstance(values[0], (float, np.floating)):
                g.create_dataset(name, data=np.asarray(values, dtype=np.float32))
            else:
                g.create_dataset(name, data=_strings(values), dtype=STR_DTYPE)

    def commit(self) -> Path:
        """Close the file and move it to its final name."""
        self._h5.attrs["n_images"] = self.n
        if self._rows is not None:
            self._copy_rows_in()
        self._h5.close()
        self._staged.__exit__(None, None, None)  # renames the temporary file to self.path
        return self.path

    def _copy_rows_in(self) -> None:
        """The contiguous ``features`` dataset, allocated at its final size, filled from the
        raw rows file through a memory map (one sequential copy)."""
        self._rows.close()
        raw = Path(self._rows.name)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        space = h5py.h5s.create_simple((self.n, self.dim))
        h5py.h5d.create(self._h5.id, b"features", h5py.h5t.py_create(self.dtype), space, dcpl=dcpl)
        self._h5.flush()
        if self.n:
            offset = self._h5["features"].id.get_offset()
            self._h5.close()  # write the data through a map of the file, then reopen
            src = np.memmap(raw, self.dtype, "r", shape=(self.n, self.dim))
            dst = np.memmap(self.tmp, self.dtype, "r+", offset=offset, shape=(self.n, self.dim))
            step = max(1, (64 << 20) // (self.dim * self.dtype.itemsize))
            for i in range(0, self.n, step):
                dst[i:i + step] = src[i:i + step]
            dst.flush()
            del src, dst
            self._h5 = h5py.File(self.tmp, "r+")
        raw.unlink()

    def abort(self) -> None:
        try:
            self._h5.close()
            if self._rows is not None:
                self._rows.close()
        finally:
            # the staged write, told of a failure, removes the temporary file
            self._staged.__exit__(RuntimeError, RuntimeError("bank write aborted"), None)
            if self._rows is not None:
                Path(self._rows.name).unlink(missing_ok=True)

    def __enter__(self) -> "BankWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif self._h5.id.valid:
            self.commit()


def write_bank(path: str | Path, features: np.ndarray, wnids: Sequence[str],
               image_ids: Sequence[str], paths: Sequence[str], attrs: dict | None = None,
               dtype: str = "float16", storage: str = "contiguous") -> Path:
    """Write a whole (in-memory) bank at once; features (N, D)."""
    features = np.asarray(features)
    with BankWriter(path, features.shape[1], dtype=dtype, attrs=attrs, storage=storage) as w:
        w.append(features, wnids, image_ids, paths)
    return Path(path)


class FeatureBank:
    """Lazy reader of a bank file: labels are read on first use, features only in blocks.

    Parameters
    ----------
    path : an HDF5 bank file written by sbd.

    Examples
    --------
    >>> with FeatureBank("data/phantom/features/efficientnet-lite0/bank.h5") as bank:
    ...     for start, block in bank.iter_blocks(4096):   # block: (<=4096, D) float32
    ...         ...
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"Feature bank not found: {self.path}")
        self._h5 = open_hdf5(self.path, "It is not a feature bank sbd finished writing (sbd "
                             "writes to a temporary name and renames): delete it, and "
                             "extract_features computes it again.")
        missing = [k for k in REQUIRED if k not in self._h5]
        if missing or "backbone" not in self._h5.attrs:
            self._h5.close()
            what = ", ".join(missing + ([] if missing else ["attr backbone"]))
            raise ValueError(f"{self.path} is not an sbd feature bank: missing {what}.")
        self._features = self._h5["features"]
        n = self._features.shape[0]
        for k in ("wnid", "image_id", "path"):
            if self._h5[k].shape[0] != n:
                raise ValueError(f"{self.path}: {k} has {self._h5[k].shape[0]} rows, features {n}.")
        self._cache: dict[str, np.ndarray] = {}
        self._row_of: dict[str, int] | None = None
        self._map = self._memory_map()

    def _memory_map(self) -> np.ndarray | None:
        """The features as a read-only memory map of the file, when stored contiguous and
        uncompressed (see :data:`STORAGES`); None for the chunked format of earlier sbd."""
        ds = self._features
        offset = ds.id.get_offset() if ds.chunks is None and ds.compression is None else None
        if offset is None or len(ds) == 0:
            return None
        return np.memmap(self.path, ds.dtype, "r", offset=offset, shape=ds.shape)

    @property
    def storage(self) -> str:
        """"contiguous" (memory-mapped) or "chunked" (read through h5py)."""
        return "contiguous" if self._features.chunks is None else "chunked"

    def array(self) -> np.ndarray | None:
        """All features as a read-only (N, D) memory map in the stored dtype, no copy (pages
        are read from disk as they are touched), or None for a chunked bank."""
        return self._map

    # ------------------------------------------------------------------ metadata
    @property
    def attrs(self) -> dict:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in self._h5.attrs.items()}

    @property
    def backbone(self) -> str:
        return str(self._h5.attrs["backbone"])

    @property
    def layer(self) -> str:
        return str(self._h5.attrs.get("layer", ""))

    @property
    def preprocessing(self) -> str:
        return str(self._h5.attrs.get("preprocessing", ""))

    @property
    def dim(self) -> int:
        return int(self._features.shape[1])

    @property
    def dtype(self) -> np.dtype:
        return self._features.dtype

    def __len__(self) -> int:
        return int(self._features.shape[0])

    def _strings(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = _read_strings(self._h5[key])
        return self._cache[key]

    @property
    def wnids(self) -> np.ndarray:
        """(N,) str array."""
        return self._strings("wnid")

    @property
    def image_ids(self) -> np.ndarray:
        """(N,) str array."""
        return self._strings("image_id")

    @property
    def paths(self) -> np.ndarray:
        """(N,) str array of image paths relative to ``attrs["root"]``."""
        return self._strings("path")

    def table(self, group: str) -> dict[str, np.ndarray]:
        """A side table (``excluded`` or ``failed``) as column → array; {} when absent."""
        if group not in self._h5:
            return {}
        out = {}
        for name, ds in self._h5[group].items():
            out[name] = _read_strings(ds) if ds.dtype.kind == "O" else ds[()]
        return out

    @property
    def excluded(self) -> dict[str, np.ndarray]:
        """What was left out of the bank and why (image_id, wnid, path, reason, ...)."""
        return self.table("excluded")

    @property
    def failed(self) -> dict[str, np.ndarray]:
        """Images that could not be read (path, error)."""
        return self.table("failed")

    # ------------------------------------------------------------------ features
    def iter_blocks(self, block_size: int = 65536, mapped: bool = True
                    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)``: block = rows start..start+len(block) as (≤block_size, D)
        float32.  ``mapped=False`` reads through h5py instead of the memory map (a one-off
        pass, e.g. a copy, that should not leave the whole file mapped in memory)."""
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size!r}.")
        src = self._map if self._map is not None and mapped else self._features
        for start in range(0, len(self), block_size):
            yield start, np.asarray(src[start:start + block_size], dtype=np.float32)

    def rows(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features of rows ``indices`` (any order, repeats allowed): (len(indices), D) float32."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        if idx.min() < 0 or idx.max() >= len(self):
            raise IndexError(f"Row index out of range 0..{len(self) - 1} in {self.path}.")
        if self._map is not None:
            return np.asarray(self._map[idx], dtype=np.float32)
        uniq, inverse = np.unique(idx, return_inverse=True)
        # h5py fancy indexing wants increasing indices; read contiguous runs in slices
        out = np.empty((len(uniq), self.dim), dtype=np.float32)
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        pos = 0
        for run in np.split(uniq, breaks):
            out[pos:pos + len(run)] = self._features[run[0]:run[-1] + 1]
            pos += len(run)
        return out[inverse]

    def has(self, image_ids: Sequence[str]) -> np.ndarray:
        """(n,) bool: which of ``image_ids`` have a row (a stimulus whose image was missing
        or unreadable has none)."""
        if self._row_of is None:
            self._row_of = {iid: i for i, iid in enumerate(self.image_ids)}
        return np.array([str(i) in self._row_of for i in image_ids], dtype=bool)

    def lookup(self, image_ids: Sequence[str]) -> np.ndarray:
        """Features of the given image ids, in that order: (n, D) float32.

        Raises KeyError naming the ids not in the bank.
        """
        if self._row_of is None:
            self._row_of = {iid: i for i, iid in enumerate(self.image_ids)}
        rows, missing = [], []
        for iid in image_ids:
            r = self._row_of.get(str(iid))
            if r is None:
                missing.append(str(iid))
            else:
                rows.append(r)
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise KeyError(f"{len(missing)} image id(s) not in {self.path}: {shown}")
        return self.rows(rows)

    def subset(self, wnids: Iterable[str]) -> np.ndarray:
        """Sorted row indices (int64) of the images whose wnid is in ``wnids``."""
        wanted = np.array(sorted({str(w) for w in wnids}), dtype=str)
        return np.flatnonzero(np.isin(self.wnids, wanted)).astype(np.int64)

    def load(self, dtype=np.float32) -> np.ndarray:
        """All features in memory: (N, D) of ``dtype`` (for small banks)."""
        if self._map is not None:
            return np.array(self._map, dtype=dtype)
        return self._features[()].astype(dtype, copy=False)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        self._map = None
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> "FeatureBank":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"FeatureBank({str(self.path)!r}, backbone={self.backbone!r}, n={len(self)}, dim={self.dim})"


# ----------------------------------------------------------------------------- other banks


class InMemoryBank:
    """A bank held in memory, with the reading interface of :class:`FeatureBank`.

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


class NormalizedBank:
    """A bank whose blocks are served through ``normalizer``, a callable mapping a block
    (n, D) to its normalised float32 copy (e.g. ``sbd.decoding.knn.FeatureNormalizer``)."""

    def __init__(self, bank: Any, normalizer: Callable[[np.ndarray], np.ndarray]) -> None:
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
    """A bank object from a path to a bank ``.h5`` (:class:`FeatureBank`) or a bank object
    (anything with ``iter_blocks``, ``wnids`` and ``dim``) as is."""
    if isinstance(bank, (str, Path)):
        path = Path(bank)
        if not path.is_file():
            raise FileNotFoundError(f"Feature bank file {path} does not exist.")
        return FeatureBank(path)
    for attr in ("iter_blocks", "wnids", "dim"):
        if not hasattr(bank, attr):
            raise TypeError(f"Not a feature bank (no {attr!r}): {type(bank).__name__}; "
                            "pass a FeatureBank, an InMemoryBank or a path to a bank .h5.")
    return bank


# ----------------------------------------------------------------------------- fast reading
# Banks of earlier sbd hold their features in gzip chunks.  h5py's own reading is not
# enough for them: h5py serialises every call into the HDF5 library under one global lock,
# the gzip filter included, so a chunked bank inflates on one core.  Here the raw chunks
# are read under a lock (cheap) and inflated by zlib (which releases the GIL) in a thread
# pool while the caller works on the previous block.  Measured on a 40,000 x 1,280 float16
# gzip bank on 2 busy cores: h5py 0.9-1.1 s a pass, this reader 0.6-0.8 s; the gap grows
# with the cores.


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
    import torch  # converts float16 -> float32 with SIMD, several times faster than numpy

    with lock:
        mask, raw = ds.id.read_direct_chunk((row, 0))
    if mask:  # a filter was skipped for this chunk: let HDF5 decode it
        with lock:
            dest[:] = ds[row:row + rows]
        return
    buf = np.frombuffer(zlib.decompress(raw), np.uint8)
    values = (_unshuffle(buf, ds.dtype.itemsize, ds.dtype) if shuffle
              else buf.view(ds.dtype)).reshape(-1, dim)[:rows]
    torch.from_numpy(dest).copy_(torch.from_numpy(np.ascontiguousarray(values)))


def _fast_layout(bank: Any):
    """``(h5 file, dataset, chunk rows, shuffle)`` when the bank's features can be read
    as raw chunks in parallel (chunked by whole rows, gzip [+ shuffle] only), else None."""
    path = getattr(bank, "path", None)
    if path is None or not Path(path).is_file():
        return None
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

    For sbd bank files of gzip-compressed HDF5 chunks of whole rows the raw chunks are
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


def check_same_backbone(*banks: FeatureBank | str | Path) -> str:
    """The common backbone of banks / bank files; ValueError when they differ."""
    names = []
    for b in banks:
        if isinstance(b, FeatureBank):
            names.append((str(b.path), b.backbone))
        else:
            with FeatureBank(b) as fb:
                names.append((str(fb.path), fb.backbone))
    if not names:
        raise ValueError("check_same_backbone needs at least one bank.")
    if len({n for _, n in names}) > 1:
        listing = "; ".join(f"{p}: {n}" for p, n in names)
        raise ValueError(f"Feature files come from different backbones ({listing}); "
                         "targets and bank must be extracted with the same backbone.")
    return names[0][1]


def migrate(path: str | Path, block_rows: int = 65536) -> Path:
    """Rewrite bank ``path`` (any sbd format) in today's contiguous, memory-mappable storage,
    in place (a new file under a temporary name, then renamed); a no-op when it already
    is.  ``python -m sbd.features.bank migrate FILE…``"""
    path = Path(path)
    with FeatureBank(path) as bank:
        if bank.storage == "contiguous":
            return path
        attrs = {k: v for k, v in bank.attrs.items() if k != "n_images"}
        with BankWriter(path, bank.dim, str(bank.dtype), attrs) as w:
            wn, ids, paths = bank.wnids, bank.image_ids, bank.paths
            for start, block in bank.iter_blocks(block_rows):
                stop = start + len(block)
                w.append(block, wn[start:stop], ids[start:stop], paths[start:stop])
            for group in ("excluded", "failed"):
                table = bank.table(group)
                if table:
                    w.set_table(group, table)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sbd.features.bank",
                                     description="Feature bank tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    mig = sub.add_parser("migrate", help="rewrite banks of earlier sbd (chunked, gzip) as "
                                         "contiguous, memory-mappable files")
    mig.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    for f in args.files:
        print(f"{migrate(f)}: contiguous")


if __name__ == "__main__":
    main()
