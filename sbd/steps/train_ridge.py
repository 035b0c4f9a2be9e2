"""The ``train_ridge`` step: tune the voxels → features ridge on category folds, refit the
best on all training data, log it as a pyfunc and register it.

Run contents: one nested run per Optuna trial (params, ``val/r``,
``val/ident_othercat_acc``, ``val/ident_othercat_top1``); on this run the best params
(``best_<name>``), the best trial's and the paper's fixed Ridge(alpha=1000)'s validation
scores (``val/<score>``, ``val/<score>_paper``, ``val/<score>_paper_adjusted``), artifacts
``tuning/`` (figures, trials table, best params) and the model ``ridge``; tags
``sbd.ridge_uri`` (``models:/sbd-<dataset>-s<subject>-<roi>-ridge/<version>``) and
``sbd.ridge_champion``.
"""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import optuna

from sbd import tracking
from sbd.data.layout import resolve_data_dir
from sbd.decoding import tuning
from sbd.decoding.training_data import load_training_data
from sbd.registry import ridge_model
from sbd.registry.common import STUDY_TAG, model_name, study_version

log = logging.getLogger(__name__)

REGISTRY_METRIC = "ident_othercat_acc"


def run(dataset: str = "phantom", data_dir: str = "", subject: int = 1, roi: str = "VC",
        backbone: str = "", n_trials: int = 30, objective: str = "ident", storage: str = "",
        study_name: str = "", seed: int = 0, n_splits: int = 5) -> str:
    """Tune, refit, log and register the ridge of one subject and ROI; returns the run id."""
    from sbd.features.backbones import resolve_backbone

    root = resolve_data_dir(dataset, data_dir)
    backbone = resolve_backbone(dataset, backbone)
    if objective not in tuning.OBJECTIVES:
        raise ValueError(f"Unknown objective={objective!r}; valid: {', '.join(tuning.OBJECTIVES)}.")
    if storage and not study_name:
        study_name = f"{model_name('ridge', dataset, subject, roi)}-{backbone}-{objective}"
    params = dict(dataset=dataset, data_dir=str(root), subject=int(subject), roi=roi,
                  backbone=backbone, n_trials=int(n_trials), objective=objective,
                  storage=storage, study_name=study_name, seed=int(seed), n_splits=int(n_splits))
    tags = tracking.chain_tags(dataset, subject, roi, backbone)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tracking.step_run("train_ridge", params, tags=tags) as active:
        data = load_training_data(root, subject, roi, backbone)
        tracking.log_training_data(data)
        X, Y, wnids, backbone = data
        mlflow.log_params({"n_samples": X.shape[0], "n_voxels": X.shape[1],
                           "n_features": Y.shape[1], "n_categories": np.unique(wnids).size})
        trials = tracking.TrialLogger("trial", objective,
                                      f"val/{tuning.OBJECTIVES[objective]}_running")
        result = tuning.tune(X, Y, wnids, n_trials=n_trials, objective=objective,
                             storage=storage or None, study_name=study_name or None,
                             seed=seed, n_splits=n_splits, heartbeat_s=tracking.heartbeat_s(),
                             callbacks=[trials])
        tracking.log_study_summary(result)
        log.info("train_ridge: best %s = %.4f (paper alpha=1000: %.4f) with %s", objective,
                 result.best_value, result.paper_scores[tuning.OBJECTIVES[objective]],
                 result.best_params)
        model = tuning.fit_model(X, Y, wnids, result.best_params)
        info = ridge_model.log_ridge_model(
            model, name="ridge", input_example=X[:2],
            metadata={"dataset": dataset, "subject": int(subject), "roi": roi,
                      "backbone": backbone})
        score = result.best_scores[REGISTRY_METRIC]
        best_trial = result.study.best_trial.number
        # workers of one shared study register its best once: the first to finish does,
        # a later one whose best is the same trial points to that version
        with tuning.study_lock(storage, study_name):
            found = study_version(model_name("ridge", dataset, subject, roi), study_name,
                                  {"optuna_trial": best_trial}) if storage else None
            if found is not None:
                uri, champion = found
                log.info("train_ridge: the study's best (trial %d) is registered already",
                         best_trial)
            else:
                study_tags = ({STUDY_TAG: study_name, "optuna_trial": best_trial}
                              if storage else {})
                version, champion = ridge_model.register_ridge_model(
                    info.model_uri, dataset, subject, roi, backbone, score, result.best_params,
                    n_voxels=X.shape[1],
                    extra_tags={"val_metric": f"val/{REGISTRY_METRIC}", "objective": objective,
                                "n_voxels_kept": int(model.support_.size),
                                "run_id": active.info.run_id, "val_r": result.best_scores["r"],
                                **study_tags})
                uri = f"models:/{version.name}/{version.version}"
        mlflow.set_tags(tracking.model_tags("ridge", uri, champion))
        log.info("train_ridge: registered %s (champion: %s)", uri, champion)
        return active.info.run_id

