"""Feature extraction: images → CNN features, in memory or into HDF5 feature banks.

:func:`extract_dataset` writes, for one backbone, ``layout.features_file(data_dir,
backbone, s)`` for s in training / test (the GOD stimulus folders; the ridge targets)
and bank (the labelled ILSVRC-layout folder ``<data_dir>/imagenet/train/<wnid>/*``,
without the stimulus images).

How it works, for one source:

1. List the images (sorted, so every process sees the same order) and cut the list into
   chunks of ``chunk_size`` images; chunk k belongs to shard ``k % n`` of ``shard="i/n"``.
2. A torch DataLoader decodes and resizes images in worker processes and hands the main
   process uint8 batches; batches never cross a chunk boundary.  Each finished chunk is
   saved atomically (temporary name + rename) as ``<source>.partial/chunk-<k>.npz``.
   A killed run resumes from the chunks on disk: nothing is recomputed, duplicated or lost.
3. When every chunk (of every shard) is there, the chunks are merged, in order, into
   ``<source>.h5`` (again temporary name + rename) and the partial folder is removed.
   For the bank, images whose features are near-duplicates of a stimulus's (cosine >
   ``exclude_threshold``) are dropped here; images whose id is a stimulus id are never
   extracted. Both are listed in the bank's ``excluded`` table with the reason.

Unreadable images are skipped, counted and listed (the bank's ``failed`` table).
"""

from __future__ import annotations

import json
import hashlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from filelock import FileLock, Timeout
from PIL import Image
from tqdm.auto import tqdm

from sbd.data import layout
from sbd.data.images import IMAGE_EXTENSIONS, SkippedImages, is_image_file, try_read_image
from sbd.data.locks import LOCK_DIR
from sbd.features.backbones import Backbone, get_backbone, to_uint8
from sbd.features.bank import FEATURE_DTYPES, BankWriter, FeatureBank
from sbd.files import staged_path, write_bytes

log = logging.getLogger(__name__)

SOURCES = {"all": ("training", "test", "bank"), "stimuli": ("training", "test"), "bank": ("bank",)}
WNID_RE = re.compile(r"^n\d{8}$")
IMAGE_ID_RE = re.compile(r"n\d{8}_\d+")
DEFAULT_CHUNK_SIZE = 512
DEFAULT_EXCLUDE_THRESHOLD = 0.99


# --------------------------------------------------------------------------- in memory


@lru_cache(maxsize=4)
def _cached_backbone(name: str) -> Backbone:
    return get_backbone(name)


def _as_backbone(backbone: str | Backbone) -> Backbone:
    return _cached_backbone(backbone) if isinstance(backbone, str) else backbone


