"""Where things live in a GOD-layout data folder (real GOD and the phantom alike).

::

    <data_dir>/fMRI/GOD/Subject1.h5 … SubjectN.h5       BData files
    <data_dir>/fMRI/imagenet/images/training/*.JPEG     stimulus images (training)
    <data_dir>/fMRI/imagenet/images/test/*.JPEG         stimulus images (test)
    <data_dir>/fMRI/imagenet/images/image_{training,test}_id.csv
    <data_dir>/imagenet/train/<wnid>/*.JPEG              labelled bank images (ILSVRC layout)
    <data_dir>/features/<backbone>/{training,test,bank}.h5   extracted features (sbd output)

The field's "Kamitani npz" GOD package (``dataset=god-npz``, :mod:`sbd.data.god_npz`) is a
folder of its own; sbd writes its stimulus images out into the layout above, in the same
folder::

    <data_dir>/sbj_1.npz … sbj_5.npz                    fMRI + ROI masks, one per subject
    <data_dir>/images_256.npz                           train_images, test_images
    <data_dir>/imagenet_{training,testing}_label.csv    GOD stimulus id of each image row
    <data_dir>/imagenet_class_index.json                (not needed by sbd)
"""

from __future__ import annotations

from pathlib import Path

DATASETS = ("phantom", "god", "god-npz")
DEFAULT_DATA_DIRS = {"phantom": "data/phantom", "god": "data", "god-npz": "data/god-npz"}
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


def fmri_subjects(data_dir: str | Path) -> list[int]:
    """The subjects N of the ``fMRI/GOD/SubjectN.h5`` files in ``data_dir``, sorted."""
    return _numbered(fmri_file(data_dir, 1).parent, "Subject", ".h5")


def _numbered(folder: Path, prefix: str, suffix: str) -> list[int]:
    """The N of the files ``<prefix>N<suffix>`` in ``folder``, sorted."""
    found = []
    if folder.is_dir():
        for p in folder.glob(f"{prefix}*{suffix}"):
            num = p.name[len(prefix):len(p.name) - len(suffix)]
            if num.isdigit():
                found.append(int(num))
    return sorted(found)


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


# --------------------------------------------------------------------------- Kamitani npz

NPZ_IMAGES = "images_256.npz"
NPZ_LABEL_CSVS = {"training": "imagenet_training_label.csv", "test": "imagenet_testing_label.csv"}
NPZ_CLASS_INDEX = "imagenet_class_index.json"


def npz_subject_file(data_dir: str | Path, subject: int) -> Path:
    """``<data_dir>/sbj_<subject>.npz`` of the Kamitani npz package."""
    return Path(data_dir) / f"sbj_{int(subject)}.npz"


def npz_subjects(data_dir: str | Path) -> list[int]:
    """The subjects N of the ``sbj_N.npz`` files in ``data_dir``, sorted."""
    return _numbered(Path(data_dir), "sbj_", ".npz")


def is_npz_package(data_dir: str | Path) -> bool:
    """Whether ``data_dir`` holds the Kamitani npz package (``sbj_N.npz``) and no GOD BData
    (``fMRI/GOD/SubjectN.h5``, which wins when both are there)."""
    if not npz_subjects(data_dir):
        return False
    bdata = fmri_file(data_dir, 1).parent
    return not (bdata.is_dir() and any(bdata.glob("Subject*.h5")))
