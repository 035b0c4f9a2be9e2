"""The ``build_decoder`` step: compose a ridge and a kNN model into one decoder pyfunc.

Reads the models ``ridge`` and ``knn`` (registered model URIs; empty: the champions
``models:/sbd-<dataset>-s<subject>-<roi>-ridge@champion`` and
``models:/sbd-<dataset>-<backbone>-knn@champion``; ``main`` passes the exact versions its own
train_ridge / train_knn runs registered, so each chain's decoder uses the models tuned for
its subject and ROI even when an older or another subject's version holds ``champion``),
logs the composite (model ``decoder``, :mod:`sbd.registry.decoder_model`) and registers it as
``sbd-<dataset>-s<subject>-<roi>-decoder`` with tags ridge_uri / knn_uri naming the exact
versions used.  Its validation score is the kNN version's (``val/wup_top1`` on held-out
categories predicted by this subject's ridge); ``champion`` moves only when it is better.
Tags on the run: ``sbd.decoder_uri``, ``sbd.decoder_champion``, ``sbd.ridge_uri``,
``sbd.knn_uri``.
"""

from __future__ import annotations

import logging

import mlflow

from sbd import tracking
from sbd.registry.common import CHAMPION, SCORE_TAG, model_name, resolve_model_version

log = logging.getLogger(__name__)


def run(dataset: str = "phantom", subject: int = 1, roi: str = "VC", backbone: str = "",
        ridge: str = "", knn: str = "") -> str:
    """Compose, log and register the decoder of one subject and ROI; returns the run id.

    ``ridge`` / ``knn``: registered model URIs; empty = the champions."""
    from sbd.features.backbones import resolve_backbone
    from sbd.registry.decoder_model import log_decoder_model, register_decoder_model

    backbone = resolve_backbone(dataset, backbone)
    params = dict(dataset=dataset, subject=int(subject), roi=roi, backbone=backbone,
                  ridge=ridge, knn=knn)
    tags = tracking.chain_tags(dataset, subject, roi, backbone)
    with tracking.step_run("build_decoder", params, tags=tags) as active:
        ridge_uri, ridge_tags = resolve_model_version(
            ridge or f"models:/{model_name('ridge', dataset, subject, roi)}@{CHAMPION}",
            "train_ridge")
        knn_uri, knn_tags = resolve_model_version(
            knn or f"models:/{model_name('knn', dataset, backbone=backbone)}@{CHAMPION}",
            "train_knn")
        if ridge_tags.get("backbone", backbone) != backbone:
            raise ValueError(f"{ridge_uri} predicts {ridge_tags['backbone']!r} features, "
                             f"not {backbone!r}.")
        mlflow.set_tags({tracking.model_tag("ridge"): ridge_uri,
                         tracking.model_tag("knn"): knn_uri})
        info = log_decoder_model(ridge_uri, knn_uri, name="decoder")
        score = float(knn_tags.get(SCORE_TAG, "nan"))
        if knn_tags.get("tuned_on_subject") not in (None, str(int(subject))) or \
                knn_tags.get("tuned_on_roi") not in (None, roi):
            log.warning("build_decoder: %s was tuned on subject %s %s, not subject %s %s",
                        knn_uri, knn_tags.get("tuned_on_subject"), knn_tags.get("tuned_on_roi"),
                        subject, roi)
        knn_cfg = {k: knn_tags[k] for k in ("k", "metric", "rule", "temperature")
                   if k in knn_tags}
        version, champion = register_decoder_model(
            info.model_uri, dataset, subject, roi, backbone, score, ridge_uri, knn_uri,
            extra_tags={"val_metric": knn_tags.get("val_metric", ""), "run_id":
                        active.info.run_id, **{f"knn_{k}": v for k, v in knn_cfg.items()}})
        uri = f"models:/{version.name}/{version.version}"
        mlflow.log_metric("val/score", score)
        mlflow.set_tags(tracking.model_tags("decoder", uri, champion))
        log.info("build_decoder: registered %s = %s + %s (champion: %s)", uri, ridge_uri,
                 knn_uri, champion)
        return active.info.run_id
