"""Import a precomputed feature bank (features + labels) into sbd's bank format.

The paper distributes its bank as torch tensors, from its notebooks:
``feature_imagenet_500_resnet50.pt`` ((N, 2048) ResNet-50 average-pool features of
ImageNet training images), ``labels_imagenet_500_resnet50.pt`` (the ILSVRC-1k class index
of each row) and ``class_to_wordnet.json`` (a Python-literal dict
``{0: {'id': '01440764-n', …}}``). :func:`import_bank` turns such a pair into the HDF5 bank
that :mod:`sbd.features.bank` reads (the attributes an extracted bank has), so that users
without ImageNet on disk can run the paper's setting::

    python -m sbd.features.bank_import feature_imagenet_500_resnet50.pt \\
        labels_imagenet_500_resnet50.pt --backbone resnet50 \\
        --mapping class_to_wordnet.json --out data/god-npz/features/resnet50/bank.h5

- features: ``.pt`` / ``.pth`` (a tensor, or a dict holding one), ``.npy``, ``.npz`` or
  ``.h5`` (one array, or the one named by ``features_key``); streamed in blocks (``.pt``
  and ``.npy`` memory-mapped, ``.h5`` read in slices), so a 1.28 M-row bank fits;
- labels, same formats: wnids (``n01440764``; ``01440764-n`` is read too) or class
  indices, mapped by ``mapping`` (a file: the Python-literal / JSON dict above, a Keras
  ``imagenet_class_index.json`` ``{"0": ["n01440764", "tench"]}``, or a text file of one
  wnid per line) or by default through the ILSVRC-2012 order
  (:func:`sbd.data.label_sets.imagenet1k_wnids`);
- the backbone is named by the user and checked against the feature width
  (:func:`sbd.features.backbones.backbone_spec`).

**The bank must not contain the stimuli.** An imported bank has no image files; with
``image_ids`` rows whose id is a stimulus id are dropped, and with ``stimuli`` (sbd's
stimulus feature files of the same backbone, ``features/<backbone>/{training,test}.h5``)
rows that are near-duplicates of a stimulus (cosine > ``exclude_threshold``) too; both are
listed in the bank's ``excluded`` table. Without image ids the id check cannot be made:
the bank records ``exclusion_checked`` False (unless the near-duplicate guard ran) and
``exclusion`` says why, and a warning is issued.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sbd.data.label_sets import imagenet1k_wnids
from sbd.features.backbones import BACKBONES, backbone_spec
from sbd.features.bank import FEATURE_DTYPES, BankWriter, FeatureBank

__all__ = ["FORMATS", "import_bank", "read_array", "read_mapping", "labels_to_wnids", "main"]

FORMATS = (".pt", ".pth", ".npy", ".npz", ".h5", ".hdf5")
FEATURE_KEYS = ("features", "feature", "feats", "X", "x")
LABEL_KEYS = ("labels", "label", "wnids", "wnid", "targets", "y")
IMAGE_ID_KEYS = ("image_ids", "image_id", "ids")
DEFAULT_EXCLUDE_THRESHOLD = 0.99  # as sbd.features.extract
BLOCK_ROWS = 65536
FLOAT16_MAX = 65504.0
_WNID = re.compile(r"^n\d{8}$")
_WNID_REVERSED = re.compile(r"^(\d{8})-n$")  # class_to_wordnet.json's '01440764-n'


# --------------------------------------------------------------------------- reading


def _pick(path: Path, found: dict[str, Any], key: str | None, candidates: Sequence[str],
          what: str) -> Any:
    """The array named ``key``, else the only one, else the first of ``candidates``."""
    if key:
        if key not in found:
            raise ValueError(f"{path}: key {key!r} not found; keys present: "
                             f"{', '.join(map(str, found)) or 'none'}.")
        return found[key]
    if len(found) == 1:
        return next(iter(found.values()))
    for k in candidates:
        if k in found:
            return found[k]
    raise ValueError(f"{path}: holds {len(found)} arrays ({', '.join(map(str, found))}); name "
                     f"the {what} with a key (e.g. {candidates[0]!r}).")


def _torch_load(path: Path):
    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types on bad or unsafe files
        raise ValueError(f"{path} cannot be read as a torch file of tensors ({exc}); expected "
                         "a tensor (or a dict of tensors) saved with torch.save.") from None


def _as_numpy(value: Any, path: Path) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], torch.Tensor):
            return np.asarray([v.item() for v in value]) if value[0].ndim == 0 else \
                np.stack([v.detach().cpu().numpy() for v in value])
        return np.asarray(value)
    if isinstance(value, np.ndarray):
        return value
    raise ValueError(f"{path}: holds a {type(value).__name__}; expected a tensor or array.")


def read_array(path: str | Path, key: str | None = None, stack: contextlib.ExitStack | None = None,
               kind: str = "features"):
    """One array of a ``.pt``/``.pth``, ``.npy``, ``.npz`` or ``.h5``/``.hdf5`` file.

    Parameters
    ----------
    path : the file.
    key : the array's name in a file of several (a dict in a .pt, a key of a .npz, a
        dataset path of a .h5); None: the only one, or a usual name for ``kind``.
    stack : an ExitStack that keeps a .h5 file open (its dataset is returned lazily, read
        in slices); None reads it into memory.
    kind : ``features``, ``labels`` or ``image_ids`` (for the usual names and messages).

    Returns
    -------
    ndarray, numpy memory map (.npy, .pt) or h5py.Dataset (.h5 with ``stack``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{kind.capitalize()} file not found: {path}.")
    suffix = path.suffix.lower()
    candidates = {"features": FEATURE_KEYS, "labels": LABEL_KEYS}.get(kind, IMAGE_ID_KEYS)
    if suffix in (".pt", ".pth"):
        obj = _torch_load(path)
        if isinstance(obj, dict):
            obj = _pick(path, obj, key, candidates, kind)
        return _as_numpy(obj, path)
    if suffix == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:  # object arrays (e.g. Python strings) need unpickling
            raise ValueError(f"{path} cannot be read without unpickling ({exc}); save "
                             "strings as a fixed-width array (np.array(list, dtype=str)).") from None
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                name = _pick(path, {k: k for k in z.files}, key, candidates, kind)
                return z[name]
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path} cannot be read as an .npz file ({exc}).") from None
    if suffix in (".h5", ".hdf5"):
        import h5py

        from sbd.data.files import open_hdf5

        f = open_hdf5(path, "Copy it again.")
        found: dict[str, Any] = {}

        def collect(name: str, obj) -> None:  # a non-None return would stop the visit
            if isinstance(obj, h5py.Dataset):
                found[name] = obj

        f.visititems(collect)
        try:
            ds = _pick(path, found, key, candidates, kind)
        except ValueError:
            f.close()
            raise
        if stack is not None:
            stack.callback(f.close)
            return ds
        with f:
            if h5py.check_string_dtype(ds.dtype) is not None:
                return np.asarray(ds.asstr()[()], dtype=str)
            return ds[()]
    raise ValueError(f"{path}: unknown format {suffix!r}; expected one of {', '.join(FORMATS)}.")


