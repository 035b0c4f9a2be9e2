"""MLproject entry point ``generate``: images for the decoded labels of every test sample.

Writes the run's artifacts ``generated/<sample_id>/rank<r>_<wnid>_<n>.png``,
``stimuli/<sample_id>.png``, ``grids/<sample_id>.png``, ``grids/overview.png``,
``generation.json`` and ``generation.csv`` (see :mod:`sbd.steps.generate`).
"""

import argparse
import logging

from _cli import as_int

from sbd.steps import generate


def main(argv=None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decoder", default="", help="decoder model URI ('' = champion decoder)")
    p.add_argument("--dataset", default="phantom")
    p.add_argument("--data-dir", default="")
    p.add_argument("--subject", type=as_int, default=1)
    p.add_argument("--roi", default="VC")
    p.add_argument("--generator", default="tiny", help="sd, dit or tiny")
    p.add_argument("--model-id", default="", help="hub id, local folder or models:/ URI")
    p.add_argument("--steps", type=as_int, default=0, help="0 = the generator's default")
    p.add_argument("--guidance", type=float, default=-1.0, help="< 0 = the generator's default")
    p.add_argument("--top-k", type=as_int, default=3)
    p.add_argument("--n-per-label", type=as_int, default=1)
    p.add_argument("--seed", type=as_int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--tiny-preset", default="default",
                   help="preset to train the tiny model with when none is registered ('none': fail)")
    p.add_argument("--limit", type=as_int, default=0, help="first n test samples only; 0: all")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    run_id = generate.run(decoder=a.decoder, dataset=a.dataset, data_dir=a.data_dir,
                          subject=a.subject, roi=a.roi, generator=a.generator,
                          model_id=a.model_id, steps=a.steps, guidance=a.guidance, top_k=a.top_k,
                          n_per_label=a.n_per_label, seed=a.seed, device=a.device,
                          tiny_preset=a.tiny_preset, limit=a.limit)
    print(f"generate run {run_id}")
    return run_id


if __name__ == "__main__":
    main()