def embed_images(images: Sequence[Image.Image], backbone: str | Backbone = "efficientnet-lite0",
                 batch_size: int = 32) -> np.ndarray:
    """Features of in-memory images (no files).

    Parameters
    ----------
    images : n PIL images (any mode; converted to RGB).
    backbone : a registry name (built once per process and cached) or a :class:`Backbone`.
    batch_size : images per forward pass.

    Returns
    -------
    (n, D) float32 array.
    """
    bb = _as_backbone(backbone)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}.")
    out = np.empty((len(images), bb.dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = torch.stack([bb.transform(im) for im in chunk])
        out[start:start + len(chunk)] = bb.features(batch).numpy()
    return out


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class Item:
    """One image: ``path`` relative to the data folder, its id (file stem) and wnid."""

    path: str
    image_id: str
    wnid: str


def _wnid_of_id(image_id: str) -> str:
    head = image_id.split("_", 1)[0]
    return head if WNID_RE.match(head) else ""


def list_stimuli(data_dir: str | Path, stimulus_set: str) -> list[Item]:
    """The images of one GOD stimulus folder, sorted by image id (= file stem)."""
    data_dir = Path(data_dir)
    folder = layout.images_dir(data_dir, stimulus_set)
    if not folder.is_dir():
        raise FileNotFoundError(f"Stimulus folder not found: {folder} (expected the GOD layout; "
                                "run prepare_data first).")
    files = sorted((p for p in folder.iterdir() if is_image_file(p)), key=lambda p: (p.stem, p.name))
    if not files:
        raise FileNotFoundError(f"No images in the stimulus folder {folder}.")
    return [Item(p.relative_to(data_dir).as_posix(), p.stem, _wnid_of_id(p.stem)) for p in files]


def stimulus_ids(data_dir: str | Path) -> set[str]:
    """Ids of every stimulus image: the files of both stimulus folders and the ids named
    in the image-list CSVs (so an image missing from disk is still excluded)."""
    ids: set[str] = set()
    for s in layout.STIMULUS_SETS:
        folder = layout.images_dir(data_dir, s)
        if folder.is_dir():
            ids.update(p.stem for p in folder.iterdir() if is_image_file(p))
        csv = layout.image_list_csv(data_dir, s)
        if csv.is_file():
            ids.update(IMAGE_ID_RE.findall(csv.read_text(errors="replace")))
    return ids


def list_bank(data_dir: str | Path, exclude_ids: set[str] | None = None) -> tuple[list[Item], list[Item]]:
    """The bank images ``<bank_dir>/<wnid>/*``, sorted; returns (kept, excluded by id)."""
    data_dir = Path(data_dir)
    root = layout.bank_dir(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Bank folder not found: {root} (ILSVRC layout <wnid>/<image>; "
                                "use source=stimuli to extract only the stimulus features).")
    exclude_ids = exclude_ids or set()
    kept, excluded = [], []
    prefix = root.relative_to(data_dir).as_posix() if root.is_relative_to(data_dir) else str(root)
    # os.scandir: one directory read per class and no stat per file (the entry's type comes
    # with the listing), so a 1.28 M-image ILSVRC tree lists in seconds
    with os.scandir(root) as it:
        classes = sorted(e.name for e in it if e.is_dir())
    for wnid in classes:
        with os.scandir(root / wnid) as it:
            names = sorted(e.name for e in it if not e.name.startswith(".") and e.is_file()
                           and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        for name in names:
            stem = os.path.splitext(name)[0]
            item = Item(f"{prefix}/{wnid}/{name}", stem, wnid)
            (excluded if stem in exclude_ids else kept).append(item)
    if not kept and not excluded:
        raise FileNotFoundError(f"No images in the bank folder {root} (expected <wnid>/<image>).")
    return kept, excluded


# --------------------------------------------------------------------------- loading


class ImageFiles(torch.utils.data.Dataset):
    """Images by path → (uint8 (3, H, W) tensor or None, position, error message).

    Paths and positions are numpy arrays, not lists of Python objects, so that forked
    workers share them instead of copying them page by page.
    """

    def __init__(self, root: str | Path, paths: Sequence[str], positions: Sequence[int], resize):
        self.root = str(root)
        self.paths = np.array([p.encode() for p in paths], dtype=bytes)
        self.positions = np.asarray(positions, dtype=np.int64)
        self.resize = resize

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        pos = int(self.positions[i])
        path = os.path.join(self.root, self.paths[pos].decode())
        im, reason = try_read_image(path)  # sbd.data.images: one reader for every consumer
        if im is None:
            return None, pos, reason
        return to_uint8(self.resize(im)), pos, ""


def _collate(samples):
    ok = [s for s in samples if s[0] is not None]
    batch = torch.stack([s[0] for s in ok]) if ok else None
    return (batch, [s[1] for s in ok], [s[1] for s in samples if s[0] is None],
            [s[2] for s in samples if s[0] is None])


def _worker_init(_):
    torch.set_num_threads(1)


# --------------------------------------------------------------------------- results


@dataclass
class ExtractResult:
    """What one source's extraction did.

    ``path`` is the finished file, or None while other shards are still missing.
    """

    source: str
    path: Path | None
    n_images: int = 0          # images listed for this source (after exclusion by id)
    n_features: int = 0        # rows in the finished file
    n_failed: int = 0
    n_excluded: int = 0
    n_computed: int = 0        # images pushed through the model in this call
    n_resumed: int = 0         # images of this shard found already done on disk
    seconds: float = 0.0       # time spent extracting in this call
    skipped: bool = False      # the file was already complete
    failed: list[tuple[str, str]] = field(default_factory=list)    # (path, error)
    excluded: list[dict] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else 0.0


# --------------------------------------------------------------------------- helpers


def parse_shard(shard: str | tuple[int, int]) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    if isinstance(shard, tuple):
        i, n = shard
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(shard))
        if not m:
            raise ValueError(f"Bad shard={shard!r}; expected 'i/n' with 0 <= i < n, e.g. '0/1'.")
        i, n = int(m.group(1)), int(m.group(2))
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"Bad shard={shard!r}; expected 'i/n' with 0 <= i < n, e.g. '0/1'.")
    return i, n


def _source_items(data_dir: Path, source: str) -> tuple[list[Item], list[Item]]:
    """The images of a source to extract, and (bank) those left out as stimulus images."""
    if source == "bank":
        return list_bank(data_dir, stimulus_ids(data_dir))
    return list_stimuli(data_dir, source), []


def _partial_dir(out: Path) -> Path:
    return out.with_name(out.stem + ".partial")


def _chunk_path(partial: Path, k: int) -> Path:
    return partial / f"chunk-{k:06d}.npz"


def _manifest(source: str, items: list[Item], backbone: Backbone | str, dtype: str,
              chunk_size: int) -> dict:
    name = backbone if isinstance(backbone, str) else backbone.name
    h = hashlib.sha256()
    for it in items:
        h.update(f"{it.path}\t{it.wnid}\n".encode())
    return {"source": source, "backbone": name, "dtype": dtype, "chunk_size": int(chunk_size),
            "n_items": len(items), "items_sha256": h.hexdigest()}


def _manifest_key(m: dict) -> str:
    """Key of a finished file's content (the chunk size only matters while in progress)."""
    m = {k: v for k, v in m.items() if k != "chunk_size"}
    return hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()[:16]


def _save_chunk(path: Path, index: np.ndarray, features: np.ndarray, failed_index: np.ndarray,
                failed_error: list[str]) -> None:
    with staged_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, index=index.astype(np.int64), features=features,
                 failed_index=failed_index.astype(np.int64),
                 failed_error=np.array(failed_error, dtype=str).reshape(-1))


def _load_chunk(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _prepare_partial(partial: Path, manifest: dict, n_shards: int) -> None:
    """Create the partial folder with its manifest, or check the one there."""
    partial.mkdir(parents=True, exist_ok=True)
    mpath = partial / "manifest.json"
    if mpath.is_file():
        try:
            old = json.loads(mpath.read_text())
        except ValueError:
            old = None
        if old == manifest:
            return
        if n_shards > 1:
            raise ValueError(
                f"{partial} was started with other images or parameters ({old} vs {manifest}); "
                "all shards must use the same data, backbone, dtype and chunk size. Delete the "
                "folder to start again.")
        log.warning("Discarding %s: it was started with other images or parameters.", partial)
        for p in partial.iterdir():
            p.unlink()
    write_bytes(mpath, json.dumps(manifest, indent=1, sort_keys=True).encode())


def _chunk_bounds(k: int, chunk_size: int, n: int) -> tuple[int, int]:
    return k * chunk_size, min((k + 1) * chunk_size, n)


def _count(chunks: list[int], chunk_size: int, n: int) -> int:
    return sum(hi - lo for lo, hi in (_chunk_bounds(k, chunk_size, n) for k in chunks))


def _batches_for(chunks: list[int], chunk_size: int, n: int, batch_size: int) -> list[list[int]]:
    """Dataset indices grouped into batches that never cross a chunk boundary."""
    batches, offset = [], 0
    for k in chunks:
        lo, hi = _chunk_bounds(k, chunk_size, n)
        size = hi - lo
        for s in range(0, size, batch_size):
            batches.append(list(range(offset + s, offset + min(s + batch_size, size))))
        offset += size
    return batches


def _compute_chunks(data_dir: Path, items: list[Item], chunks: list[int], chunk_size: int,
                    partial: Path, bb: Backbone, dtype: str, batch_size: int, num_workers: int,
                    progress: bool, desc: str) -> int:
    """Extract features of ``chunks`` and save each as it completes; returns images done."""
    n = len(items)
    positions = [p for k in chunks for p in range(*_chunk_bounds(k, chunk_size, n))]
    if not positions:
        return 0
    dataset = ImageFiles(data_dir, [it.path for it in items], positions, bb.resize)
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=_batches_for(chunks, chunk_size, n, batch_size),
        num_workers=num_workers, collate_fn=_collate, worker_init_fn=_worker_init,
        pin_memory=bb.device.type == "cuda", prefetch_factor=4 if num_workers > 0 else None)
    feats: list[np.ndarray] = []
    idx: list[int] = []
    f_idx: list[int] = []
    f_err: list[str] = []
    chunk_iter = iter(chunks)
    k = next(chunk_iter)
    lo, hi = _chunk_bounds(k, chunk_size, n)
    with tqdm(total=len(positions), desc=desc, unit="img", disable=not progress,
              mininterval=1.0) as bar:
        for batch, ok, bad, errors in loader:
            if batch is not None:
                feats.append(bb.features(batch).numpy().astype(dtype))
            idx.extend(ok)
            f_idx.extend(bad)
            f_err.extend(errors)
            for p, e in zip(bad, errors):
                log.warning("Skipping unreadable image %s: %s", items[p].path, e)
            bar.update(len(ok) + len(bad))
            if len(idx) + len(f_idx) == hi - lo:
                features = (np.concatenate(feats) if feats
                            else np.empty((0, bb.dim), dtype=dtype))
                _save_chunk(_chunk_path(partial, k), np.asarray(idx), features,
                            np.asarray(f_idx), f_err)
                feats, idx, f_idx, f_err = [], [], [], []
                k = next(chunk_iter, None)
                if k is not None:
                    lo, hi = _chunk_bounds(k, chunk_size, n)
    return len(positions)


def _merge_lock(data_dir: Path, out: Path) -> FileLock:
    """The lock of merging the chunks into ``out``: one process merges, the others see it
    held and move on (an OS lock, released when its holder dies, so a killed merge leaves
    no stale lock).  It lives in ``<data_dir>/.locks`` (:mod:`sbd.data.locks`), not in the
    partial folder that the merge removes."""
    locks = data_dir / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    name = "-".join(out.relative_to(data_dir).with_suffix("").parts)  # features-<bb>-<source>
    return FileLock(str(locks / f"merge-{name}.lock"))


def _try_lock(lock: FileLock) -> bool:
    """Take ``lock`` when it is free; False, without waiting, when another holds it."""
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return False
    return True


# --------------------------------------------------------------------------- finalising


def _stimulus_reference(data_dir: Path, bb: Backbone | str, **kw) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm stimulus features (S, D) float32 and their image ids (S,), extracting the
    stimulus sets whose files are missing or out of date; empty without stimulus folders."""
    feats, ids = [], []
    for s in layout.STIMULUS_SETS:
        if not layout.images_dir(data_dir, s).is_dir():
            continue
        path = extract_source(data_dir, bb, s, shard="0/1", **kw).path  # no-op when up to date
        with FeatureBank(path) as fb:
            feats.append(fb.load())
            ids.append(fb.image_ids)
    if not feats:
        return np.empty((0, 0), dtype=np.float32), np.array([], dtype=str)
    f = np.concatenate(feats)
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f, np.concatenate(ids)


def _finalize(data_dir: Path, source: str, items: list[Item], excluded_by_id: list[Item],
              manifest: dict, out: Path, partial: Path, bb: Backbone | str, layer: str,
              preprocessing: str, exclude_threshold: float, ref_kw: dict) -> ExtractResult:
    n, chunk_size = len(items), manifest["chunk_size"]
    n_chunks = -(-n // chunk_size)
    missing = [k for k in range(n_chunks) if not _chunk_path(partial, k).is_file()]
    if missing:
        raise RuntimeError(f"Cannot merge {partial}: {len(missing)} of {n_chunks} chunks missing "
                           f"(first: {missing[:5]}); run the missing shards.")
    excluded: list[dict] = [dict(image_id=it.image_id, wnid=it.wnid, path=it.path,
                                 reason="stimulus image id", matched_stimulus=it.image_id,
                                 cosine=float("nan")) for it in excluded_by_id]
    ref, ref_ids = (None, None)
    exclusion_checked = source != "bank"
    if source == "bank":
        ref, ref_ids = _stimulus_reference(data_dir, bb, **ref_kw)
        exclusion_checked = len(ref_ids) > 0
        if not exclusion_checked:
            log.warning("No stimulus folders in %s: the bank is not checked for stimulus "
                        "near-duplicates.", data_dir)
    failed: list[tuple[str, str]] = []
    attrs = dict(backbone=manifest["backbone"], layer=layer, preprocessing=preprocessing,
                 source=source, root=str(data_dir.resolve()), manifest=_manifest_key(manifest),
                 exclude_threshold=float(exclude_threshold) if source == "bank" else float("nan"),
                 exclusion_checked=bool(exclusion_checked))
    dim = None
    writer = None
    try:
        for k in range(n_chunks):
            c = _load_chunk(_chunk_path(partial, k))
            lo, hi = _chunk_bounds(k, chunk_size, n)
            got = np.sort(np.concatenate([c["index"], c["failed_index"]]))
            if not np.array_equal(got, np.arange(lo, hi)):
                raise RuntimeError(f"Chunk {k} of {partial} does not cover images {lo}..{hi - 1}; "
                                   "delete it and run again.")
            if writer is None:
                dim = c["features"].shape[1]
                writer = BankWriter(out, dim, dtype=manifest["dtype"], attrs=attrs)
            failed.extend((items[p].path, str(e)) for p, e in zip(c["failed_index"], c["failed_error"]))
            feats, index = c["features"], c["index"]
            keep = np.ones(len(index), dtype=bool)
            if ref is not None and len(ref_ids) and len(index):
                f = feats.astype(np.float32)
                f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
                sim = f @ ref.T
                best = sim.argmax(axis=1)
                cos = sim[np.arange(len(f)), best]
                keep = cos <= exclude_threshold
                for r in np.flatnonzero(~keep):
                    it = items[index[r]]
                    excluded.append(dict(image_id=it.image_id, wnid=it.wnid, path=it.path,
                                         reason=f"near-duplicate of a stimulus (cosine > {exclude_threshold})",
                                         matched_stimulus=str(ref_ids[best[r]]), cosine=float(cos[r])))
            sel = [items[p] for p in index[keep]]
            writer.append(feats[keep], [it.wnid for it in sel], [it.image_id for it in sel],
                          [it.path for it in sel])
        if writer is None:
            raise ValueError(f"No images left to write for {out} (all {len(excluded_by_id)} "
                             "bank images are stimulus images).")
        writer.set_attrs(dict(n_failed=len(failed), n_excluded=len(excluded),
                              n_listed=n + len(excluded_by_id)))
        if excluded:
            writer.set_table("excluded", {c: [e[c] for e in excluded] for c in
                                          ("image_id", "wnid", "path", "reason",
                                           "matched_stimulus", "cosine")})
        if failed:
            writer.set_table("failed", {"path": [p for p, _ in failed],
                                        "error": [e for _, e in failed]})
            SkippedImages(data_dir).add_many(failed, "extract_features")
        n_features = writer.n
        writer.commit()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    shutil.rmtree(partial, ignore_errors=True)
    return ExtractResult(source=source, path=out, n_images=n, n_features=n_features,
                         n_failed=len(failed), n_excluded=len(excluded), failed=failed,
                         excluded=excluded)


def _result_from_file(source: str, out: Path, n_items: int) -> ExtractResult:
    with FeatureBank(out) as fb:
        failed = list(zip(fb.failed.get("path", []), fb.failed.get("error", [])))
        ex = fb.excluded
        excluded = [dict(zip(ex, vals)) for vals in zip(*ex.values())] if ex else []
        return ExtractResult(source=source, path=out, n_images=n_items, n_features=len(fb),
                             n_failed=len(failed), n_excluded=len(excluded), skipped=True,
                             failed=[(str(p), str(e)) for p, e in failed], excluded=excluded)


# --------------------------------------------------------------------------- public API


def extract_source(data_dir: str | Path, backbone: str | Backbone, source: str,
                   batch_size: int = 32, num_workers: int = 2, shard: str = "0/1",
                   dtype: str = "float16", progress: bool = True,
                   chunk_size: int = DEFAULT_CHUNK_SIZE,
                   exclude_threshold: float = DEFAULT_EXCLUDE_THRESHOLD,
                   force: bool = False) -> ExtractResult:
    """Extract one source (``training``, ``test`` or ``bank``) of a data folder.

    Parameters are those of :func:`extract_dataset`; ``source`` is a single source here.
    Returns an :class:`ExtractResult` (``path`` None while other shards are missing).
    """
    data_dir = Path(data_dir)
    _check_source_args(source, dtype, batch_size, chunk_size, num_workers, backbone)
    i, n_shards = parse_shard(shard)
    name = backbone if isinstance(backbone, str) else backbone.name
    items, excluded_by_id = _source_items(data_dir, source)
    out = layout.features_file(data_dir, name, source)
    manifest = _manifest(source, items, name, dtype, chunk_size)
    if out.is_file() and not force:
        try:
            with FeatureBank(out) as fb:
                done = fb.attrs.get("manifest") == _manifest_key(manifest)
        except (ValueError, OSError):
            done = False
        if done:
            return _result_from_file(source, out, len(items))

    partial = _partial_dir(out)
    _prepare_partial(partial, manifest, n_shards)
    n_chunks = -(-len(items) // chunk_size)
    mine = [k for k in range(n_chunks) if k % n_shards == i]
    if force:  # recompute this shard's chunks
        for k in mine:
            _chunk_path(partial, k).unlink(missing_ok=True)
    pending = [k for k in mine if not _chunk_path(partial, k).is_file()]
    n_mine = _count(mine, chunk_size, len(items))
    n_pending = _count(pending, chunk_size, len(items))

    bb: Backbone | None = backbone if isinstance(backbone, Backbone) else None
    t0 = time.perf_counter()
    if pending:
        bb = bb or _as_backbone(name)
        _compute_chunks(data_dir, items, pending, chunk_size, partial, bb, dtype, batch_size,
                        num_workers, progress, desc=f"{name} {source}"
                        + (f" shard {i}/{n_shards}" if n_shards > 1 else ""))
    seconds = time.perf_counter() - t0

    result = ExtractResult(source=source, path=None, n_images=len(items),
                           n_computed=int(n_pending), n_resumed=int(n_mine - n_pending))
    if all(_chunk_path(partial, k).is_file() for k in range(n_chunks)):
        ref_kw = dict(batch_size=batch_size, num_workers=num_workers, dtype=dtype,
                      progress=progress, chunk_size=chunk_size)
        result = _merge_when_free(data_dir, source, items, excluded_by_id, manifest, out,
                                  partial, bb if bb is not None else name, exclude_threshold,
                                  ref_kw, result)
    result.seconds = seconds
    return result


def _check_source_args(source: str, dtype: str, batch_size: int, chunk_size: int,
                       num_workers: int, backbone: str | Backbone) -> None:
    if source not in SOURCES["all"]:
        raise ValueError(f"Unknown source={source!r}; valid: training, test, bank.")
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"Unknown dtype={dtype!r}; valid: {', '.join(FEATURE_DTYPES)}.")
    if batch_size < 1 or chunk_size < 1 or num_workers < 0:
        raise ValueError(f"Need batch_size >= 1, chunk_size >= 1, num_workers >= 0; got "
                         f"{batch_size}, {chunk_size}, {num_workers}.")
    if isinstance(backbone, str):
        from sbd.features.backbones import BACKBONES
        if backbone not in BACKBONES:
            raise ValueError(f"Unknown backbone={backbone!r}; valid: {', '.join(BACKBONES)}.")


def _merge_when_free(data_dir: Path, source: str, items: list[Item],
                     excluded_by_id: list[Item], manifest: dict, out: Path, partial: Path,
                     bb: Backbone | str, exclude_threshold: float, ref_kw: dict,
                     result: ExtractResult) -> ExtractResult:
    """Merge the finished chunks into ``out`` unless another process is merging them (or
    has merged them); ``result`` (what this process computed) is carried over."""
    lock = _merge_lock(data_dir, out)
    if _try_lock(lock):
        try:
            if out.is_file() and not partial.joinpath("manifest.json").is_file():
                return _result_from_file(source, out, len(items))
            layer, prep = _describe(bb)
            final = _finalize(data_dir, source, items, excluded_by_id, manifest, out,
                              partial, bb, layer, prep, exclude_threshold, ref_kw)
        finally:
            lock.release()
        final.n_computed, final.n_resumed = result.n_computed, result.n_resumed
        return final
    if out.is_file() and not partial.is_dir():
        merged = _result_from_file(source, out, len(items))
        merged.n_computed, merged.n_resumed, merged.skipped = (result.n_computed,
                                                               result.n_resumed, False)
        return merged
    log.info("Another process is merging %s.", partial)
    return result


def _describe(bb: Backbone | str) -> tuple[str, str]:
    if isinstance(bb, Backbone):
        return bb.layer, bb.preprocessing
    b = _as_backbone(bb)
    return b.layer, b.preprocessing


def run_extraction(data_dir: str | Path, backbone: str | Backbone = "efficientnet-lite0",
                   source: str = "all", batch_size: int = 32, num_workers: int = 2,
                   shard: str = "0/1", dtype: str = "float16", progress: bool = True,
                   chunk_size: int = DEFAULT_CHUNK_SIZE,
                   exclude_threshold: float = DEFAULT_EXCLUDE_THRESHOLD,
                   force: bool = False) -> dict[str, ExtractResult]:
    """Extract every source of ``source`` (stimuli first: the bank is checked against them).

    Returns source name → :class:`ExtractResult`.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown source={source!r}; valid: {', '.join(SOURCES)}.")
    parse_shard(shard)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"Data folder not found: {data_dir}")
    # raise early, before hours of extraction, when a folder is missing
    for s in SOURCES[source]:
        folder = layout.bank_dir(data_dir) if s == "bank" else layout.images_dir(data_dir, s)
        if not folder.is_dir():
            hint = " (use source=stimuli for the stimulus features only)" if s == "bank" else ""
            raise FileNotFoundError(f"Image folder for source {s!r} not found: {folder}{hint}.")
    return {s: extract_source(data_dir, backbone, s, batch_size=batch_size,
                              num_workers=num_workers, shard=shard, dtype=dtype,
                              progress=progress, chunk_size=chunk_size,
                              exclude_threshold=exclude_threshold, force=force)
            for s in SOURCES[source]}