def _norm_wnid(value: Any) -> str | None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip()
    if _WNID.match(text):
        return text
    m = _WNID_REVERSED.match(text)
    return f"n{m.group(1)}" if m else None


def read_mapping(path: str | Path) -> dict[int, str]:
    """Class index → wnid, from a mapping file.

    Reads a Python-literal or JSON dict ``{0: {'id': '01440764-n', 'label': …}, …}`` (the
    paper's ``class_to_wordnet.json``), ``{"0": ["n01440764", "tench"]}`` (Keras'
    ``imagenet_class_index.json``) or ``{0: "n01440764"}``, a list in class order, or a text
    file with one wnid per line (class order; further words on a line are ignored).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Mapping file not found: {path}.")
    text = path.read_text(errors="replace")
    try:
        obj = json.loads(text)
    except ValueError:
        try:
            obj = ast.literal_eval(text)  # literals only: never runs code
        except (ValueError, SyntaxError):
            obj = [line.split()[0] for line in text.splitlines() if line.strip()]
    items = list(enumerate(obj)) if isinstance(obj, (list, tuple)) else (
        list(obj.items()) if isinstance(obj, dict) else None)
    if not items:
        raise ValueError(f"{path}: expected a dict class index → wnid (e.g. {{0: {{'id': "
                         "'01440764-n'}}}) or one wnid per line; found nothing usable.")
    out: dict[int, str] = {}
    for k, v in items:
        try:
            index = int(k)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: class index {k!r} is not an integer.") from None
        if isinstance(v, dict):
            v = v.get("id", v.get("wnid"))
        elif isinstance(v, (list, tuple)) and v:
            v = v[0]
        wnid = _norm_wnid(v) if v is not None else None
        if wnid is None:
            raise ValueError(f"{path}: class {index}: {v!r} is not a wnid (expected "
                             "'n01440764' or '01440764-n').")
        out[index] = wnid
    return out


def labels_to_wnids(labels: np.ndarray, mapping: dict[int, str] | Sequence[str] | None = None,
                    path: str | Path = "labels") -> np.ndarray:
    """Labels (N,) → wnids (N,) str.

    Strings are read as wnids (``n01440764`` or ``01440764-n``); integers (or
    integer-valued floats) as class indices into ``mapping`` (default: the ILSVRC-2012
    order, :func:`sbd.data.label_sets.imagenet1k_wnids`).
    """
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"{path}: labels have shape {labels.shape}; expected (N,), one wnid or "
                         "class index per feature row.")
    if labels.dtype.kind in "USO":
        wnids = [_norm_wnid(v) for v in labels.tolist()]
        bad = [i for i, w in enumerate(wnids) if w is None]
        if bad:
            raise ValueError(f"{path}: {len(bad)} label(s) are not wnids (e.g. row {bad[0]}: "
                             f"{labels[bad[0]]!r}); expected 'n01440764' or a class index.")
        return np.asarray(wnids, dtype=str)
    if labels.dtype.kind not in "iuf":
        raise ValueError(f"{path}: labels have dtype {labels.dtype}; expected wnids or class "
                         "indices.")
    if labels.dtype.kind == "f" and (not np.all(np.isfinite(labels))
                                     or np.any(labels != np.round(labels))):
        raise ValueError(f"{path}: labels are non-integer numbers; expected class indices.")
    idx = labels.astype(np.int64)
    if mapping is None:
        mapping = imagenet1k_wnids()
        source = "the ILSVRC-2012 class order (0..999)"
    else:
        source = "the mapping"
    table = dict(enumerate(mapping)) if not isinstance(mapping, dict) else mapping
    unknown = sorted(set(np.unique(idx).tolist()) - set(table))
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} class index(es) not in {source} (e.g. "
                         f"{unknown[:5]}); {len(table)} classes known. Give the mapping file "
                         "of these labels (--mapping).")
    lut = {i: table[i] for i in np.unique(idx).tolist()}
    return np.asarray([lut[i] for i in idx.tolist()], dtype=str)


# --------------------------------------------------------------------------- import


def _file_record(path: Path) -> dict:
    st = path.stat()
    return {"name": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _check_width(features, path: Path, backbone: str) -> dict:
    if backbone not in BACKBONES:
        raise ValueError(f"Unknown backbone={backbone!r}; valid: {', '.join(BACKBONES)}.")
    spec = backbone_spec(backbone)
    if len(features.shape) != 2:
        raise ValueError(f"{path}: features have shape {tuple(features.shape)}; expected (N, D), "
                         "one feature vector per row.")
    width = int(features.shape[1])
    if width != spec["dim"]:
        fits = [b for b in BACKBONES if backbone_spec(b)["dim"] == width]
        raise ValueError(
            f"{path}: features are {width}-d, but backbone {backbone!r} gives {spec['dim']}-d "
            f"({spec['layer']}). Name the backbone the features come from"
            + (f"; backbones of {width}-d: {', '.join(fits)}." if fits else
               f"; no registered backbone gives {width}-d."))
    return spec


def _stimulus_reference(stimuli: Sequence[str | Path], backbone: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    feats, ids = [], []
    for p in stimuli:
        with FeatureBank(p) as fb:
            if fb.backbone != backbone:
                raise ValueError(f"{fb.path} holds {fb.backbone!r} features, not {backbone!r}: "
                                 "the stimulus features must come from the bank's backbone.")
            feats.append(fb.load())
            ids.append(fb.image_ids)
    f = np.concatenate(feats) if feats else np.empty((0, 0), np.float32)
    if len(f):
        f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
    return f, (np.concatenate(ids) if ids else np.array([], dtype=str))


def import_bank(features: str | Path, labels: str | Path, backbone: str, out: str | Path,
                mapping: str | Path | None = None, image_ids: str | Path | None = None,
                stimuli: Sequence[str | Path] = (), features_key: str | None = None,
                labels_key: str | None = None, dtype: str = "float16",
                exclude_threshold: float = DEFAULT_EXCLUDE_THRESHOLD,
                block_rows: int = BLOCK_ROWS) -> Path:
    """Write sbd's bank file ``out`` from precomputed features and labels.

    Parameters
    ----------
    features : file of the (N, D) features (.pt/.pth, .npy, .npz, .h5/.hdf5).
    labels : file of the N labels: wnids, or class indices (see ``mapping``).
    backbone : the registry name of the network the features come from; D must be its
        width.
    out : the bank file to write (temporary name, then renamed).
    mapping : class index → wnid file (:func:`read_mapping`); None: ILSVRC-2012 order.
    image_ids : file of the N image ids (``n01440764_10026``), optional; None: rows are
        named ``<features file>#<row>`` and the stimulus check by id is not checkable.
    stimuli : sbd stimulus feature files of the same backbone: rows whose id is a
        stimulus id, or whose features are a near-duplicate of a stimulus's (cosine >
        ``exclude_threshold``), are left out and listed in the ``excluded`` table.
    features_key, labels_key : array names in files that hold several.
    dtype : storage, ``float16`` (as extracted banks) or ``float32``.

    Returns
    -------
    Path of the bank. Its attrs are an extracted bank's (backbone, layer, preprocessing,
    source, root, manifest, exclude_threshold, exclusion_checked, n_images, n_failed,
    n_excluded, n_listed) plus ``imported_from`` and ``exclusion`` (how the stimuli were
    kept out, or why that is not checkable).

    Raises
    ------
    ValueError
        Unknown backbone; width ≠ the backbone's; rows of features ≠ labels (≠ image ids);
        labels that are neither wnids nor known class indices; NaN/Inf features; values
        too large for float16.
    """
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"Unknown dtype={dtype!r}; valid: {', '.join(FEATURE_DTYPES)}.")
    features, labels, out = Path(features), Path(labels), Path(out)
    with contextlib.ExitStack() as stack:
        feats = read_array(features, features_key, stack, "features")
        spec = _check_width(feats, features, backbone)
        wnids, ids = _row_labels(features, int(feats.shape[0]), labels, labels_key, mapping,
                                 image_ids)
        ref, ref_ids = _stimulus_reference(stimuli, backbone)
        checks, exclusion = _exclusion(out, features, stimuli, image_ids, len(ref) > 0,
                                       exclude_threshold)
        manifest = _import_manifest(features, labels, mapping, image_ids, stimuli, backbone,
                                    dtype, exclude_threshold)
        attrs = dict(backbone=backbone, layer=spec["layer"],
                     preprocessing=f"{spec['preprocessing']} (the registry's; not verified "
                                   "for imported features)",
                     source="bank", root="", manifest=manifest,
                     exclude_threshold=float(exclude_threshold) if len(ref) else float("nan"),
                     exclusion_checked=bool(checks), exclusion=exclusion,
                     imported_from=json.dumps({"features": str(features.resolve()),
                                               "labels": str(labels.resolve()),
                                               "mapping": str(Path(mapping).resolve())
                                               if mapping else "built-in ILSVRC-2012 order"}))
        stim_ids = set(ref_ids.tolist()) if image_ids is not None else set()
        with BankWriter(out, spec["dim"], dtype=dtype, attrs=attrs) as writer:
            _write_rows(writer, feats, features, wnids, ids, dtype, stim_ids, ref, ref_ids,
                        exclude_threshold, block_rows)
    return out


def _row_labels(features: Path, n: int, labels: Path, labels_key: str | None,
                mapping: str | Path | None, image_ids: str | Path | None
                ) -> tuple[np.ndarray, np.ndarray]:
    """The wnid (N,) and image id (N,) of every feature row, checked against ``n``; rows
    without an image id file are named ``<features file>#<row>``."""
    table = read_mapping(mapping) if mapping else None
    wnids = labels_to_wnids(read_array(labels, labels_key, kind="labels"), table, labels)
    if len(wnids) != n:
        raise ValueError(f"{labels} holds {len(wnids)} labels but {features} {n} feature "
                         "rows; expected one label per row.")
    if image_ids is None:
        return wnids, np.asarray([f"{features.name}#{i}" for i in range(n)], dtype=str)
    ids = np.asarray(read_array(image_ids, kind="image_ids")).astype(str).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"{image_ids} holds {len(ids)} image ids but {features} {n} "
                         "feature rows; expected one id per row.")
    return wnids, ids


