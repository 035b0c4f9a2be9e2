"""The ``main`` entry point: the whole chain under one parent run.

prepare_data → extract_features → for each subject and ROI: train_decoder (the whole
decoder tuned as one unit and registered) → generate → evaluate (beside the paper's
pipeline on the same samples).  Each step is a child run, reused when a finished
run with the same entry point, parameters, git commit and upstream runs exists
(:func:`sbd.tracking.get_or_run`); ``force=True`` reruns everything.  The parent logs a
summary table (subject × ROI × metric), a figure of decoding by ROI when several ROIs
ran, and the overview grids of the generation runs.  The subject × ROI chains
(:func:`run_chain`) are independent: ``executor="ray"`` runs them as Ray tasks
(:mod:`sbd.executors`), with the same results and the same step cache.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from sbd import executors, tracking
from sbd.data.layout import STIMULUS_SETS, features_file, image_list_csv, resolve_data_dir
from sbd.params import as_bool
from sbd.data.identity import data_identity
from sbd.registry.common import decoder_for_data

log = logging.getLogger(__name__)

ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA", "LVC", "HVC", "VC")
DEFAULT_GENERATOR = {"phantom": "tiny", "god": "sd", "god-npz": "sd"}
# generators whose chains ask the Ray cluster for a GPU
GPU_GENERATORS = ("sd", "dit")
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


def console_summary(run_id: str) -> str:
    """What a user reads when ``main`` ends: per subject × ROI the headline measures beside
    the paper's pipeline (same samples) and their floors (uniform chance, the best constant
    answer), the run id, and where to look in the UI."""
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    m = run.data.metrics
    with tempfile.TemporaryDirectory() as tmp:
        try:
            table = pd.read_csv(mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="summary.csv", dst_path=tmp))
        except Exception:  # noqa: BLE001 - no chain finished: no table
            table = pd.DataFrame()

    def f(v, digits=3):
        return "n/a" if v is None or pd.isna(v) else f"{v:.{digits}f}"

    lines = [f"main run {run_id}: {int(m.get('main/n_steps_run', 0))} steps run, "
             f"{int(m.get('main/n_steps_reused', 0))} reused, "
             f"{int(m.get('main/n_chains_failed', 0))} chains failed"]
    if not table.empty:
        rows = []
        for r in table.to_dict("records"):
            def vs_paper(key: str, digits: int = 3) -> str:
                return (f"{f(r.get(f'test/{key}'), digits)} / "
                        f"{f(r.get(f'baseline/paper/{key}'), digits)}")

            rows.append({
                "subject": r["subject"], "roi": r["roi"],
                "wup_top1 sbd/paper": vs_paper("wup_top1"),
                "chance/constant": f"{f(r.get('test/wup_chance'))} / "
                                   f"{f(r.get('test/wup_constant'))}",
                "wup_specific sbd [95% CI] / paper":
                    f"{f(r.get('test/wup_specific'))} [{f(r.get('test/wup_specific_ci_low'))}, "
                    f"{f(r.get('test/wup_specific_ci_high'))}] / "
                    f"{f(r.get('baseline/paper/wup_specific'))}",
                "top5 in bank sbd/paper (chance)":
                    f"{vs_paper('top5_acc_inbank', 2)} "
                    f"({f(r.get('test/top5_chance_inbank'), 3)})",
                "ident2 sbd/paper": vs_paper("ident2_acc"),
            })
        lines += ["", pd.DataFrame(rows).to_string(index=False), "",
                  "wup_specific = wup_top1 minus the same answers scored against the other "
                  "samples (0: the answers say nothing about their own sample); top5 in bank: "
                  "exact top-5 over the samples whose category the bank holds; chance/constant: "
                  "uniform labels / the best single label for every sample."]
    data_id = run.data.tags.get(tracking.DATA_ID_TAG)
    if data_id:
        lines += ["", f"Data: {run.data.params.get('dataset')} in "
                      f"{run.data.tags.get(tracking.DATA_DIR_TAG)} (data_id {data_id}); its "
                      f"decoders: models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion-{data_id}"]
    uri = mlflow.get_tracking_uri()
    exp = run.info.experiment_id
    ui = (f"mlflow ui --backend-store-uri {uri}" if not uri.startswith("http") else uri)
    lines += ["", f"Look: {ui}  ->  experiment {exp}, run {run_id} "
                  f"(#/experiments/{exp}/runs/{run_id}); figures under its child runs "
                  "(evaluate: figures/test_vs_paper.png; generate: grids/overview.png)."]
    return "\n".join(lines)


def _split(text: str | list | tuple, what: str, valid: tuple[str, ...] | None = None) -> list[str]:
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if str(t).strip()]
    if not items:
        raise ValueError(f"{what} is empty; give a comma-separated list.")
    if valid is not None:
        unknown = [t for t in items if t not in valid]
        if unknown:
            raise ValueError(f"Unknown {what}={unknown!r}; valid: {', '.join(valid)}.")
    return items


def run(dataset: str = "phantom", data_dir: str = "", preset: str = "default",
        snr: float = -1.0, subjects: str = "1", rois: str = "VC", backbone: str = "", n_trials: int = 60,
        generator: str = "", seed: int = 0, force: bool = False, executor: str = "sequential",
        ray_address: str = "", allow_circular: bool = False) -> str:
    """Run the chain; returns the parent run id.

    ``subjects`` and ``rois`` are comma-separated lists (an ROI sweep: ``rois="V1,V2,…"``);
    ``snr`` < 0 keeps the phantom preset's calibrated value; ``backbone`` and ``generator``
    empty pick the dataset's defaults (phantom: efficientnet-lite0 + tiny; god and god-npz:
    resnet50 + sd).
    The subject × ROI chains (train_decoder → generate → evaluate) are independent:
    ``executor="ray"`` runs them as Ray tasks on the cluster at ``ray_address`` (empty: a
    local one), see :mod:`sbd.executors`.  ``allow_circular`` lets a backbone the dataset
    is built from decode it (refused otherwise; tagged and warned).  A failed chain is reported with its error
    (``chain_errors.json``, ``main/n_chains_failed``) after the others have finished, and
    then the run fails.
    """
    from sbd.features.backbones import check_circular, resolve_backbone
    from sbd.steps import extract_features, prepare_data

    executors.check_executor(executor)
    root = str(resolve_data_dir(dataset, data_dir))
    subject_list = [int(s) for s in _split(subjects, "subjects")]
    roi_list = _split(rois, "rois", ROIS)
    backbone = resolve_backbone(dataset, backbone)
    allow_circular = as_bool(allow_circular)
    circular = check_circular(dataset, backbone, allow_circular)
    generator = generator or DEFAULT_GENERATOR[dataset]
    params = dict(dataset=dataset, data_dir=data_dir, preset=preset, snr=snr, subjects=subjects,
                  rois=rois, backbone=backbone, n_trials=n_trials, generator=generator,
                  seed=seed, force=force, executor=executor, ray_address=ray_address,
                  allow_circular=allow_circular)
    with tracking.step_run("main", params) as parent:
        tracking.mark_circular(circular)
        reused: dict[str, bool] = {}
        data_run = _step(reused, force, "prepare_data", prepare_data.run,
                         still_valid=_data_unchanged(dataset, root), dataset=dataset,
                         data_dir=root, preset=preset, snr=snr, seed=seed)
        mlflow.set_tags(tracking.data_tags(data_identity(dataset, root)))
        feat_run = _step(reused, force, "extract_features", extract_features.run, [data_run],
                         still_valid=_features_exist(root, backbone), dataset=dataset,
                         data_dir=root, backbone=backbone, source="all",
                         allow_circular=allow_circular)
        # the tiny generator trains once per dataset; a test-sized phantom gets a short training
        gen_opts = ({"tiny_preset": "default" if preset == "default" else "small"}
                    if generator == "tiny" else {})
        if generator == "tiny" and executor != "sequential":
            # trained here, once, before the chains that use it start side by side
            from sbd.generate import tiny_models

            tiny_models.find_or_train(dataset, root, gen_opts["tiny_preset"], progress=False)
        chains = [dict(subject=subject, roi=roi, dataset=dataset, root=root, backbone=backbone,
                       n_trials=n_trials, seed=seed, generator=generator, gen_opts=gen_opts,
                       feat_run=feat_run, force=force, allow_circular=allow_circular)
                  for subject in subject_list for roi in roi_list]
        results = executors.run_chains(
            run_chain, chains, executor, ray_address,
            num_gpus=1 if generator in GPU_GENERATORS else 0)
        rows, grids, failed = [], [], []
        for result in results:
            if not result.ok:
                failed.append({"subject": result.kwargs["subject"], "roi": result.kwargs["roi"],
                               "error": result.error})
                continue
            rows.append(result.value["row"])
            grids.append(result.value["grid"])
            reused.update(result.value["reused"])
        if rows:
            _log_summary(pd.DataFrame(rows), grids)
            _log_images_vs_paper(rows)
        mlflow.log_metrics({"main/n_steps_reused": sum(reused.values()),
                            "main/n_steps_run": sum(not r for r in reused.values()),
                            "main/n_chains_failed": len(failed)})
        if failed:
            mlflow.log_dict(failed, "chain_errors.json")
            raise RuntimeError(
                f"{len(failed)} of {len(chains)} chains failed (the others finished and are "
                "logged): " + "; ".join(f"s{f['subject']} {f['roi']}: "
                                        f"{f['error'].strip().splitlines()[-1]}" for f in failed))
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
    metrics = client.get_run(eval_run).data.metrics
    row = {"subject": subject, "roi": roi, "evaluate_run": eval_run,
           **{m: metrics.get(m) for m in SUMMARY_METRICS}}
    return {"row": row, "grid": (subject, roi, gen_run), "reused": reused}


def _features_exist(root: str, backbone: str):
    """A cached ``extract_features`` run counts only while its feature files still exist."""
    def check(run) -> bool:
        return all(features_file(root, backbone, s).is_file()
                   for s in ("training", "test", "bank"))

    return check


def _data_unchanged(dataset: str, root: str):
    """A check that a cached ``prepare_data`` run still describes the data on disk.  The
    phantom: one data folder holds one build, and a run with other params (e.g. ``snr``)
    rebuilds it.  A Kamitani npz package (god-npz): its files are those the run validated
    (names, sizes, times) and the stimulus images it wrote out are still listed.  None
    (always valid) for GOD."""
    if dataset == "god-npz":
        def check_npz(run) -> bool:
            from sbd.steps import prepare_data

            return (run.data.tags.get(prepare_data.PACKAGE_KEY_TAG)
                    == prepare_data.npz_package_key(root)
                    and all(image_list_csv(root, s).is_file() for s in STIMULUS_SETS))

        return check_npz
    if dataset != "phantom":
        return None

    def check(run) -> bool:
        from sbd.data import phantom

        manifest = phantom.read_manifest(root) or {}
        return run.data.tags.get("sbd.data.fmri_key") == manifest.get("fmri_key")

    return check


def _log_images_vs_paper(rows: list[dict]) -> None:
    """Per ROI run for several subjects: the decoder's gain over the paper's pipeline on
    the test *images* (the subjects saw the same ones: per image, averaged over subjects,
    then images resampled; :func:`sbd.metrics.decoding.paired_gain`), as metrics
    ``images/<roi>/gain_<metric>`` (+ ``_ci_low``, ``_ci_high``, ``_p``) and the table
    ``summary_images.csv``."""
    from sbd.metrics.decoding import paired_gain

    out = []
    for roi in sorted({r["roi"] for r in rows}):
        runs = [r["evaluate_run"] for r in rows if r["roi"] == roi]
        if len(runs) < 2:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            tables = [pd.read_csv(mlflow.artifacts.download_artifacts(
                run_id=run, artifact_path="tables/test_samples.csv", dst_path=f"{tmp}/{i}")
                ).sort_values("image_id") for i, run in enumerate(runs)]
        if any(list(t["image_id"]) != list(tables[0]["image_id"]) for t in tables):
            log.warning("%s: the subjects' test images differ; no image-level comparison", roi)
            continue
        for metric in ("wup_specific", "wup_top1"):
            g = paired_gain([t[metric] for t in tables], [t[f"paper_{metric}"] for t in tables])
            out.append({"roi": roi, "metric": metric, **g})
            mlflow.log_metrics({f"images/{roi}/gain_{metric}": g["gain"],
                                f"images/{roi}/gain_{metric}_ci_low": g["ci_low"],
                                f"images/{roi}/gain_{metric}_ci_high": g["ci_high"],
                                f"images/{roi}/gain_{metric}_p": g["wilcoxon_p"]})
    if out:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "summary_images.csv"
            pd.DataFrame(out).to_csv(path, index=False)
            mlflow.log_artifact(str(path))


def _log_summary(summary: pd.DataFrame, grids: list[tuple[int, str, str]]) -> None:
    mlflow.log_table(summary, "summary.json")
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "summary.csv"
        summary.to_csv(csv, index=False)
        mlflow.log_artifact(str(csv))
        if summary["roi"].nunique() > 1:
            from sbd.metrics.plots import plot_by_roi

            mlflow.log_figure(plot_by_roi(summary, "test/wup_top1"), "decoding_by_roi.png")
            # what the answers say about their own sample: hedging cannot raise it
            mlflow.log_figure(plot_by_roi(summary, "test/wup_specific"),
                              "decoding_by_roi_specific.png")
        for subject, roi, gen_run in grids:
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=gen_run, artifact_path="grids/overview.png", dst_path=tmp)
            except Exception as err:  # a generation run without an overview grid
                log.warning("no overview grid in generate run %s: %s", gen_run, err)
                continue
            mlflow.log_artifact(local, artifact_path=f"overview/s{subject}-{roi}")
    for row in summary.to_dict("records"):
        for m in SUMMARY_METRICS:
            if row.get(m) is not None:
                mlflow.log_metric(f"s{row['subject']}/{row['roi']}/{m}", row[m])
