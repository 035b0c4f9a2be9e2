"""The ``train_decoder`` step: tune the whole decoder of one subject and ROI for the labels
of unseen categories, fit it on all training data, log it and register it and its parts.

The study (:mod:`sbd.decoding.tuning.decoder`) searches the ridge, the feature rescaling
and the label rule together, on held-out categories under test-like conditions; the test
split is never read.  The best decoder is refitted on all training data and logged as
three pyfuncs — ``ridge`` (voxels → features, one row works), ``knn`` (features → ranked
labels) and their composite ``decoder`` — registered as ``sbd-<dataset>-s<subject>-<roi>-
decoder``, ``…-ridge`` and ``sbd-<dataset>-<backbone>-knn``.  Aliases move as
:func:`sbd.registry.common.register_model_version` says.

Run contents: one nested run per trial (:class:`sbd.tracking.TrialLogger`); the best
params (``best_<name>``), ``val/<score>`` of the chosen decoder and ``val/paper_<score>``
of the paper's pipeline on the same queries, ``val/objective``, artifacts
``tuning/trials.csv`` and ``tuning/best.json``; tags ``sbd.decoder_uri``,
``sbd.decoder_champion``.
"""

from __future__ import annotations

import json
import logging

import mlflow
import numpy as np
import pandas as pd

from sbd import tracking
from sbd.data.identity import data_identity
from sbd.data.layout import features_file, resolve_data_dir
from sbd.decoding.knn import BACKENDS
from sbd.decoding.training_data import (DEFAULT_MIN_TRAIN_FRACTION, bank_file,
                                        load_training_data, training_stimulus_mask)
from sbd.decoding.tuning import decoder as dt
from sbd.features.backbones import check_circular, resolve_backbone
from sbd.features.bank import FeatureBank, check_same_backbone
from sbd.params import as_bool, check_choice
from sbd.registry import decoder_model, ridge_model
from sbd.registry.common import model_name
from sbd.registry.knn_model import log_knn_model

log = logging.getLogger(__name__)


def run(dataset: str = "phantom", data_dir: str = "", subject: int = 1, roi: str = "VC",
        backbone: str = "", n_trials: int = 60, objective: str = "specific",
        validation: str = "pair", storage: str = "", study_name: str = "", seed: int = 0,
        n_splits: int = 5, backend: str = "torch", max_bank_mb: float = 256.0,
        min_train_fraction: float = DEFAULT_MIN_TRAIN_FRACTION,
        absent_fraction: float = dt.DEFAULT_ABSENT_FRACTION, allow_circular: bool = False) -> str:
    """Tune, fit, log and register the decoder of one subject and ROI; returns the run id.

    Training samples whose stimulus image is missing or unreadable are left out (logged as
    ``data/n_train_dropped``); fewer than ``min_train_fraction`` left is refused.
    ``absent_fraction``: the share of held-out validation categories whose bank images are
    hidden while they are labelled (a bank lacking test categories, as GOD's does).  A
    backbone the dataset is built from is refused unless ``allow_circular`` (the run is
    then tagged ``sbd.circular_backbone`` and warned)."""
    check_choice("objective", objective, dt.OBJECTIVES)
    check_choice("validation", validation, dt.VALIDATIONS)
    check_choice("backend", backend, BACKENDS)
    root = resolve_data_dir(dataset, data_dir)
    backbone = resolve_backbone(dataset, backbone)
    circular = check_circular(dataset, backbone, as_bool(allow_circular))
    if storage and not study_name:
        study_name = f"{model_name('decoder', dataset, subject, roi)}-{backbone}-{objective}"
    params = dict(dataset=dataset, data_dir=str(root), subject=int(subject), roi=roi,
                  backbone=backbone, n_trials=int(n_trials), objective=objective,
                  validation=validation, storage=storage, study_name=study_name,
                  seed=int(seed), n_splits=int(n_splits), backend=backend,
                  max_bank_mb=float(max_bank_mb), min_train_fraction=float(min_train_fraction),
                  absent_fraction=float(absent_fraction), allow_circular=as_bool(allow_circular))
    identity = data_identity(dataset, root)
    tags = {**tracking.chain_tags(dataset, subject, roi, backbone), **tracking.data_tags(identity)}
    bank_path = bank_file(root, backbone)
    with tracking.step_run("train_decoder", params, tags=tags) as active, \
            FeatureBank(bank_path) as bank:
        tracking.mark_circular(circular)
        check_same_backbone(bank_path, features_file(root, backbone, "training"))
        data = load_training_data(root, subject, roi, backbone, min_train_fraction)
        tracking.log_training_data(data)
        X, Y, wnids, _ = data
        exclude = training_stimulus_mask(root, subject, roi, bank)
        mlflow.log_params({"n_samples": X.shape[0], "n_voxels": X.shape[1],
                           "n_features": Y.shape[1], "n_categories": np.unique(wnids).size,
                           "n_bank": len(bank), "n_bank_excluded_while_tuning":
                               int(exclude.sum())})
        missing = sorted(set(map(str, wnids)) - set(map(str, bank.wnids)))
        if missing:
            log.warning("train_decoder: %d training categories are not in the bank (e.g. %s)",
                        len(missing), missing[:3])
        search = dt.DecoderSearch(X, Y, wnids, bank, exclude=exclude, n_splits=n_splits,
                                  validation=validation, absent_fraction=absent_fraction)
        result = dt.tune_decoder(search, n_trials, objective, seed=seed,
                                 storage=storage or None, study_name=study_name or None,
                                 callbacks=[tracking.TrialLogger("decoder-trial", objective)],
                                 heartbeat_s=tracking.heartbeat_s())
        _log_tuning(result, validation)
        ridge, labeller = dt.fit_decoder(X, Y, wnids, result.best_params, bank,
                                         n_splits=n_splits, validation=validation,
                                         backend=backend,
                                         class_similarity=search.class_similarity)
        meta = {"dataset": dataset, "subject": int(subject), "roi": roi, "backbone": backbone}
        parts = (ridge_model.log_ridge_model(ridge, name="ridge", input_example=X[:2],
                                             metadata=meta),
                 log_knn_model(labeller, bank_path, name="knn", max_bank_mb=max_bank_mb))
        uri, champion = decoder_model.register_tuned_decoder(
            result, parts, identity, meta, X, validation, (storage, study_name),
            active.info.run_id)
        mlflow.set_tags(tracking.model_tags("decoder", uri, champion))
        log.info("train_decoder: registered %s (champion: %s)", uri, champion)
        return active.info.run_id


def _log_tuning(result: dt.DecoderTuneResult, validation: str) -> None:
    """The chosen decoder's params and validation scores beside the paper's, and the
    trials table and choice as ``tuning/`` artifacts."""
    best, paper, objective = result.best_scores, result.paper_scores, result.objective
    mlflow.log_params({f"best_{k}": v for k, v in result.best_params.items()})
    mlflow.log_metrics({**{f"val/{k}": v for k, v in best.items()},
                        **{f"val/paper_{k}": v for k, v in paper.items()},
                        "val/objective": result.best_value,
                        "val/paper_objective": dt.OBJECTIVES[objective](paper)})
    mlflow.log_text(pd.DataFrame(result.trials).to_csv(index=False), "tuning/trials.csv")
    mlflow.log_text(json.dumps({"objective": objective, "validation": validation,
                                "params": result.best_params, "scores": best,
                                "paper": paper}, indent=1), "tuning/best.json")
    log.info("train_decoder: val %s %.4f (paper %.4f) with %s", objective, result.best_value,
             dt.OBJECTIVES[objective](paper), result.best_params)
