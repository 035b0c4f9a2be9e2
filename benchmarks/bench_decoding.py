"""Does sbd's tuned decoder say more about each test sample than the paper's pipeline?

Builds (or reuses) a phantom, extracts its EfficientNet-Lite0 features, and for each
subject (VC) tunes the decoder exactly as the ``train_decoder`` step does
(:class:`sbd.decoding.tuning.decoder.DecoderSearch` + :func:`tune_decoder` on the training
split only, then :func:`fit_decoder`), and scores it on the averaged test samples beside,
fitted on the same training data and bank and scored on the same samples:

- ``paper``: Ridge(alpha=1000), test-batch z-scoring, 5-NN Euclidean, neighbour order
  (:class:`sbd.decoding.baseline.PaperPipeline`);
- ``ridgecv_nn``: sklearn RidgeCV + nearest centred-cosine neighbour;
- the two crossed arms that attribute a gain: ``paper_features+sbd_labels`` (the paper's
  predicted features through sbd's label stage) and ``sbd_features+paper_labels``.

Figures per arm (:func:`sbd.metrics.decoding.evaluate_decoding`, the definitions every
``evaluate`` run uses): ``wup_top1``, ``wup_shuffled`` (the same answers against the other
samples' categories), ``wup_specific`` (their difference: what the answers say about their
own sample), ``top1_acc_inbank`` / ``top5_acc_inbank`` (exact hits over the samples whose
category the bank holds, ``n_inbank``), ``rank1_distinct`` and ``ident2_acc``; and the floors:
uniform chance and the best constant answer (``wup_constant``).

Statistics resample test *images*: the subjects see the same images, so per image the
subjects' figures are averaged first (repeated measures), then ``paired_vs_paper`` gives
the mean gain with a 95 % bootstrap interval over images and Wilcoxon's p, for
``wup_specific`` and ``wup_top1``; per subject the same over that subject's images.
For the first subject ``spearman_val_test``: across the study's configurations, the rank
correlation of the validation objective with the same objective on the test set (every
configuration refitted and decoded; reported only, never used to select).

One JSON line per subject, then one for the phantom::

    python benchmarks/bench_decoding.py --data-dir data/bench-p0                 # default
    python benchmarks/bench_decoding.py --data-dir data/bench-p1 --seed 1
    python benchmarks/bench_decoding.py --data-dir data/bench-p2 --seed 2 --snr 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import spearmanr

from sbd.data import god, phantom
from sbd.data.layout import features_file
from sbd.decoding.tuning import decoder as dt
from sbd.decoding.baseline import PaperPipeline, RidgeCVNearest
from sbd.decoding.training_data import load_training_data, training_stimulus_mask
from sbd.features.bank import FeatureBank
from sbd.features.extract import extract_dataset
from sbd.metrics.decoding import evaluate_decoding, paired_gain

BACKBONE = "efficientnet-lite0"
FIGURES = ("wup_top1", "wup_shuffled", "wup_specific", "top1_acc_inbank", "top5_acc_inbank",
           "rank1_distinct", "ident2_acc")
PAIRED = ("wup_specific", "wup_top1")


def scored(test, label_set, labeller, features, true_feats, seed: int):
    """``(figures, per-sample table)`` of one arm."""
    ranked = [[str(w) for w in row] for row in labeller.predict_ranked(features)[0]]
    ev = evaluate_decoding(test.wnids, ranked, label_set, features, true_feats, n_chance=200,
                           seed=seed, prefix="")
    figs = {k: round(ev.metrics[k], 4) for k in FIGURES}
    figs["rank1_distinct"] = int(round(ev.metrics["rank1_distinct"] * len(ranked)))
    return figs, ev


def paired(ours: list, theirs: list, column: str, seed: int = 0) -> dict:
    """:func:`sbd.metrics.decoding.paired_gain` of ``column`` over the subjects' sample
    tables (rows sorted by image id in every subject)."""
    g = paired_gain([t[column].to_numpy(float) for t in ours],
                    [t[column].to_numpy(float) for t in theirs], seed)
    return {"gain": round(g["gain"], 4), "ci95": [round(g["ci_low"], 4), round(g["ci_high"], 4)],
            "wilcoxon_p": round(g["wilcoxon_p"], 5)}


def _arms(X, Y, groups, test, label_set, bank, result, search, true_feats, args):
    ridge, labeller = dt.fit_decoder(X, Y, groups, result.best_params, bank,
                                     validation=args.validation,
                                     class_similarity=search.class_similarity)
    paper = PaperPipeline().fit(X, Y, bank)
    base = RidgeCVNearest().fit(X, Y, bank)
    pred, paper_pred = ridge.predict(test.voxels), paper.predict_features(test.voxels)
    return {"sbd": (labeller, pred), "paper": (paper.labeller_, paper_pred),
            "ridgecv_nn": (base.labeller_, base.predict_features(test.voxels)),
            "paper_features+sbd_labels": (labeller, paper_pred),
            "sbd_features+paper_labels": (paper.labeller_, pred)}


def _spearman(X, Y, groups, test, label_set, bank, result, search, true_feats, args) -> dict:
    vals, tests = [], []
    for trial in result.trials:
        p = {k: trial[k] for k in dt.PAPER_LIKE}
        r, lab = dt.fit_decoder(X, Y, groups, p, bank, validation=args.validation,
                                class_similarity=search.class_similarity)
        q = r.predict(test.voxels)
        figs, ev = scored(test, label_set, lab, q, true_feats, args.seed)
        vals.append(trial["objective"])
        tests.append(dt.OBJECTIVES[args.objective]({**ev.metrics, "ident2": ev.metrics[
            "ident2_acc"], "wup_best_top5": ev.metrics["wup_best_topk"]}))
    return {"spearman_val_test": round(float(spearmanr(vals, tests)[0]), 3),
            "n_configurations": len(vals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data/phantom-bench")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snr", type=float, default=-1.0, help="< 0: the preset's calibrated snr")
    ap.add_argument("--subjects", default="1,2,3")
    ap.add_argument("--n-trials", type=int, default=60)
    ap.add_argument("--objective", default="specific", choices=list(dt.OBJECTIVES))
    ap.add_argument("--validation", default="pair", choices=list(dt.VALIDATIONS))
    ap.add_argument("--absent-fraction", type=float, default=dt.DEFAULT_ABSENT_FRACTION)
    ap.add_argument("--n-resplits", type=int, default=2,
                    help="other category splits the best configurations are re-checked on")
    ap.add_argument("--no-spearman", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    manifest = phantom.build(args.data_dir, preset=args.preset, seed=args.seed,
                             snr=None if args.snr < 0 else args.snr, progress=False)
    extract_dataset(args.data_dir, backbone=BACKBONE, source="all", progress=False)
    bank = FeatureBank(features_file(args.data_dir, BACKBONE, "bank"))
    label_set = sorted(set(bank.wnids.tolist()))
    tables: dict[str, list] = {}
    rows = []
    with FeatureBank(features_file(args.data_dir, BACKBONE, "test")) as test_bank:
        for i, subject in enumerate(int(s) for s in args.subjects.split(",")):
            t = time.perf_counter()
            X, Y, groups, _ = load_training_data(args.data_dir, subject, "VC", BACKBONE)
            test = god.load(args.data_dir, subject, "VC", "test")
            true_feats = test_bank.lookup(test.image_ids)
            search = dt.DecoderSearch(X, Y, groups, bank, validation=args.validation,
                                      exclude=training_stimulus_mask(args.data_dir, subject,
                                                                     "VC", bank),
                                      absent_fraction=args.absent_fraction)
            result = dt.tune_decoder(search, args.n_trials, args.objective, seed=args.seed,
                                     n_resplits=args.n_resplits)
            ctx = (X, Y, groups, test, label_set, bank, result, search, true_feats, args)
            row: dict = {"subject": subject}
            for name, (labeller, feats) in _arms(*ctx).items():
                row[name], ev = scored(test, label_set, labeller, feats, true_feats, args.seed)
                tables.setdefault(name, []).append(ev.samples)
                if name == "sbd":
                    row["floors"] = {"wup_chance": round(ev.metrics["wup_chance_exact"], 4),
                                     "wup_constant": round(ev.metrics["wup_constant"], 4),
                                     "constant_answer": ev.constant_wnid,
                                     "n_inbank": int(ev.metrics["n_inbank"]),
                                     "top5_chance_inbank": round(
                                         ev.metrics.get("top5_chance_inbank", np.nan), 4)}
            row["paired_vs_paper"] = {m: paired(tables["sbd"][-1:], tables["paper"][-1:], m,
                                                args.seed) for m in PAIRED}
            row["val"] = {"objective": round(result.best_value, 4),
                          "paper_objective": round(dt.OBJECTIVES[args.objective](
                              result.paper_scores), 4),
                          **{k: round(v, 4) for k, v in result.best_scores.items()}}
            row["best_params"] = result.best_params
            if i == 0 and not args.no_spearman:
                row.update(_spearman(*ctx))
            row["seconds"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    bank.close()
    out = {"average": True, "preset": args.preset, "seed": args.seed,
           "snr": manifest["params"]["snr"], "subjects": args.subjects,
           "n_trials": args.n_trials, "objective": args.objective,
           "validation": args.validation, "absent_fraction": args.absent_fraction}
    for name in tables:
        out[name] = {m: round(float(np.mean([r[name][m] for r in rows])), 4) for m in FIGURES}
    out["floors"] = {k: rows[0]["floors"][k] for k in ("wup_chance", "wup_constant",
                                                       "constant_answer", "n_inbank")}
    out["sbd_at_least_paper_every_subject"] = {
        m: all(r["sbd"][m] >= r["paper"][m] - (0.005 if m == "ident2_acc" else 0)
               for r in rows) for m in ("wup_top1", "wup_specific", "ident2_acc")}
    # images, subjects as repeated measures: average per image, then resample images
    out["paired_vs_paper_images"] = {m: paired(tables["sbd"], tables["paper"], m, args.seed)
                                     for m in PAIRED}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
