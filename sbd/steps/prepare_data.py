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
``sbd.data.package_key`` (:func:`sbd.data.freshness.npz_package_key`: a cached run is valid
only while it matches the package on disk). The report's text, metrics and tags:
:mod:`sbd.data.reports`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import mlflow

from sbd import tracking
from sbd.data import reports
from sbd.data.freshness import PACKAGE_KEY_TAG, npz_package_key
from sbd.data.layout import DATASETS, resolve_data_dir

log = logging.getLogger(__name__)


class DataProblem(RuntimeError):
    """A GOD folder that cannot be used as it is (the message lists what is wrong)."""


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
        **{f"data/n_{k}": sizes[k] for k in ("categories_available", "train_categories",
                                              "test_categories", "bank_categories",
                                              "train_images", "test_images", "bank_images",
                                              "trials")},
        "data/n_subjects": len(sizes["subjects"]),
        "data/build_seconds": manifest["build_seconds"] if not reused else 0.0,
        "data/snr": manifest["params"]["snr"]})
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


def _validate(root: Path, dataset: str) -> None:
    """Validate a GOD folder (``god``) or a Kamitani npz package (``god-npz``) and log the
    report (module doc); :class:`DataProblem` when it lists a problem. A valid npz package
    gets its stimulus images written out."""
    from sbd.data import god, god_npz

    report = (god_npz if dataset == "god-npz" else god).validate(root)
    text = reports.report_text(report)
    _log_text("validation.json", json.dumps(report, indent=1, sort_keys=True, default=str))
    _log_text("validation.txt", text)
    metrics, tags = reports.report_figures(report, dataset)
    mlflow.log_metrics(metrics)
    mlflow.set_tags(tags)
    log.info("%s", text)
    if not report.get("ok"):
        what = "Kamitani npz package" if dataset == "god-npz" else "GOD data"
        raise DataProblem(f"{what} in {root} has {len(report['problems'])} problem(s):\n"
                          + "\n".join(f"- {p}" for p in report["problems"])
                          + "\n(full report: run artifact data/validation.txt)")
    if dataset == "god-npz":
        written = god_npz.write_images(root)
        mlflow.set_tags({"sbd.data.images_reused": str(not written["written"]).lower(),
                         PACKAGE_KEY_TAG: npz_package_key(root)})
        log.info("stimulus images %s in %s (%s)", "written" if written["written"] else "reused",
                 written["folder"], ", ".join(f"{s}: {n} images, stored as "
                                              f"{written['image_dtype'][s]}"
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
        else:
            _validate(root, dataset)
        return active.info.run_id
