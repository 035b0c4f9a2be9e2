"""One tuning package for every tuner of the decoder.

================  ======================================================================
module            what it owns
================  ======================================================================
``study``         the Optuna study: creation / resumption, pruner, RDB storage with
                  heartbeats and retry, the lock of a shared study, the optimisation loop
``spaces``        every search space as data, and the paper's settings (one place each)
``ridge``         the ridge alone on category folds (``train_ridge``), and the cached
                  fold decompositions every tuner scores with
``decoder``       the whole decoder on held-out categories under test conditions
                  (``train_decoder``, the main path)
``knn``           the label stage alone on out-of-fold predictions (``train_knn``)
================  ======================================================================

The package returns results and never logs: tuners take Optuna ``callbacks`` (the steps
pass :class:`sbd.tracking.TrialLogger`).  The names below are the ridge tuner's and the
study's, importable from the package as before.
"""

from sbd.decoding.tuning.ridge import (
    ALPHA_RANGE, OBJECTIVES, PAPER_ADJUSTED_PARAMS, PAPER_PARAMS, PER_TARGET_GRID, SCORE_KEYS,
    FoldCache, TuneResult, evaluate_params, fit_model, grouped_folds, identification_accuracy,
    normalise_params, out_of_fold_predictions, params_from_tags, per_target_alphas,
    per_target_window, score_predictions, suggest_params, tune,
)
from sbd.decoding.tuning.study import (HEARTBEAT_S, MAX_RETRY, create_study, make_storage,
                                       study_lock)

__all__ = [
    "ALPHA_RANGE", "OBJECTIVES", "PAPER_ADJUSTED_PARAMS", "PAPER_PARAMS", "PER_TARGET_GRID",
    "SCORE_KEYS", "FoldCache", "TuneResult", "evaluate_params", "fit_model", "grouped_folds",
    "identification_accuracy", "normalise_params", "out_of_fold_predictions",
    "params_from_tags", "per_target_alphas", "per_target_window", "score_predictions",
    "suggest_params", "tune", "HEARTBEAT_S", "MAX_RETRY", "create_study", "make_storage",
    "study_lock",
]
