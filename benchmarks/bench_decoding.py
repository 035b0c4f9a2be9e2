"""Does sbd's tuned decoder beat the paper's pipeline on unseen categories?

Builds (or reuses) a phantom, extracts its EfficientNet-Lite0 features, and for each
subject (VC) tunes the decoder exactly as the ``train_decoder`` step does
(:class:`sbd.decoding.decoder_tuning.DecoderSearch` + :func:`tune_decoder` on the training
split only, then :func:`fit_decoder`), and scores on the averaged test samples, beside two
baselines fitted on the same training data and bank and scored on the same samples:

- ``paper``: Ridge(alpha=1000), test-batch z-scoring, 5-NN Euclidean, neighbour order
  (:class:`sbd.decoding.baseline.PaperPipeline`);
- ``ridgecv_nn``: sklearn RidgeCV + nearest centred-cosine neighbour
  (:class:`sbd.decoding.baseline.RidgeCVNearest`).

Figures: ``wup_top1`` (chance: the exact expectation over the bank's labels), ``top5_acc``
(chance 5 / bank classes), ``ident2_acc`` (chance 0.5).  For the first subject it also
reports ``spearman_val_test``: across the study's configurations, the rank correlation of
their validation objective with their test ``wup_top1`` (every configuration refitted on
all training data and decoded on the test set; reported only, never used to select).

``paired_vs_paper`` compares sbd and the paper on the same samples (per subject, and
pooled over the subjects in the average line): the mean Wu-Palmer gain with a bootstrap
95 % interval and Wilcoxon's p, and the top-5 hits only one of them has (exact McNemar p)
— with 50 test samples a top-5 difference of 0.02 is one sample.

One JSON line per subject, then one for the average::

    python benchmarks/bench_decoding.py --data-dir /work/data/p0                 # default
    python benchmarks/bench_decoding.py --data-dir /work/data/p1 --seed 1
    python benchmarks/bench_decoding.py --data-dir /work/data/p2h --seed 2 --snr 0.2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import binomtest, spearmanr, wilcoxon

from sbd.data import god, phantom
from sbd.data.layout import features_file
from sbd.decoding import decoder_tuning as dt
from sbd.decoding.baseline import PaperPipeline, RidgeCVNearest
from sbd.decoding.training_data import load_training_data, training_stimulus_mask
from sbd.features.bank import FeatureBank
from sbd.features.extract import extract_dataset
from sbd.metrics.decoding import n_way_identification, topk_accuracy, topk_chance, wup_chance, \
    wup_scores

BACKBONE = "efficientnet-lite0"


def figures(true_wnids, wnids, pred, true_feats) -> dict[str, float]:
    ranked = [list(map(str, r)) for r in wnids]
    return {"wup_top1": round(float(wup_scores(true_wnids, ranked, 5)[0].mean()), 4),
            "top5_acc": round(topk_accuracy(true_wnids, ranked, 5), 4),
            "ident2_acc": round(n_way_identification(pred, true_feats, 2)[0], 4)}


def per_sample(true_wnids, wnids) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 Wu-Palmer (n,) and top-5 hit (n,) of each test sample."""
    ranked = [list(map(str, r)) for r in wnids]
    hits = np.array([t in r[:5] for t, r in zip(true_wnids, ranked)])
    return wup_scores(true_wnids, ranked, 5)[0], hits


