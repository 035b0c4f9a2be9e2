"""The ``evaluate`` entry point: every metric, table and figure of one decoder.

For the decoder (default ``models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion``) on the
test split, and separately on the imagery split when the data has one:

- metrics (stable names, see :mod:`sbd.metrics.decoding`): ``test/wup_top1``,
  ``test/wup_best_topk``, ``test/wup_chance`` (+ ``_sd``, ``_exact``, ``_p``), ``test/wup_p``,
  ``test/top1_acc``, ``test/top5_acc``, ``test/ident{2,10,50}_acc``, ``test/feature_r``, and,
  with a generation run, ``test/judge2afc_acc``, ``test/judge2afc_p``,
  ``test/gen_ident{2,10,50}_acc``; ``imagery/…`` likewise (no generated images);
- the paper's fixed pipeline (:class:`sbd.decoding.baseline.PaperPipeline`), fitted on the
  same training data and bank and scored on the same test samples: ``baseline/paper/*``
  (the same metric set), ``baseline/paper/gain_wup_top1`` and ``…/gain_top5_acc`` (decoder
  minus paper), and its labels in the sample table (``paper_top1_wnid``,
  ``paper_wup_top1``);
- the field's image metrics (:mod:`sbd.metrics.field`: PixCorr, SSIM, 2-way identification
  in AlexNet/InceptionV3/CLIP, EffNet-B1/SwAV distances, MinD-Vis's 50-way top-1, MindEye's
  retrieval) of the rank-1 generated images, ``test/gen/<metric>`` with ``_chance``,
  ``_ci_low``/``_ci_high`` (95 % bootstrap over test samples) and ``_n``, and of the nearest
  bank images to the predicted features (a reconstruction-by-retrieval baseline, also
  without a generation run): ``baseline/nearest_bank/gen/*``; the table
  ``tables/field_metrics.{json,csv}`` (rows = methods and chance, columns = metrics),
  ``tables/field_metrics_ci.{json,csv}`` (with CIs), ``tables/field_metrics_skipped.*``
  (feature spaces whose weights are not cached, and why), ``figures/field_metrics.png``;
- tables ``tables/<split>_samples.{json,csv}`` (one row per sample) and
  ``tables/<split>_categories.{json,csv}`` (one row per true category);
- figures ``figures/test_vs_paper.png`` (decoder, paper, chance),
  ``figures/<split>_wup_vs_chance.png``, ``figures/<split>_wordnet_graph.png``,
  ``figures/<split>_categories.png``; ``grids/overview.png`` copied from the generation run.

Imagery samples have no stimulus image: their true features are the mean test-stimulus
features of the imagined category (GOD's imagery categories are its test categories).
The 2AFC judge and the identification of generated images use the rank-1 images of each
test sample, embedded with the decoder's backbone, against the test stimuli's features.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.data
import numpy as np
import pandas as pd

from sbd.data.layout import features_file, resolve_data_dir
from sbd.metrics.decoding import DecodingEvaluation, evaluate_decoding, mean_ci
from sbd.metrics.generation import evaluate_generation, load_generation
from sbd.data.identity import data_identity
from sbd.registry.common import decoder_for_data, resolve_model_version
from sbd import tracking
from sbd.tracking import step_run

log = logging.getLogger(__name__)


def _voxel_table(x: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(np.asarray(x, dtype=np.float64),
                        columns=[f"v{i}" for i in range(x.shape[1])])


def predict(model: Any, voxels: np.ndarray) -> tuple[list[list[str]], list[list[str]], np.ndarray]:
    """Ranked wnids, their names, and predicted features (n, D) of a decoder pyfunc."""
    from sbd.decoding.decoder import ranked_wnids

    table = _voxel_table(voxels)
    out = model.predict(table)
    ranked = ranked_wnids(out)
    name_cols = sorted((c for c in out.columns if re.fullmatch(r"name_\d+", str(c))),
                       key=lambda c: int(str(c).split("_")[1]))
    names = ([[str(v) for v in row] for row in out[name_cols].itertuples(index=False, name=None)]
             if name_cols else [[""] * len(r) for r in ranked])
    feats = np.asarray(model.unwrap_python_model().predict_features(table), dtype=np.float32)
    if feats.shape[0] != len(ranked):
        raise ValueError(f"Decoder gave {len(ranked)} label rows but {feats.shape[0]} feature rows.")
    return ranked, names, feats


def _names(wnids) -> list[str]:
    from sbd.wordnet import name

    out = []
    for w in wnids:
        try:
            out.append(name(w))
        except ValueError:
            out.append(str(w))
    return out


def _lcs(true_wnids, decoded) -> tuple[list[str], list[str]]:
    from sbd.metrics.plots import lcs_chain

    lcs = [lcs_chain(t, d)[1] for t, d in zip(true_wnids, decoded)]
    return lcs, _names(lcs)


def category_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per true category: ``n`` and the mean of every numeric/boolean sample column."""
    numeric = [c for c in samples.columns
               if c not in ("true_wnid", "true_name", "best_rank") and
               (pd.api.types.is_numeric_dtype(samples[c]) or pd.api.types.is_bool_dtype(samples[c]))]
    g = samples.groupby(["true_wnid", "true_name"], sort=True)
    table = g[numeric].mean().reset_index()
    table.insert(2, "n", g.size().to_numpy())
    return table.rename(columns={"top1_correct": "top1_acc", "top5_correct": "top5_acc"})


