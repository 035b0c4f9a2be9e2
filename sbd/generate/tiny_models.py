"""The registered tiny generators of a data folder: finding the one trained on its bank
(:func:`find`) and training, evaluating, logging and registering one
(:func:`train_and_register`, what the ``train_tiny`` entry point runs), or either
(:func:`find_or_train`, what ``generate`` and ``main`` do).

A ``train_tiny`` run logs every :class:`~sbd.generate.tiny.TinyConfig` field as a
parameter (``max_steps`` among them: the model trains for a number of steps, never for a
time), the model's figures as ``tiny/*`` (steps, loss, sizes, the kNN figures of
:func:`~sbd.generate.tiny.evaluate`: the same for the same parameters, bank and machine),
the measured times as ``tiny_time/*`` (:data:`~sbd.generate.tiny.TIMING_KEYS`), and the
SHA-256 of its weights as the tag ``sbd.tiny_weights_sha256``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow

from sbd.data.layout import resolve_data_dir
from sbd.tracking import chain_tags, model_tag, step_run

__all__ = ["find", "train_and_register", "find_or_train", "WEIGHTS_TAG"]

WEIGHTS_TAG = "sbd.tiny_weights_sha256"

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
    ``<data_dir>/tiny/<preset>``, or ``<preset>-<hash of the overrides>`` when ``overrides``
    change the preset) keeps the checkpoint, so an interrupted training resumes.
    The model URI is ``models:/sbd-<dataset>-tiny-generator/<version>``.
    """
    from sbd.generate import tiny
    from sbd.generate.tiny.train import torch_threads

    data_dir = resolve_data_dir(dataset, data_dir)
    cfg = tiny.resolve_config(preset, **overrides)
    work = Path(work_dir) if work_dir else data_dir / "tiny" / _work_name(preset, cfg)
    params = {"dataset": dataset, "data_dir": str(data_dir), "preset": preset,
              **cfg.to_dict()}
    with step_run("train_tiny", params, tags=chain_tags(dataset)) as active:
        pipe = tiny.train(data_dir, work, cfg, progress=progress)
        with torch_threads(cfg.threads):  # the figures, as the weights, from a fixed thread count
            figures = tiny.evaluate(pipe, data_dir, n_classes=cfg.eval_classes,
                                    progress=progress)
        measured = {**pipe.info, **figures}
        numbers = {k: float(v) for k, v in measured.items() if isinstance(v, (int, float))}
        mlflow.log_metrics({(f"tiny_time/{k}" if k in tiny.TIMING_KEYS else f"tiny/{k}"): v
                            for k, v in numbers.items()})
        mlflow.set_tag(WEIGHTS_TAG, pipe.info["weights_sha256"])
        grid = tiny.sample_sheet(pipe, n_classes=16, n_per_class=4)
        mlflow.log_image(grid, artifact_file="tiny/samples.png")
        uri = tiny.log_model(work / "pipeline", dataset, score=figures["knn_centered_top1_acc"],
                             tags={"preset": preset, "bank_sha": tiny.bank_signature(data_dir),
                                   **figures})
        mlflow.set_tag(model_tag("tiny"), uri)
        return active.info.run_id, uri


def _work_name(preset: str, cfg) -> str:
    """``preset`` when ``cfg`` is the preset itself, else ``<preset>-<8 hex digits>`` of the
    fields that differ (a checkpoint of another configuration is not resumed)."""
    import hashlib
    import json

    from sbd.generate import tiny

    base = tiny.PRESETS[preset].to_dict() if preset in tiny.PRESETS else {}
    diff = {k: v for k, v in cfg.to_dict().items() if base.get(k) != v}
    if not diff:
        return preset
    return f"{preset}-{hashlib.sha256(json.dumps(diff, sort_keys=True).encode()).hexdigest()[:8]}"


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
    from sbd.data.locks import folder_lock

    # two runs on one folder train it once: the second waits, then finds it registered
    with folder_lock(resolve_data_dir(dataset, data_dir), f"tiny-{preset}"):
        found = find(dataset, data_dir, preset)
        if found is not None:
            return found
        log.info("No registered tiny model for this bank: training one (preset %r).", preset)
        return train_and_register(dataset, data_dir, preset, progress=progress)[1]
