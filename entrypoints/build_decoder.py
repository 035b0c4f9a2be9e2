"""MLproject entry point ``build_decoder``: composes a ridge of one subject and ROI (default its
champion) with a kNN labeller of its backbone (default its champion) into one pyfunc (voxels → ranked wnids),
registered as ``sbd-<dataset>-s<subject>-<roi>-decoder`` (see sbd.steps.build_decoder)."""

import argparse
import logging

from _cli import as_int

from sbd.data.layout import DATASETS
from sbd.steps import build_decoder

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--subject", type=as_int, default=1)
parser.add_argument("--roi", default="VC")
parser.add_argument("--backbone", default="", help="registry name; empty: the dataset's default")
parser.add_argument("--ridge", default="", help="ridge model URI; empty: the champion")
parser.add_argument("--knn", default="", help="kNN model URI; empty: the champion")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = build_decoder.run(**vars(args))
print(f"build_decoder run: {run_id}")
