"""Whether a cached run still describes what is on disk (``still_valid`` checks of
:func:`sbd.tracking.get_or_run`, used by ``main``), and the on-disk identity of a Kamitani
npz package (:func:`npz_package_key`, tagged by ``prepare_data``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from sbd.data.layout import STIMULUS_SETS, features_file, image_list_csv

__all__ = ["PACKAGE_KEY_TAG", "FMRI_KEY_TAG", "npz_package_key", "data_unchanged",
           "features_exist"]

PACKAGE_KEY_TAG = "sbd.data.package_key"
FMRI_KEY_TAG = "sbd.data.fmri_key"


def npz_package_key(root: str | Path) -> str:
    """The identity of the Kamitani npz package in ``root`` as it is on disk: a hash of the
    names, sizes and modification times of its files (``sbj_N.npz``, ``images_256.npz``,
    the label CSVs; a missing one counts as such). Cheap: no file is read."""
    import hashlib

    from sbd.data import layout

    root = Path(root)
    names = [layout.npz_subject_file(root, s).name for s in layout.npz_subjects(root)]
    h = hashlib.sha256()
    for name in names + [layout.NPZ_IMAGES, *layout.NPZ_LABEL_CSVS.values()]:
        path = root / name
        st = path.stat() if path.is_file() else None
        h.update(f"{name}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1};".encode())
    return h.hexdigest()[:16]


def features_exist(root: str | Path, backbone: str) -> Callable[[Any], bool]:
    """A cached ``extract_features`` run counts only while its feature files still exist."""
    def check(run) -> bool:
        return all(features_file(root, backbone, s).is_file()
                   for s in ("training", "test", "bank"))

    return check


def data_unchanged(dataset: str, root: str | Path) -> Callable[[Any], bool] | None:
    """A check that a cached ``prepare_data`` run still describes the data on disk.  The
    phantom: one data folder holds one build, and a run with other params (e.g. ``snr``)
    rebuilds it.  A Kamitani npz package (god-npz): its files are those the run validated
    (names, sizes, times) and the stimulus images it wrote out are still listed.  None
    (always valid) for GOD."""
    if dataset == "god-npz":
        def check_npz(run) -> bool:
            return (run.data.tags.get(PACKAGE_KEY_TAG) == npz_package_key(root)
                    and all(image_list_csv(root, s).is_file() for s in STIMULUS_SETS))

        return check_npz
    if dataset != "phantom":
        return None

    def check(run) -> bool:
        from sbd.data import phantom

        manifest = phantom.read_manifest(root) or {}
        return run.data.tags.get(FMRI_KEY_TAG) == manifest.get("fmri_key")

    return check
