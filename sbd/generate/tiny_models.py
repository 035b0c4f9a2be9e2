"""The registered tiny generators of a data folder: finding the one trained on its bank
(:func:`find`) and training, evaluating, logging and registering one
(:func:`train_and_register`, what the ``train_tiny`` entry point runs), or either
(:func:`find_or_train`, what ``generate`` and ``main`` do)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow

from sbd.data.layout import resolve_data_dir
from sbd.tracking import chain_tags, model_tag, step_run

__all__ = ["find", "train_and_register", "find_or_train"]

log = logging.getLogger(__name__)


def find(dataset: str, data_dir: str | Path, preset: str | None = None) -> str | None:
    """The registered tiny model trained on this bank (and ``preset``, if given), or None.

    Among versions of ``sbd-<dataset>-tiny-generator`` tagged with this bank's
    :func:`~sbd.generate.tiny.bank_signature` (and saved in today's pipeline format): the champion if it is one of them, else the
    best ``val_score``. Returns ``models:/name/version``.
    """
    from mlflow.exceptions import MlflowException

    from sbd.generate.tiny import MODEL_NAME, PIPELINE_FORMAT, bank_signature

    name = MODEL_NAME.format(dataset=dataset)
    client = mlflow.MlflowClient()
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    sig = bank_signature(data_dir)
    ok = [v for v in versions if v.tags.get("bank_sha") == sig
          and v.tags.get("format") == PIPELINE_FORMAT
          and (not preset or v.tags.get("preset") == preset)]
    if not ok:
        return None
    try:
        champ = client.get_model_version_by_alias(name, "champion").version
    except MlflowException:
        champ = None
    best = next((v for v in ok if v.version == champ), None) or \
        max(ok, key=lambda v: (float(v.tags.get("val_score", "nan") or "nan"), int(v.version)))
    return f"models:/{name}/{best.version}"


def train_and_register(dataset: str, data_dir: str | Path, preset: str = "default",
                       work_dir: str | Path | None = None, progress: bool = True,
                       **overrides: Any) -> tuple[str, str]:
    """Train, evaluate, log and register the tiny model of ``dataset`` in a ``train_tiny`` run;
    returns ``(run id, registered model URI)``.

    The run is nested under the active run (if any). The centred kNN top-1 accuracy of its
    samples (:func:`sbd.generate.tiny.evaluate`) is the registered version's ``val_score``. ``work_dir`` (default
    ``<data_dir>/tiny/<preset>``) keeps the checkpoint, so an interrupted training resumes.
    The model URI is ``models:/sbd-<dataset>-tiny-generator/<version>``.
    """
    from sbd.generate import tiny

    data_dir = resolve_data_dir(dataset, data_dir)
    cfg = tiny.resolve_config(preset, **overrides)
    work = Path(work_dir) if work_dir else data_dir / "tiny" / preset
    params = {"dataset": dataset, "data_dir": str(data_dir), "preset": preset,
              **cfg.to_dict()}
    with step_run("train_tiny", params, tags=chain_tags(dataset)) as active:
        pipe = tiny.train(data_dir, work, cfg, progress=progress)
        mlflow.log_metrics({f"tiny/{k}": float(v) for k, v in pipe.info.items()})
        figures = tiny.evaluate(pipe, data_dir, n_classes=cfg.eval_classes, progress=progress)
        mlflow.log_metrics({f"tiny/{k}": float(v) for k, v in figures.items()})
        grid = tiny.sample_sheet(pipe, n_classes=16, n_per_class=4)
        mlflow.log_image(grid, artifact_file="tiny/samples.png")
        uri = tiny.log_model(work / "pipeline", dataset, score=figures["knn_centered_top1_acc"],
                             tags={"preset": preset, "bank_sha": tiny.bank_signature(data_dir),
                                   **figures})
        mlflow.set_tag(model_tag("tiny"), uri)
        return active.info.run_id, uri


def find_or_train(dataset: str, data_dir: str | Path, preset: str,
                  progress: bool = True) -> str:
    """The registered tiny model for this bank and ``preset`` (:func:`find`), trained first
    (:func:`train_and_register`, a nested ``train_tiny`` run) when there is none; ``preset``
    "" or "none" accepts any preset and makes the absence an error instead."""
    any_preset = preset in ("", "none")
    found = find(dataset, data_dir, None if any_preset else preset)
    if found is not None:
        return found
    if any_preset:
        raise ValueError(f"No registered tiny model trained on the bank of {data_dir} and "
                         f"tiny_preset={preset!r}: train one (the train_tiny entry "
                         "point) or pass model_id.")
    log.info("No registered tiny model for this bank: training one (preset %r).", preset)
    return train_and_register(dataset, data_dir, preset, progress=progress)[1]
