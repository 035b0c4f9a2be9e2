"""MLproject entry point ``train_ridge``: Optuna-tuned ridge (voxels → CNN features) of one
subject and ROI, cross-validated by category; logs the trials as nested runs and the best
model as the pyfunc artifact ``ridge``, registered as ``sbd-<dataset>-s<subject>-<roi>-ridge``
(see sbd.steps.train_ridge)."""

import argparse
import logging

from _cli import as_int

from sbd.data.layout import DATASETS
from sbd.steps import train_ridge

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--subject", type=as_int, default=1)
parser.add_argument("--roi", default="VC")
parser.add_argument("--backbone", default="", help="registry name; empty: the dataset's default")
parser.add_argument("--n-trials", type=as_int, default=30)
parser.add_argument("--objective", default="ident", choices=["ident", "r"])
parser.add_argument("--storage", default="",
                    help="Optuna RDB URL (sqlite:///study.db); empty: in memory")
parser.add_argument("--study-name", default="", help="study to create or resume in --storage")
parser.add_argument("--seed", type=as_int, default=0)
parser.add_argument("--n-splits", type=as_int, default=5, help="category folds")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = train_ridge.run(**vars(args))
print(f"train_ridge run: {run_id}")
