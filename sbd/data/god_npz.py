"""Reader of the "Kamitani npz" GOD package that MinD-Vis distributes (``dataset=god-npz``).

Many labs hold GOD (Horikawa & Kamitani 2017) as this package (MinD-Vis README,
``data/Kamitani/npz/``; reused by CMVDM, LEA, SelfSuperReconst), one folder::

    sbj_1.npz … sbj_5.npz           fMRI and ROI masks, one file per subject
    images_256.npz                   train_images, test_images
    imagenet_training_label.csv      GOD stimulus id of each row of train_images
    imagenet_testing_label.csv       GOD stimulus id of each row of test_images
    imagenet_class_index.json        ILSVRC class index (not needed: the ids carry the wnids)

Keys are identified by name, never by order, with the meanings the public loaders give
them (zjc062/mind-vis ``code/dataset.py`` ``create_Kamitani_dataset``;
WeizmannVision/SelfSuperReconst ``self_super_reconst/utils/datasets.py``
``KamitaniDataset``; naiq/LEA ``src/dataset.py`` ``create_Kamitani_CLIP_dataset``):

=========  =======================================================================
``arr_0``  training fMRI, (n_train, voxels): one row per training presentation
``arr_1``  test fMRI, single trials, (n_test_trials, voxels)
``arr_2``  test fMRI averaged over repetitions, (n_test_images, voxels): row j is
           ``test_images[j]``
``arr_3``  (n_train,) int: index into ``train_images`` of each ``arr_0`` row
``arr_4``  (n_test_trials,) int: index into ``test_images`` of each ``arr_1`` row
``arr_5``  (voxels,) per-voxel noise ceiling (optional; not used by sbd)
``arr_6``  (voxels,) per-voxel SNR (optional; not used by sbd)
others     boolean voxel masks, (voxels,): V1 V2 V3 V4 LOC FFA PPA LVC HVC VC
=========  =======================================================================

``images_256.npz``: ``train_images`` (n, 256, 256, 3) and ``test_images`` (50, 256, 256, 3);
uint8 in some copies (MinD-Vis divides by 255, LEA calls ``Image.fromarray``), floats in
0-1 in others (SelfSuperReconst multiplies by 255): the dtype is detected
(:func:`read_images`). Row ``i`` of the training (test) label CSV is image ``i`` of
``train_images`` (``test_images``); its first column is GOD's stimulus id
(``1518878.005958`` → wnid ``n01518878``, image ``n01518878_5958``). The package holds no
imagery trials and no run numbers.

**Normalisation.** :func:`sbd.data.god.load` z-scores each voxel within each run. The
package holds no run numbers, so that cannot be redone, and whether it was already
z-scored per run is not public. :func:`normalisation` measures what can be: the mean and
standard deviation of each voxel over the training rows (``arr_0``). When every
non-constant voxel has mean 0 and standard deviation 1 (to ``ZSCORE_TOL``) the package is
z-scored (per run or over the whole split: a z-scoring per run gives exactly this too, and
without run numbers the two cannot be told apart) and :func:`load` uses its values as they
are, ``arr_2`` included. Otherwise, with ``zscore=True`` (the default), each voxel is
z-scored over the split's single trials (the split taken as one run: ``arr_0`` for train,
``arr_1`` for test, whose averages per image then replace ``arr_2``), which is the nearest
thing to GOD's per-run z-scoring the package allows; ``zscore=False`` gives the values as
the package left them.

:func:`write_images` writes the stimulus images out in the GOD layout of
:mod:`sbd.data.layout` (``fMRI/imagenet/images/{training,test}/<image_id>.png`` and
``image_{training,test}_id.csv``, in the package folder), so that feature extraction,
generation thumbnails and the image metrics read them as they read GOD's. They are written
as lossless PNG: the pixels are exactly the package's arrays, which the field's image
metrics compare against. :func:`write_from_phantom` writes such a package from a built
phantom (tests, and anyone who wants to try a loader of the field on a known truth).
"""

from __future__ import annotations

import csv
import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sbd.data import layout
from sbd.files import staged_dir
from sbd.data.god import (GODSample, ROIS, SPLITS, decode_label, subject_number,
                          zscore_by_run)

__all__ = ["FMRI_KEYS", "IMAGE_KEYS", "ZSCORE_TOL", "IMAGE_DTYPES", "load", "normalisation",
           "read_label_csv", "read_images", "image_dtype", "write_images", "validate",
           "write_from_phantom"]

FMRI_KEYS = {
    "arr_0": "training fMRI, (n_train, voxels)",
    "arr_1": "test fMRI single trials, (n_test_trials, voxels)",
    "arr_2": "test fMRI averaged per image, (n_test_images, voxels)",
    "arr_3": "index into train_images of each arr_0 row, (n_train,) integers",
    "arr_4": "index into test_images of each arr_1 row, (n_test_trials,) integers",
}
OPTIONAL_KEYS = {"arr_5": "per-voxel noise ceiling, (voxels,)",
                 "arr_6": "per-voxel SNR, (voxels,)"}
