"""The ``train_decoder`` step: tune the whole decoder of one subject and ROI for the labels
of unseen categories, fit it on all training data, log it and register it.

The study (:mod:`sbd.decoding.decoder_tuning`) searches the ridge, the feature rescaling,
the label stage's normalisation and similarity, k and rule together, on held-out
categories under test-like conditions; the test split is never read.  The best decoder
is refitted on all training data and logged as three pyfuncs of this run — ``ridge``
(voxels → features, inductive: one row works), ``knn`` (features → ranked labels, with the
training statistics of its normalisation) and their composite ``decoder`` — and the
decoder is registered as ``sbd-<dataset>-s<subject>-<roi>-decoder``.  Its ``champion``
alias moves when the decoder-level validation objective beats the champion's.

Run contents: one nested run per trial (params, ``val/*``, ``val/objective``); on this
run the best params (``best_<name>``), ``val/<score>`` of the chosen decoder and
``val/paper_<score>`` of the paper's transductive pipeline on the same validation
queries (means over the category splits it was re-checked on), ``val/objective``,
artifacts ``tuning/trials.csv`` and ``tuning/best.json``; tags ``sbd.decoder_uri``,
``sbd.decoder_champion``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from sbd import tracking
from sbd.data.identity import data_identity
from sbd.data.layout import features_file, resolve_data_dir
from sbd.decoding import decoder_tuning as dt
from sbd.decoding.knn import BACKENDS
from sbd.params import as_bool
from sbd.decoding.training_data import (DEFAULT_MIN_TRAIN_FRACTION, bank_file,
                                        load_training_data, training_stimulus_mask)

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
    from sbd.features.backbones import check_circular, resolve_backbone
    from sbd.features.bank import FeatureBank, check_same_backbone
    from sbd.registry import ridge_model
    from sbd.decoding import tuning
    from sbd.registry.common import STUDY_TAG, model_name, study_version
    from sbd.registry.decoder_model import (describe_version, log_decoder_model,
                                            register_decoder_model)
    from sbd.registry.knn_model import log_knn_model

    if objective not in dt.OBJECTIVES:
        raise ValueError(f"Unknown objective={objective!r}; valid: {', '.join(dt.OBJECTIVES)}.")
    if validation not in dt.VALIDATIONS:
        raise ValueError(f"Unknown validation={validation!r}; valid: "
                         f"{', '.join(dt.VALIDATIONS)}.")
    if backend not in BACKENDS:
        raise ValueError(f"Unknown backend={backend!r}; valid: {', '.join(BACKENDS)}.")
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
        data.log_to_mlflow()
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
                                 storage=storage or None, study_name=study_name or None)
        best, paper = result.best_scores, result.paper_scores
        mlflow.log_params({f"best_{k}": v for k, v in result.best_params.items()})
        mlflow.log_metrics({**{f"val/{k}": v for k, v in best.items()},
                            **{f"val/paper_{k}": v for k, v in paper.items()},
                            "val/objective": result.best_value,
                            "val/paper_objective": dt.OBJECTIVES[objective](paper)})
        with tempfile.TemporaryDirectory() as tmp:
            pd.DataFrame(result.trials).to_csv(Path(tmp) / "trials.csv", index=False)
            (Path(tmp) / "best.json").write_text(json.dumps(
                {"objective": objective, "validation": validation,
                 "params": result.best_params, "scores": best, "paper": paper}, indent=1))
            mlflow.log_artifacts(tmp, artifact_path="tuning")
        log.info("train_decoder: val %s %.4f (paper %.4f) with %s", objective,
                 result.best_value, dt.OBJECTIVES[objective](paper), result.best_params)

        ridge, labeller = dt.fit_decoder(X, Y, wnids, result.best_params, bank,
                                         n_splits=n_splits, validation=validation,
                                         backend=backend,
                                         class_similarity=search.class_similarity)
        meta = {"dataset": dataset, "subject": int(subject), "roi": roi, "backbone": backbone}
        ridge_info = ridge_model.log_ridge_model(ridge, name="ridge", input_example=X[:2],
                                                 metadata=meta)
        knn_info = log_knn_model(labeller, bank_path, name="knn", max_bank_mb=max_bank_mb)
        for part in (ridge_info, knn_info):
            mlflow.set_logged_model_tags(part.model_id, identity.tags())
        info = log_decoder_model(ridge_info.model_uri, knn_info.model_uri, name="decoder",
                                 input_example=pd.DataFrame(
                                     X[:1], columns=[f"v{i}" for i in range(X.shape[1])]),
                                 data=identity.tags())
        # workers of one shared study register its choice once: a later worker that chose
        # the same configuration, or one that validated no better, points to that version
        choice = hashlib.sha256(json.dumps(result.best_params, sort_keys=True,
                                           default=str).encode()).hexdigest()[:16]
        with tuning.study_lock(storage, study_name):
            found = study_version(model_name("decoder", dataset, subject, roi), study_name,
                                  {"decoder_choice": choice}, result.best_value
                                  ) if storage else None
            if found is not None:
                uri, champion = found
                log.info("train_decoder: the study's choice is registered already (%s)", uri)
            else:
                study_tags = {STUDY_TAG: study_name, "decoder_choice": choice} if storage else {}
                version, champion = register_decoder_model(
                    info.model_uri, dataset, subject, roi, backbone, result.best_value,
                    ridge_info.model_uri, knn_info.model_uri,
                    extra_tags={"val_metric": f"val/{objective}", "validation": validation,
                                "run_id": active.info.run_id,
                                **{f"val_{k}": round(v, 6) for k, v in best.items()},
                                **{f"paper_val_{k}": round(v, 6) for k, v in paper.items()},
                                **result.best_params, **study_tags, **identity.tags()})
                uri = f"models:/{version.name}/{version.version}"
                describe_version(version, identity, objective, best, paper, active.info.run_id)
        mlflow.set_tags(tracking.model_tags("decoder", uri, champion))
        log.info("train_decoder: registered %s (champion: %s)", uri, champion)
        return active.info.run_id
