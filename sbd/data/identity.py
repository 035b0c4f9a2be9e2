"""The identity of a data folder: which data a model was trained and scored on.

Two folders may hold different data under one dataset name (two phantoms of other seeds,
two copies of GOD preprocessed differently), and a score measured on one cannot be
compared with a score measured on the other. :func:`data_identity` gives each folder's
data a short id, recorded on runs (tag ``sbd.data_id``), logged models, registered
versions (tags ``data_id``, ``data_dir``), and answered by a served decoder; a decoder's
``champion`` is compared only among versions of the same id (:mod:`sbd.registry`).

What the id hashes:

- every dataset: a fingerprint of each brain-data file (``fMRI/GOD/*.h5``; or
  ``sbj_N.npz``, ``images_256.npz`` and the label CSVs): its relative path, size and the
  SHA-256 of its content (files over 64 MiB: of sixteen 1 MiB samples spread over it, so
  that a folder of several GB is fingerprinted in a fraction of a second), of the
  stimulus id lists, and of the bank tree's class folders and their image counts;
- ``phantom`` adds the content hashes its manifest holds of everything the build wrote
  (stimulus images, bank images): two builds with the same parameters and seed have the
  same id, any other parameter or seed another one.

Copying or moving the folder keeps the id (no modification time is used); changing any
byte of a brain file up to 64 MiB, the size of any brain file, a sampled block of a
larger one, or the bank's classes or image counts changes it. Fingerprints are kept per
process by (path, size, modification time), bank counts by the folder's modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from sbd.data import layout
from sbd.data.files import file_sha256

ID_LENGTH = 12
FULL_HASH_BYTES = 64 << 20
SAMPLE_BYTES = 1 << 20
N_SAMPLES = 16
_CACHE: dict[tuple[str, int, int], str] = {}
_COUNTS: dict[tuple[str, int], int] = {}


@dataclass(frozen=True)
class DataIdentity:
    """``data_id`` (12 hex digits), the folder (absolute), the dataset and what was hashed."""

    data_id: str
    data_dir: str
    dataset: str
    basis: str

    def tags(self) -> dict[str, str]:
        """The tags runs and registered versions carry."""
        return {"data_id": self.data_id, "data_dir": self.data_dir, "dataset": self.dataset}

    def describe(self) -> str:
        return f"{self.dataset} data in {self.data_dir} (data_id {self.data_id})"


def file_fingerprint(path: Path) -> str:
    """SHA-256 of the content (≤ 64 MiB) or of the size and sixteen 1 MiB samples spread
    evenly from its start to its end."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    size = st.st_size
    if size <= FULL_HASH_BYTES:
        digest = file_sha256(path)
    else:
        h = hashlib.sha256(str(size).encode())
        with open(path, "rb") as f:
            for i in range(N_SAMPLES):
                f.seek((size - SAMPLE_BYTES) * i // (N_SAMPLES - 1))
                h.update(f.read(SAMPLE_BYTES))
        digest = h.hexdigest()
    _CACHE[key] = digest
    return digest


def _phantom_basis(root: Path) -> dict[str, str]:
    """The manifest's content hashes of what the build wrote, brain files left out (their
    live fingerprints are added by :func:`_files_basis`); {} without a manifest."""
    from sbd.data.phantom import read_manifest

    outputs = (read_manifest(root) or {}).get("outputs") or {}
    return {f"manifest:{rel}": rec["sha256"] for rel, rec in sorted(outputs.items())
            if not rel.startswith("fMRI/GOD/")}


def _files_basis(root: Path, dataset: str) -> dict[str, str]:
    if dataset == "god-npz":
        brain = [layout.npz_subject_file(root, s) for s in layout.npz_subjects(root)]
        brain += [root / layout.NPZ_IMAGES, *(root / n for n in layout.NPZ_LABEL_CSVS.values())]
    else:
        brain = sorted((root / "fMRI" / "GOD").glob("*.h5"))
        brain += [layout.image_list_csv(root, s) for s in layout.STIMULUS_SETS]
    basis = {p.relative_to(root).as_posix(): file_fingerprint(p) for p in brain if p.is_file()}
    if not basis:
        raise FileNotFoundError(f"No {dataset} brain data in {root} to identify "
                                "(expected fMRI/GOD/*.h5 or sbj_N.npz).")
    bank = layout.bank_dir(root)
    if bank.is_dir():
        classes = sorted(e.name for e in os.scandir(bank) if e.is_dir())
        basis["imagenet/train (classes, image counts)"] = hashlib.sha256(";".join(
            f"{c}:{_entries(bank / c)}" for c in classes).encode()).hexdigest()
    return basis


def _entries(folder: Path) -> int:
    """The number of entries of a bank class folder, kept per process by its modification
    time (which adding or removing a file changes): an ImageNet-sized tree is listed once."""
    key = (str(folder), folder.stat().st_mtime_ns)
    if key not in _COUNTS:
        _COUNTS[key] = sum(1 for _ in os.scandir(folder))
    return _COUNTS[key]


def data_identity(dataset: str, data_dir: str | Path = "") -> DataIdentity:
    """The :class:`DataIdentity` of ``dataset``'s folder ``data_dir`` (default: its default).

    Raises FileNotFoundError naming the folder when it holds no data of that dataset.
    """
    root = layout.resolve_data_dir(dataset, data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Data folder {root} of dataset={dataset} does not exist.")
    basis = _files_basis(root, dataset)
    how = "file fingerprints"
    if dataset == "phantom":
        manifest = _phantom_basis(root)
        basis.update(manifest)
        how += " + phantom manifest" if manifest else ""
    digest = hashlib.sha256(json.dumps([dataset, basis], sort_keys=True).encode()).hexdigest()
    return DataIdentity(digest[:ID_LENGTH], str(root.resolve()), dataset, how)
