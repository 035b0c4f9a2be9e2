"""The ``evaluate`` entry point: every metric, table and figure of one decoder.

:func:`sbd.metrics.report.evaluate_decoder` evaluates the decoder (default
``models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion``) and its generation run (its
module doc lists the metrics); this step logs its metrics (the headline ones,
:data:`~sbd.metrics.report.MODEL_METRICS`, linked to the decoder's LoggedModel), its tables
``tables/<name>.{json,csv}`` (:meth:`~sbd.metrics.report.EvaluationReport.tables`), its
figures ``figures/<name>.png`` (:func:`sbd.metrics.plots.report_figures`) and the
generation run's ``grids/overview.png``.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from sbd import tracking
from sbd.data.identity import data_identity
from sbd.data.layout import resolve_data_dir
from sbd.metrics import generation, plots, report as rep
from sbd.registry.common import decoder_for_data, resolve_model_version

log = logging.getLogger(__name__)


def _log_report(r: rep.EvaluationReport, tmp: Path) -> None:
    """The report's tables (json and csv), figures and field tags (module doc)."""
    import matplotlib.pyplot as plt

    for name, df in r.tables().items():
        mlflow.log_table(df, artifact_file=f"tables/{name}.json")
        df.to_csv(tmp / f"{name}.csv", index=False)
        mlflow.log_artifact(str(tmp / f"{name}.csv"), artifact_path="tables")
    for key, fig in plots.report_figures(r).items():
        mlflow.log_figure(fig, f"figures/{key}.png")
        plt.close(fig)
    if r.bank_imported:
        mlflow.set_tag(tracking.FIELD_BASELINE_SKIPPED_TAG, rep.IMPORTED_BANK_REASON)
    if r.field is not None:
        mlflow.set_tags({tracking.FIELD_CLASSIFIER_TAG: r.field.result.classifier or "none",
                         tracking.FIELD_SKIPPED_TAG: ", ".join(r.field.result.skipped) or "none"})


def _open_decoder(uri: str, identity, dataset: str) -> tuple[object, dict[str, str], str]:
    """The decoder pyfunc, its version's tags, its backbone (tagged); warns about and tags
    (``sbd.data_mismatch``) a decoder trained on other data (its ``data_id`` tag)."""
    from sbd.features.backbones import resolve_backbone

    info = resolve_model_version(uri, "train_decoder")[1] if uri.startswith("models:/") else {}
    if info.get("data_id") and info["data_id"] != identity.data_id:
        msg = (f"decoder {info.get('name')} v{info.get('version')} was trained on data_id "
               f"{info['data_id']} ({info.get('data_dir', '?')}), evaluated on {identity.describe()}")
        log.warning("%s", msg)
        mlflow.set_tag(tracking.DATA_MISMATCH_TAG, msg)
    backbone = info.get("backbone") or resolve_backbone(dataset, "")
    mlflow.set_tags({tracking.BACKBONE_TAG: backbone,
                     **({tracking.DECODER_VERSION_TAG: info["version"]} if "version" in info else {})})
    return mlflow.pyfunc.load_model(uri), info, backbone


def _log_on_model(metrics: dict[str, float], info: dict[str, str], identity, test,
                  subject: int, roi: str, run_id: str) -> None:
    """Log ``metrics``, the headline ones linked to the decoder's LoggedModel and to the test
    data (an ``mlflow.data`` dataset: data identity, subject, ROI, split); describe the version."""
    finite = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
    model_id = info.get("model_id") or None
    name = f"{identity.dataset}-{identity.data_id}-s{int(subject)}-{roi}-test"
    dataset = mlflow.data.from_numpy(np.asarray(test.voxels, np.float32),
                                     source=identity.data_dir, name=name)
    mlflow.log_input(dataset, context="test")
    linked = {k: v for k, v in finite.items() if k in rep.MODEL_METRICS}
    mlflow.log_metrics({k: v for k, v in finite.items() if k not in linked})
    mlflow.log_metrics(linked, model_id=model_id, dataset=dataset)
    if model_id and "version" in info:
        from sbd.registry.decoder_model import add_test_figures

        add_test_figures(info["name"], info["version"], run_id, identity.describe(),
                         *({k: finite[f"{p}{k}"] for k in rep.DESCRIBED if f"{p}{k}" in finite}
                           for p in ("test/", "baseline/paper/")))


