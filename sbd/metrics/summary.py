"""The summary of a ``main`` run: the metrics of each subject × ROI chain beside the paper's
pipeline (:data:`SUMMARY_METRICS`), the text a user reads when it ends
(:func:`console_text`) and the decoder's gain over the paper on the test *images* across
subjects (:func:`image_gains`). Plain results; the ``main`` step reads and logs them."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import pandas as pd

__all__ = ["SUMMARY_METRICS", "summary_row", "chain_metrics", "console_text", "image_gains",
           "gain_metrics"]

log = logging.getLogger(__name__)

SUMMARY_METRICS = (
    # top-1 Wu-Palmer, beside what answering alone scores: chance, the best constant answer,
    # and the same answers shuffled across samples; what the answers say about their sample
    "test/wup_top1", "baseline/paper/wup_top1", "test/wup_chance", "test/wup_constant",
    "test/wup_shuffled", "baseline/paper/wup_shuffled",
    "test/wup_specific", "baseline/paper/wup_specific", "test/wup_specific_ci_low",
    "test/wup_specific_ci_high", "baseline/paper/gain_wup_specific_ci_low",
    "baseline/paper/gain_wup_specific_ci_high",
    "attribution/paper_features/wup_specific", "attribution/sbd_features/wup_specific",
    "test/wup_p", "test/wup_best_topk",
    # exact hits, over the samples whose category the bank holds
    "test/n_inbank", "test/top1_acc_inbank", "baseline/paper/top1_acc_inbank",
    "test/top5_acc_inbank", "baseline/paper/top5_acc_inbank", "test/top5_chance_inbank",
    "test/top1_acc", "test/top5_acc", "baseline/paper/top5_acc",
    "test/rank1_distinct", "baseline/paper/rank1_distinct",
    "test/ident2_acc", "baseline/paper/ident2_acc", "test/ident10_acc", "test/ident50_acc",
    "test/feature_r", "test/judge2afc_acc", "test/gen/pixcorr", "test/gen/ssim",
    "test/gen/alex2", "test/gen/alex5", "test/gen/incep", "test/gen/clip", "test/gen/effnet",
    "test/gen/swav", "test/gen/nway_top1", "test/gen/retrieval_fwd")


def summary_row(subject: int, roi: str, evaluate_run: str, metrics: dict[str, float]
                ) -> dict[str, Any]:
    """One chain's row of the summary table: its :data:`SUMMARY_METRICS` (None: not logged)."""
    return {"subject": subject, "roi": roi, "evaluate_run": evaluate_run,
            **{m: metrics.get(m) for m in SUMMARY_METRICS}}


def chain_metrics(summary: pd.DataFrame) -> dict[str, float]:
    """The summary table as metrics ``s<subject>/<roi>/<metric>``."""
    return {f"s{row['subject']}/{row['roi']}/{m}": row[m]
            for row in summary.to_dict("records") for m in SUMMARY_METRICS
            if row.get(m) is not None}


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def _table_row(r: dict[str, Any]) -> dict[str, Any]:
    """One subject × ROI of the console table: sbd / paper on the headline measures."""
    f = _fmt

    def vs_paper(key: str, digits: int = 3) -> str:
        return f"{f(r.get(f'test/{key}'), digits)} / {f(r.get(f'baseline/paper/{key}'), digits)}"

    return {
        "subject": r["subject"], "roi": r["roi"],
        "wup_top1 sbd/paper": vs_paper("wup_top1"),
        "chance/constant": f"{f(r.get('test/wup_chance'))} / {f(r.get('test/wup_constant'))}",
        "wup_specific sbd [95% CI] / paper":
            f"{f(r.get('test/wup_specific'))} [{f(r.get('test/wup_specific_ci_low'))}, "
            f"{f(r.get('test/wup_specific_ci_high'))}] / "
            f"{f(r.get('baseline/paper/wup_specific'))}",
        "top5 in bank sbd/paper (chance)":
            f"{vs_paper('top5_acc_inbank', 2)} ({f(r.get('test/top5_chance_inbank'), 3)})",
        "ident2 sbd/paper": vs_paper("ident2_acc"),
    }


def console_text(run_id: str, metrics: dict[str, float], table: pd.DataFrame, dataset: str,
                 data_dir: str | None, data_id: str | None, tracking_uri: str,
                 experiment_id: str) -> str:
    """What a user reads when ``main`` ends: the run's step counts, per subject × ROI (rows
    of ``table``, the run's ``summary.csv``) the headline measures beside the paper's
    pipeline and their floors (uniform chance, the best constant answer), the data and
    where to look in the UI."""
    m = metrics
    lines = [f"main run {run_id}: {int(m.get('main/n_steps_run', 0))} steps run, "
             f"{int(m.get('main/n_steps_reused', 0))} reused, "
             f"{int(m.get('main/n_chains_failed', 0))} chains failed"]
    if not table.empty:
        rows = [_table_row(r) for r in table.to_dict("records")]
        lines += ["", pd.DataFrame(rows).to_string(index=False), "",
                  "wup_specific = wup_top1 minus the same answers scored against the other "
                  "samples (0: the answers say nothing about their own sample); top5 in bank: "
                  "exact top-5 over the samples whose category the bank holds; chance/constant: "
                  "uniform labels / the best single label for every sample."]
    if data_id:
        lines += ["", f"Data: {dataset} in {data_dir} (data_id {data_id}); its decoders: "
                      f"models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion-{data_id}"]
    uri, exp = tracking_uri, experiment_id
    ui = (f"mlflow ui --backend-store-uri {uri}" if not uri.startswith("http") else uri)
    lines += ["", f"Look: {ui}  ->  experiment {exp}, run {run_id} "
                  f"(#/experiments/{exp}/runs/{run_id}); figures under its child runs "
                  "(evaluate: figures/test_vs_paper.png; generate: grids/overview.png)."]
    return "\n".join(lines)


def image_gains(roi: str, tables: Sequence[pd.DataFrame],
                metrics: Sequence[str] = ("wup_specific", "wup_top1")) -> list[dict[str, Any]]:
    """Per metric, the decoder's gain over the paper's pipeline on the test *images* of one
    ROI run for several subjects (the subjects saw the same images: per image, averaged over
    subjects, then images resampled; :func:`sbd.metrics.decoding.paired_gain`), from each
    subject's ``tables/test_samples.csv`` (``image_id``, ``<metric>``, ``paper_<metric>``).
    Empty, with a warning, when the subjects' test images differ."""
    from sbd.metrics.decoding import paired_gain

    tables = [t.sort_values("image_id") for t in tables]
    if any(list(t["image_id"]) != list(tables[0]["image_id"]) for t in tables):
        log.warning("%s: the subjects' test images differ; no image-level comparison", roi)
        return []
    return [{"roi": roi, "metric": metric,
             **paired_gain([t[metric] for t in tables], [t[f"paper_{metric}"] for t in tables])}
            for metric in metrics]


def gain_metrics(gains: Sequence[dict[str, Any]]) -> dict[str, float]:
    """:func:`image_gains` rows as metrics ``images/<roi>/gain_<metric>`` (+ ``_ci_low``,
    ``_ci_high``, ``_p``: the Wilcoxon p-value)."""
    out = {}
    for g in gains:
        key = f"images/{g['roi']}/gain_{g['metric']}"
        out.update({key: g["gain"], f"{key}_ci_low": g["ci_low"], f"{key}_ci_high": g["ci_high"],
                    f"{key}_p": g["wilcoxon_p"]})
    return out
