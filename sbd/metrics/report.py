"""Every figure of one decoder on the test split (and the imagery split when the data has
one), computed and returned as an :class:`EvaluationReport` (:func:`evaluate_decoder`); the
``evaluate`` step logs it.

- metrics (stable names, see :mod:`sbd.metrics.decoding`): ``test/wup_top1``,
  ``test/wup_best_topk``, ``test/wup_chance`` (+ ``_sd``, ``_exact``, ``_p``), ``test/wup_p``,
  ``test/top1_acc``, ``test/top5_acc``, ``test/ident{2,10,50}_acc``, ``test/feature_r``, and,
  with a generation table, ``test/judge2afc_acc``, ``test/judge2afc_p``,
  ``test/gen_ident{2,10,50}_acc`` (:mod:`sbd.metrics.generation`); ``imagery/…`` likewise (no
  generated images); ``data/n_test_without_image``;
- the reference decoders of :mod:`sbd.metrics.baselines` on the same test samples
  (``baseline/paper/*``, its gains and the attribution arms) and their labels in the sample
  table (``paper_top1_wnid``, ``paper_wup_top1``, ``paper_wup_specific``);
- the field's image metrics (:mod:`sbd.metrics.field`) of the rank-1 generated images,
  ``test/gen/<metric>`` with ``_chance``, ``_ci_low``/``_ci_high`` and ``_n``, and of the
  nearest bank images to the predicted features (a reconstruction-by-retrieval baseline,
  also without a generation table): ``baseline/nearest_bank/gen/*``;
- per split, one row per sample (:class:`~sbd.metrics.decoding.DecodingEvaluation`
  ``samples``, with names, the lowest common subsumer and the baselines' labels) and one row
  per true category (:func:`category_table`).

Imagery samples have no stimulus image: their true features are the mean test-stimulus
features of the imagined category (GOD's imagery categories are its test categories).
The 2AFC judge and the identification of generated images use the rank-1 images of each
test sample, embedded with the decoder's backbone, against the test stimuli's features.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from sbd.data.layout import features_file
from sbd.metrics.baselines import score_baselines
from sbd.metrics.decoding import DecodingEvaluation, evaluate_decoding

__all__ = ["EvaluationReport", "FieldReport", "evaluate_decoder", "predict", "ranked_names",
           "category_table", "imagery_features", "field_report", "headline",
           "MODEL_METRICS", "DESCRIBED"]

log = logging.getLogger(__name__)

# the headline test figures, beside the paper's and the floors: the ones the evaluate step
# links to the decoder's LoggedModel (the model view's columns); DESCRIBED go into the
# registered version's description
MODEL_METRICS = frozenset(
    [f"test/{k}" for k in ("wup_top1", "wup_specific", "wup_chance", "wup_constant",
                           "top5_acc_inbank", "ident2_acc", "gen/nway_top1")]
    + [f"baseline/paper/{k}" for k in ("wup_top1", "wup_specific", "top5_acc_inbank",
                                       "ident2_acc")])
DESCRIBED = ("wup_top1", "wup_specific", "top5_acc_inbank", "ident2_acc")
# why the nearest-bank-image baseline did not run (sbd.tracking.FIELD_BASELINE_SKIPPED_TAG)
IMPORTED_BANK_REASON = "nearest bank image: the bank was imported (features only, no images)"


@dataclass
class FieldReport:
    """The field's metrics (:func:`sbd.metrics.field.evaluate_field`) of ``n`` test samples:
    ``result`` (tables, rows, classifier, skipped spaces) and the MLflow ``metrics``."""

    result: Any
    n: int
    metrics: dict[str, float]


@dataclass
class EvaluationReport:
    """Everything :func:`evaluate_decoder` computed.

    Attributes
    ----------
    metrics : metric name → value (module doc)
    splits : ``test`` (and ``imagery``) → the split's evaluation (``samples`` one row per sample)
    categories : split → one row per true category (:func:`category_table`)
    test : the test split as loaded (``sbd.data.god.load``)
    field : the field's metrics, or None (fewer than 2 samples with images, or no method)
    bank_imported : what the bank was imported from ("" when extracted here: then the
        nearest-bank-image baseline ran)
    """

    metrics: dict[str, float]
    splits: dict[str, DecodingEvaluation]
    test: Any
    categories: dict[str, pd.DataFrame] = dataclasses.field(default_factory=dict)
    field: FieldReport | None = None
    bank_imported: str = ""

    def tables(self) -> dict[str, pd.DataFrame]:
        """Name → table: ``<split>_samples``, ``<split>_categories`` and, with the field's
        metrics, ``field_metrics`` (methods and chance × metrics), ``field_metrics_ci``
        (long, with CIs) and ``field_metrics_skipped`` (feature spaces not scored, why)."""
        out = {}
        if self.field is not None:
            f = self.field.result
            out["field_metrics"], out["field_metrics_ci"] = f.table, f.long
            out["field_metrics_skipped"] = pd.DataFrame(
                {"space": list(f.skipped), "reason": list(f.skipped.values())},
                columns=["space", "reason"])
        for split, e in self.splits.items():
            out[f"{split}_samples"], out[f"{split}_categories"] = e.samples, self.categories[split]
        return out


def ranked_names(out: pd.DataFrame, ranked: Sequence[Sequence[str]]) -> list[list[str]]:
    """Per row of a decoder output table, its label names in rank order
    (:func:`sbd.decoding.decoder.ranked_names`; empty strings, as many as the row's
    ``ranked`` wnids, when it has none)."""
    from sbd.decoding.decoder import ranked_names as names

    found = names(out)
    return [[""] * len(r) for r in ranked] if found is None else found


def predict(model: Any, voxels: np.ndarray) -> tuple[list[list[str]], list[list[str]], np.ndarray]:
    """Ranked wnids, their names, and predicted features (n, D) of a decoder pyfunc."""
    from sbd.decoding.decoder import ranked_wnids

    from sbd.decoding.decoder import voxel_table

    table = voxel_table(voxels)
    out = model.predict(table)
    ranked = ranked_wnids(out)
    feats = np.asarray(model.unwrap_python_model().predict_features(table), dtype=np.float32)
    if feats.shape[0] != len(ranked):
        raise ValueError(f"Decoder gave {len(ranked)} label rows but {feats.shape[0]} feature rows.")
    return ranked, ranked_names(out, ranked), feats


def wordnet_names(wnids: Sequence[str]) -> list[str]:
    """WordNet names of ``wnids`` (the wnid itself where WordNet has none)."""
    from sbd.wordnet import name

    out = []
    for w in wnids:
        try:
            out.append(name(w))
        except ValueError:
            out.append(str(w))
    return out


def category_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per true category: ``n`` and the mean of every numeric/boolean sample column."""
    numeric = [c for c in samples.columns
               if c not in ("true_wnid", "true_name", "best_rank") and
               (pd.api.types.is_numeric_dtype(samples[c]) or pd.api.types.is_bool_dtype(samples[c]))]
    g = samples.groupby(["true_wnid", "true_name"], sort=True)
    table = g[numeric].mean().reset_index()
    table.insert(2, "n", g.size().to_numpy())
    return table.rename(columns={"top1_correct": "top1_acc", "top5_correct": "top5_acc"})


