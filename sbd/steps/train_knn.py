"""The ``train_knn`` step: tune the kNN labeller on validation categories, log and register it.

Validation queries are the ridge-predicted features of the training samples, each
predicted by a ridge fitted without its category (grouped out-of-fold predictions with
the params of the registered ridge champion, :func:`sbd.decoding.tuning.out_of_fold_predictions`)
— held-out categories, as the test set's are; the test set is never used.  Bank rows
that are training stimuli themselves are left out of the search while tuning.

Optuna (TPE, seeded) searches ``k`` (1..50, log), ``metric`` (euclidean, cosine), ``rule``
(nearest, vote, weighted, centroid) and ``temperature`` (0.01..10, log; weighted only).
The objective is ``val/wup_top1``: the mean Wu-Palmer similarity between the true category
and the top-1 label — a graded score (a "dog" for a "wolf" counts) that is what the decoder
is judged on; ``val/top1_acc``, ``val/top5_acc`` and ``val/wup_best_top5`` are logged too.
The paper's fixed rule (k=5, euclidean, nearest) is the first trial and is also logged on
its own (``paper/...``), on the same queries.  All neighbours are searched once per metric
(k up to 50, plus per-class nearest distances and centroid distances), so a trial only
re-ranks.

Run contents: one nested run per trial (params, ``val/*``), nested run ``paper-rule``;
on this run: ``best_<param>`` params, ``val/*`` (best) and ``paper/*`` metrics,
``val/gain_wup_top1`` (best − paper), artifacts ``tuning/trials.csv``, the model ``knn``;
tags ``sbd.knn_uri``, ``sbd.knn_champion``, ``sbd.ridge_params_source``.  With a FAISS
``backend`` the approximate recall against exact search is logged (``faiss/recall_at_k``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sbd import tracking
from sbd.data.layout import features_file, resolve_data_dir
from sbd.decoding import knn
from sbd.decoding.tuning.knn import OBJECTIVE, PAPER_RULE, TOP_K, ValidationSearch, tune
from sbd.registry.common import CHAMPION, model_name, register_model_version

log = logging.getLogger(__name__)



def ridge_params(dataset: str, subject: int, roi: str) -> tuple[dict[str, Any], str]:
    """Best ridge params from the registered ridge champion's tags, or the paper's.

    Returns ``(params, source)``; source is ``models:/<name>/<version>`` or ``paper``.
    """
    from sbd.decoding import tuning

    name = model_name("ridge", dataset, subject, roi)
    try:
        mv = MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        log.warning("train_knn: no champion of %s; using the paper's ridge params", name)
        return tuning.normalise_params({}), "paper"
    params = {k: v for k, v in mv.tags.items() if k in tuning.PAPER_PARAMS}
    return tuning.normalise_params(params), f"models:/{name}/{mv.version}"


def run(dataset: str = "phantom", data_dir: str = "", subject: int = 1, roi: str = "VC",
        backbone: str = "", n_trials: int = 30, seed: int = 0, backend: str = "torch",
        max_bank_mb: float = 256.0, n_splits: int = 5) -> str:
    """Tune, log and register the kNN labeller (see the module doc); returns the run id."""
    from sbd.decoding import tuning
    from sbd.features.backbones import resolve_backbone
    from sbd.features.bank import FeatureBank, check_same_backbone
    from sbd.registry.knn_model import log_knn_model
    from sbd.decoding.training_data import bank_file, load_training_data

    if backend not in knn.BACKENDS:
        raise ValueError(f"Unknown backend={backend!r}; valid: {', '.join(knn.BACKENDS)}.")
    root = resolve_data_dir(dataset, data_dir)
    backbone = resolve_backbone(dataset, backbone)
    params = dict(dataset=dataset, data_dir=str(root), subject=int(subject), roi=roi,
                  backbone=backbone, n_trials=int(n_trials), seed=int(seed), backend=backend,
                  max_bank_mb=float(max_bank_mb), n_splits=int(n_splits))
    tags = tracking.chain_tags(dataset, subject, roi, backbone)
    bank_path = bank_file(root, backbone)
    with tracking.step_run("train_knn", params, tags=tags) as active:
        check_same_backbone(bank_path, features_file(root, backbone, "training"))
        data = load_training_data(root, subject, roi, backbone)
        tracking.log_training_data(data)
        X, Y, wnids, _ = data
        rparams, source = ridge_params(dataset, subject, roi)
        mlflow.set_tag(tracking.RIDGE_PARAMS_SOURCE_TAG, source)
        P = tuning.out_of_fold_predictions(X, Y, wnids, rparams, n_splits=n_splits)
        bank = FeatureBank(bank_path)
        from sbd.data import god

        stimuli = set(god.load(root, subject, roi, "train").image_ids)
        exclude = np.isin(bank.image_ids, list(stimuli))
        mlflow.log_params({"n_queries": P.shape[0], "n_bank": len(bank),
                           "n_bank_classes": int(np.unique(bank.wnids).size),
                           "n_bank_excluded_while_tuning": int(exclude.sum()),
                           "n_val_categories": int(np.unique(wnids).size)})
        missing = sorted(set(map(str, wnids)) - set(map(str, bank.wnids)))
        if missing:
            log.warning("train_knn: %d training categories are not in the bank (e.g. %s)",
                        len(missing), missing[:3])
        search = ValidationSearch(P, wnids, bank, exclude if exclude.any() else None)
        best, best_scores, paper, rows = tune(search, n_trials, seed,
                                              [tracking.TrialLogger("knn-trial")])
        with mlflow.start_run(run_name="paper-rule", nested=True):
            mlflow.log_params(PAPER_RULE)
            mlflow.log_metrics({f"val/{m}": v for m, v in paper.items()})
        mlflow.log_params({f"best_{k}": v for k, v in best.items()})
        mlflow.log_metrics({**{f"val/{m}": v for m, v in best_scores.items()},
                            **{f"paper/{m}": v for m, v in paper.items()},
                            f"val/gain_{OBJECTIVE}": best_scores[OBJECTIVE] - paper[OBJECTIVE]})
        mlflow.log_text(pd.DataFrame(rows).to_csv(index=False), "tuning/trials.csv")
        mlflow.log_text(json.dumps({"best": best, "best_scores": best_scores, "paper": paper},
                                   indent=1), "tuning/best.json")
        log.info("train_knn: best %s=%.4f with %s (paper rule: %.4f)", OBJECTIVE,
                 best_scores[OBJECTIVE], best, paper[OBJECTIVE])

        labeller = knn.KNNLabeller(k=best["k"], metric=best["metric"], rule=best["rule"],
                                   temperature=best["temperature"], top_k=TOP_K,
                                   backend=backend).fit(bank)
        if backend != "torch":
            exact = knn.exact_search(P, bank, best["k"], best["metric"]).indices
            approx = labeller.kneighbors(P, best["k"])[0]
            mlflow.log_metric("faiss/recall_at_k", knn.recall_at_k(approx, exact))
        info = log_knn_model(labeller, bank_path, name="knn", max_bank_mb=max_bank_mb)
        version, champion = register_model_version(
            info.model_uri, model_name("knn", dataset, backbone=backbone), best_scores[OBJECTIVE],
            tags={"dataset": dataset, "backbone": backbone, "bank": str(bank_path.resolve()),
                  "n_bank": len(bank), "tuned_on_subject": int(subject), "tuned_on_roi": roi,
                  "val_metric": f"val/{OBJECTIVE}", "run_id": active.info.run_id,
                  "ridge_params_source": source, **best,
                  **{f"val_{m}": round(v, 6) for m, v in best_scores.items()},
                  **{f"paper_{m}": round(v, 6) for m, v in paper.items()}})
        uri = f"models:/{version.name}/{version.version}"
        mlflow.set_tags(tracking.model_tags("knn", uri, champion))
        log.info("train_knn: registered %s (champion: %s)", uri, champion)
        bank.close()
        return active.info.run_id
