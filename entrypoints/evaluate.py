"""MLproject entry point ``evaluate``: metrics, tables and figures of one decoder.

Logs ``test/…`` and ``imagery/…`` metrics (Wu-Palmer top-1 / best-of-k with chance level
and permutation p, top-1/top-5 accuracy, n-way identification, feature r, and with a
generation run the 2AFC judge), the tables ``tables/*_samples.csv`` and
``tables/*_categories.csv``, the figures ``figures/*.png`` and ``grids/overview.png``.
"""

import argparse
import logging

from _cli import as_int

from sbd.steps import evaluate


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decoder", default="",
                   help="model URI; default models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion")
    p.add_argument("--dataset", default="phantom", choices=("phantom", "god"))
    p.add_argument("--data-dir", default="")
    p.add_argument("--subject", type=as_int, default=1)
    p.add_argument("--roi", default="VC")
    p.add_argument("--generate-run", default="", help="run id of a generate run (optional)")
    p.add_argument("--n-chance", type=as_int, default=1000)
    p.add_argument("--seed", type=as_int, default=0)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_id = evaluate.run(decoder=a.decoder, dataset=a.dataset, data_dir=a.data_dir,
                          subject=a.subject, roi=a.roi, generate_run=a.generate_run,
                          n_chance=a.n_chance, seed=a.seed)
    print(f"evaluate run {run_id}")


if __name__ == "__main__":
    main()
