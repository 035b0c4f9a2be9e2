"""What a decoder is trained on: one subject's training voxels paired with the features of
their stimuli, and the bank rows that must stay out of the search while tuning."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sbd.data import god, layout
from sbd.data.images import SKIPPED_FILE
from sbd.data.layout import features_file
from sbd.features.bank import FeatureBank

__all__ = ["bank_file", "TrainingData", "load_training_data", "training_stimulus_mask",
           "DEFAULT_MIN_TRAIN_FRACTION"]

log = logging.getLogger(__name__)
DEFAULT_MIN_TRAIN_FRACTION = 0.5


def bank_file(data_dir: str | Path, backbone: str) -> Path:
    """The feature bank file of ``backbone``; FileNotFoundError naming the step to run when
    it is missing."""
    path = features_file(data_dir, backbone, "bank")
    if not path.exists():
        raise FileNotFoundError(f"No feature bank at {path}: run the extract_features "
                                f"step with backbone={backbone!r} first.")
    return path


@dataclass
class TrainingData:
    """A subject's training set: ``X`` (n × v, run-z-scored voxels), ``Y`` (n × D, their
    stimulus features), ``wnids`` (n,), ``backbone``; ``dropped``: the image ids of the
    training samples left out because their stimulus image is missing or unreadable (no
    feature row), ``n_total`` the samples before that.  Unpacks as ``X, Y, wnids,
    backbone``."""

    X: np.ndarray
    Y: np.ndarray
    wnids: np.ndarray
    backbone: str
    dropped: list[str] = field(default_factory=list)
    n_total: int = 0

    def __iter__(self):
        return iter((self.X, self.Y, self.wnids, self.backbone))


def load_training_data(data_dir: str | Path, subject: int, roi: str, backbone: str,
                       min_train_fraction: float = DEFAULT_MIN_TRAIN_FRACTION
                       ) -> TrainingData:
    """Training voxels paired with their stimulus features (:class:`TrainingData`).

    A GOD stimulus set rebuilt from ImageNet URLs often lacks some images: a training
    sample whose stimulus has no features (image missing or unreadable, see
    ``skipped_images.csv``) is left out, with a warning naming how many and which.  Fewer
    than ``min_train_fraction`` of the samples left is refused, naming the folder.

    Raises FileNotFoundError naming the step to run when the features are missing,
    ValueError when they are of another backbone or too few samples are left.
    """
    if not 0.0 <= float(min_train_fraction) <= 1.0:
        raise ValueError(f"min_train_fraction must be in [0, 1], got {min_train_fraction!r}.")
    sample = god.load(data_dir, subject, roi, "train")
    path = features_file(data_dir, backbone, "training")
    if not path.exists():
        raise FileNotFoundError(f"No training features at {path}: run the extract_features "
                                f"step with backbone={backbone!r} first.")
    ids = np.asarray(sample.image_ids, dtype=str)
    with FeatureBank(path) as bank:
        if bank.backbone != backbone:
            raise ValueError(f"{path} holds {bank.backbone!r} features, not {backbone!r}.")
        keep = bank.has(ids)
        n, n_kept = len(ids), int(keep.sum())
        if n_kept < max(1, float(min_train_fraction) * n):
            raise ValueError(
                f"Only {n_kept} of {n} training samples of subject {subject} have a readable "
                f"stimulus image in {layout.images_dir(data_dir, 'training')} (features in "
                f"{path}): below min_train_fraction={min_train_fraction:g}. Complete the "
                f"stimulus folder (unreadable files are listed in "
                f"{Path(data_dir) / SKIPPED_FILE}) and run extract_features again.")
        Y = bank.lookup(list(ids[keep]))
    dropped = sorted(set(ids[~keep].tolist()))
    if dropped:
        log.warning("%d of %d training samples (%d stimulus images) left out: no readable "
                    "image in %s: %s", n - n_kept, n, len(dropped),
                    layout.images_dir(data_dir, "training"),
                    ", ".join(dropped[:10]) + (" …" if len(dropped) > 10 else ""))
    X = np.asarray(sample.voxels, dtype=np.float64)[keep]
    return TrainingData(X, np.asarray(Y, dtype=np.float64), np.asarray(sample.wnids)[keep],
                        backbone, [str(i) for i in ids[~keep]], n)


def training_stimulus_mask(data_dir: str | Path, subject: int, roi: str, bank) -> np.ndarray:
    """(N,) bool: the bank rows whose image is one of the subject's training stimuli (left
    out of the search while tuning, or validation finds its answer by lookup)."""
    stimuli = set(god.load(data_dir, subject, roi, "train").image_ids)
    return np.isin(np.asarray(bank.image_ids, dtype=str), list(stimuli))