def evaluate_split(model: Any, sample: Any, true_features: np.ndarray | None,
                   label_set: Sequence[str], n_chance: int, seed: int, prefix: str
                   ) -> tuple[DecodingEvaluation, np.ndarray]:
    """The split's evaluation (its sample table with image ids, names and the lowest common
    subsumer of true and top-1 labels) and the decoder's predicted features (n, D)."""
    from sbd.metrics.plots import lcs_chain

    ranked, names, pred = predict(model, sample.voxels)
    if true_features is not None and true_features.shape != pred.shape:
        raise ValueError(f"Predicted features {pred.shape} and true features {true_features.shape} "
                         f"differ: is the decoder's backbone the one of the feature files?")
    ev = evaluate_decoding(sample.wnids, ranked, label_set,
                           pred if true_features is not None else None, true_features,
                           n_chance=n_chance, seed=seed, prefix=prefix)
    s = ev.samples
    lcs = [lcs_chain(t, d)[1] for t, d in zip(s["true_wnid"], s["top1_wnid"])]
    s.insert(0, "image_id", sample.image_ids)
    s.insert(2, "true_name", wordnet_names(s["true_wnid"]))
    s.insert(4, "decoded_names", [";".join(n) for n in names])
    s.insert(6, "top1_name", [n[0] for n in names])
    s["lcs_wnid"], s["lcs_name"] = lcs, wordnet_names(lcs)
    return ev, pred


