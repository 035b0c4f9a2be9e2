"""The ``extract_features`` step: stimulus features (ridge targets) and the labelled bank.

Writes ``<data_dir>/features/<backbone>/{training,test,bank}.h5`` (see
:mod:`sbd.features.extract`), logs per source and in total the metrics ``images_per_s``,
``n_images``, ``n_excluded``, ``n_failed``, and as artifacts: ``features/<source>.h5`` when
the file is at most ``max_artifact_mb`` (else only its location, in the tag
``sbd.features.<source>``), ``features/failed_<source>.csv`` and
``features/excluded_<source>.csv`` when there are any, and ``features/summary.json``.
"""

from __future__ import annotations

import csv
import json
import logging
import tempfile
from contextlib import nullcontext
from pathlib import Path

import mlflow

from sbd import tracking
from sbd.data.layout import resolve_data_dir
from sbd.data.locks import folder_lock
from sbd.params import as_bool
from sbd.features.backbones import check_circular, resolve_backbone
from sbd.features.extract import DEFAULT_EXCLUDE_THRESHOLD, SOURCES, ExtractResult, run_extraction

log = logging.getLogger(__name__)
BANK_IMPORTED_TAG = "sbd.features.bank_imported"


def imported_bank(root: Path, backbone: str) -> str:
    """What the bank of ``backbone`` in ``root`` was imported from (its ``imported_from``
    attribute), or "" when it was extracted here or does not exist yet."""
    from sbd.features.bank import FeatureBank
    from sbd.data.layout import features_file

    path = features_file(root, backbone, "bank")
    if not path.is_file():
        return ""
    with FeatureBank(path) as bank:
        return str(bank.attrs.get("imported_from") or "")


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _log_result(r: ExtractResult, max_artifact_mb: float, tmp: Path) -> dict:
    mlflow.log_metrics({f"{r.source}/images_per_s": r.images_per_s,
                        f"{r.source}/n_images": r.n_images,
                        f"{r.source}/n_features": r.n_features,
                        f"{r.source}/n_excluded": r.n_excluded,
                        f"{r.source}/n_failed": r.n_failed})
    summary = dict(source=r.source, path=str(r.path) if r.path else None, n_images=r.n_images,
                   n_features=r.n_features, n_failed=r.n_failed, n_excluded=r.n_excluded,
                   n_computed=r.n_computed, n_resumed=r.n_resumed, skipped=r.skipped,
                   seconds=round(r.seconds, 3), images_per_s=round(r.images_per_s, 3))
    if r.path is None:
        mlflow.set_tag(f"sbd.features.{r.source}", "pending: other shards not finished")
        return summary
    mlflow.set_tag(f"sbd.features.{r.source}", str(Path(r.path).resolve()))
    size_mb = Path(r.path).stat().st_size / 2**20
    summary["size_mb"] = round(size_mb, 3)
    if size_mb <= max_artifact_mb:
        mlflow.log_artifact(str(r.path), artifact_path="features")
        summary["artifact"] = f"features/{Path(r.path).name}"
    if r.failed:
        f = tmp / f"failed_{r.source}.csv"
        _write_csv(f, ["path", "error"], r.failed)
        mlflow.log_artifact(str(f), artifact_path="features")
    if r.excluded:
        cols = ["image_id", "wnid", "path", "reason", "matched_stimulus", "cosine"]
        f = tmp / f"excluded_{r.source}.csv"
        _write_csv(f, cols, [[e.get(c, "") for c in cols] for e in r.excluded])
        mlflow.log_artifact(str(f), artifact_path="features")
    return summary


def run(dataset: str = "phantom", data_dir: str = "", backbone: str = "", source: str = "all",
        batch_size: int = 32, num_workers: int = 2, shard: str = "0/1", dtype: str = "float16",
        exclude_threshold: float = DEFAULT_EXCLUDE_THRESHOLD, max_artifact_mb: float = 256.0,
        allow_circular: bool = False, progress: bool = True) -> str:
    """Extract the features of one data folder with one backbone; returns the run id.

    A backbone the dataset is built from (EfficientNet-Lite2 on the phantom) is refused
    unless ``allow_circular``; the run is then tagged ``sbd.circular_backbone`` and warned."""
    root = resolve_data_dir(dataset, data_dir)
    backbone = resolve_backbone(dataset, backbone)
    circular = check_circular(dataset, backbone, as_bool(allow_circular))
    if source not in SOURCES:
        raise ValueError(f"Unknown source={source!r}; valid: {', '.join(SOURCES)}.")
    params = dict(dataset=dataset, data_dir=str(root), backbone=backbone, source=source,
                  batch_size=batch_size, num_workers=num_workers, shard=shard, dtype=dtype,
                  exclude_threshold=exclude_threshold, max_artifact_mb=max_artifact_mb,
                  allow_circular=as_bool(allow_circular))
    with tracking.step_run("extract_features", params,
                           tags=tracking.chain_tags(dataset, backbone=backbone)) as run:
        tracking.mark_circular(circular)
        # one worker per folder and backbone at a time (shards of one extraction share the
        # partial folder by design and merge under its own lock); a second run waits, then
        # finds the files up to date
        lock = (folder_lock(root, f"features-{backbone}") if shard in ("0/1", "")
                else nullcontext())
        imported = imported_bank(root, backbone)
        if imported and source in ("all", "bank"):
            # a bank imported from precomputed features (sbd.features.bank_import) is kept:
            # there may be no ILSVRC tree to extract it from
            log.info("extract_features: keeping the bank imported from %s", imported)
            mlflow.set_tag(BANK_IMPORTED_TAG, imported)
            source = "stimuli" if source == "all" else ""
        with lock:
            results = (run_extraction(root, backbone, source, batch_size=batch_size,
                                      num_workers=num_workers, shard=shard, dtype=dtype,
                                      progress=progress, exclude_threshold=exclude_threshold)
                       if source else {})
        with tempfile.TemporaryDirectory() as tmp:
            summaries = [_log_result(r, max_artifact_mb, Path(tmp)) for r in results.values()]
            mlflow.log_dict({"backbone": backbone, "data_dir": str(Path(root).resolve()),
                             "sources": summaries}, "features/summary.json")
        computed = sum(r.n_computed for r in results.values())
        seconds = sum(r.seconds for r in results.values())
        mlflow.log_metrics({
            "images_per_s": computed / seconds if seconds > 0 else 0.0,
            "n_images": sum(r.n_images for r in results.values()),
            "n_excluded": sum(r.n_excluded for r in results.values()),
            "n_failed": sum(r.n_failed for r in results.values()),
        })
        log.info("extract_features: %s", json.dumps(summaries))
        return run.info.run_id
