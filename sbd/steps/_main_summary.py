"""The summary of a ``main`` run: logged by the parent run (:func:`log_summary`) and read
back for the console (:func:`console_summary`). The figures are computed by
:mod:`sbd.metrics.summary`; this module, imported by :mod:`sbd.steps.main` only, does the
MLflow reading and logging."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from sbd import tracking
from sbd.metrics.summary import chain_metrics, console_text, gain_metrics, image_gains

log = logging.getLogger(__name__)


def console_summary(run_id: str) -> str:
    """What a user reads when ``main`` ends (:func:`sbd.metrics.summary.console_text`)."""
    run = mlflow.MlflowClient().get_run(run_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            table = pd.read_csv(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="summary.csv", dst_path=tmp))
        except Exception:  # noqa: BLE001 - no chain finished: no table
            table = pd.DataFrame()
    return console_text(run_id, run.data.metrics, table, run.data.params.get("dataset"),
                        run.data.tags.get(tracking.DATA_DIR_TAG),
                        run.data.tags.get(tracking.DATA_ID_TAG), mlflow.get_tracking_uri(),
                        run.info.experiment_id)


def log_summary(rows: list[dict], grids: list[tuple[int, str, str]]) -> None:
    """The summary (``summary.json``/``.csv``, metrics ``s<subject>/<roi>/<metric>``), the
    figures of decoding by ROI when several ran, each chain's generation overview grid and,
    per ROI run for several subjects, the gain over the paper on the test *images*
    (:func:`sbd.metrics.summary.image_gains`: ``images/<roi>/gain_<metric>`` + ``_ci_low``,
    ``_ci_high``, ``_p``, and ``summary_images.csv``)."""
    from mlflow.artifacts import download_artifacts

    from sbd.metrics.plots import plot_by_roi

    summary = pd.DataFrame(rows)
    mlflow.log_table(summary, "summary.json")
    mlflow.log_metrics(chain_metrics(summary))
    with tempfile.TemporaryDirectory() as tmp:
        summary.to_csv(Path(tmp) / "summary.csv", index=False)
        mlflow.log_artifact(str(Path(tmp) / "summary.csv"))
        if summary["roi"].nunique() > 1:
            mlflow.log_figure(plot_by_roi(summary, "test/wup_top1"), "decoding_by_roi.png")
            # what the answers say about their own sample: hedging cannot raise it
            mlflow.log_figure(plot_by_roi(summary, "test/wup_specific"),
                              "decoding_by_roi_specific.png")
        for subject, roi, gen_run in grids:
            try:
                local = download_artifacts(run_id=gen_run, artifact_path="grids/overview.png",
                                           dst_path=tmp)
            except Exception as err:  # a generation run without an overview grid
                log.warning("no overview grid in generate run %s: %s", gen_run, err)
                continue
            mlflow.log_artifact(local, artifact_path=f"overview/s{subject}-{roi}")
        gains = []
        for roi in sorted(set(summary["roi"])):
            runs = list(summary.loc[summary["roi"] == roi, "evaluate_run"])
            if len(runs) > 1:
                gains += image_gains(roi, [pd.read_csv(download_artifacts(
                    run_id=run, artifact_path="tables/test_samples.csv", dst_path=f"{tmp}/{i}"))
                    for i, run in enumerate(runs)])
        if gains:
            mlflow.log_metrics(gain_metrics(gains))
            pd.DataFrame(gains).to_csv(Path(tmp) / "summary_images.csv", index=False)
            mlflow.log_artifact(str(Path(tmp) / "summary_images.csv"))
