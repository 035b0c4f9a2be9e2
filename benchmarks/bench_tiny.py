"""Train the tiny generator on a bank and measure how recognisable its samples are.

Prints one JSON line per trained model: its training figures (steps, seconds, CPU seconds,
threads, loss, weights hash), the kNN figures of :func:`sbd.generate.tiny.evaluate`
(top-1 / centred top-1 / vote / top-5 accuracy of the samples' nearest bank images, chance,
and the ceiling of real bank images at the model's size; by default the classes and
samples ``train_tiny`` evaluates: the config's ``eval_classes``, one sample each), and the
load average before and after training (the machine is often shared: the wall time is a
consequence of the load, the weights are not).

``--steps 400,800,1600`` sweeps the number of training steps: one training per count
(each from scratch, since the learning-rate schedule follows ``max_steps``; in
``<out>/steps-<n>``, resumable; one image cache in ``<out>``), one after another, one JSON
line each: the quality-versus-steps curve that the default step count is chosen from.

``--decoder URI`` (an MLflow model URI, with ``MLFLOW_TRACKING_URI`` or ``--tracking-uri``
naming its store; ``--labels FILE`` keeps its labels for later runs) adds the figure the
``evaluate`` step logs as ``test/gen/nway_top1``: MinD-Vis's 50-way top-1 of the model's
images of the decoder's rank-1 labels of the test samples (``generate``'s seeds;
:mod:`sbd.metrics.field`'s classifier), with its 95 % CI.

    python benchmarks/bench_tiny.py --data-dir data/phantom --out /tmp/tiny-bench
    python benchmarks/bench_tiny.py --data-dir data/phantom --set max_steps=400 --set crop=false
    python benchmarks/bench_tiny.py --data-dir data/phantom --out /tmp/tiny-bench \\
        --steps 400,700,1000 --decoder models:/sbd-phantom-s1-VC-decoder@champion \\
        --labels /tmp/tiny-bench/labels.json
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _value(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def decoded_labels(decoder: str, data_dir: str | Path, subject: int, roi: str
                   ) -> tuple[list[str], list[str], list]:
    """The decoder's rank-1 wnid, the true wnid and the stimulus path of each test sample
    that has a stimulus image (as ``generate`` and ``evaluate`` see them)."""
    import mlflow
    import numpy as np
    import pandas as pd

    from sbd.data import god
    from sbd.decoding.decoder import ranked_wnids

    test = god.load(data_dir, int(subject), roi, "test")
    model = mlflow.pyfunc.load_model(decoder)
    cols = [f"v{i}" for i in range(test.voxels.shape[1])]
    ranked = ranked_wnids(model.predict(pd.DataFrame(np.asarray(test.voxels, np.float64),
                                                     columns=cols)))
    stimuli, _ = god.stimulus_paths(data_dir, test.image_ids, "test")
    keep = [i for i, s in enumerate(stimuli) if s is not None]
    return ([ranked[i][0] for i in keep], [test.wnids[i] for i in keep],
            [(i, stimuli[i]) for i in keep])


class FieldNway:
    """``test/gen/nway_top1`` as the ``evaluate`` step computes it (:mod:`sbd.metrics.field`:
    its classifier, true class = the classifier's top-1 on the stimulus, 50-way, 50 trials,
    seed 0, bootstrap CI), for the images a tiny model draws of the rank-1 labels of
    :func:`decoded_labels` (``generate``'s seeds); only this metric (the pixel metrics'
    chance levels take minutes)."""

    def __init__(self, labels: tuple, seed: int = 0) -> None:
        from PIL import Image

        from sbd.data.images import read_image
        from sbd.metrics import field

        self.decoded, _, self.stimuli = labels
        self.seed = seed
        self.classifier = field.load_classifier()
        images = [read_image(p).convert("RGB") if not isinstance(p, Image.Image) else p
                  for _, p in self.stimuli]
        self.true_class = self.classifier.logits(images).argmax(axis=1)

    def __call__(self, pipeline_dir: str | Path) -> dict:
        from sbd.generate.generators import get_generator
        from sbd.metrics import field

        gen = get_generator("tiny", str(pipeline_dir), device="cpu")
        images = [gen.generate([w], seed=self.seed, sample=i)[0][0].convert("RGB")
                  for w, (i, _) in zip(self.decoded, self.stimuli)]
        per = field.nway_top1(self.classifier.logits(images), self.true_class, 50, 50,
                              self.seed)
        lo, hi = field.bootstrap_ci(per[:, None], "mean", n_boot=1000, seed=self.seed)
        return {"field_nway_top1": round(float(per.mean()), 4),
                "field_nway_top1_ci": [round(lo, 4), round(hi, 4)],
                "field_nway_top1_chance": 1 / 50, "field_n": len(per),
                "field_classifier": self.classifier.name}


def bench_one(a, out: Path, overrides: dict, cache: Path | None,
              scorer: FieldNway | None) -> dict:
    """Train one model (``overrides`` on ``a.preset``), evaluate it, return its figures."""
    from sbd.generate import tiny
    from sbd.generate.tiny.train import torch_threads

    load_before = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    pipe = tiny.train(a.data_dir, out, a.preset, resume=not a.no_resume, progress=not a.quiet,
                      cache_dir=cache, **overrides)
    figures = {"preset": a.preset, "overrides": {k: str(v) for k, v in overrides.items()},
               "max_steps": pipe.tiny_config.max_steps, **pipe.info,
               "total_seconds": round(time.perf_counter() - t0, 1),
               "total_cpu_seconds": round(time.process_time() - c0, 1),
               "load_average_before": load_before, "load_average_after_training": _load()}
    cfg = pipe.tiny_config
    n_classes = cfg.eval_classes if a.eval_classes < 0 else a.eval_classes
    with torch_threads(cfg.threads):  # as train_tiny evaluates
        for g in a.guidance or [pipe.default_guidance]:
            m = tiny.evaluate(pipe, a.data_dir, n_classes=n_classes, n_per_class=a.eval_per_class,
                              guidance=g, progress=not a.quiet)
            figures[f"guidance_{g:g}"] = m
        if scorer is not None:
            figures.update(scorer(out / "pipeline"))
    tiny.sample_sheet(pipe, n_classes=16, n_per_class=6).save(out / "samples.png")
    figures["sheet"] = str(out / "samples.png")
    figures["load_average"] = _load()
    return figures


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="data/phantom")
    p.add_argument("--out", default="", help="working folder (default: <data-dir>/tiny/bench)")
    p.add_argument("--preset", default="default")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TinyConfig field (repeatable)")
    p.add_argument("--steps", default="",
                   help="comma-separated step counts: one training and one JSON line each")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads (the config's threads field; 0: the preset's)")
    p.add_argument("--eval-classes", type=int, default=-1,
                   help="classes to sample (-1: the config's eval_classes, as train_tiny; 0: all)")
    p.add_argument("--eval-per-class", type=int, default=1)
    p.add_argument("--guidance", type=float, action="append", default=[],
                   help="guidance scale(s) to evaluate (default: the model's)")
    p.add_argument("--decoder", default="",
                   help="decoder model URI: also score the field's 50-way top-1 of its labels")
    p.add_argument("--tracking-uri", default="", help="MLflow store of --decoder")
    p.add_argument("--labels", default="",
                   help="JSON file of the decoded labels: read when it exists (no --decoder "
                        "needed), else written from --decoder (decode once, reuse)")
    p.add_argument("--subject", type=int, default=1)
    p.add_argument("--roi", default="VC")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)

    overrides = dict(kv.split("=", 1) for kv in a.set)
    overrides = {k: _value(v) for k, v in overrides.items()}
    if a.threads:
        overrides["threads"] = a.threads
    out = Path(a.out) if a.out else Path(a.data_dir) / "tiny" / "bench"
    scorer = None
    if a.labels and Path(a.labels).exists():
        saved = json.loads(Path(a.labels).read_text())
        scorer = FieldNway((saved["decoded"], saved["true"],
                            [(int(i), Path(p)) for i, p in saved["stimuli"]]))
    elif a.decoder:
        import mlflow

        if a.tracking_uri:
            mlflow.set_tracking_uri(a.tracking_uri)
        labels = decoded_labels(a.decoder, a.data_dir, a.subject, a.roi)
        if a.labels:
            Path(a.labels).write_text(json.dumps(
                {"decoder": a.decoder, "decoded": labels[0], "true": labels[1],
                 "stimuli": [[i, str(p)] for i, p in labels[2]]}))
        scorer = FieldNway(labels)
    counts = [int(s) for s in a.steps.split(",") if s.strip()]
    runs = ([(out / f"steps-{n}", {**overrides, "max_steps": n}, out) for n in counts]
            if counts else [(out, overrides, None)])
    results = []
    for folder, ov, cache in runs:
        figures = bench_one(a, folder, ov, cache, scorer)
        print(json.dumps(figures), flush=True)
        results.append(figures)
    return results


if __name__ == "__main__":
    main()
