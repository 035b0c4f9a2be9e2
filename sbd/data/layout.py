"""Where things live in a GOD-layout data folder (real GOD and the phantom alike).

::

    <data_dir>/fMRI/GOD/Subject1.h5 … SubjectN.h5       BData files
    <data_dir>/fMRI/imagenet/images/training/*.JPEG     stimulus images (training)
    <data_dir>/fMRI/imagenet/images/test/*.JPEG         stimulus images (test)
    <data_dir>/fMRI/imagenet/images/image_{training,test}_id.csv
    <data_dir>/imagenet/train/<wnid>/*.JPEG              labelled bank images (ILSVRC layout)
    <data_dir>/features/<backbone>/{training,test,bank}.h5   extracted features (sbd output)
"""

from __future__ import annotations

from pathlib import Path

DATASETS = ("phantom", "god")
DEFAULT_DATA_DIRS = {"phantom": "data/phantom", "god": "data"}
SPLITS = ("train", "test", "imagery")
STIMULUS_SETS = ("training", "test")


def resolve_data_dir(dataset: str, data_dir: str | Path | None = None) -> Path:
    """The data folder of ``dataset``: ``data_dir`` when given, else its default."""
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset={dataset!r}; valid: {', '.join(DATASETS)}.")
    if data_dir in (None, ""):
        data_dir = DEFAULT_DATA_DIRS[dataset]
    return Path(data_dir)


def fmri_file(data_dir: str | Path, subject: int) -> Path:
    return Path(data_dir) / "fMRI" / "GOD" / f"Subject{int(subject)}.h5"


def images_dir(data_dir: str | Path, stimulus_set: str | None = None) -> Path:
    root = Path(data_dir) / "fMRI" / "imagenet" / "images"
    if stimulus_set is None:
        return root
    if stimulus_set not in STIMULUS_SETS:
        raise ValueError(f"Unknown stimulus_set={stimulus_set!r}; valid: {', '.join(STIMULUS_SETS)}.")
    return root / stimulus_set


def image_list_csv(data_dir: str | Path, stimulus_set: str) -> Path:
    return images_dir(data_dir) / f"image_{stimulus_set}_id.csv"


def bank_dir(data_dir: str | Path) -> Path:
    return Path(data_dir) / "imagenet" / "train"


def features_dir(data_dir: str | Path, backbone: str) -> Path:
    return Path(data_dir) / "features" / backbone


def features_file(data_dir: str | Path, backbone: str, source: str) -> Path:
    """``source`` is ``training``, ``test`` (stimulus features) or ``bank``."""
    if source not in ("training", "test", "bank"):
        raise ValueError(f"Unknown features source={source!r}; valid: training, test, bank.")
    return features_dir(data_dir, backbone) / f"{source}.h5"