def imagery_features(test_wnids: Sequence[str], test_feats: np.ndarray,
                     wnids: Sequence[str]) -> np.ndarray | None:
    """Mean test-stimulus features (len(wnids), D) of each imagined category; None when one
    is missing."""
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


def load_test(root: Path, subject: int, roi: str, backbone: str
              ) -> tuple[list[str], Any, np.ndarray, np.ndarray]:
    """The bank's label set, the test split, which test samples have a stimulus image
    (``have`` (n,) bool) and their stimulus features (n, D; NaN rows without an image)."""
    from sbd.data import god
    from sbd.features.bank import FeatureBank

    with FeatureBank(features_file(root, backbone, "bank")) as bank:
        label_set = sorted(set(bank.wnids.tolist()))
    with FeatureBank(features_file(root, backbone, "test")) as test_bank:
        test = god.load(root, subject, roi, "test")
        have = test_bank.has(test.image_ids)
        test_feats = np.full((len(have), test_bank.dim), np.nan, np.float32)
        if have.any():
            test_feats[have] = test_bank.lookup(np.asarray(test.image_ids)[have])
    if not have.all():
        log.warning("%d of %d test samples have no readable stimulus image (e.g. %s): "
                    "decoded and scored on labels, left out of the image-based metrics "
                    "(feature identification, generated-image metrics).",
                    int((~have).sum()), len(have), np.asarray(test.image_ids)[~have][0])
    return label_set, test, have, test_feats


def field_report(root: Path, backbone: str, test: Any, have: np.ndarray,
                 gen_table: pd.DataFrame | None, pred: np.ndarray, seed: int
                 ) -> tuple[FieldReport | None, str]:
    """The field's metrics (:mod:`sbd.metrics.field`) of sbd's rank-1 generated images and
    of the nearest bank images to the predicted features, on the test samples that have a
    stimulus image (and, with a generation table, a rank-1 image); and what the bank was
    imported from ("" when extracted here; then the nearest-bank-image baseline ran)."""
    from sbd.data import god
    from sbd.features.bank import FeatureBank
    from sbd.metrics import field as fm

    stimuli, _ = god.stimulus_paths(root, test.image_ids, "test")
    gen = (fm.generated_images(gen_table, test.image_ids) if gen_table is not None
           else [[None]] * len(stimuli))
    keep = [i for i in range(len(stimuli)) if have[i] and stimuli[i] is not None and gen[i]]
    if len(keep) < 2:
        log.warning("field metrics skipped: %d test samples have a stimulus image and a "
                    "rank-1 generated image (2 needed)", len(keep))
        return None, ""
    n_slots = min(len(gen[i]) for i in keep) if gen_table is not None else 1
    methods = {"sbd": [gen[i] for i in keep]} if gen_table is not None else {}
    with FeatureBank(features_file(root, backbone, "bank")) as bank:
        imported = str(bank.attrs.get("imported_from") or "")
        if not imported:
            methods["nearest bank image"] = fm.nearest_bank_images(pred[keep], bank, k=n_slots)
    if imported:
        log.warning("field baseline 'nearest bank image' skipped: the bank was imported from "
                    "precomputed features (%s) and has no images to show", imported)
    if not methods:
        return None, imported
    result = fm.evaluate_field([stimuli[i] for i in keep], [test.wnids[i] for i in keep],
                               methods, seed=seed)
    out = {"test/gen/n_field_samples": float(len(keep))}
    if "sbd" in result.rows:
        out.update(fm.metric_dict(result.rows["sbd"], "test/gen/"))
    if "nearest bank image" in result.rows:
        out.update(fm.metric_dict(result.rows["nearest bank image"], "baseline/nearest_bank/gen/"))
    return FieldReport(result, len(keep), out), imported