def _exclusion(out: Path, features: Path, stimuli: Sequence[str | Path],
               image_ids: str | Path | None, have_reference: bool,
               exclude_threshold: float) -> tuple[list[str], str]:
    """The stimulus checks an import can make, and the sentence the bank records about
    them; warns when whether the bank holds the stimuli is not known."""
    checks = []
    if stimuli and image_ids is not None:
        checks.append("stimulus image ids")
    if have_reference:
        checks.append(f"near-duplicates of the stimuli (cosine > {exclude_threshold})")
    if image_ids is None:
        exclusion = ("not checkable by image id: the imported bank has no image ids"
                     + (f"; checked for {checks[0]}" if checks else
                        "; no stimulus features were given for the near-duplicate guard"))
    else:
        exclusion = ("checked: " + " and ".join(checks)) if checks else \
            "not checked: no stimulus features were given"
    if image_ids is None or not checks:
        warnings.warn(
            f"{out}: stimulus exclusion {exclusion}. Whether the bank imported from "
            f"{features} contains the stimulus images is not known (about 20 GOD test "
            "images are ILSVRC training images)"
            + ("." if checks else "; give the stimulus feature files (stimuli=…, "
               "--stimuli features/<backbone>/training.h5 test.h5) for the "
               "near-duplicate guard."), stacklevel=3)
    return checks, exclusion