IMAGE_KEYS = {"training": "train_images", "test": "test_images"}
IMAGE_SIZE = 256
ZSCORE_TOL = 0.05
IMAGE_DTYPES = ("uint8", "float")  # how write_from_phantom stores images_256.npz
IMAGES_MANIFEST = "god_npz_images.json"
_SET_OF_SPLIT = {"train": "training", "test": "test"}


# --------------------------------------------------------------------------- npz files


def _npz_error(path: Path, exc: Exception) -> ValueError:
    return ValueError(f"{path} cannot be read as an .npz file ({exc}); expected a zip of .npy "
                      "arrays written by numpy.savez (a cut-off download or copy reads like "
                      "this: copy it again).")


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array of an .npz file, read from the .npy headers only."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                out[name[:-len(".npy")]] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise _npz_error(path, exc) from None
    return out


_CACHE: dict = {}  # one subject file kept: (path, mtime_ns, size) -> arrays


def _read_npz(path: Path, keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of an .npz file (all, or ``keys``), never unpickling."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in (z.files if keys is None else keys)}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise _npz_error(path, exc) from None


def _key_error(path: Path, key: str, what: str, present: Sequence[str]) -> ValueError:
    return ValueError(f"{path}: key {key!r} missing; expected {key} = {what}. Keys present: "
                      f"{', '.join(present) or 'none'}.")


def _integer_index(a: np.ndarray, path: Path, key: str, n: int, of: str) -> np.ndarray:
    """``a`` (k,) as int64 indices in 0..n-1; ValueError naming the file and key otherwise."""
    if a.ndim != 1:
        raise ValueError(f"{path}: key {key!r} has shape {a.shape}; expected (k,) indices into "
                         f"{of}.")
    if a.dtype.kind not in "iub":
        if a.dtype.kind != "f" or not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise ValueError(f"{path}: key {key!r} holds non-integer values (dtype {a.dtype}); "
                             f"expected integer indices into {of}.")
    idx = a.astype(np.int64)
    bad = np.flatnonzero((idx < 0) | (idx >= n))
    if bad.size:
        raise ValueError(
            f"{path}: key {key!r} out of range: {bad.size} value(s) outside 0..{n - 1} (e.g. "
            f"row {bad[0]}: {idx[bad[0]]}); expected indices into {of}, which has {n} images.")
    return idx


@dataclass
class _Subject:
    """The checked arrays of one ``sbj_N.npz``."""

    path: Path
    arrays: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    norm: dict = field(default_factory=dict)  # normalisation(), measured once

    @property
    def n_voxels(self) -> int:
        return int(self.arrays["arr_0"].shape[1])


def _check_subject_arrays(path: Path, arrays: dict[str, np.ndarray]) -> _Subject:
    present = list(arrays)
    for key, what in FMRI_KEYS.items():
        if key not in arrays:
            raise _key_error(path, key, what, present)
    x0 = arrays["arr_0"]
    if x0.ndim != 2 or x0.shape[1] == 0:
        raise ValueError(f"{path}: key 'arr_0' has shape {x0.shape}; expected "
                         f"{FMRI_KEYS['arr_0']}.")
    v = x0.shape[1]
    for key in ("arr_0", "arr_1", "arr_2"):
        a = arrays[key]
        if a.ndim != 2 or a.shape[1] != v:
            raise ValueError(f"{path}: key {key!r} has shape {a.shape}; expected "
                             f"{FMRI_KEYS[key]} with voxels = {v} (the columns of arr_0).")
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{path}: key {key!r} has dtype {a.dtype}; expected numbers.")
    for key, rows_of in (("arr_3", "arr_0"), ("arr_4", "arr_1")):
        a = arrays[key]
        if a.ndim != 1 or len(a) != arrays[rows_of].shape[0]:
            raise ValueError(f"{path}: key {key!r} has shape {a.shape}; expected "
                             f"({arrays[rows_of].shape[0]},), one index per row of {rows_of}.")
    for key, what in OPTIONAL_KEYS.items():
        if key in arrays and arrays[key].shape != (v,):
            raise ValueError(f"{path}: key {key!r} has shape {arrays[key].shape}; expected "
                             f"({v},), the {what.split(',')[0]} of each voxel.")
    masks = {}
    for key, a in arrays.items():
        if key in FMRI_KEYS or key in OPTIONAL_KEYS:
            continue
        if a.ndim != 1 or len(a) != v:
            raise ValueError(f"{path}: ROI mask {key!r} has shape {a.shape}; expected ({v},), "
                             f"one boolean per voxel (the columns of arr_0).")
        if a.dtype != bool:
            if a.dtype.kind not in "iuf" or not np.all(np.isin(a, (0, 1))):
                raise ValueError(f"{path}: ROI mask {key!r} has dtype {a.dtype} with values "
                                 "other than 0/1; expected a boolean mask of the voxels.")
            a = a.astype(bool)
        masks[key] = a
    return _Subject(path, arrays, masks)


def _subject_num(data_dir: Path, subject) -> int:
    num = subject_number(subject)
    if num is None:
        present = layout.npz_subjects(data_dir)
        raise ValueError(f"Unknown subject={subject!r}; valid: "
                         f"{', '.join(map(str, present or (1, 2, 3, 4, 5)))} (N of sbj_N.npz).")
    return num


def _open_subject(data_dir: Path, subject: int) -> _Subject:
    path = layout.npz_subject_file(data_dir, subject)
    if not path.is_file():
        present = layout.npz_subjects(data_dir)
        have = (f"Subjects present there: {', '.join(map(str, present))}."
                if present else f"No sbj_N.npz in {data_dir}.")
        raise FileNotFoundError(
            f"fMRI file of subject {subject} not found: {path}. {have} The Kamitani npz "
            "package (as MinD-Vis distributes it) goes in one folder: sbj_1.npz … sbj_5.npz, "
            f"{layout.NPZ_IMAGES}, {', '.join(layout.NPZ_LABEL_CSVS.values())}.")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        sub = _check_subject_arrays(path, _read_npz(path))
        _CACHE.clear()
        _CACHE[key] = sub
    return _CACHE[key]


def _mask(sub: _Subject, roi: str) -> np.ndarray:
    if roi not in sub.masks:
        listing = ", ".join(f"{r} ({int(m.sum())} voxels)" for r, m in sub.masks.items())
        raise ValueError(f"{sub.path}: ROI {roi!r} absent (no mask key {roi!r}); ROI masks "
                         f"present: {listing or 'none'}.")
    mask = sub.masks[roi]
    if not mask.any():
        raise ValueError(f"{sub.path}: ROI {roi!r} has 0 voxels (mask key {roi!r} is all "
                         "False).")
    return mask


def _check_finite(x: np.ndarray, path: Path, key: str, roi: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"{path}: {int(bad.sum())} NaN/Inf value(s) in key {key!r}, ROI {roi}: "
            f"{int(bad.any(axis=0).sum())} voxel(s) in {len(rows)} row(s) (0-based rows "
            f"{', '.join(map(str, rows[:10].tolist()))}{' …' if len(rows) > 10 else ''}). "
            "Drop or impute them before decoding.")


# --------------------------------------------------------------------------- normalisation


def _normalisation_of(sub: _Subject) -> dict:
    if sub.norm:
        return sub.norm
    x = np.asarray(sub.arrays["arr_0"], dtype=np.float64)
    mean, sd = x.mean(axis=0), x.std(axis=0)
    live = sd > 1e-12
    max_mean = float(np.abs(mean[live]).max()) if live.any() else 0.0
    max_sd_dev = float(np.abs(sd[live] - 1.0).max()) if live.any() else 0.0
    zscored = bool(live.any() and max_mean <= ZSCORE_TOL and max_sd_dev <= ZSCORE_TOL)
    out = {"file": str(sub.path), "zscored": zscored,
           "max_abs_voxel_mean": max_mean, "max_abs_voxel_sd_minus_1": max_sd_dev,
           "median_voxel_mean": float(np.median(mean)), "median_voxel_sd": float(np.median(sd)),
           "n_constant_voxels": int((~live).sum()),
           "verdict": (
               "z-scored per voxel (mean 0, sd 1 over the training rows; per run or over the "
               "whole split cannot be told apart without run numbers): used as it is"
               if zscored else
               f"not z-scored per voxel (median voxel mean {np.median(mean):.3g}, median sd "
               f"{np.median(sd):.3g}): load(zscore=True) z-scores each voxel over the split")}
    sub.norm.update(out)
    return out


def normalisation(data_dir: str | Path, subject: int) -> dict:
    """What can be told of the normalisation of ``sbj_<subject>.npz``.

    Returns
    -------
    dict
        ``zscored`` (every non-constant voxel has mean 0 and sd 1 over ``arr_0`` to
        :data:`ZSCORE_TOL`), ``max_abs_voxel_mean``, ``max_abs_voxel_sd_minus_1``,
        ``median_voxel_mean``, ``median_voxel_sd``, ``n_constant_voxels``, ``verdict``
        (text), ``file``.
    """
    data_dir = Path(data_dir)
    return dict(_normalisation_of(_open_subject(data_dir, _subject_num(data_dir, subject))))


# --------------------------------------------------------------------------- labels and images


def read_label_csv(path: str | Path):
    """A label CSV of the package: one row per image, first column GOD's stimulus id
    (``1518878.005958``), an optional second column the image's file name.

    Returns
    -------
    pandas.DataFrame
        Columns ``label`` (float64), ``image_id``, ``wnid``; row i is image i.

    Raises
    ------
    FileNotFoundError
        The file is missing.
    ValueError
        An empty file, a bad stimulus id, a file name of another image, an image twice
        (each names the file and the row).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Label file not found: {path}; the Kamitani npz package has "
            f"{', '.join(layout.NPZ_LABEL_CSVS.values())} beside the sbj_N.npz files (row i: "
            "GOD stimulus id of image i, e.g. 1518878.005958).")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if rows:
        try:
            float(rows[0][0])
        except ValueError:
            rows = rows[1:]  # a header row
    if not rows:
        raise ValueError(f"{path}: no rows; expected one GOD stimulus id per image "
                         "(e.g. 1518878.005958).")
    out, seen = [], {}
    for line, row in enumerate(rows, start=1):
        lab = row[0].strip()
        try:
            value = float(lab)
            wnid, image_id = decode_label(value)
        except ValueError as exc:
            raise ValueError(f"{path}, row {line}: bad stimulus id {lab!r} ({exc}).") from None
        if len(row) > 1 and row[1].strip():
            stem = Path(row[1].strip()).stem
            if stem != image_id and stem.startswith("n"):
                raise ValueError(f"{path}, row {line}: stimulus id {lab} is image {image_id}, "
                                 f"but the file name is {row[1].strip()!r}.")
        if image_id in seen:
            raise ValueError(f"{path}, rows {seen[image_id]} and {line}: image {image_id} "
                             "listed twice; expected one row per image.")
        seen[image_id] = line
        out.append((value, image_id, wnid))
    df = pd.DataFrame(out, columns=["label", "image_id", "wnid"])
    df.attrs["path"] = str(path)
    return df


def _images_file(data_dir: Path) -> Path:
    path = data_dir / layout.NPZ_IMAGES
    if not path.is_file():
        raise FileNotFoundError(f"Stimulus images not found: {path}; the Kamitani npz package "
                                f"has {layout.NPZ_IMAGES} (train_images, test_images) beside "
                                "the sbj_N.npz files.")
    return path


def _image_header(data_dir: Path, stimulus_set: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of ``train_images`` / ``test_images``, checked, without loading."""
    path = _images_file(data_dir)
    headers = _npz_headers(path)
    key = IMAGE_KEYS[stimulus_set]
    if key not in headers:
        raise _key_error(path, key, f"the {stimulus_set} stimulus images, (n, {IMAGE_SIZE}, "
                         f"{IMAGE_SIZE}, 3) uint8 or floats in 0-1", list(headers))
    shape, dtype = headers[key]
    if len(shape) != 4 or shape[3] != 3 or min(shape[1:3], default=0) < 1:
        raise ValueError(f"{path}: key {key!r} has shape {shape}; expected (n, {IMAGE_SIZE}, "
                         f"{IMAGE_SIZE}, 3) RGB images, channels last.")
    if dtype.kind not in "uif":
        raise ValueError(f"{path}: key {key!r} has dtype {dtype}; expected uint8 or floats "
                         "in 0-1.")
    return shape, dtype


def _stimuli(data_dir: Path) -> dict:
    """Per stimulus set: the label CSV's table, checked against the images' count."""
    out = {}
    for sset in layout.STIMULUS_SETS:
        df = read_label_csv(data_dir / layout.NPZ_LABEL_CSVS[sset])
        shape, _ = _image_header(data_dir, sset)
        if shape[0] != len(df):
            raise ValueError(
                f"{data_dir / layout.NPZ_IMAGES}: key {IMAGE_KEYS[sset]!r} holds {shape[0]} "
                f"images but {df.attrs['path']} lists {len(df)}; expected one label row per "
                "image, in the same order.")
        out[sset] = df
    return out


def image_dtype(data_dir: str | Path, stimulus_set: str = "training") -> str:
    """How ``images_256.npz`` stores a stimulus set: ``"uint8"`` (0-255) or ``"float"``
    (0-1), from the array header (the values are checked by :func:`read_images`)."""
    _, dtype = _image_header(Path(data_dir), stimulus_set)
    return "float" if dtype.kind == "f" else "uint8"


def read_images(data_dir: str | Path, stimulus_set: str) -> np.ndarray:
    """The stimulus images of ``training`` or ``test`` as uint8, (n, H, W, 3).

    uint8 arrays are returned as they are; other integer arrays must hold 0-255; float
    arrays must hold 0-1 (the dtype differs between copies of the package) and are scaled
    to 0-255 and rounded. Anything else is refused, naming the file, the key and the range
    found.
    """
    data_dir = Path(data_dir)
    layout.images_dir(data_dir, stimulus_set)  # validates the name
    _image_header(data_dir, stimulus_set)
    path, key = _images_file(data_dir), IMAGE_KEYS[stimulus_set]
    a = _read_npz(path, [key])[key]
    if a.dtype == np.uint8:
        return a
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{path}: key {key!r} holds NaN/Inf values; expected floats in "
                             "0-1.")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ValueError(f"{path}: key {key!r} holds floats in {lo:g}..{hi:g}; expected "
                             "floats in 0-1 (or uint8 in 0-255).")
        return np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"{path}: key {key!r} holds integers in {lo}..{hi}; expected uint8 "
                         "in 0-255.")
    return a.astype(np.uint8)


