"""The phantom's noise calibration: the paper's pipeline at each ``snr``.

The default ``snr`` (:data:`sbd.data.phantom.DEFAULT_SNR`) is the one at which the paper's
fixed pipeline (:class:`sbd.decoding.baseline.PaperPipeline`) scores the paper's GOD figure,
mean top-1 Wu-Palmer 0.57 ± 0.02 over subjects 1-3 (VC, EfficientNet-Lite0 features).  For
each ``snr`` this rebuilds the voxels (the images and features are reused) and prints one
JSON line: the paper's ``wup_top1``, ``wup_specific``, ``ident2_acc`` and exact top-1 over
the test categories the bank holds, per subject and on average, beside the best constant
answer and uniform chance::

    python benchmarks/calibrate_phantom.py --data-dir data/calibration --snr 0.4,0.8,1,1.6,2.5
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from sbd.data import god, phantom
from sbd.data.layout import features_file
from sbd.decoding.baseline import PaperPipeline
from sbd.decoding.training_data import load_training_data
from sbd.features.bank import FeatureBank
from sbd.features.extract import extract_dataset
from sbd.metrics.decoding import evaluate_decoding

BACKBONE = "efficientnet-lite0"
FIGURES = ("wup_top1", "wup_specific", "ident2_acc", "top1_acc_inbank")


def paper_figures(data_dir: str, subject: int, bank: FeatureBank, label_set: list[str]
                  ) -> dict[str, float]:
    X, Y, _, _ = load_training_data(data_dir, subject, "VC", BACKBONE)
    test = god.load(data_dir, subject, "VC", "test")
    with FeatureBank(features_file(data_dir, BACKBONE, "test")) as tb:
        true = tb.lookup(test.image_ids)
    paper = PaperPipeline().fit(X, Y, bank)
    pred = paper.predict_features(test.voxels)
    ranked = [[str(w) for w in r] for r in paper.predict_ranked(test.voxels)[0]]
    return evaluate_decoding(test.wnids, ranked, label_set, pred, true, n_chance=100,
                             prefix="").metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default="data/calibration")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--snr", default="0.4,0.8,1,1.6,2.5")
    ap.add_argument("--subjects", default="1,2,3")
    args = ap.parse_args()
    subjects = [int(s) for s in args.subjects.split(",")]
    for snr in (float(x) for x in args.snr.split(",")):
        phantom.build(args.data_dir, preset=args.preset, seed=args.seed, snr=snr,
                      progress=False)
        extract_dataset(args.data_dir, backbone=BACKBONE, source="all", progress=False)
        with FeatureBank(features_file(args.data_dir, BACKBONE, "bank")) as bank:
            label_set = sorted(set(bank.wnids.tolist()))
            rows = [paper_figures(args.data_dir, s, bank, label_set) for s in subjects]
        out = {"snr": snr, "preset": args.preset, "seed": args.seed}
        for k in FIGURES:
            out[k] = [round(r[k], 4) for r in rows]
            out[f"mean_{k}"] = round(float(np.mean(out[k])), 4)
        out["wup_constant"] = round(rows[0]["wup_constant"], 4)
        out["wup_chance"] = round(rows[0]["wup_chance_exact"], 4)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