def _import_manifest(features: Path, labels: Path, mapping: str | Path | None,
                     image_ids: str | Path | None, stimuli: Sequence[str | Path],
                     backbone: str, dtype: str, exclude_threshold: float) -> str:
    """Key of an import: its input files (name, size, mtime) and parameters."""
    return hashlib.sha256(json.dumps({
        "features": _file_record(features), "labels": _file_record(labels),
        "mapping": _file_record(Path(mapping)) if mapping else None,
        "image_ids": _file_record(Path(image_ids)) if image_ids else None,
        "stimuli": [_file_record(Path(s)) for s in stimuli], "backbone": backbone,
        "dtype": dtype, "exclude_threshold": exclude_threshold}, sort_keys=True).encode()
    ).hexdigest()


def _checked_block(feats, features: Path, start: int, stop: int, dtype: str) -> np.ndarray:
    """Rows ``start:stop`` of the features as float32, refused when NaN/Inf or, for a
    float16 bank, beyond float16's range."""
    block = np.asarray(feats[start:stop], dtype=np.float32)
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        raise ValueError(f"{features}: NaN/Inf in {int(bad.sum())} feature row(s) "
                         f"(e.g. row {start + int(np.flatnonzero(bad)[0])}).")
    if dtype == "float16" and np.abs(block).max(initial=0) > FLOAT16_MAX:
        raise ValueError(f"{features}: values beyond float16's range (max |x| "
                         f"{np.abs(block).max():.3g}); import with dtype=float32.")
    return block