def run(decoder: str = "", dataset: str = "phantom", data_dir: str = "", subject: int = 1,
        roi: str = "VC", generate_run: str = "", n_chance: int = 1000, seed: int = 0) -> str:
    """Evaluate a decoder (and its generated images); returns the MLflow run id.

    Parameters
    ----------
    decoder : model URI; "" → the champion decoder of dataset/subject/roi
    dataset, data_dir : data (``data_dir`` "" → the dataset's default folder)
    subject, roi : the fMRI data the decoder reads
    generate_run : run id of a ``generate`` run of this decoder, or "" (no image metrics)
    n_chance : chance draws and permutations (>= 1000 recommended)
    seed : seed of the chance draws and permutations
    """
    if int(n_chance) < 1:
        raise ValueError(f"n_chance must be >= 1, got {n_chance}.")
    root = resolve_data_dir(dataset, data_dir)
    identity = data_identity(dataset, root)
    uri = decoder or decoder_for_data(dataset, subject, roi, identity.data_id)
    params = dict(decoder=decoder, dataset=dataset, data_dir=data_dir, subject=int(subject),
                  roi=roi, generate_run=generate_run, n_chance=int(n_chance), seed=int(seed))
    tags = {tracking.model_tag("decoder"): uri, **tracking.chain_tags(dataset, subject, roi),
            **tracking.data_tags(identity),
            **({tracking.GENERATE_RUN_TAG: generate_run} if generate_run else {})}
    with tracking.step_run("evaluate", params, tags=tags) as active, \
            tempfile.TemporaryDirectory(prefix="sbd-evaluate-") as tmpdir:
        tmp = Path(tmpdir)
        model, info, backbone = _open_decoder(uri, identity, dataset)
        gen_table = (_load_generation(generate_run, tracking.chain_tags(dataset, subject, roi),
                                      tmp / "generation") if generate_run else None)
        r = rep.evaluate_decoder(model, root, int(subject), roi, backbone, gen_table,
                                 int(n_chance), int(seed))
        _log_on_model(r.metrics, info, identity, r.test, subject, roi, active.info.run_id)
        _log_report(r, tmp)
        log.info("evaluate %s: %s", uri, rep.headline(r.metrics))
        return active.info.run_id


def _load_generation(run_id: str, want: dict[str, str], dst: Path) -> pd.DataFrame:
    """The generation run's table (:mod:`sbd.metrics.generation`), images downloaded under
    ``dst``, its ``grids/overview.png`` logged here; a ValueError naming the run when it is
    not in this store, was made for other data (tags other than ``want``) or lacks its table."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    try:
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
    except MlflowException as err:
        raise ValueError(f"generate_run={run_id!r} is not a run of this tracking store: {err}") from err
    generation.check_run_tags(run_id, tags, want)
    try:
        csv = download_artifacts(run_id=run_id, artifact_path=generation.GENERATION_CSV,
                                 dst_path=str(dst))
    except (MlflowException, OSError) as err:
        raise ValueError(f"Generation run {run_id} has no {generation.GENERATION_CSV} artifact: "
                         f"{err}") from err
    table = generation.read_generation(csv, f"run {run_id}")
    for top in generation.image_folders(table):  # usually just "generated/"
        download_artifacts(run_id=run_id, artifact_path=top, dst_path=str(dst))
    try:
        mlflow.log_artifact(download_artifacts(run_id=run_id, artifact_path="grids/overview.png",
                                               dst_path=str(dst / "overview")), "grids")
    except (MlflowException, OSError) as err:
        log.warning("generate run %s has no grids/overview.png: %s", run_id, err)
    return generation.with_local_paths(table, dst)