def evaluate_decoder(model: Any, root: Path, subject: int, roi: str, backbone: str,
                     gen_table: pd.DataFrame | None = None, n_chance: int = 1000, seed: int = 0,
                     baselines: Sequence[str] = ("paper",)) -> EvaluationReport:
    """Evaluate a decoder pyfunc on the data in ``root`` (module doc).

    Parameters
    ----------
    model : the decoder pyfunc (``predict`` → ranked table; its python model's
        ``predict_features`` and ``knn.labeller``)
    root, subject, roi : the data the decoder reads; backbone : its feature files
    gen_table : a generation run's table with local image paths
        (``sbd.metrics.generation``), or None (no image metrics of generated images)
    n_chance : chance draws and permutations; seed : their seed (and the bootstraps')
    baselines : names in :data:`sbd.decoding.baseline.BASELINES` scored beside the decoder
    """
    from sbd.data import god
    from sbd.metrics.generation import evaluate_generation

    label_set, test, have, test_feats = load_test(root, subject, roi, backbone)
    metrics: dict[str, float] = {"data/n_test_without_image": float((~have).sum())}
    ev, pred = evaluate_split(model, test, test_feats, label_set, n_chance, seed, "test/")
    metrics.update(ev.metrics)
    metrics.update(score_baselines(root, subject, roi, backbone, test, test_feats, label_set, ev,
                                   model.unwrap_python_model().knn.labeller, pred, n_chance,
                                   seed, baselines))
    if gen_table is not None:
        gen_metrics, per_sample = evaluate_generation(gen_table, test.image_ids, test_feats,
                                                      backbone)
        metrics.update(gen_metrics)
        ev.samples["judge2afc"] = per_sample
    report = EvaluationReport(metrics, {"test": ev}, test)
    if have.sum() >= 2:
        report.field, report.bank_imported = field_report(root, backbone, test, have, gen_table,
                                                          pred, seed)
        metrics.update(report.field.metrics if report.field else {})
    try:
        imagery = god.load(root, subject, roi, "imagery")
    except ValueError as err:  # no imagery trials in this data
        log.info("no imagery evaluation: %s", err)
        imagery = None
    if imagery is not None:
        feats = imagery_features(test.wnids, test_feats, imagery.wnids)
        ev_im, _ = evaluate_split(model, imagery, feats, label_set, n_chance, seed, "imagery/")
        metrics.update(ev_im.metrics)
        report.splits["imagery"] = ev_im
    report.categories = {s: category_table(e.samples) for s, e in report.splits.items()}
    return report


def headline(metrics: dict[str, float]) -> str:
    """One line of the headline figures beside the paper's pipeline and the floors."""
    def g(key: str) -> float:
        return metrics.get(key, np.nan)

    return (f"wup_top1 {g('test/wup_top1'):.3f} (paper {g('baseline/paper/wup_top1'):.3f}, "
            f"chance {g('test/wup_chance'):.3f}, best constant {g('test/wup_constant'):.3f}), "
            f"wup_specific {g('test/wup_specific'):.3f} "
            f"(paper {g('baseline/paper/wup_specific'):.3f}), "
            f"ident2 {g('test/ident2_acc'):.3f} (paper {g('baseline/paper/ident2_acc'):.3f})")
