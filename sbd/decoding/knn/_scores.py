"""Scores of ranked labels against the true categories (the tuning objectives' figures)."""

from __future__ import annotations

import numpy as np


def label_scores(wup: np.ndarray, classes: np.ndarray, categories: np.ndarray,
                 ranked: np.ndarray, cats: np.ndarray) -> dict[str, float]:
    """``wup_top1``, ``wup_best_top5``, ``top1_acc``, ``top5_acc`` of ranked class indices
    ``ranked`` (m, K) into ``classes`` (C,), for queries of true category indices ``cats``
    (m,) into ``categories``; ``wup`` (n_categories, C) is their Wu-Palmer table."""
    w = wup[cats[:, None], ranked]
    hit = classes[ranked] == categories[cats][:, None]
    return {"wup_top1": float(w[:, 0].mean()), "wup_best_top5": float(w.max(1).mean()),
            "top1_acc": float(hit[:, 0].mean()), "top5_acc": float(hit.any(1).mean())}
