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
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import h5py
import numpy as np

import sbd
from sbd.data.files import open_hdf5

STR_DTYPE = h5py.string_dtype("utf-8")
REQUIRED = ("features", "wnid", "image_id", "path")
FEATURE_DTYPES = ("float16", "float32")
# "contiguous": uncompressed, memory-mappable (the default, chosen by benchmarks/bench_bank.py);
# "gzip": chunked + gzip level 1 + shuffle, the format of earlier sbd (kept for comparison)
STORAGES = ("contiguous", "gzip")


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
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
        os.replace(self.tmp, self.path)
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
            self.tmp.unlink(missing_ok=True)
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
