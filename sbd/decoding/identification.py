"""n-way identification, the one definition used by tuning and evaluation alike.

Row ``i`` (a prediction, or a generated image) is identified in an n-way trial when its
similarity to its own item (column ``target[i]``) is strictly higher than to each of
``n - 1`` distractor columns (ties count as failures).  The figure is exact: the mean over
*all* ``C(m, n-1)`` distractor sets drawn from the row's ``m`` allowed distractors, which is
``C(b, n-1) / C(m, n-1)`` with ``b`` the allowed distractors it beats — no sampling.

Which columns are allowed distractors is part of the metric, and its name says so:

- every other column (``distractors=None``): ``test/ident{n}_acc`` of an evaluation, where
  GOD's 50 test samples are 50 categories;
- columns of *other categories* (``distractors = groups[:, None] != groups[None, :]``):
  the ridge tuning's ``val/ident_othercat_acc`` on training trials, where 8 images share a
  category and a same-category distractor would test within-category detail instead.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["identification", "other_category_mask"]


def other_category_mask(groups: Sequence) -> np.ndarray:
    """(m, m) bool: column ``j`` is an allowed distractor of row ``i`` when their groups
    (categories) differ."""
    g = np.asarray(groups)
    return g[:, None] != g[None, :]


def identification(sim: np.ndarray, n: int, target: Sequence[int] | None = None,
                   distractors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Exact n-way identification of every row of a similarity matrix (module doc).

    Parameters
    ----------
    sim : (r, c) similarity of row items to column items (higher = more alike)
    n : ways (≥ 2), capped at one plus the fewest allowed distractors of any row
    target : (r,) column of each row's own item (default: column ``i`` for row ``i``)
    distractors : (r, c) bool, allowed distractor columns (default: every other column;
        a row's own column is never one)

    Returns
    -------
    per_row : (r,) float64 in [0, 1]; NaN for a row with no allowed distractor
    beats_all : (r,) bool, the row beats every allowed distractor (top-1 identification)
    n_eff : the ways used
    """
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"sim must be 2-D, got shape {sim.shape}.")
    r, c = sim.shape
    if int(n) < 2:
        raise ValueError(f"n-way identification needs n >= 2, got {n}.")
    target = np.arange(r) if target is None else np.asarray(target, dtype=int)
    if target.shape != (r,) or (r and (target.min() < 0 or target.max() >= c)):
        raise ValueError(f"target must be {r} column indices in [0, {c}).")
    allowed = np.ones((r, c), bool) if distractors is None else np.asarray(distractors, bool)
    if allowed.shape != (r, c):
        raise ValueError(f"distractors has shape {allowed.shape}; expected ({r}, {c}).")
    allowed = allowed.copy()
    allowed[np.arange(r), target] = False
    own = sim[np.arange(r), target]
    m = allowed.sum(axis=1)
    beaten = ((sim < own[:, None]) & allowed).sum(axis=1)
    have = m > 0
    n_eff = int(min(int(n), 1 + (int(m[have].min()) if have.any() else 1)))
    k = n_eff - 1
    t = np.arange(k)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.clip(beaten[:, None] - t, 0, None) / (m[:, None] - t)
    per_row = np.where(have, np.prod(ratio, axis=1), np.nan)
    return per_row, have & (beaten == m), n_eff
