"""The ``train_tiny`` step: train the small class-conditional generator on a data folder's
bank for a number of steps, evaluate its samples (centred kNN top-1 accuracy of
EfficientNet-Lite0 features of its images, against chance), log it as a pyfunc and register
it as ``sbd-<dataset>-tiny-generator`` (:func:`sbd.generate.tiny_models.train_and_register`).

``generate`` trains one itself when none is registered for the bank; this entry point
trains one ahead, or with another preset or step count.  The model depends on the
parameters (``max_steps`` and every other :class:`~sbd.generate.tiny.TinyConfig` field,
logged), the bank and the seed, not on the machine's speed: two runs with the same
parameters on one machine give the same weights (tag ``sbd.tiny_weights_sha256``) and the
same ``tiny/*`` figures; wall times are ``tiny_time/*``.  The checkpoint stays in
``<data_dir>/tiny/<preset>`` (``<preset>-<hash>`` with another ``max_steps``), so an
interrupted training resumes.
"""

from __future__ import annotations

from sbd.generate import tiny_models


def run(dataset: str = "phantom", data_dir: str = "", preset: str = "default",
        max_steps: int = 0, progress: bool = True) -> str:
    """Train and register the tiny generator of ``dataset``; returns the run id (its tag
    ``sbd.tiny_uri`` is the registered version). ``max_steps`` > 0 overrides the preset's
    number of training steps."""
    overrides = {"max_steps": int(max_steps)} if int(max_steps) > 0 else {}
    run_id, _ = tiny_models.train_and_register(dataset, data_dir, preset, progress=progress,
                                               **overrides)
    return run_id
