"""MLproject entry point ``generate``: images for the decoded labels of every test sample.

Writes the run's artifacts ``generated/<sample_id>/rank<r>_<wnid>_<n>.png``,
``stimuli/<sample_id>.png``, ``grids/<sample_id>.png``, ``grids/overview.png``,
``generation.json`` and ``generation.csv`` (see :mod:`sbd.steps.generate`).
"""

import argparse
import logging

from _cli import as_int

from sbd.steps import generate


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--decoder", default="", help="decoder model URI ('' = champion decoder)")
parser.add_argument("--dataset", default="phantom")
parser.add_argument("--data-dir", default="")
parser.add_argument("--subject", type=as_int, default=1)
parser.add_argument("--roi", default="VC")
parser.add_argument("--generator", default="tiny", help="sd, dit or tiny")
parser.add_argument("--model-id", default="", help="hub id, local folder or models:/ URI")
parser.add_argument("--steps", type=as_int, default=0, help="0 = the generator's default")
parser.add_argument("--guidance", type=float, default=-1.0, help="< 0 = the generator's default")
parser.add_argument("--top-k", type=as_int, default=3)
parser.add_argument("--n-per-label", type=as_int, default=1)
parser.add_argument("--seed", type=as_int, default=0)
parser.add_argument("--device", default="auto")
parser.add_argument("--tiny-preset", default="default",
                    help="preset to train the tiny model with when none is registered ('none': fail)")
parser.add_argument("--limit", type=as_int, default=0, help="first n test samples only; 0: all")
args = parser.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
run_id = generate.run(**vars(args))
print(f"generate run: {run_id}")