# --------------------------------------------------------------------------- logging
def _log_table(df: pd.DataFrame, name: str, tmp: Path) -> None:
    mlflow.log_table(df, artifact_file=f"tables/{name}.json")
    path = tmp / f"{name}.csv"
    df.to_csv(path, index=False)
    mlflow.log_artifact(str(path), artifact_path="tables")


def _log_figures(split: str, ev: DecodingEvaluation, categories: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt

    from sbd.metrics import plots

    figs = {
        "wup_vs_chance": plots.plot_wup_vs_chance(
            ev.samples["wup_top1"], ev.chance.pair_values, ev.chance.draws,
            title=f"{split}: Wu-Palmer similarity, top-1"),
        "wordnet_graph": plots.plot_wordnet_graph(
            list(zip(ev.samples["true_wnid"], ev.samples["top1_wnid"])),
            title=f"{split}: true (green) and decoded (orange) labels in WordNet"),
        "categories": plots.plot_categories(categories, "wup_top1", chance=ev.chance.mean,
                                            title=f"{split}: top-1 Wu-Palmer per category"),
    }
    for key, fig in figs.items():
        mlflow.log_figure(fig, f"figures/{split}_{key}.png")
        plt.close(fig)


def _evaluate_split(model: Any, sample, true_features: np.ndarray | None, label_set,
                    n_chance: int, seed: int, prefix: str
                    ) -> tuple[DecodingEvaluation, np.ndarray]:
    """The split's evaluation and the decoder's predicted features (n, D)."""
    ranked, names, pred = predict(model, sample.voxels)
    if true_features is not None and true_features.shape != pred.shape:
        raise ValueError(f"Predicted features {pred.shape} and true features {true_features.shape} "
                         f"differ: is the decoder's backbone the one of the feature files?")
    ev = evaluate_decoding(sample.wnids, ranked, label_set,
                           pred if true_features is not None else None, true_features,
                           n_chance=n_chance, seed=seed, prefix=prefix)
    s = ev.samples
    lcs, lcs_names = _lcs(s["true_wnid"], s["top1_wnid"])
    s.insert(0, "image_id", sample.image_ids)
    s.insert(2, "true_name", _names(s["true_wnid"]))
    s.insert(4, "decoded_names", [";".join(n) for n in names])
    s.insert(6, "top1_name", [n[0] for n in names])
    s["lcs_wnid"], s["lcs_name"] = lcs, lcs_names
    return ev, pred


def _log_against_paper(metrics: dict[str, float]) -> None:
    import matplotlib.pyplot as plt

    from sbd.metrics.plots import plot_against_baseline

    fig = plot_against_baseline(metrics, arms=ARMS)
    mlflow.log_figure(fig, "figures/test_vs_paper.png")
    plt.close(fig)


ARMS = {"paper features + sbd labels": "attribution/paper_features/",
        "sbd features + paper labels": "attribution/sbd_features/"}
HEADLINE = ("wup_top1", "wup_shuffled", "wup_specific", "top1_acc_inbank", "top5_acc_inbank",
            "rank1_distinct", "ident2_acc")


def _paper_baseline(root: Path, subject: int, roi: str, backbone: str, test, test_feats,
                    label_set, n_chance: int, seed: int, ev: DecodingEvaluation, model: Any,
                    pred: np.ndarray) -> dict[str, float]:
    """``baseline/paper/*`` metrics of the paper's pipeline on the same test samples (its
    labels are added to ``ev.samples``), the gains over it, and the two crossed arms that
    attribute them: the paper's predicted features through sbd's label stage
    (``attribution/paper_features/*``) and sbd's through the paper's label stage
    (``attribution/sbd_features/*``)."""
    from sbd.decoding.baseline import PaperPipeline
    from sbd.decoding.training_data import load_training_data

    # what train_decoder trained on (its floor was checked there)
    X, Y, _, _ = load_training_data(root, subject, roi, backbone, min_train_fraction=0.0)
    paper = PaperPipeline().fit(X, Y, features_file(root, backbone, "bank"))
    paper_pred = paper.predict_features(test.voxels)
    sbd_labels = model.unwrap_python_model().knn.labeller
    arms = {"baseline/paper/": (paper.labeller_, paper_pred),
            ARMS["paper features + sbd labels"]: (sbd_labels, paper_pred),
            ARMS["sbd features + paper labels"]: (paper.labeller_, pred)}
    out: dict[str, float] = {}
    for prefix, (labeller, features) in arms.items():
        wnids, _ = labeller.predict_ranked(features)
        ranked = [[str(w) for w in row] for row in wnids]
        arm = evaluate_decoding(test.wnids, ranked, label_set, features, test_feats,
                                n_chance=n_chance, seed=seed, prefix=prefix)
        out.update(arm.metrics)
        if prefix == "baseline/paper/":
            ev.samples["paper_top1_wnid"] = [r[0] for r in ranked]
            ev.samples["paper_wup_top1"] = arm.samples["wup_top1"].to_numpy()
            ev.samples["paper_wup_specific"] = arm.samples["wup_specific"].to_numpy()
    for m in HEADLINE + ("top5_acc",):
        key = f"baseline/paper/{m}"
        if f"test/{m}" in ev.metrics and key in out:
            out[f"baseline/paper/gain_{m}"] = ev.metrics[f"test/{m}"] - out[key]
    gain = ev.samples["wup_specific"].to_numpy() - ev.samples["paper_wup_specific"].to_numpy()
    lo, hi = mean_ci(gain, seed=seed)
    out["baseline/paper/gain_wup_specific_ci_low"] = lo
    out["baseline/paper/gain_wup_specific_ci_high"] = hi
    return out


def _field_metrics(root: Path, backbone: str, test, have: np.ndarray,
                   gen_table: pd.DataFrame | None, pred: np.ndarray, seed: int,
                   tmp: Path) -> dict[str, float]:
    """The field's metrics (:mod:`sbd.metrics.field`) of sbd's rank-1 generated images and
    of the nearest bank images to the predicted features, on the test samples that have a
    stimulus image (and, with a generation run, a rank-1 image): ``test/gen/*`` and
    ``baseline/nearest_bank/gen/*``, the table, its CIs, its figure and what was skipped."""
    import matplotlib.pyplot as plt

    from sbd.data import god
    from sbd.features.bank import FeatureBank
    from sbd.metrics import field

    stimuli, _ = god.stimulus_paths(root, test.image_ids, "test")
    gen = (field.generated_images(gen_table, test.image_ids) if gen_table is not None
           else [[None]] * len(stimuli))
    keep = [i for i in range(len(stimuli)) if have[i] and stimuli[i] is not None and gen[i]]
    if len(keep) < 2:
        log.warning("field metrics skipped: %d test samples have a stimulus image and a "
                    "rank-1 generated image (2 needed)", len(keep))
        return {}
    n_slots = min(len(gen[i]) for i in keep) if gen_table is not None else 1
    methods = {"sbd": [gen[i] for i in keep]} if gen_table is not None else {}
    with FeatureBank(features_file(root, backbone, "bank")) as bank:
        imported = bank.attrs.get("imported_from")
        if not imported:
            methods["nearest bank image"] = field.nearest_bank_images(pred[keep], bank,
                                                                      k=n_slots)
    if imported:
        log.warning("field baseline 'nearest bank image' skipped: the bank was imported from "
                    "precomputed features (%s) and has no images to show", imported)
        mlflow.set_tag(tracking.FIELD_BASELINE_SKIPPED_TAG,
                       "nearest bank image: the bank was imported (features only, no images)")
    if not methods:
        return {}
    result = field.evaluate_field([stimuli[i] for i in keep], [test.wnids[i] for i in keep],
                                  methods, seed=seed)
    mlflow.set_tags({tracking.FIELD_CLASSIFIER_TAG: result.classifier or "none",
                     tracking.FIELD_SKIPPED_TAG: ", ".join(result.skipped) or "none"})
    _log_table(result.table, "field_metrics", tmp)
    _log_table(result.long, "field_metrics_ci", tmp)
    _log_table(pd.DataFrame({"space": list(result.skipped), "reason": list(result.skipped.values())},
                            columns=["space", "reason"]), "field_metrics_skipped", tmp)
    fig = field.plot_field_table(result.long, result.skipped,
                                 title=f"The field's metrics ({len(keep)} test samples)")
    mlflow.log_figure(fig, "figures/field_metrics.png")
    plt.close(fig)
    out = {"test/gen/n_field_samples": float(len(keep))}
    if "sbd" in result.rows:
        out.update(field.metric_dict(result.rows["sbd"], "test/gen/"))
    if "nearest bank image" in result.rows:
        out.update(field.metric_dict(result.rows["nearest bank image"],
                                     "baseline/nearest_bank/gen/"))
    return out


def _imagery_features(test_ids: list[str], test_wnids: list[str], test_feats: np.ndarray,
                      wnids: list[str]) -> np.ndarray | None:
    """Mean test-stimulus features of each imagined category; None when one is missing."""
    by: dict[str, list[int]] = {}
    for i, w in enumerate(test_wnids):
        if np.isfinite(test_feats[i]).all():  # a test image that is missing: not counted
            by.setdefault(w, []).append(i)
    missing = sorted(set(wnids) - set(by))
    if missing:
        log.warning("imagery categories without a test stimulus (%s…): no imagery feature metrics",
                    missing[:3])
        return None
    return np.stack([test_feats[by[w]].mean(axis=0) for w in wnids]).astype(np.float32)


def _check_trained_on(info: dict[str, str], identity) -> None:
    """Warn about, and tag (``sbd.data_mismatch``), a decoder trained on other data than the
    data it is evaluated on (its version's ``data_id`` tag; none on older versions)."""
    trained = info.get("data_id")
    if trained and trained != identity.data_id:
        msg = (f"decoder {info.get('name')} v{info.get('version')} was trained on data_id "
               f"{trained} ({info.get('data_dir', '?')}), evaluated on {identity.describe()}")
        log.warning("%s", msg)
        mlflow.set_tag(tracking.DATA_MISMATCH_TAG, msg)


# the headline test figures, beside the paper's and the floors, that are linked to the
# decoder's LoggedModel (the model view's columns); every other metric is logged on the run
MODEL_METRICS = frozenset(
    [f"test/{k}" for k in ("wup_top1", "wup_specific", "wup_chance", "wup_constant",
                           "top5_acc_inbank", "ident2_acc", "gen/nway_top1")]
    + [f"baseline/paper/{k}" for k in ("wup_top1", "wup_specific", "top5_acc_inbank",
                                       "ident2_acc")])


def _log_on_model(metrics: dict[str, float], info: dict[str, str], identity, test,
                  subject: int, roi: str, run_id: str) -> None:
    """Log ``metrics`` on the run, the headline ones (:data:`MODEL_METRICS`) linked (MLflow
    3's model-centric view) to the evaluated decoder's LoggedModel (``model_id``) and to
    the test data as an ``mlflow.data`` dataset named after the data folder's identity,
    subject, ROI and split (its digest is of the test voxels), so that ``mlflow.search_logged_models`` and the UI's model pages compare
    decoders by test score and say which data each figure was measured on; then add the
    headline figures to the registered version's description."""
    finite = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
    model_id = info.get("model_id") or None
    name = f"{identity.dataset}-{identity.data_id}-s{int(subject)}-{roi}-test"
    dataset = mlflow.data.from_numpy(np.asarray(test.voxels, np.float32),
                                     source=identity.data_dir, name=name)
    mlflow.log_input(dataset, context="test")
    linked = {k: v for k, v in finite.items() if k in MODEL_METRICS}
    mlflow.log_metrics({k: v for k, v in finite.items() if k not in linked})
    mlflow.log_metrics(linked, model_id=model_id, dataset=dataset)
    if model_id and "version" in info:
        from sbd.registry.decoder_model import add_test_figures

        keys = ("wup_top1", "wup_specific", "top5_acc_inbank", "ident2_acc")
        add_test_figures(info["name"], info["version"], run_id, identity.describe(),
                         {k: finite[f"test/{k}"] for k in keys if f"test/{k}" in finite},
                         {k: finite[f"baseline/paper/{k}"] for k in keys
                          if f"baseline/paper/{k}" in finite})


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
    from sbd.data import god
    from sbd.features.backbones import resolve_backbone
    from sbd.features.bank import FeatureBank

    if int(n_chance) < 1:
        raise ValueError(f"n_chance must be >= 1, got {n_chance}.")
    root = resolve_data_dir(dataset, data_dir)
    identity = data_identity(dataset, root)
    uri = decoder or decoder_for_data(dataset, subject, roi, identity.data_id)
    params = dict(decoder=decoder, dataset=dataset, data_dir=data_dir, subject=int(subject),
                  roi=roi, generate_run=generate_run, n_chance=int(n_chance), seed=int(seed))
    tags = {tracking.model_tag("decoder"): uri, **tracking.chain_tags(dataset, subject, roi),
            **tracking.data_tags(identity)}
    if generate_run:
        tags[tracking.GENERATE_RUN_TAG] = generate_run
    with step_run("evaluate", params, tags=tags) as active, \
            tempfile.TemporaryDirectory(prefix="sbd-evaluate-") as tmpdir:
        tmp = Path(tmpdir)
        info = (resolve_model_version(uri, "train_decoder")[1] if uri.startswith("models:/")
                else {})
        _check_trained_on(info, identity)
        backbone = info.get("backbone") or resolve_backbone(dataset, "")
        mlflow.set_tags({tracking.BACKBONE_TAG: backbone,
                         **({tracking.DECODER_VERSION_TAG: info["version"]} if "version" in info else {})})
        model = mlflow.pyfunc.load_model(uri)
        with FeatureBank(features_file(root, backbone, "bank")) as bank:
            label_set = sorted(set(bank.wnids.tolist()))
        with FeatureBank(features_file(root, backbone, "test")) as test_bank:
            test = god.load(root, subject, roi, "test")
            have = test_bank.has(test.image_ids)
            test_feats = np.full((len(have), test_bank.dim), np.nan, np.float32)
            if have.any():
                test_feats[have] = test_bank.lookup(np.asarray(test.image_ids)[have])
        metrics: dict[str, float] = {"data/n_test_without_image": float((~have).sum())}
        if not have.all():
            log.warning("%d of %d test samples have no readable stimulus image (e.g. %s): "
                        "decoded and scored on labels, left out of the image-based metrics "
                        "(feature identification, generated-image metrics).",
                        int((~have).sum()), len(have), np.asarray(test.image_ids)[~have][0])

        ev, pred = _evaluate_split(model, test, test_feats, label_set, n_chance, seed, "test/")
        metrics.update(ev.metrics)
        metrics.update(_paper_baseline(root, subject, roi, backbone, test, test_feats, label_set,
                                       n_chance, seed, ev, model, pred))
        gen_table = None
        if generate_run:
            _check_generation_run(generate_run, dataset, subject, roi)
            gen_table = load_generation(generate_run, tmp / "generation")
            gen_metrics, per_sample = evaluate_generation(gen_table, test.image_ids, test_feats,
                                                          backbone)
            metrics.update(gen_metrics)
            ev.samples["judge2afc"] = per_sample
            _copy_overview(generate_run, tmp)
        if have.sum() >= 2:
            metrics.update(_field_metrics(root, backbone, test, have, gen_table, pred, seed, tmp))
        splits = {"test": ev}

        try:
            imagery = god.load(root, subject, roi, "imagery")
        except ValueError as err:  # no imagery trials in this data
            log.info("no imagery evaluation: %s", err)
            imagery = None
        if imagery is not None:
            feats = _imagery_features(test.image_ids, test.wnids, test_feats, imagery.wnids)
            ev_im, _ = _evaluate_split(model, imagery, feats, label_set, n_chance, seed,
                                       "imagery/")
            metrics.update(ev_im.metrics)
            splits["imagery"] = ev_im

        _log_on_model(metrics, info, identity, test, subject, roi, active.info.run_id)
        _log_against_paper(metrics)
        for split, e in splits.items():
            categories = category_table(e.samples)
            _log_table(e.samples, f"{split}_samples", tmp)
            _log_table(categories, f"{split}_categories", tmp)
            _log_figures(split, e, categories)
        log.info("evaluate %s: wup_top1 %.3f (paper %.3f, chance %.3f, best constant %.3f), "
                 "wup_specific %.3f (paper %.3f), ident2 %.3f (paper %.3f)", uri,
                 metrics["test/wup_top1"], metrics["baseline/paper/wup_top1"],
                 metrics["test/wup_chance"], metrics["test/wup_constant"],
                 metrics["test/wup_specific"], metrics["baseline/paper/wup_specific"],
                 metrics.get("test/ident2_acc", np.nan),
                 metrics.get("baseline/paper/ident2_acc", np.nan))
        return active.info.run_id


def _check_generation_run(run_id: str, dataset: str, subject: int, roi: str) -> None:
    """A generation run of other data would give meaningless image metrics: refuse it."""
    from mlflow.exceptions import MlflowException

    try:
        tags = mlflow.MlflowClient().get_run(run_id).data.tags
    except MlflowException as err:
        raise ValueError(f"generate_run={run_id!r} is not a run of this tracking store: {err}") from err
    want = tracking.chain_tags(dataset, subject, roi)
    wrong = {k: (tags[k], v) for k, v in want.items() if k in tags and tags[k] != v}
    if wrong:
        raise ValueError(f"generate_run={run_id!r} was made for other data: "
                         + ", ".join(f"{k}={a!r} (expected {b!r})" for k, (a, b) in wrong.items()))


def _copy_overview(generate_run: str, tmp: Path) -> None:
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=generate_run, artifact_path="grids/overview.png", dst_path=str(tmp / "overview"))
    except (MlflowException, OSError) as err:
        log.warning("generate run %s has no grids/overview.png: %s", generate_run, err)
        return
    mlflow.log_artifact(local, artifact_path="grids")
