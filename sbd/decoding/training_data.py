"""What a decoder is trained on: one subject's training voxels paired with the features of
their stimuli, and the bank rows that must stay out of the search while tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sbd.data import god
from sbd.data.layout import features_file
from sbd.features.bank import FeatureBank

__all__ = ["bank_file", "load_training_data", "training_stimulus_mask"]


def bank_file(data_dir: str | Path, backbone: str) -> Path:
    """The feature bank file of ``backbone``; FileNotFoundError naming the step to run when
    it is missing."""
    path = features_file(data_dir, backbone, "bank")
    if not path.exists():
        raise FileNotFoundError(f"No feature bank at {path}: run the extract_features "
                                f"step with backbone={backbone!r} first.")
    return path


def load_training_data(data_dir: str | Path, subject: int, roi: str, backbone: str
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Training voxels (n × v, run-z-scored), their stimulus features (n × D), wnids (n,),
    and the backbone.  Raises FileNotFoundError naming the step to run when the features
    are missing, ValueError when they are of another backbone."""
    sample = god.load(data_dir, subject, roi, "train")
    path = features_file(data_dir, backbone, "training")
    if not path.exists():
        raise FileNotFoundError(f"No training features at {path}: run the extract_features "
                                f"step with backbone={backbone!r} first.")
    with FeatureBank(path) as bank:
        if bank.backbone != backbone:
            raise ValueError(f"{path} holds {bank.backbone!r} features, not {backbone!r}.")
        Y = bank.lookup(list(sample.image_ids))
    X = np.asarray(sample.voxels, dtype=np.float64)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{X.shape[0]} training samples but {Y.shape[0]} feature rows.")
    return X, np.asarray(Y, dtype=np.float64), np.asarray(sample.wnids), backbone


def training_stimulus_mask(data_dir: str | Path, subject: int, roi: str, bank) -> np.ndarray:
    """(N,) bool: the bank rows whose image is one of the subject's training stimuli (left
    out of the search while tuning, or validation finds its answer by lookup)."""
    stimuli = set(god.load(data_dir, subject, roi, "train").image_ids)
    return np.isin(np.asarray(bank.image_ids, dtype=str), list(stimuli))
