"""Scores of ranked labels against the true categories (the tuning objectives' figures),
by the one definition of top-k hits and Wu-Palmer of ranked answers (:mod:`sbd.scores`)."""

from __future__ import annotations

import numpy as np

from sbd.scores import ranked_wup, topk_hits


def label_scores(wup: np.ndarray, classes: np.ndarray, categories: np.ndarray,
                 ranked: np.ndarray, cats: np.ndarray) -> dict[str, float]:
    """``wup_top1``, ``wup_best_top5``, ``top1_acc``, ``top5_acc`` of ranked class indices
    ``ranked`` (m, K) into ``classes`` (C,), for queries of true category indices ``cats``
    (m,) into ``categories``; ``wup`` (n_categories, C) is their Wu-Palmer table.  The
    ``top5`` figures use all K answers (the labellers return five)."""
    top1, best, _ = ranked_wup(wup[cats[:, None], ranked])
    truth, answers = categories[cats], classes[ranked]
    return {"wup_top1": float(top1.mean()), "wup_best_top5": float(best.mean()),
            "top1_acc": float(topk_hits(truth, answers, 1).mean()),
            "top5_acc": float(topk_hits(truth, answers, ranked.shape[1]).mean())}
