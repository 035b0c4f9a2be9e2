"""MLproject entry point ``evaluate``: metrics, tables and figures of one decoder.

Logs ``test/…`` and ``imagery/…`` metrics (Wu-Palmer top-1 / best-of-k with chance level
and permutation p, top-1/top-5 accuracy, n-way identification, feature r, and with a
generation run the 2AFC judge), the tables ``tables/*_samples.csv`` and
``tables/*_categories.csv``, the figures ``figures/*.png`` and ``grids/overview.png``.
"""

import argparse
import logging

from _cli import as_int

from sbd.data.layout import DATASETS
from sbd.steps import evaluate


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--decoder", default="",
                    help="model URI; default models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion")
parser.add_argument("--dataset", default="phantom", choices=DATASETS)
parser.add_argument("--data-dir", default="")
parser.add_argument("--subject", type=as_int, default=1)
parser.add_argument("--roi", default="VC")
parser.add_argument("--generate-run", default="", help="run id of a generate run (optional)")
parser.add_argument("--n-chance", type=as_int, default=1000)
parser.add_argument("--seed", type=as_int, default=0)
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = evaluate.run(**vars(args))
print(f"evaluate run: {run_id}")
