"""MLproject entry point ``main``: the whole chain on one dataset (see sbd.steps.main)."""

import argparse
import logging

from _cli import as_bool, as_int

from sbd.data.layout import DATASETS
from sbd.steps import main

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--preset", default="default")
parser.add_argument("--snr", type=float, default=-1.0, help="phantom snr; < 0: the preset's")
parser.add_argument("--subjects", default="1", help="comma-separated subject numbers")
parser.add_argument("--rois", default="VC", help="comma-separated ROIs")
parser.add_argument("--backbone", default="")
parser.add_argument("--n-trials", type=as_int, default=60)
parser.add_argument("--generator", default="")
parser.add_argument("--seed", type=as_int, default=0)
parser.add_argument("--force", type=as_bool, default=False)
parser.add_argument("--executor", default="sequential", choices=["sequential", "ray"],
                    help="how the subject x ROI chains run: one after the other, or as Ray tasks")
parser.add_argument("--ray-address", default="", help="Ray cluster; empty: a local one")
parser.add_argument("--allow-circular", type=as_bool, default=False,
                    help="decode with a backbone the dataset is built from (EfficientNet-Lite2 "
                         "on the phantom): tagged and warned")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = main.run(**{k: v for k, v in vars(args).items()})
print(main.console_summary(run_id))