# --------------------------------------------------------------------------- load


def load(data_dir: str | Path, subject: int, roi: str, split: str, zscore: bool = True,
         average: bool = True) -> GODSample:
    """Read one subject's voxels of one ROI for one split, as :func:`sbd.data.god.load`.

    Parameters
    ----------
    data_dir : path
        The package folder (``sbj_N.npz``, ``images_256.npz``, the label CSVs).
    subject : int
        N of ``sbj_N.npz``.
    roi : str
        A mask key of the file (V1 V2 V3 V4 LOC FFA PPA LVC HVC VC).
    split : str
        ``train`` (``arr_0``, images by ``arr_3``) or ``test`` (``arr_2``, or ``arr_1``
        with ``average=False``, images by ``arr_4``). ``imagery``: the package has none
        (ValueError, as god.load on a file without imagery trials).
    zscore : bool
        When the package is not z-scored per voxel (:func:`normalisation`), z-score each
        voxel over the split's single trials; a z-scored package is used as it is.
    average : bool
        Test: one row per image (``arr_2``, rows sorted by image id as god.load sorts
        them); False: the single trials of ``arr_1`` in file order.

    Returns
    -------
    GODSample
        ``voxels`` (n, v) float32, ``wnids``, ``image_ids`` (``n01518878_5958``),
        ``labels`` (GOD stimulus ids), ``runs`` -1 (the package has no run numbers),
        ``n_trials`` (test: presentations of each image in ``arr_4``).

    Raises
    ------
    ValueError
        Unknown split/subject; ROI absent (lists the masks present); a malformed file:
        missing key, a shape that does not fit (mask length ≠ voxels, …), an index out of
        range, bad images or labels, NaN/Inf voxels — each naming the file and the key.
    FileNotFoundError
        A file of the package is missing (says which and where it goes).
    """
    data_dir = Path(data_dir)
    if split not in SPLITS:
        raise ValueError(f"Unknown split={split!r}; valid: {', '.join(SPLITS)}.")
    if not isinstance(roi, str) or not roi:
        raise ValueError(f"Unknown roi={roi!r}; valid: {', '.join(ROIS)}.")
    subject = _subject_num(data_dir, subject)
    sub = _open_subject(data_dir, subject)
    mask = _mask(sub, roi)
    if split == "imagery":
        raise ValueError(f"{sub.path}: no imagery samples: the Kamitani npz package holds "
                         "perception only (arr_0 training, arr_1/arr_2 test). GOD's imagery "
                         "trials are in its BData files (dataset=god).")
    stim = _stimuli(data_dir)[_SET_OF_SPLIT[split]]
    rescale = zscore and not _normalisation_of(sub)["zscored"]
    if split == "train":
        idx, x, n_trials = _train_rows(sub, mask, roi, len(stim), rescale)
    else:
        idx, x, n_trials = _test_rows(sub, mask, roi, stim, rescale, average)
    return GODSample(
        voxels=np.ascontiguousarray(x, dtype=np.float32),
        wnids=stim["wnid"].to_numpy()[idx].tolist(),
        image_ids=stim["image_id"].to_numpy()[idx].tolist(),
        labels=stim["label"].to_numpy(dtype=np.float64)[idx],
        runs=np.full(len(idx), -1, dtype=int),
        split=split,
        subject=subject,
        roi=roi,
        n_trials=np.asarray(n_trials, dtype=int),
    )


