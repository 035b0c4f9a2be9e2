"""MLproject entry point ``train_decoder``: tunes the whole decoder of one subject and ROI
(ridge, feature rescaling, label-stage normalisation and similarity, k, rule) for the labels
of held-out categories under test-like conditions, logs the trials as nested runs and the
decoder as the pyfunc artifacts ``ridge``, ``knn`` and ``decoder``, the last registered as
``sbd-<dataset>-s<subject>-<roi>-decoder`` (see sbd.steps.train_decoder)."""

import argparse
import logging

from _cli import as_bool, as_int

from sbd.data.layout import DATASETS
from sbd.decoding.tuning.decoder import OBJECTIVES, VALIDATIONS
from sbd.decoding.knn import BACKENDS
from sbd.steps import train_decoder

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--subject", type=as_int, default=1)
parser.add_argument("--roi", default="VC")
parser.add_argument("--backbone", default="", help="registry name; empty: the dataset's default")
parser.add_argument("--n-trials", type=as_int, default=60)
parser.add_argument("--objective", default="specific", choices=list(OBJECTIVES))
parser.add_argument("--validation", default="pair", choices=list(VALIDATIONS),
                    help="trials averaged per validation query: trial 1, pair 2, quad 4, "
                         "category all")
parser.add_argument("--storage", default="",
                    help="Optuna RDB URL (sqlite:///study.db); empty: in memory")
parser.add_argument("--study-name", default="", help="study to create or resume in --storage")
parser.add_argument("--seed", type=as_int, default=0)
parser.add_argument("--backend", default="torch", choices=list(BACKENDS))
parser.add_argument("--max-bank-mb", type=float, default=256.0,
                    help="larger banks are stored in the model by reference (path), not copied")
parser.add_argument("--min-train-fraction", type=float, default=0.5,
                    help="refuse when fewer training samples have a readable stimulus image")
parser.add_argument("--n-splits", type=as_int, default=5, help="category folds")
parser.add_argument("--absent-fraction", type=float, default=0.6,
                    help="share of held-out validation categories hidden from the bank while "
                         "labelled (GOD's ILSVRC-1k bank lacks 30 of its 50 test categories)")
parser.add_argument("--allow-circular", type=as_bool, default=False,
                    help="decode with a backbone the dataset is built from (EfficientNet-Lite2 "
                         "on the phantom): tagged and warned")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = train_decoder.run(**vars(args))
print(f"train_decoder run: {run_id}")