def extract_dataset(data_dir: str | Path, backbone: str | Backbone = "efficientnet-lite0",
                    source: str = "all", batch_size: int = 32, num_workers: int = 2,
                    shard: str = "0/1", dtype: str = "float16", progress: bool = True,
                    chunk_size: int = DEFAULT_CHUNK_SIZE,
                    exclude_threshold: float = DEFAULT_EXCLUDE_THRESHOLD,
                    force: bool = False) -> dict[str, Path]:
    """Write the feature files of a GOD-layout data folder for one backbone.

    Parameters
    ----------
    data_dir : the data folder (``layout``): stimulus folders and/or the bank folder.
    backbone : registry name (or a built :class:`Backbone`).
    source : "all" (training, test, bank), "stimuli" (training, test) or "bank".
    batch_size : images per forward pass.
    num_workers : DataLoader worker processes that decode and resize (0: in-process).
    shard : "i/n": this process does chunks k with k % n == i; the last shard to finish
        merges. Every shard must be given the same other parameters.
    dtype : "float16" or "float32" storage.
    progress : show a progress bar.
    chunk_size : images per saved chunk (the unit of resuming and sharding).
    exclude_threshold : bank images with cosine similarity above this to any stimulus
        image are dropped (and recorded in the bank's ``excluded`` table).
    force : recompute even when an up-to-date file exists.

    Returns
    -------
    source → path of its finished file (sources still waiting for other shards are left out).
    """
    results = run_extraction(data_dir, backbone, source, batch_size=batch_size,
                             num_workers=num_workers, shard=shard, dtype=dtype,
                             progress=progress, chunk_size=chunk_size,
                             exclude_threshold=exclude_threshold, force=force)
    return {s: r.path for s, r in results.items() if r.path is not None}