def _train_rows(sub: _Subject, mask: np.ndarray, roi: str, n_images: int, rescale: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image index (n,), voxels of the ROI (n, v) and trial counts (n,) of ``arr_0``'s rows,
    z-scored over the split when ``rescale``."""
    idx = _integer_index(sub.arrays["arr_3"], sub.path, "arr_3", n_images,
                         IMAGE_KEYS["training"])
    x = sub.arrays["arr_0"][:, mask]
    _check_finite(x, sub.path, "arr_0", roi)
    if rescale:
        x = zscore_by_run(x, np.zeros(len(x)))
    return idx, x, np.ones(len(idx), dtype=int)


def _test_rows(sub: _Subject, mask: np.ndarray, roi: str, stim, rescale: bool, average: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image index, voxels of the ROI and trial counts of the test rows: the single trials
    of ``arr_1`` (z-scored over the split when ``rescale``), or with ``average`` one row per
    image shown, sorted by image id (``arr_2``, or the trials' means when ``rescale``)."""
    a, n_images = sub.arrays, len(stim)
    idx = _integer_index(a["arr_4"], sub.path, "arr_4", n_images, IMAGE_KEYS["test"])
    if a["arr_2"].shape[0] != n_images:
        raise ValueError(
            f"{sub.path}: key 'arr_2' has {a['arr_2'].shape[0]} rows; expected "
            f"{n_images}, one per image of test_images (row j = image j).")
    x = a["arr_1"][:, mask]
    _check_finite(x, sub.path, "arr_1", roi)
    if rescale:
        x = zscore_by_run(x, np.zeros(len(x)))
    n_trials = np.ones(len(idx), dtype=int)
    if not average:
        return idx, x, n_trials
    counts = np.bincount(idx, minlength=n_images)
    if rescale:  # the averages of the z-scored trials replace arr_2
        sums = np.zeros((n_images, x.shape[1]))
        np.add.at(sums, idx, x)
        x = sums / np.maximum(counts, 1)[:, None]
    else:
        x = a["arr_2"][:, mask]
        _check_finite(x, sub.path, "arr_2", roi)
    order = np.argsort(np.asarray(stim["image_id"], dtype=str), kind="stable")
    present = order[counts[order] > 0] if counts.any() else order
    return present, x[present], counts[present]


# --------------------------------------------------------------------------- writing images


def _source_record(data_dir: Path) -> dict:
    rec = {}
    for name in (layout.NPZ_IMAGES, *layout.NPZ_LABEL_CSVS.values()):
        st = (data_dir / name).stat()
        rec[name] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return rec


def _written_intact(data_dir: Path, manifest: dict) -> bool:
    for sset, n in manifest.get("n_images", {}).items():
        folder = layout.images_dir(data_dir, sset)
        if not folder.is_dir() or sum(1 for p in folder.glob("*.png")) != n:
            return False
    return all(layout.image_list_csv(data_dir, s).is_file() for s in layout.STIMULUS_SETS)


def _write_stimulus_set(data_dir: Path, stage: Path, sset: str, df) -> int:
    """Write a stimulus set's images (PNG) and image list into the staged images folder;
    returns the number of images."""
    from PIL import Image

    images = read_images(data_dir, sset)
    folder = stage / sset
    folder.mkdir(parents=True)
    for img, image_id in zip(images, df["image_id"]):
        Image.fromarray(img, "RGB").save(folder / f"{image_id}.png", compress_level=4)
    lines = "".join(f'{lab:.6f},"{iid}.png"\n' for lab, iid in zip(df["label"], df["image_id"]))
    (stage / layout.image_list_csv(data_dir, sset).name).write_text(lines)
    return len(df)


def _drop_stimulus_features(data_dir: Path) -> None:
    """Remove the stimulus features of every backbone (the bank's stay): they are of the
    previous images."""
    for bb in (data_dir / "features").glob("*") if (data_dir / "features").is_dir() else ():
        for s in layout.STIMULUS_SETS:
            (bb / f"{s}.h5").unlink(missing_ok=True)
            shutil.rmtree(bb / f"{s}.partial", ignore_errors=True)


def write_images(data_dir: str | Path, force: bool = False) -> dict:
    """Write the package's stimulus images out in the GOD layout, in ``data_dir``.

    ``fMRI/imagenet/images/{training,test}/<image_id>.png`` (lossless: the package's pixels
    exactly) and ``image_{training,test}_id.csv`` (GOD's form,
    ``1518878.005958,"n01518878_5958.png"``). Staged in a temporary folder and renamed into
    place; a no-op when the same package files were written before (``god_npz_images.json``
    records them) unless ``force``. When the images change, stimulus features extracted
    from the previous ones (``features/*/{training,test}.h5``) are removed.

    Returns
    -------
    dict
        ``written`` (False: reused), ``n_images`` per stimulus set, ``image_dtype`` per
        stimulus set (as stored in the package), ``folder``.
    """
    data_dir = Path(data_dir)
    stim = _stimuli(data_dir)
    dtypes = {s: image_dtype(data_dir, s) for s in layout.STIMULUS_SETS}
    target = layout.images_dir(data_dir)
    source = _source_record(data_dir)
    manifest_path = target / IMAGES_MANIFEST
    if not force and manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("source") == source and _written_intact(data_dir, old):
            return {"written": False, "n_images": old["n_images"], "image_dtype": dtypes,
                    "folder": str(target)}
    with staged_dir(target) as stage:
        n_images = {sset: _write_stimulus_set(data_dir, stage, sset, stim[sset])
                    for sset in layout.STIMULUS_SETS}
        manifest = {"format": 1, "source": source, "n_images": n_images,
                    "image_dtype": dtypes, "image_format": "png"}
        (stage / IMAGES_MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    _drop_stimulus_features(data_dir)
    return {"written": True, "n_images": n_images, "image_dtype": dtypes, "folder": str(target)}


# --------------------------------------------------------------------------- validate


def validate(data_dir: str | Path) -> dict:
    """Check a Kamitani npz package folder and report what it holds.

    Returns
    -------
    dict
        The form of :func:`sbd.data.god.validate`'s report: ``ok``, ``data_dir``,
        ``problems`` (each naming its file and key), ``warnings``, ``image_lists`` (per
        stimulus set: label CSV path, number of images), ``images`` (per stimulus set:
        ``folder`` = the npz file and key, ``n``, ``dtype``), ``missing_images`` (empty:
        the package holds every image), and ``subjects``: per subject (str key) ``file``,
        ``rois`` ``{roi: voxel count}``, ``samples`` (train / test single trials / test
        images), ``images`` (distinct train / test images), ``normalisation``
        (:func:`normalisation`), ``problems``, ``warnings``.
    """
    data_dir = Path(data_dir)
    report: dict = {"data_dir": str(data_dir), "subjects": {}, "problems": [], "warnings": [],
                    "image_lists": {}, "images": {}, "missing_images": {}, "unreadable_images": {}}
    stim = None
    try:
        stim = _stimuli(data_dir)
        for sset in layout.STIMULUS_SETS:
            report["image_lists"][sset] = {"path": stim[sset].attrs["path"], "n": len(stim[sset])}
            shape, dtype = _image_header(data_dir, sset)
            report["images"][sset] = {"folder": f"{data_dir / layout.NPZ_IMAGES}:"
                                                f"{IMAGE_KEYS[sset]}",
                                      "n": shape[0], "n_unreadable": 0, "dtype": str(dtype),
                                      "shape": list(shape)}
            if shape[1:3] != (IMAGE_SIZE, IMAGE_SIZE):
                report["warnings"].append(
                    f"{data_dir / layout.NPZ_IMAGES}: {IMAGE_KEYS[sset]} are {shape[1]}×"
                    f"{shape[2]} (the MinD-Vis package's are {IMAGE_SIZE}×{IMAGE_SIZE}).")
            report["missing_images"][sset] = []
    except (ValueError, FileNotFoundError) as exc:
        report["problems"].append(str(exc))
    if not (data_dir / layout.NPZ_CLASS_INDEX).is_file():
        report["warnings"].append(f"no {data_dir / layout.NPZ_CLASS_INDEX} (not needed by "
                                  "sbd: the label CSVs carry the wnids).")
    present = layout.npz_subjects(data_dir)
    if not present:
        report["problems"].append(
            f"no sbj_N.npz in {data_dir}: the Kamitani npz package (as MinD-Vis distributes "
            "it) has sbj_1.npz … sbj_5.npz beside images_256.npz and the label CSVs.")
    for subject in present:
        sub_report = _validate_subject(data_dir, subject, stim)
        report["subjects"][str(subject)] = sub_report
        report["problems"].extend(f"subject {subject}: {p}" for p in sub_report["problems"])
        report["warnings"].extend(f"subject {subject}: {w}" for w in sub_report["warnings"])
    report["ok"] = not report["problems"]
    return report


def _validate_subject(data_dir: Path, subject: int, stim: dict | None) -> dict:
    path = layout.npz_subject_file(data_dir, subject)
    out: dict = {"file": str(path), "problems": [], "warnings": []}
    try:
        sub = _open_subject(data_dir, subject)
        a = sub.arrays
        out["n_voxels"] = sub.n_voxels
        out["rois"] = {r: int(m.sum()) for r, m in sub.masks.items()}
        absent = [r for r in ROIS if r not in sub.masks]
        if absent:
            out["problems"].append(f"{path}: ROI masks absent: {', '.join(absent)} (present: "
                                   f"{', '.join(sub.masks) or 'none'}).")
        empty = [r for r, n in out["rois"].items() if n == 0]
        if empty:
            out["problems"].append(f"{path}: ROI masks with 0 voxels: {', '.join(empty)}.")
        out["samples"] = {"train": int(a["arr_0"].shape[0]), "test": int(a["arr_1"].shape[0]),
                          "test_images": int(a["arr_2"].shape[0]), "imagery": 0}
        for key in ("arr_0", "arr_1", "arr_2"):
            n_bad = int((~np.isfinite(a[key])).sum())
            if n_bad:
                out["problems"].append(f"{path}: {n_bad} NaN/Inf value(s) in key {key!r}.")
        out["normalisation"] = _normalisation_of(sub)
        if stim is not None:
            n_train, n_test = len(stim["training"]), len(stim["test"])
            tr = _integer_index(a["arr_3"], path, "arr_3", n_train, IMAGE_KEYS["training"])
            te = _integer_index(a["arr_4"], path, "arr_4", n_test, IMAGE_KEYS["test"])
            if a["arr_2"].shape[0] != n_test:
                out["problems"].append(
                    f"{path}: key 'arr_2' has {a['arr_2'].shape[0]} rows; expected {n_test}, "
                    "one per image of test_images.")
            out["images"] = {"train": int(np.unique(tr).size), "test": int(np.unique(te).size)}
            unseen = np.setdiff1d(np.arange(n_test), te)
            if unseen.size:
                out["warnings"].append(f"{unseen.size} test image(s) have no trial in arr_4 "
                                       f"(e.g. {stim['test']['image_id'].iloc[unseen[0]]}).")
    except (ValueError, FileNotFoundError) as exc:
        out["problems"].append(str(exc))
    return out


# --------------------------------------------------------------------------- from a phantom


def _noise_ceiling_snr(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel SNR (variance of the image means over the mean within-image variance) and
    noise ceiling (NSD's: 100 · ncsnr² / (ncsnr² + 1/repeats)) of single test trials."""
    groups = [x[idx == j] for j in np.unique(idx)]
    within = np.mean([g.var(axis=0, ddof=1) if len(g) > 1 else np.zeros(x.shape[1])
                      for g in groups], axis=0)
    between = np.var([g.mean(axis=0) for g in groups], axis=0)
    snr = between / np.maximum(within, 1e-12)
    reps = len(idx) / max(len(groups), 1)
    signal = np.maximum(between - within / reps, 0.0)
    ncsnr2 = signal / np.maximum(within, 1e-12)
    nc = 100.0 * ncsnr2 / (ncsnr2 + 1.0 / reps)
    return nc.astype(np.float32), snr.astype(np.float32)


def write_from_phantom(phantom_dir: str | Path, out_dir: str | Path, image_dtype: str = "uint8",
                       subjects: Sequence[int] | None = None) -> Path:
    """Write a Kamitani npz package (MinD-Vis layout) from a built phantom.

    The voxels are those :func:`sbd.data.god.load` gives (z-scored within each run), so
    the package reads back to the same samples: ``arr_0`` the training rows in file order,
    ``arr_1`` the test trials, ``arr_2`` their mean per image, ``arr_3`` / ``arr_4`` image
    indices, ``arr_5`` / ``arr_6`` noise ceiling and SNR estimated from the test trials,
    and one boolean mask per ROI of the BData (written before the ``arr_*`` keys, as
    ``numpy.savez(file, *arrays, **masks)`` orders them, which LEA relies on). Images are
    the phantom's stimuli resized to 256×256; row i of the label CSVs is image i.

    Parameters
    ----------
    phantom_dir : a built phantom (:func:`sbd.data.phantom.build`).
    out_dir : the package folder to write (created).
    image_dtype : ``"uint8"`` (0-255) or ``"float"`` (float32 in 0-1), the two forms copies
        of the package come in.
    subjects : the subjects to write (default: every ``SubjectN.h5`` of the phantom).

    Returns
    -------
    Path of ``out_dir``.
    """
    from sbd.data import god

    if image_dtype not in IMAGE_DTYPES:
        raise ValueError(f"Unknown image_dtype={image_dtype!r}; valid: {', '.join(IMAGE_DTYPES)}.")
    phantom_dir, out = Path(phantom_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index = {sset: _write_phantom_images(phantom_dir, out, sset, image_dtype)
             for sset in layout.STIMULUS_SETS}
    np.savez(out / layout.NPZ_IMAGES,
             **{IMAGE_KEYS[sset]: images for sset, (_, images) in index.items()})
    wnids = sorted({w for s in layout.STIMULUS_SETS
                    for w in god.read_image_list(phantom_dir, s)["wnid"]})
    (out / layout.NPZ_CLASS_INDEX).write_text(json.dumps({str(i): [w, w]
                                                          for i, w in enumerate(wnids)}))
    for s in (subjects or layout.fmri_subjects(phantom_dir)):
        _write_phantom_subject(phantom_dir, out, s, {k: ids for k, (ids, _) in index.items()})
    return out


def _write_phantom_images(phantom_dir: Path, out: Path, sset: str, image_dtype: str
                          ) -> tuple[dict[str, int], np.ndarray]:
    """Write a stimulus set's label CSV into ``out``; returns image id → row, and the
    images resized to 256×256, (n, 256, 256, 3) in ``image_dtype``."""
    from PIL import Image

    from sbd.data import god
    from sbd.data.images import read_image

    df = god.read_image_list(phantom_dir, sset)
    if df is None:
        raise FileNotFoundError(f"No image list in {layout.images_dir(phantom_dir)}: "
                                f"{phantom_dir} is not a built phantom.")
    paths, missing = god.stimulus_paths(phantom_dir, df["image_id"].tolist(), sset)
    if missing:
        raise FileNotFoundError(f"{len(missing)} {sset} images missing in "
                                f"{layout.images_dir(phantom_dir, sset)} (e.g. {missing[0]}).")
    arr = np.stack([np.asarray(read_image(p).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BICUBIC))
                    for p in paths])
    images = arr.astype(np.float32) / 255.0 if image_dtype == "float" else arr.astype(np.uint8)
    (out / layout.NPZ_LABEL_CSVS[sset]).write_text(
        "".join(f"{lab:.6f},{iid}.JPEG\n" for lab, iid in zip(df["label"], df["image_id"])))
    return {iid: i for i, iid in enumerate(df["image_id"])}, images


def _write_phantom_subject(phantom_dir: Path, out: Path, subject: int,
                           index: dict[str, dict[str, int]]) -> None:
    """Write ``sbj_<subject>.npz`` from the phantom's BData (``index``: per stimulus set,
    image id → row of the images)."""
    from sbd.data import god

    bdata = god.read_bdata(layout.fmri_file(phantom_dir, subject))
    rois = {k[len("ROI_"):]: bdata.get_metadata(k) == 1
            for k in bdata.metadata.key if k.startswith("ROI_")}
    union = np.logical_or.reduce(list(rois.values()))
    x_all = bdata.dataset[:, union]
    datatype = bdata.select("DataType")[:, 0]
    runs = bdata.select("Run")[:, 0]
    labels = bdata.select("stimulus_id")[:, 0]
    arrays = []
    for code, sset in ((1, "training"), (2, "test")):
        rows = datatype == code
        x = zscore_by_run(x_all[rows], runs[rows])
        ids = [god.decode_label(v)[1] for v in labels[rows]]
        arrays.append((x, np.array([index[sset][i] for i in ids], dtype=np.int64)))
    (x_train, i_train), (x_test, i_test) = arrays
    n_test = len(index["test"])
    mean = np.stack([x_test[i_test == j].mean(axis=0) for j in range(n_test)])
    nc, snr = _noise_ceiling_snr(x_test, i_test)
    masks = {r: m[union] for r, m in rois.items()}
    np.savez(layout.npz_subject_file(out, subject), x_train.astype(np.float32),
             x_test.astype(np.float32), mean.astype(np.float32), i_train, i_test, nc, snr,
             **masks)
