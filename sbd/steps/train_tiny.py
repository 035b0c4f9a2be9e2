"""The ``train_tiny`` step: train the small class-conditional generator on a data folder's
bank, evaluate its samples (centred kNN top-1 accuracy of EfficientNet-Lite0 features of
its images, against chance), log it as a pyfunc and register it as
``sbd-<dataset>-tiny-generator`` (:func:`sbd.generate.tiny_models.train_and_register`).

``generate`` trains one itself when none is registered for the bank; this entry point
trains one ahead, or with another preset.  The checkpoint stays in
``<data_dir>/tiny/<preset>``, so an interrupted training resumes.
"""

from __future__ import annotations

from sbd.generate import tiny_models


def run(dataset: str = "phantom", data_dir: str = "", preset: str = "default",
        progress: bool = True) -> str:
    """Train and register the tiny generator of ``dataset``; returns the run id (its tag
    ``sbd.tiny_uri`` is the registered version)."""
    run_id, _ = tiny_models.train_and_register(dataset, data_dir, preset, progress=progress)
    return run_id