def _excluded_rows(block: np.ndarray, ids: np.ndarray, wnids: np.ndarray, stim_ids: set,
                   ref: np.ndarray, ref_ids: np.ndarray, exclude_threshold: float
                   ) -> tuple[np.ndarray, list[dict]]:
    """Which rows of a block to keep (bool (B,)) and the ``excluded`` entries of the others:
    stimulus image ids first, then near-duplicates of a stimulus's features."""
    excluded: list[dict] = []
    keep = np.ones(len(block), dtype=bool)
    if stim_ids:
        hit = np.isin(ids, list(stim_ids))
        for r in np.flatnonzero(hit):
            excluded.append(dict(image_id=ids[r], wnid=wnids[r], path="",
                                 reason="stimulus image id", matched_stimulus=ids[r],
                                 cosine=float("nan")))
        keep &= ~hit
    if len(ref):
        unit = block / np.maximum(np.linalg.norm(block, axis=1, keepdims=True), 1e-12)
        sim = unit @ ref.T
        best = sim.argmax(axis=1)
        cos = sim[np.arange(len(sim)), best]
        dup = keep & (cos > exclude_threshold)
        for r in np.flatnonzero(dup):
            excluded.append(dict(
                image_id=ids[r], wnid=wnids[r], path="",
                reason=f"near-duplicate of a stimulus (cosine > {exclude_threshold})",
                matched_stimulus=str(ref_ids[best[r]]), cosine=float(cos[r])))
        keep &= ~dup
    return keep, excluded


