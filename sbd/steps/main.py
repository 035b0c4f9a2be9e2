"""The ``main`` entry point: the whole chain under one parent run.

prepare_data → extract_features → for each subject and ROI (:mod:`sbd.chains`):
train_decoder → generate → evaluate. Each step is a child run, reused when a finished run
with the same entry point, parameters, code and upstream runs exists
(:func:`sbd.tracking.get_or_run`; ``force=True`` reruns everything). The parent logs the
summary (:mod:`sbd.metrics.summary`, logged by :mod:`sbd.steps._main_summary`), figures of
decoding by ROI and the generation runs' overview grids. The chains (:func:`run_chain`) are independent: ``executor="ray"`` runs
them as Ray tasks (:mod:`sbd.executors`), with the same results and step cache.
"""

from __future__ import annotations

import logging

import mlflow

from sbd import chains, executors, tracking
from sbd.chains import split_list as _split  # noqa: F401  (tests import it from here)
from sbd.data.freshness import data_unchanged as _data_unchanged, features_exist
from sbd.data.identity import data_identity
from sbd.data.layout import resolve_data_dir
from sbd.metrics.summary import summary_row
from sbd.params import as_bool
from sbd.registry.common import decoder_for_data
from sbd.steps._main_summary import console_summary, log_summary  # noqa: F401  (entry point)

log = logging.getLogger(__name__)


def run(dataset: str = "phantom", data_dir: str = "", preset: str = "default",
        snr: float = -1.0, subjects: str = "1", rois: str = "VC", backbone: str = "", n_trials: int = 60,
        generator: str = "", seed: int = 0, force: bool = False, executor: str = "sequential",
        ray_address: str = "", allow_circular: bool = False) -> str:
    """Run the chain; returns the parent run id.

    ``subjects`` and ``rois`` are comma-separated lists (an ROI sweep: ``rois="V1,V2,…"``);
    ``snr`` < 0 keeps the phantom preset's calibrated value; ``backbone`` and ``generator``
    empty pick the dataset's defaults (:func:`sbd.chains.plan`). ``executor="ray"`` runs
    the chains as Ray tasks on the cluster at ``ray_address`` (empty: a local one).
    ``allow_circular`` lets a backbone the dataset is built from decode it (tagged, warned).
    A failed chain is reported with its error (``chain_errors.json``,
    ``main/n_chains_failed``) after the others have finished; then the run fails.
    """
    from sbd.steps import extract_features, prepare_data

    executors.check_executor(executor)
    root = str(resolve_data_dir(dataset, data_dir))
    allow_circular = as_bool(allow_circular)
    p = chains.plan(dataset, root, preset, subjects, rois, backbone, generator, n_trials, seed,
                    allow_circular)
    params = dict(dataset=dataset, data_dir=data_dir, preset=preset, snr=snr, subjects=subjects,
                  rois=rois, backbone=p.backbone, n_trials=n_trials, generator=p.generator,
                  seed=seed, force=force, executor=executor, ray_address=ray_address,
                  allow_circular=allow_circular)
    with tracking.step_run("main", params) as parent:
        tracking.mark_circular(p.circular)
        reused: dict[str, bool] = {}
        data_run = _step(reused, force, "prepare_data", prepare_data.run,
                         still_valid=_data_unchanged(dataset, root), dataset=dataset,
                         data_dir=root, preset=preset, snr=snr, seed=seed)
        mlflow.set_tags(tracking.data_tags(data_identity(dataset, root)))
        feat_run = _step(reused, force, "extract_features", extract_features.run, [data_run],
                         still_valid=features_exist(root, p.backbone), dataset=dataset,
                         data_dir=root, backbone=p.backbone, source="all",
                         allow_circular=allow_circular)
        if p.generator == "tiny" and executor != "sequential":
            # trained here, once, before the chains that use it start side by side
            from sbd.generate import tiny_models

            tiny_models.find_or_train(dataset, root, p.gen_opts["tiny_preset"], progress=False)
        results = executors.run_chains(
            run_chain, [dict(c, feat_run=feat_run, force=force) for c in p.chains], executor,
            ray_address, num_gpus=p.num_gpus)
        out = chains.collect(results, reused)
        if out.rows:
            log_summary(out.rows, out.grids)
        mlflow.log_metrics({"main/n_steps_reused": sum(out.reused.values()),
                            "main/n_steps_run": sum(not r for r in out.reused.values()),
                            "main/n_chains_failed": len(out.failed)})
        if out.failed:
            mlflow.log_dict(out.failed, "chain_errors.json")
            raise RuntimeError(out.failure_message(len(p.chains)))
        return parent.info.run_id


def _step(reused: dict[str, bool], force: bool, name: str, func, upstream=(), still_valid=None,
          **kwargs) -> str:
    """One step through the cache (:func:`sbd.tracking.get_or_run`); records in ``reused``
    whether it was reused."""
    run_id, was_reused = tracking.get_or_run(name, func, kwargs, upstream, force, still_valid)
    reused[f"{name}:{run_id}"] = was_reused
    log.info("%s %s run %s", name, "reused" if was_reused else "ran", run_id)
    return run_id


def run_chain(subject: int, roi: str, dataset: str, root: str, backbone: str, n_trials: int,
              seed: int, generator: str, gen_opts: dict, feat_run: str, force: bool,
              allow_circular: bool = False) -> dict:
    """One subject × ROI: train_decoder → generate → evaluate, each a child step of the
    active run.  Returns ``{"row": summary row, "grid": (subject, roi, generate run),
    "reused": {step: reused}}``; the same wherever it runs (:mod:`sbd.executors`)."""
    from sbd.steps import evaluate, generate, train_decoder

    reused: dict[str, bool] = {}
    client = mlflow.MlflowClient()
    dec_run = _step(reused, force, "train_decoder", train_decoder.run, [feat_run],
                    dataset=dataset, data_dir=root, subject=subject, roi=roi, backbone=backbone,
                    n_trials=n_trials, seed=seed, allow_circular=allow_circular)
    # the exact version this chain built (champion moves only when better)
    decoder = (client.get_run(dec_run).data.tags.get(tracking.model_tag("decoder"))
               or decoder_for_data(dataset, subject, roi, data_identity(dataset, root).data_id))
    gen_run = _step(reused, force, "generate", generate.run, [dec_run], decoder=decoder,
                    dataset=dataset, data_dir=root, subject=subject, roi=roi,
                    generator=generator, seed=seed, **gen_opts)
    eval_run = _step(reused, force, "evaluate", evaluate.run, [dec_run, gen_run],
                     decoder=decoder, dataset=dataset, data_dir=root, subject=subject, roi=roi,
                     generate_run=gen_run, seed=seed)
    row = summary_row(subject, roi, eval_run, client.get_run(eval_run).data.metrics)
    return {"row": row, "grid": (subject, roi, gen_run), "reused": reused}