def merge(data_dir: str | Path, backbone: str, source: str, dtype: str = "float16",
          chunk_size: int = DEFAULT_CHUNK_SIZE,
          exclude_threshold: float = DEFAULT_EXCLUDE_THRESHOLD) -> Path:
    """Merge the chunks of all shards of one source into its file; RuntimeError naming
    the missing chunks when some shard has not finished."""
    data_dir = Path(data_dir)
    items, excluded_by_id = _source_items(data_dir, source)
    out = layout.features_file(data_dir, backbone, source)
    manifest = _manifest(source, items, backbone, dtype, chunk_size)
    partial = _partial_dir(out)
    if not (partial / "manifest.json").is_file():
        if out.is_file():
            return out
        raise FileNotFoundError(f"Nothing to merge: {partial} not found.")
    if json.loads((partial / "manifest.json").read_text()) != manifest:
        raise ValueError(f"{partial} was made with other images or parameters than given.")
    layer, prep = _describe(backbone)
    ref_kw = dict(batch_size=32, num_workers=0, dtype=dtype, progress=False, chunk_size=chunk_size)
    lock = _merge_lock(data_dir, out)
    if not _try_lock(lock):
        raise RuntimeError(f"Another process is merging {partial} (lock {lock.lock_file}).")
    try:
        return _finalize(data_dir, source, items, excluded_by_id, manifest, out, partial,
                         backbone, layer, prep, exclude_threshold, ref_kw).path
    finally:
        lock.release()
