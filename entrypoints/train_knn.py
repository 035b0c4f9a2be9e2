"""MLproject entry point ``train_knn``: tunes the kNN labeller (k, metric, label rule,
temperature) on held-out training categories predicted by the ridge, logs the trials as
nested runs and the best labeller as the pyfunc artifact ``knn``, registered as
``sbd-<dataset>-<backbone>-knn`` (see sbd.steps.train_knn)."""

import argparse
import logging

from _cli import as_int

from sbd.data.layout import DATASETS
from sbd.steps import train_knn

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--subject", type=as_int, default=1)
parser.add_argument("--roi", default="VC")
parser.add_argument("--backbone", default="", help="registry name; empty: the dataset's default")
parser.add_argument("--n-trials", type=as_int, default=30)
parser.add_argument("--seed", type=as_int, default=0)
parser.add_argument("--backend", default="torch", choices=["torch", "faiss-flat", "faiss-ivfpq"])
parser.add_argument("--max-bank-mb", type=float, default=256.0,
                    help="larger banks are stored in the model by reference (path), not copied")
parser.add_argument("--n-splits", type=as_int, default=5, help="category folds")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = train_knn.run(**vars(args))
print(f"train_knn run: {run_id}")
