"""MLproject entry point ``extract_features``: stimulus features and the labelled feature
bank of one backbone (see sbd.steps.extract_features); writes
``<data_dir>/features/<backbone>/{training,test,bank}.h5``."""

import argparse
import logging

from _cli import as_bool, as_int

from sbd.data.layout import DATASETS
from sbd.steps import extract_features

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--backbone", default="", help="registry name; empty: the dataset's default")
parser.add_argument("--source", default="all", choices=["all", "stimuli", "bank"])
parser.add_argument("--batch-size", type=as_int, default=32)
parser.add_argument("--num-workers", type=as_int, default=2)
parser.add_argument("--shard", default="0/1", help="i/n: this process's part of n")
parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
parser.add_argument("--exclude-threshold", type=float, default=0.99,
                    help="bank images this close (cosine) to a stimulus are left out")
parser.add_argument("--max-artifact-mb", type=float, default=256.0,
                    help="feature files up to this size are logged as run artifacts")
parser.add_argument("--allow-circular", type=as_bool, default=False,
                    help="decode with a backbone the dataset is built from (EfficientNet-Lite2 "
                         "on the phantom): tagged and warned")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = extract_features.run(**vars(args))
print(f"extract_features run: {run_id}")
