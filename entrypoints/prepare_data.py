"""MLproject entry point ``prepare_data``: build the phantom dataset, or validate a real GOD
folder or a Kamitani npz package (god-npz: its stimulus images are then written out) and
report what is missing (see sbd.steps.prepare_data); exits non-zero on a problem."""

import argparse
import logging
import sys

from _cli import as_int

from sbd.data.layout import DATASETS
from sbd.steps import prepare_data

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--preset", default="default", help="phantom preset: default, medium or small")
parser.add_argument("--snr", type=float, default=-1.0, help="phantom SNR; negative: the preset's")
parser.add_argument("--seed", type=as_int, default=0)
parser.add_argument("--n-subjects", type=as_int, default=0,
                    help="phantom subjects; 0: the preset's")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
try:
    run_id = prepare_data.run(**vars(args))
except prepare_data.DataProblem as exc:
    sys.exit(f"sbd prepare_data: {exc}")
print(f"prepare_data run: {run_id}")
