"""MLproject entry point ``train_tiny``: train (for a number of steps), evaluate, log and
register the small class-conditional generator on a data folder's bank (see
sbd.steps.train_tiny)."""

import argparse
import logging

from _cli import as_int

from sbd.data.layout import DATASETS
from sbd.steps import train_tiny

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--preset", default="default", help="tiny preset: default or small")
parser.add_argument("--max-steps", type=as_int, default=0,
                    help="training steps (0 = the preset's)")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = train_tiny.run(**vars(args))
print(f"train_tiny run: {run_id}")
