"""The ``prepare_data`` step: build the phantom dataset, or validate a real GOD folder.

``dataset=phantom``: :func:`sbd.data.phantom.build` (a no-op when the folder already holds
the same build); logs the manifest (``data/phantom_manifest.json``), the sizes as metrics
(``data/n_train_images``…) and tags ``sbd.data.reused`` / ``sbd.data.images_reused`` and
``sbd.data.image_key`` / ``sbd.data.fmri_key`` (the build's identity: one ``data_dir`` holds
one build at a time, so a cached run is valid only while they match the manifest on disk).

``dataset=god``: :func:`sbd.data.god.validate`; logs the report as ``data/validation.json``
and ``data/validation.txt`` (per subject: ROIs with voxel counts, train/test/imagery sample
counts, missing images) and raises :class:`DataProblem` (the run fails, the entry point
exits non-zero) when the report lists a problem.

``dataset=god-npz``: :func:`sbd.data.god_npz.validate` on a Kamitani npz package folder
(``sbj_N.npz``, ``images_256.npz``, label CSVs), logged the same way (each subject's
normalisation as measured, tag ``sbd.data.normalisation``); when it is valid,
:func:`sbd.data.god_npz.write_images` writes the stimulus images out in the GOD layout in
the same folder (a no-op when already written; tag ``sbd.data.images_reused``); tag
``sbd.data.package_key`` (:func:`npz_package_key`: a cached run is valid only while it matches
the package on disk).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow

from sbd import tracking
from sbd.data.layout import DATASETS, resolve_data_dir

log = logging.getLogger(__name__)

PACKAGE_KEY_TAG = "sbd.data.package_key"


class DataProblem(RuntimeError):
    """A GOD folder that cannot be used as it is (the message lists what is wrong)."""


def report_text(report: dict[str, Any]) -> str:
    """The GOD validation report (:func:`sbd.data.god.validate`) as readable text."""
    lines = [f"GOD data folder: {report.get('data_dir')}",
             f"status: {'OK' if report.get('ok') else 'PROBLEMS'}", ""]
    for sset, info in (report.get("image_lists") or {}).items():
        lines.append(f"image list {sset}: " + (f"{info['n']} images ({info['path']})" if info
                                               else "absent"))
    for sset, info in (report.get("images") or {}).items():
        lines.append(f"image folder {sset}: {info['n']} files ({info['folder']})")
    for sid, sub in sorted((report.get("subjects") or {}).items(), key=lambda kv: int(kv[0])):
        lines += ["", f"subject {sid}: {sub.get('file')}"]
        if sub.get("rois"):
            lines.append("  ROIs (voxels): "
                         + ", ".join(f"{r} {n}" for r, n in sub["rois"].items()))
        if sub.get("samples"):
            lines.append("  samples: " + ", ".join(f"{k} {v}" for k, v in sub["samples"].items()))
        if sub.get("images"):
            lines.append("  distinct images/categories: "
                         + ", ".join(f"{k} {v}" for k, v in sub["images"].items()))
        for sset, ids in (sub.get("missing_images") or {}).items():
            if ids:
                lines.append(f"  missing {sset} images: {len(ids)} (e.g. {', '.join(ids[:5])})")
        if sub.get("normalisation"):
            lines.append(f"  normalisation: {sub['normalisation']['verdict']}")
        for p in sub.get("problems", []):
            lines.append(f"  PROBLEM: {p}")
    if report.get("warnings"):
        lines += ["", "warnings:"] + [f"  - {w}" for w in report["warnings"]]
    if report.get("problems"):
        lines += ["", "problems:"] + [f"  - {p}" for p in report["problems"]]
    return "\n".join(lines) + "\n"


def _log_text(name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        mlflow.log_artifact(str(path), artifact_path="data")


def _phantom(root: Path, preset: str, snr: float | None, seed: int,
             n_subjects: int | None, progress: bool) -> None:
    from sbd.data import phantom

    from sbd.data.locks import folder_lock

    # a second run on this folder waits for the first's build, then reuses it if it matches
    with folder_lock(root, "phantom"):
        before = phantom.read_manifest(root)
        manifest = phantom.build(root, preset=preset, snr=snr, seed=seed,
                                 n_subjects=n_subjects, progress=progress)
    reused = before is not None and before.get("created") == manifest.get("created")
    sizes = manifest["sizes"]
    mlflow.log_metrics({
        "data/n_categories_available": sizes["categories_available"],
        "data/n_train_categories": sizes["train_categories"],
        "data/n_test_categories": sizes["test_categories"],
        "data/n_bank_categories": sizes["bank_categories"],
        "data/n_train_images": sizes["train_images"],
        "data/n_test_images": sizes["test_images"],
        "data/n_bank_images": sizes["bank_images"],
        "data/n_trials": sizes["trials"],
        "data/n_subjects": len(sizes["subjects"]),
        "data/build_seconds": manifest["build_seconds"] if not reused else 0.0,
        "data/snr": manifest["params"]["snr"],
    })
    mlflow.set_tags({"sbd.data.reused": str(reused).lower(),
                     "sbd.data.images_reused": str(bool(manifest.get("images_reused"))).lower(),
                     "sbd.data.manifest": str((root / phantom.MANIFEST_NAME).resolve()),
                     # what is on disk: a cached run is still valid only while these match
                     # phantom.read_manifest(data_dir)
                     "sbd.data.image_key": manifest["image_key"],
                     "sbd.data.fmri_key": manifest["fmri_key"]})
    _log_text(phantom.MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True))
    log.info("phantom %s in %s (%d train / %d test categories, %d subjects)",
             "reused" if reused else "built", root, sizes["train_categories"],
             sizes["test_categories"], len(sizes["subjects"]))


def _god(root: Path) -> None:
    from sbd.data import god

    report = god.validate(root)
    text = report_text(report)
    _log_text("validation.json", json.dumps(report, indent=1, sort_keys=True, default=str))
    _log_text("validation.txt", text)
    subjects = report.get("subjects") or {}
    mlflow.log_metrics({"data/n_subjects": len(subjects),
                        "data/n_problems": len(report.get("problems", [])),
                        "data/n_missing_images": sum(
                            len(v) for v in (report.get("missing_images") or {}).values()),
                        "data/n_unreadable_images": sum(
                            len(v) for v in (report.get("unreadable_images") or {}).values()),
                        **{f"data/n_{split}_trials_without_image": sum(
                            s.get("samples_without_image", {}).get(split, 0)
                            for s in subjects.values()) for split in ("train", "test")}})
    mlflow.set_tag("sbd.data.valid", str(bool(report.get("ok"))).lower())
    log.info("%s", text)
    if not report.get("ok"):
        raise DataProblem(f"GOD data in {root} has {len(report['problems'])} problem(s):\n"
                          + "\n".join(f"- {p}" for p in report["problems"])
                          + "\n(full report: run artifact data/validation.txt)")


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


def _god_npz(root: Path) -> None:
    from sbd.data import god_npz

    report = god_npz.validate(root)
    text = report_text(report)
    _log_text("validation.json", json.dumps(report, indent=1, sort_keys=True, default=str))
    _log_text("validation.txt", text)
    subjects = report.get("subjects") or {}
    images = report.get("images") or {}
    mlflow.log_metrics({"data/n_subjects": len(subjects),
                        "data/n_problems": len(report.get("problems", [])),
                        **{f"data/n_{sset}_images": info["n"] for sset, info in images.items()}})
    norms = [s["normalisation"]["zscored"] for s in subjects.values() if "normalisation" in s]
    mlflow.set_tags({"sbd.data.valid": str(bool(report.get("ok"))).lower(),
                     "sbd.data.normalisation": (
                         "z-scored per voxel (used as it is)" if norms and all(norms) else
                         "not z-scored per voxel: z-scored over each split when loaded"
                         if norms and not any(norms) else "mixed" if norms else "unknown")})
    log.info("%s", text)
    if not report.get("ok"):
        raise DataProblem(f"Kamitani npz package in {root} has {len(report['problems'])} "
                          "problem(s):\n" + "\n".join(f"- {p}" for p in report["problems"])
                          + "\n(full report: run artifact data/validation.txt)")
    written = god_npz.write_images(root)
    mlflow.set_tags({"sbd.data.images_reused": str(not written["written"]).lower(),
                     PACKAGE_KEY_TAG: npz_package_key(root)})
    log.info("stimulus images %s in %s (%s)", "written" if written["written"] else "reused",
             written["folder"], ", ".join(f"{s}: {n} images, stored as {written['image_dtype'][s]}"
                                          for s, n in written["n_images"].items()))


def run(dataset: str = "phantom", data_dir: str = "", preset: str = "default",
        snr: float = -1.0, seed: int = 0, n_subjects: int = 0, progress: bool = True) -> str:
    """Prepare the data of ``dataset`` in ``data_dir`` (empty: its default); returns the run id.

    Parameters
    ----------
    dataset : ``phantom`` (build it), ``god`` (validate the folder) or ``god-npz``
        (validate a Kamitani npz package and write its stimulus images out).
    data_dir : data folder; empty → ``data/phantom``, ``data`` or ``data/god-npz``.
    preset : phantom preset (``default`` or ``small``).
    snr : phantom single-trial SNR; negative → the preset's (calibrated) value.
    seed : phantom seed.
    n_subjects : phantom subjects; 0 → the preset's.
    progress : tqdm bars.
    """
    if dataset not in DATASETS:
        raise ValueError(f"Unknown dataset={dataset!r}; valid: {', '.join(DATASETS)}.")
    root = resolve_data_dir(dataset, data_dir)
    params = dict(dataset=dataset, data_dir=str(root), preset=preset, snr=snr, seed=seed,
                  n_subjects=n_subjects)
    with tracking.step_run("prepare_data", params, tags=tracking.chain_tags(dataset)) as active:
        if dataset == "phantom":
            _phantom(root, preset, None if snr is None or snr < 0 else float(snr), int(seed),
                     int(n_subjects) or None, progress)
        elif dataset == "god-npz":
            _god_npz(root)
        else:
            _god(root)
        return active.info.run_id