def paired(sbd: tuple[np.ndarray, np.ndarray], paper: tuple[np.ndarray, np.ndarray],
           seed: int = 0) -> dict:
    """sbd against the paper on the same samples: the Wu-Palmer gain with a 95 % bootstrap
    interval and Wilcoxon's signed-rank p; top-5 hits only one of them has, with the exact
    McNemar (binomial) p."""
    d = np.asarray(sbd[0], float) - np.asarray(paper[0], float)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), (2000, len(d)))].mean(1)
    only_sbd = int(np.sum(sbd[1] & ~paper[1]))
    only_paper = int(np.sum(~sbd[1] & paper[1]))
    n = only_sbd + only_paper
    return {"n": int(len(d)), "wup_gain": round(float(d.mean()), 4),
            "wup_gain_ci95": [round(float(v), 4) for v in np.percentile(boot, [2.5, 97.5])],
            "wup_wilcoxon_p": round(float(wilcoxon(d).pvalue), 5) if np.any(d) else 1.0,
            "top5_sbd_only": only_sbd, "top5_paper_only": only_paper,
            "top5_mcnemar_p": round(float(binomtest(only_sbd, n).pvalue), 5) if n else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data/phantom-bench")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snr", type=float, default=-1.0, help="< 0: the preset's calibrated snr")
    ap.add_argument("--subjects", default="1,2,3")
    ap.add_argument("--n-trials", type=int, default=60)
    ap.add_argument("--objective", default="wup_top5", choices=list(dt.OBJECTIVES))
    ap.add_argument("--validation", default="pair", choices=list(dt.VALIDATIONS))
    ap.add_argument("--no-spearman", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    manifest = phantom.build(args.data_dir, preset=args.preset, seed=args.seed,
                             snr=None if args.snr < 0 else args.snr, progress=False)
    extract_dataset(args.data_dir, backbone=BACKBONE, source="all", progress=False)
    bank = FeatureBank(features_file(args.data_dir, BACKBONE, "bank"))
    label_set = sorted(set(bank.wnids.tolist()))
    with FeatureBank(features_file(args.data_dir, BACKBONE, "test")) as tb:
        test_bank = tb
        rows = []
        samples: dict[str, list] = {"sbd": [], "paper": [], "ridgecv_nn": []}
        for i, subject in enumerate(int(s) for s in args.subjects.split(",")):
            t = time.perf_counter()
            X, Y, groups, _ = load_training_data(args.data_dir, subject, "VC", BACKBONE)
            test = god.load(args.data_dir, subject, "VC", "test")
            true_feats = test_bank.lookup(test.image_ids)
            search = dt.DecoderSearch(X, Y, groups, bank, validation=args.validation,
                                      exclude=training_stimulus_mask(args.data_dir, subject,
                                                                     "VC", bank))
            result = dt.tune_decoder(search, args.n_trials, args.objective, seed=args.seed,
                                     log_to_mlflow=False)
            ridge, labeller = dt.fit_decoder(X, Y, groups, result.best_params, bank,
                                             validation=args.validation,
                                             class_similarity=search.class_similarity)
            pred = ridge.predict(test.voxels)
            ranked = labeller.predict_ranked(pred)[0]
            row = {"subject": subject, "sbd": figures(test.wnids, ranked, pred, true_feats)}
            samples["sbd"].append(per_sample(test.wnids, ranked))
            for name, cls in (("paper", PaperPipeline), ("ridgecv_nn", RidgeCVNearest)):
                model = cls().fit(X, Y, bank)
                p = model.predict_features(test.voxels)
                ranked = model.labeller_.predict_ranked(p)[0]
                row[name] = figures(test.wnids, ranked, p, true_feats)
                samples[name].append(per_sample(test.wnids, ranked))
            row["paired_vs_paper"] = paired(samples["sbd"][-1], samples["paper"][-1])
            row["gain_wup_top1"] = round(row["sbd"]["wup_top1"] - row["paper"]["wup_top1"], 4)
            row["gain_top5_acc"] = round(row["sbd"]["top5_acc"] - row["paper"]["top5_acc"], 4)
            row["chance"] = {"wup_top1": round(wup_chance(test.wnids, label_set, 10).exact, 4),
                             "top5_acc": round(topk_chance(test.wnids, label_set, 5), 4),
                             "ident2_acc": 0.5}
            row["val"] = {"objective": round(result.best_value, 4),
                          "paper_objective": round(dt.OBJECTIVES[args.objective](
                              result.paper_scores), 4)}
            row["best_params"] = result.best_params
            if i == 0 and not args.no_spearman:
                vals, tests = [], []
                for trial in result.trials:
                    p = {k: trial[k] for k in dt.PAPER_LIKE}
                    r, lab = dt.fit_decoder(X, Y, groups, p, bank, validation=args.validation,
                                            class_similarity=search.class_similarity)
                    q = r.predict(test.voxels)
                    vals.append(trial["objective"])
                    tests.append(figures(test.wnids, lab.predict_ranked(q)[0], q,
                                         true_feats)["wup_top1"])
                row["spearman_val_test"] = round(float(spearmanr(vals, tests)[0]), 3)
                row["n_configurations"] = len(vals)
            row["seconds"] = round(time.perf_counter() - t, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    bank.close()
    avg = {"average": True, "preset": args.preset, "seed": args.seed,
           "snr": manifest["params"]["snr"], "subjects": args.subjects,
           "n_trials": args.n_trials, "objective": args.objective,
           "validation": args.validation}
    for name in ("sbd", "paper", "ridgecv_nn", "chance"):
        avg[name] = {m: round(float(np.mean([r[name][m] for r in rows])), 4)
                     for m in ("wup_top1", "top5_acc", "ident2_acc")}
    avg["gain_wup_top1"] = round(avg["sbd"]["wup_top1"] - avg["paper"]["wup_top1"], 4)
    avg["gain_top5_acc"] = round(avg["sbd"]["top5_acc"] - avg["paper"]["top5_acc"], 4)
    avg["sbd_beats_paper_every_subject"] = all(
        r["gain_wup_top1"] > 0 and r["gain_top5_acc"] > 0 for r in rows)
    pooled = {k: tuple(np.concatenate(parts) for parts in zip(*v)) for k, v in samples.items()}
    avg["paired_vs_paper"] = paired(pooled["sbd"], pooled["paper"])  # all subjects' samples
    avg["spearman_val_test"] = rows[0].get("spearman_val_test")
    avg["seconds"] = round(time.perf_counter() - t0, 1)
    avg["load_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(avg), flush=True)


if __name__ == "__main__":
    main()
