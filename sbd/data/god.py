"""Reader of the Generic Object Decoding (GOD) fMRI data (Horikawa & Kamitani 2017).

The data are BData files (bdpy, HDF5), one per subject, ``<data_dir>/fMRI/GOD/SubjectN.h5``
(figshare 7387130). As read by KamitaniLab/GenericObjectDecoding:

- ``bdata.select('ROI_VC = 1')``: voxels of an ROI (samples × voxels), one sample per
  stimulus block;
- ``bdata.select('DataType')``: 1 training perception, 2 test perception, 3 imagery;
- ``bdata.select('stimulus_id')``: ``wnid offset + image number / 10**6``
  (``1518878.005958`` → wnid ``n01518878``, image ``n01518878_5958``); imagery trials carry
  the category alone (``1443537.0``). A file with a one-column ``Label`` instead is read too;
- ``bdata.select('Run')``, ``bdata.select('Block')``: run and block numbers.

Stimulus images: ``<data_dir>/fMRI/imagenet/images/{training,test}/<image_id>.JPEG``, listed
by ``image_{training,test}_id.csv`` (no header: ``1518878.010042,"n01518878_10042.JPEG"``;
GOD's repository names them ``imageID_{training,test}.csv``; both are read).

:func:`load` z-scores each voxel within each run (before anything else, as the paper's
code does), then averages repeated test presentations per image and imagery trials per
category (both by default).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from sbd.data import layout
from sbd.data.files import GOD_DOWNLOAD, open_hdf5
from sbd.data.images import IMAGE_EXTENSIONS, SkippedImages, try_read_image

__all__ = [
    "GODSample",
    "GOD_SUBJECTS",
    "ROIS",
    "SPLITS",
    "DATATYPES",
    "load",
    "read_bdata",
    "roi_voxel_counts",
    "decode_label",
    "zscore_by_run",
    "read_image_list",
    "stimulus_paths",
    "validate",
]

GOD_SUBJECTS = (1, 2, 3, 4, 5)
ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")
SPLITS = layout.SPLITS  # ("train", "test", "imagery")
DATATYPES = {"train": 1, "test": 2, "imagery": 3}
STIMULUS_SET_OF_SPLIT = {"train": "training", "test": "test", "imagery": "test"}
LABEL_KEYS = ("stimulus_id", "Label")
FIGSHARE = "https://figshare.com/articles/dataset/Generic_Object_Decoding/7387130"
IMAGES_HELP = (
    "The stimulus images are shared on request by the GOD authors "
    "(https://github.com/KamitaniLab/GenericObjectDecoding, data/README.md)."
)


@dataclass
class GODSample:
    """fMRI samples of one subject, ROI and split.

    Attributes
    ----------
    voxels : ndarray, shape (n, v), float32
    wnids : list of str, length n
        Category of each sample (``"n01518878"``).
    image_ids : list of str, length n
        Stimulus image (``"n01518878_5958"``); for imagery the category wnid.
    labels : ndarray, shape (n,), float64
        GOD's stimulus ids (``1518878.005958``).
    runs : ndarray, shape (n,), int
        Run of each sample; after averaging, the run of its first presentation.
    split, subject, roi
        What was read.
    n_trials : ndarray, shape (n,), int
        Number of presentations averaged into each row (1 when not averaged).
    """

    voxels: np.ndarray
    wnids: list[str]
    image_ids: list[str]
    labels: np.ndarray
    runs: np.ndarray
    split: str
    subject: int
    roi: str
    n_trials: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self):
        if self.n_trials is None:
            self.n_trials = np.ones(len(self.labels), dtype=int)

    def __len__(self) -> int:
        return self.voxels.shape[0]


# --------------------------------------------------------------------------- validation


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"Unknown split={split!r}; valid: {', '.join(SPLITS)}.")
    return split


def _check_roi(roi: str) -> str:
    if roi not in ROIS:
        raise ValueError(f"Unknown roi={roi!r}; valid: {', '.join(ROIS)}.")
    return roi


def subject_number(subject) -> int | None:
    """``subject`` as a subject number (a positive integer: ``3``, ``"3"``, ``3.0``), or None
    when it is not one (``0``, ``2.5``, ``True``, ``"s3"``)."""
    if isinstance(subject, bool):
        return None
    try:
        num = int(subject)
        if isinstance(subject, float) and subject != num:
            raise ValueError
    except (TypeError, ValueError):
        return None
    return num if num >= 1 else None


def _check_subject(data_dir: str | Path, subject) -> int:
    num = subject_number(subject)
    if num is None:
        valid = layout.fmri_subjects(data_dir) or list(GOD_SUBJECTS)
        raise ValueError(
            f"Unknown subject={subject!r}; valid: {', '.join(map(str, valid))} "
            "(an integer, N of SubjectN.h5)."
        )
    return num


def _missing_file_error(data_dir: str | Path, subject: int) -> FileNotFoundError:
    path = layout.fmri_file(data_dir, subject)
    present = layout.fmri_subjects(data_dir)
    have = (
        f"Subjects present there: {', '.join(map(str, present))}. "
        if present
        else f"No SubjectN.h5 in {path.parent}. "
    )
    return FileNotFoundError(
        f"fMRI file of subject {subject} not found: {path}. {have}GOD's files go in "
        f"<data_dir>/fMRI/GOD/SubjectN.h5 (e.g. data/fMRI/GOD/Subject{subject}.h5); download "
        f"them from figshare 7387130: {FIGSHARE}"
    )


# --------------------------------------------------------------------------- BData reading


_CACHE: dict = {}  # one BData kept: (path, mtime_ns, size) -> BData


def read_bdata(path: str | Path):
    """Open a BData file (``bdpy.BData``), checking that it is one.

    The last file read is kept in memory, so reading train then test costs one load.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When it is not an HDF5 BData file (``/dataset`` + ``/metadata/{key,value,description}``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BData file not found: {path}.")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key in _CACHE:
        return _CACHE[key]
    expected = (
        "expected a BData file (bdpy): HDF5 with /dataset and /metadata/{key,value,description}"
    )
    remedy = (f"Download {path.name} again from {GOD_DOWNLOAD}."
              if re.fullmatch(r"Subject\d+\.h5", path.name) else
              "Replace it with a complete copy.")
    with open_hdf5(path, remedy) as f:
        ds = "dataset" if "dataset" in f else ("dataSet" if "dataSet" in f else None)
        md = "metadata" if "metadata" in f else ("metaData" if "metaData" in f else None)
        lacks = []
        if ds is None:
            lacks.append("/dataset")
        if md is None:
            lacks.append("/metadata")
        else:
            lacks += [f"/{md}/{k}" for k in ("key", "value", "description") if k not in f[md]]
        if lacks:
            raise ValueError(
                f"{path} is not a BData file: it lacks {', '.join(lacks)}; {expected}. "
                f"{remedy}"
            )
        n_cols = f[ds].shape[1] if len(f[ds].shape) == 2 else None
        md_shape = f[md]["value"].shape
        if n_cols is None or len(md_shape) != 2 or md_shape[1] != n_cols:
            raise ValueError(
                f"{path} is not a valid BData file: /{ds} has shape {f[ds].shape} and "
                f"/{md}/value {md_shape}; expected (samples, columns) and (keys, columns)."
            )
    from bdpy import BData

    try:
        bdata = BData(str(path))
    except Exception as exc:  # bdpy raises bare KeyError/OSError on broken files
        raise ValueError(
            f"{path} could not be read as a BData file ({exc!r}); {expected}."
        ) from exc
    _CACHE.clear()
    _CACHE[key] = bdata
    return bdata


def _keys(bdata) -> list[str]:
    return list(bdata.metadata.key)


def _column(bdata, key: str, path: Path) -> np.ndarray:
    """The single dataset column flagged by metadata ``key``, shape (n,)."""
    values = bdata.select(key)
    if values.shape[1] != 1:
        raise ValueError(
            f"{path}: metadata key {key!r} marks {values.shape[1]} columns; expected exactly 1."
        )
    return values[:, 0]


def _label_key(bdata, path: Path) -> str:
    keys = _keys(bdata)
    for k in LABEL_KEYS:
        if k in keys and bdata.select(k).shape[1] == 1:
            return k
    raise ValueError(
        f"{path}: no stimulus label column; expected metadata key 'stimulus_id' (or a "
        f"one-column 'Label'). Keys present: {', '.join(keys)}."
    )


def _split_columns(bdata, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """The ``DataType``, ``Run`` and stimulus label columns, each (n,), and the label's key."""
    _require_keys(bdata, path, ("DataType", "Run"))
    label_key = _label_key(bdata, path)
    datatype = _column(bdata, "DataType", path)
    runs = _column(bdata, "Run", path)
    labels = _column(bdata, label_key, path)
    return datatype, runs, labels, label_key


def _require_keys(bdata, path: Path, keys: Iterable[str]) -> None:
    present = _keys(bdata)
    missing = [k for k in keys if k not in present]
    if missing:
        raise ValueError(
            f"{path}: metadata key(s) {', '.join(missing)} not found; keys present: "
            f"{', '.join(present)}."
        )


def roi_voxel_counts(bdata) -> dict[str, int]:
    """Voxel count of every ``ROI_<name>`` flag in a BData, ``{name: count}`` (file order)."""
    counts = {}
    for k in _keys(bdata):
        if k.startswith("ROI_"):
            counts[k[len("ROI_"):]] = int(np.sum(bdata.get_metadata(k) == 1))
    return counts


def _roi_voxels(bdata, roi: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Voxels of an ROI, shape (n, v), and their dataset column indices, shape (v,)."""
    key = f"ROI_{roi}"
    if key not in _keys(bdata):
        present = roi_voxel_counts(bdata)
        listing = ", ".join(f"{r} ({n} voxels)" for r, n in present.items()) or "none"
        raise ValueError(
            f"{path}: ROI {roi!r} absent (no metadata key {key!r}); ROIs present: {listing}."
        )
    x, index = bdata.select(f"{key} = 1", return_index=True)
    if x.shape[1] == 0:
        raise ValueError(f"{path}: ROI {roi!r} has 0 voxels.")
    return x, np.flatnonzero(index)


def _check_finite(
    x: np.ndarray,
    what: str,
    path: Path,
    datatype: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> None:
    """ValueError saying how many NaN/Inf values ``x`` has and where.

    ``datatype`` (n,) names the split of the bad rows; ``columns`` (v,) gives the dataset
    column of each column of ``x``.
    """
    bad = ~np.isfinite(x)
    if not bad.any():
        return
    if x.ndim == 1:
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{path}: {bad.sum()} NaN/Inf value(s) in {what}, at sample(s) (0-based rows) "
            f"{_head(rows.tolist())}."
        )
    rows, cols = np.flatnonzero(bad.any(axis=1)), np.flatnonzero(bad.any(axis=0))
    n_nan, n_inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
    where = ""
    if datatype is not None:
        names = {v: k for k, v in DATATYPES.items()}
        kinds = {}
        for v in datatype[rows].tolist():
            name = names.get(v, f"DataType {v}")
            kinds[name] = kinds.get(name, 0) + 1
        where = " (" + ", ".join(f"{k}: {n}" for k, n in kinds.items()) + ")"
    col_text = f"columns {_head(cols.tolist())}"
    if columns is not None:
        col_text = f"dataset columns {_head(np.asarray(columns)[cols].tolist())}"
    raise ValueError(
        f"{path}: {n_nan} NaN and {n_inf} Inf value(s) in {what}: {len(cols)} voxel(s) "
        f"({col_text}) in {len(rows)} sample(s) (0-based rows {_head(rows.tolist())}){where}. "
        "Drop or impute them before decoding."
    )


def _head(items: list, n: int = 10) -> str:
    text = ", ".join(map(str, items[:n]))
    return text + (f", … ({len(items)} in all)" if len(items) > n else "")


# --------------------------------------------------------------------------- labels


def decode_label(label: float, category_only: bool = False) -> tuple[str, str]:
    """GOD stimulus id → ``(wnid, image_id)``.

    ``1518878.005958`` → ``("n01518878", "n01518878_5958")``. With ``category_only``
    (imagery trials), the image id is the wnid.

    Raises
    ------
    ValueError
        When the label is not a positive finite number with an 8-digit-or-less offset, or
        (unless ``category_only``) has no image number.
    """
    value = float(label)
    if not np.isfinite(value) or value <= 0 or value >= 1e8:
        raise ValueError(f"Invalid GOD stimulus label {label!r}; expected e.g. 1518878.005958.")
    offset = int(np.floor(value))
    wnid = f"n{offset:08d}"
    if category_only:
        return wnid, wnid
    number = int(round((value - offset) * 1e6))
    if number <= 0:
        raise ValueError(
            f"GOD stimulus label {label!r} has no image number (expected wnid offset + "
            "image number / 10**6, e.g. 1518878.005958)."
        )
    return wnid, f"{wnid}_{number}"


def _decode_all(labels: np.ndarray, category_only: bool, path: Path) -> tuple[list[str], list[str]]:
    cache: dict[float, tuple[str, str]] = {}
    wnids, image_ids = [], []
    for v in labels.tolist():
        if v not in cache:
            try:
                cache[v] = decode_label(v, category_only)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        w, i = cache[v]
        wnids.append(w)
        image_ids.append(i)
    return wnids, image_ids


# --------------------------------------------------------------------------- preprocessing


def zscore_by_run(x: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Z-score each column within each group of rows (``sklearn.preprocessing.scale``).

    Parameters
    ----------
    x : ndarray, shape (n, v)
    groups : ndarray, shape (n,) or (n, k)
        Group of each row (the run); rows with equal values are scaled together.

    Returns
    -------
    ndarray, shape (n, v), float64
        Mean 0, standard deviation 1 (ddof=0) per group and column; a constant column
        within a group becomes 0.
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty_like(x)
    groups = np.asarray(groups)
    keys = groups.reshape(len(groups), -1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    for g in np.unique(inverse):
        rows = inverse.ravel() == g
        block = x[rows]
        mean = block.mean(axis=0)
        std = block.std(axis=0)
        std[std == 0] = 1.0
        out[rows] = (block - mean) / std
    return out


def _average(x: np.ndarray, keys: Sequence[str], *others: np.ndarray):
    """Mean of rows sharing a key, keys sorted; other arrays take their first row's value."""
    keys_arr = np.asarray(keys)
    uniq, first, inverse, counts = np.unique(keys_arr, return_index=True, return_inverse=True,
                                             return_counts=True)
    sums = np.zeros((len(uniq), x.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.ravel(), x)
    mean = sums / counts[:, None]
    return mean, uniq.tolist(), first, counts, [o[first] for o in others]


# --------------------------------------------------------------------------- public API


def load(
    data_dir: str | Path,
    subject: int,
    roi: str,
    split: str,
    zscore: bool = True,
    average: bool = True,
) -> GODSample:
    """Read one subject's voxels of one ROI for one split.

    Parameters
    ----------
    data_dir : path
        GOD-layout folder (``<data_dir>/fMRI/GOD/SubjectN.h5``).
    subject : int
        N of SubjectN.h5 (1..5 on GOD).
    roi : str
        One of V1 V2 V3 V4 LOC FFA PPA LVC HVC VC.
    split : str
        ``train`` (DataType 1), ``test`` (2) or ``imagery`` (3).
    zscore : bool
        Z-score each voxel within each run (the ``Run`` key, over the split's samples: a
        GOD run holds one data type), before averaging.
    average : bool
        Average test presentations per image (rows sorted by image id) and imagery trials
        per category (rows sorted by wnid). Training rows are kept as they are, in file order.

    Returns
    -------
    GODSample
        ``voxels`` shape (n, v) float32.

    Raises
    ------
    ValueError
        Unknown subject/roi/split; not a BData file; ROI absent (lists those present);
        NaN/Inf voxels (how many, where); missing keys; bad labels; no sample of the split.
    FileNotFoundError
        The subject's file is missing (says where it goes and where to get it).

    A folder that holds the Kamitani npz package (``sbj_N.npz``, ``dataset=god-npz``) and
    no BData is read by :func:`sbd.data.god_npz.load`, which gives the same samples.
    """
    if layout.is_npz_package(data_dir):
        from sbd.data import god_npz

        return god_npz.load(data_dir, subject, roi, split, zscore=zscore, average=average)
    _check_split(split)
    _check_roi(roi)
    subject = _check_subject(data_dir, subject)
    path = layout.fmri_file(data_dir, subject)
    if not path.is_file():
        raise _missing_file_error(data_dir, subject)
    x, runs, labels, wnids, image_ids = _read_split(read_bdata(path), path, roi, split, zscore)
    n_trials = np.ones(len(labels), dtype=int)
    if average and split in ("test", "imagery"):
        keys = image_ids if split == "test" else wnids
        x, uniq, first, n_trials, (runs, labels) = _average(x, keys, runs, labels)
        wnids = [wnids[i] for i in first]
        image_ids = [image_ids[i] for i in first]
    return GODSample(
        voxels=np.ascontiguousarray(x, dtype=np.float32),
        wnids=list(wnids),
        image_ids=list(image_ids),
        labels=np.asarray(labels, dtype=np.float64),
        runs=np.asarray(runs, dtype=int),
        split=split,
        subject=subject,
        roi=roi,
        n_trials=np.asarray(n_trials, dtype=int),
    )


def _read_split(bdata, path: Path, roi: str, split: str, zscore: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], list[str]]:
    """One split's checked rows, in file order: voxels of ``roi`` (n, v) (z-scored within
    each run when ``zscore``), runs (n,) int, labels (n,), wnids and image ids."""
    datatype, runs, labels, label_key = _split_columns(bdata, path)
    _check_finite(datatype, "DataType", path)
    x_all, columns = _roi_voxels(bdata, roi, path)
    _check_finite(x_all, f"ROI {roi} voxels", path, datatype=datatype, columns=columns)

    rows = datatype == DATATYPES[split]
    if not rows.any():
        found = sorted({int(v) for v in datatype.tolist()})
        raise ValueError(
            f"{path}: no {split} samples (DataType {DATATYPES[split]}); DataType values "
            f"present: {found} (1 train, 2 test, 3 imagery)."
        )
    runs, labels = runs[rows], labels[rows]
    _check_finite(runs, f"Run of the {split} samples", path)
    _check_finite(labels, f"{label_key} of the {split} samples", path)
    x = x_all[rows]
    if zscore:
        x = zscore_by_run(x, runs)  # a run holds one DataType: the paper's per-run scaling
    wnids, image_ids = _decode_all(labels, split == "imagery", path)
    return x, runs.astype(int), labels, wnids, image_ids


def _image_list_paths(data_dir: str | Path, stimulus_set: str) -> list[Path]:
    """Where the image list of a stimulus set may be: ours/the image package's, then GOD repo's."""
    return [
        layout.image_list_csv(data_dir, stimulus_set),
        layout.images_dir(data_dir) / f"imageID_{stimulus_set}.csv",
        layout.fmri_file(data_dir, 1).parent / f"imageID_{stimulus_set}.csv",
    ]


def read_image_list(data_dir: str | Path, stimulus_set: str):
    """GOD's image list of a stimulus set (``training`` or ``test``).

    Reads ``image_<set>_id.csv`` (or GOD's ``imageID_<set>.csv``): no header, rows
    ``1518878.010042,"n01518878_10042.JPEG"``.

    Returns
    -------
    pandas.DataFrame or None
        Columns ``label`` (float64), ``filename``, ``image_id``, ``wnid``; ``attrs["path"]``
        is the file read. None when no list exists.

    Raises
    ------
    ValueError
        When the file is not in that form (names the file and the line).
    """
    import pandas as pd

    layout.images_dir(data_dir, stimulus_set)  # validates stimulus_set
    path = next((p for p in _image_list_paths(data_dir, stimulus_set) if p.is_file()), None)
    if path is None:
        return None
    df = pd.read_csv(path, header=None, dtype=str, skipinitialspace=True)
    if df.shape[1] < 2:
        raise ValueError(
            f"{path}: expected two columns, GOD stimulus id and file name "
            '(e.g. 1518878.010042,"n01518878_10042.JPEG"); found {df.shape[1]}.'
        )
    try:
        float(df.iloc[0, 0])
    except ValueError:
        df = df.iloc[1:]  # a header row
    rows = []
    for line, (lab, fname) in enumerate(zip(df.iloc[:, 0], df.iloc[:, 1]), start=1):
        try:
            value = float(lab)
            wnid, image_id = decode_label(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}, row {line}: bad stimulus id {lab!r} ({exc}).") from None
        fname = str(fname).strip()
        stem = Path(fname).stem
        if stem != image_id:
            raise ValueError(
                f"{path}, row {line}: stimulus id {lab} is image {image_id}, but the file "
                f"name is {fname!r}."
            )
        rows.append((value, fname, image_id, wnid))
    out = pd.DataFrame(rows, columns=["label", "filename", "image_id", "wnid"])
    out.attrs["path"] = str(path)
    return out


def _image_index(folder: Path) -> dict[str, Path]:
    index: dict[str, Path] = {}
    if folder.is_dir():
        for entry in os.scandir(folder):
            stem, ext = os.path.splitext(entry.name)
            if ext.lower() in IMAGE_EXTENSIONS and entry.is_file():
                # prefer GOD's .JPEG when several files share a stem
                if stem not in index or ext == ".JPEG":
                    index[stem] = Path(entry.path)
    return index


def stimulus_paths(
    data_dir: str | Path, image_ids: Sequence[str], stimulus_set: str
) -> tuple[list[Path | None], list[str]]:
    """Stimulus image file of each image id, under ``fMRI/imagenet/images/<stimulus_set>/``.

    Parameters
    ----------
    image_ids : sequence of str, length n
        ``"n01518878_5958"`` (files ``<image_id>.JPEG``; .jpg/.jpeg/.png accepted).
    stimulus_set : str
        ``training`` or ``test``.

    Returns
    -------
    paths : list of (Path or None), length n
        None where the file is missing.
    missing : list of str
        The missing image ids, each once, in order of first appearance.
    """
    folder = layout.images_dir(data_dir, stimulus_set)
    index = _image_index(folder)
    paths: list[Path | None] = [index.get(i) for i in image_ids]
    missing = list(dict.fromkeys(i for i, p in zip(image_ids, paths) if p is None))
    return paths, missing


def validate(data_dir: str | Path, min_train_fraction: float = 0.5) -> dict:
    """Check a GOD-layout folder and report what it holds and what is missing.

    Every stimulus image is read (:func:`sbd.data.images.read_image`); unreadable ones are
    recorded in ``<data_dir>/skipped_images.csv`` and count as missing.  A partial stimulus
    set is a warning, not a problem: training samples without an image will be left out of
    training, test samples without one are still decoded (labels need only the wnid) and
    left out of the image-based metrics.  It is a problem when fewer than
    ``min_train_fraction`` of a subject's training samples keep their image.

    Returns
    -------
    dict
        ``ok`` (no problem), ``data_dir``, ``problems`` (all, each naming its subject/file),
        ``warnings``, ``image_lists`` (per stimulus set: path, number of images),
        ``images`` (per stimulus set: folder, number of readable files, ``n_unreadable``),
        ``unreadable_images`` (per stimulus set: image id → reason), ``missing_images``
        (per stimulus set, union over subjects), and ``subjects``: per subject (str key)
        ``file``, ``rois`` (``{roi: voxel count}``), ``samples`` (train/test/imagery
        counts), ``images`` (distinct train/test images, imagery categories), ``runs``
        (distinct runs per split), ``missing_images`` (per stimulus set, unreadable
        included), ``samples_without_image`` (train/test counts), ``problems``,
        ``warnings``.
    """
    data_dir = Path(data_dir)
    report: dict = {"data_dir": str(data_dir), "subjects": {}, "problems": [], "warnings": []}

    lists = _validate_image_lists(data_dir, report)
    indexes = _validate_stimulus_images(data_dir, report)

    present = layout.fmri_subjects(data_dir)
    if not present:
        report["problems"].append(
            f"no fMRI files in {layout.fmri_file(data_dir, 1).parent}: GOD's go in "
            f"<data_dir>/fMRI/GOD/SubjectN.h5; download them from figshare 7387130: {FIGSHARE}"
            + (f". {data_dir} holds the Kamitani npz package (sbj_N.npz): use "
               "dataset=god-npz" if layout.is_npz_package(data_dir) else "")
        )
    absent = [s for s in GOD_SUBJECTS if s not in present]
    if present and absent:
        report["warnings"].append(
            f"subjects {', '.join(map(str, absent))} absent "
            "(GOD has 1-5; only those present are used)."
        )
    missing_all: dict[str, list[str]] = {s: [] for s in layout.STIMULUS_SETS}
    for subject in present:
        sub = _validate_subject(data_dir, subject, lists, indexes, min_train_fraction)
        report["subjects"][str(subject)] = sub
        report["problems"].extend(f"subject {subject}: {p}" for p in sub["problems"])
        report["warnings"].extend(f"subject {subject}: {w}" for w in sub["warnings"])
        for sset, ids in sub.get("missing_images", {}).items():
            missing_all[sset].extend(ids)
    report["missing_images"] = {s: sorted(set(v)) for s, v in missing_all.items()}
    report["ok"] = not report["problems"]
    return report


def _validate_image_lists(data_dir: Path, report: dict) -> dict:
    """The stimulus sets' image-id lists (``None`` where absent, a warning); fills
    ``report["image_lists"]``."""
    lists = {}
    report["image_lists"] = {}
    for sset in layout.STIMULUS_SETS:
        try:
            df = read_image_list(data_dir, sset)
        except ValueError as exc:
            report["problems"].append(str(exc))
            df = None
        else:
            if df is None:
                report["warnings"].append(
                    f"no image list {layout.image_list_csv(data_dir, sset)} (optional). "
                    + IMAGES_HELP
                )
        lists[sset] = df
        report["image_lists"][sset] = (
            {"path": df.attrs["path"], "n": len(df)} if df is not None else None
        )
    return lists


def _validate_stimulus_images(data_dir: Path, report: dict) -> dict[str, dict[str, Path]]:
    """Every stimulus image read once, as extract_features will (an unreadable one is
    recorded in ``skipped_images.csv`` and counts as missing); the readable ones by image
    id per stimulus set.  Fills ``report["images"]`` and ``report["unreadable_images"]``."""
    report["images"] = {}
    report["unreadable_images"] = {}
    indexes = {}
    record = SkippedImages(data_dir)
    for sset in layout.STIMULUS_SETS:
        folder = layout.images_dir(data_dir, sset)
        indexes[sset] = _image_index(folder)
        # every image read once, as extract_features will: an unreadable one counts as missing
        bad = {i: try_read_image(p)[1] for i, p in indexes[sset].items()}
        bad = {i: r for i, r in bad.items() if r}
        record.add_many([(indexes[sset][i], r) for i, r in bad.items()], "prepare_data")
        report["unreadable_images"][sset] = {i: bad[i] for i in sorted(bad)}
        for i in bad:
            del indexes[sset][i]
        report["images"][sset] = {"folder": str(folder), "n": len(indexes[sset]),
                                  "n_unreadable": len(bad)}
        if not folder.is_dir():
            report["problems"].append(f"stimulus image folder {folder} not found. {IMAGES_HELP}")
        elif bad:
            report["warnings"].append(
                f"{len(bad)} {sset} stimulus image(s) in {folder} cannot be read (e.g. "
                f"{_head([f'{i}: {r}' for i, r in bad.items()], 3)}); listed in "
                f"{record.path}.")
    return indexes


def _validate_subject(data_dir: Path, subject: int, lists: dict, indexes: dict,
                      min_train_fraction: float = 0.5) -> dict:
    path = layout.fmri_file(data_dir, subject)
    sub: dict = {"file": str(path), "problems": [], "warnings": [],
                 "samples_without_image": {}}
    try:
        bdata = read_bdata(path)
        datatype, runs, labels, label_key = _split_columns(bdata, path)
    except (ValueError, FileNotFoundError) as exc:
        sub["problems"].append(str(exc))
        return sub
    sub["label_key"] = label_key
    sub["n_samples"] = int(len(datatype))
    _validate_rois(sub, bdata, datatype, path)
    sub["samples"], sub["images"], sub["runs"] = {}, {}, {}
    sub["missing_images"] = {s: [] for s in layout.STIMULUS_SETS}
    for split, code in DATATYPES.items():
        rows = np.isfinite(datatype) & (datatype == code)
        sub["samples"][split] = int(rows.sum())
        sub["runs"][split] = int(len(np.unique(runs[rows][np.isfinite(runs[rows])])))
        if not rows.any():
            sub["images"][split] = 0
            sub["problems"].append(f"no {split} samples (DataType {code}).")
            continue
        try:
            _check_finite(runs[rows], f"Run of the {split} samples", path)
            _check_finite(labels[rows], f"{label_key} of the {split} samples", path)
            wnids, image_ids = _decode_all(labels[rows], split == "imagery", path)
        except ValueError as exc:
            sub["problems"].append(str(exc))
            sub["images"][split] = None
            continue
        sub["images"][split] = len(set(image_ids))
        if split != "imagery":
            _validate_split_images(sub, data_dir, split, image_ids, lists, indexes,
                                   min_train_fraction)
    return sub


def _validate_rois(sub: dict, bdata, datatype: np.ndarray, path: Path) -> None:
    """ROI voxel counts into ``sub["rois"]`` (GOD's order first); absent or empty ROIs and
    NaN/Inf voxels or DataType values into ``sub["problems"]``."""
    rois = roi_voxel_counts(bdata)
    sub["rois"] = {r: rois[r] for r in ROIS if r in rois} | {
        r: n for r, n in rois.items() if r not in ROIS
    }
    absent = [r for r in ROIS if r not in rois]
    if absent:
        sub["problems"].append(
            f"ROIs absent: {', '.join(absent)} (present: {', '.join(rois) or 'none'})."
        )
    empty = [r for r, n in rois.items() if n == 0]
    if empty:
        sub["problems"].append(f"ROIs with 0 voxels: {', '.join(empty)}.")
    try:
        if rois:
            voxels, index = bdata.select("ROI_* = 1", return_index=True)
            _check_finite(voxels, "ROI voxels", path, datatype=datatype,
                          columns=np.flatnonzero(index))
        _check_finite(datatype, "DataType", path)
    except ValueError as exc:
        sub["problems"].append(str(exc))


def _validate_split_images(sub: dict, data_dir: Path, split: str, image_ids: list[str],
                           lists: dict, indexes: dict, min_train_fraction: float) -> None:
    """The stimulus images of a perception split's samples (``image_ids``, one per sample):
    missing or unreadable ones (a problem for training below ``min_train_fraction``, else
    a warning) and ones the image list does not hold (a problem)."""
    n_rows = len(image_ids)
    uniq = sorted(set(image_ids))
    sset = STIMULUS_SET_OF_SPLIT[split]
    missing = [i for i in uniq if i not in indexes[sset]]
    sub["missing_images"][sset] = missing
    n_without = int(np.isin(np.asarray(image_ids), missing).sum())
    sub["samples_without_image"][split] = n_without
    if missing:
        what = (f"{len(missing)} of {len(uniq)} {sset} stimulus images missing or "
                f"unreadable in {layout.images_dir(data_dir, sset)} (e.g. "
                f"{_head(missing, 5)}): {n_without} of {n_rows} {split} samples")
        n_kept = n_rows - n_without
        if split == "train" and n_kept < min_train_fraction * n_rows:
            sub["problems"].append(
                f"{what} have no image, leaving {n_kept}: below min_train_fraction="
                f"{min_train_fraction:g}. {IMAGES_HELP}")
        elif split == "train":
            sub["warnings"].append(f"{what} will be left out of training.")
        else:
            sub["warnings"].append(
                f"{what} are still decoded (labels need only the wnid) and left out of "
                "the image-based metrics.")
    df = lists.get(sset)
    if df is not None:
        not_listed = sorted(set(uniq) - set(df["image_id"]))
        if not_listed:
            sub["problems"].append(
                f"{len(not_listed)} {split} images not in {df.attrs['path']} "
                f"(e.g. {_head(not_listed, 5)})."
            )