def _write_rows(writer: BankWriter, feats, features: Path, wnids: np.ndarray, ids: np.ndarray,
                dtype: str, stim_ids: set, ref: np.ndarray, ref_ids: np.ndarray,
                exclude_threshold: float, block_rows: int) -> None:
    """Append the kept rows block by block, then the counts and the ``excluded`` table."""
    n = len(ids)
    excluded: list[dict] = []
    for start in range(0, n, block_rows):
        stop = min(start + block_rows, n)
        block = _checked_block(feats, features, start, stop, dtype)
        keep, out = _excluded_rows(block, ids[start:stop], wnids[start:stop], stim_ids, ref,
                                   ref_ids, exclude_threshold)
        excluded.extend(out)
        writer.append(block[keep], wnids[start:stop][keep], ids[start:stop][keep],
                      [""] * int(keep.sum()))
    writer.set_attrs(dict(n_failed=0, n_excluded=len(excluded), n_listed=n))
    if excluded:
        writer.set_table("excluded", {c: [e[c] for e in excluded] for c in
                                      ("image_id", "wnid", "path", "reason",
                                       "matched_stimulus", "cosine")})


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sbd.features.bank_import",
        description="Import a precomputed feature bank (features + labels, e.g. the paper's "
                    "feature_imagenet_500_resnet50.pt + labels_imagenet_500_resnet50.pt) "
                    "into sbd's bank format.")
    parser.add_argument("features", help="(N, D) features: .pt, .npy, .npz or .h5")
    parser.add_argument("labels", help="N labels: wnids or class indices (.pt, .npy, .npz, .h5)")
    parser.add_argument("--backbone", required=True, choices=list(BACKBONES),
                        help="the network the features come from (its width is checked)")
    parser.add_argument("--out", required=True,
                        help="the bank file, e.g. data/god-npz/features/resnet50/bank.h5")
    parser.add_argument("--mapping", default=None,
                        help="class index → wnid file (class_to_wordnet.json, "
                             "imagenet_class_index.json, or one wnid per line); "
                             "default: the ILSVRC-2012 order")
    parser.add_argument("--image-ids", default=None, help="N image ids (optional)")
    parser.add_argument("--stimuli", nargs="*", default=[],
                        help="sbd stimulus feature files of the same backbone "
                             "(features/<backbone>/training.h5 test.h5): their images are "
                             "kept out of the bank")
    parser.add_argument("--features-key", default=None)
    parser.add_argument("--labels-key", default=None)
    parser.add_argument("--dtype", default="float16", choices=list(FEATURE_DTYPES))
    parser.add_argument("--exclude-threshold", type=float, default=DEFAULT_EXCLUDE_THRESHOLD)
    args = parser.parse_args(argv)
    path = import_bank(args.features, args.labels, args.backbone, args.out,
                       mapping=args.mapping, image_ids=args.image_ids, stimuli=args.stimuli,
                       features_key=args.features_key, labels_key=args.labels_key,
                       dtype=args.dtype, exclude_threshold=args.exclude_threshold)
    with FeatureBank(path) as bank:
        attrs = bank.attrs
        print(f"{path}: {len(bank)} rows, {len(set(bank.wnids.tolist()))} classes, "
              f"{bank.dim}-d {bank.backbone}; {attrs.get('n_excluded', 0)} excluded; "
              f"stimulus exclusion: {attrs.get('exclusion')}")


if __name__ == "__main__":
    main()
