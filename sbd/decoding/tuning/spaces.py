"""The search spaces of every tuner, as data, and the paper's settings: one place for each
range and for each of the paper's values.

A space maps a parameter name to an Optuna distribution (searched) or to a plain value
(fixed: logged with the trial but not searched).  :func:`suggest` draws one configuration
in the space's order — the order is part of a seeded study, so a space is only ever
extended at its end.  ``WHEN`` maps a conditional parameter to the rule values it is
searched for; otherwise it takes ``DEFAULTS``' value.

===============  ============================  =======================================
space            tuner                          used by
===============  ============================  =======================================
:data:`DECODER`  the whole decoder             ``train_decoder`` (``main``)
:data:`RIDGE`    the ridge alone               ``train_ridge``
:data:`KNN`      the label stage alone         ``train_knn``
===============  ============================  =======================================
"""

from __future__ import annotations

from typing import Any, Mapping

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution,
                                  FloatDistribution, IntDistribution)

from sbd.decoding import knn
from sbd.decoding.ridge import SELECTIONS

__all__ = ["PAPER", "PAPER_RIDGE", "PAPER_LABELS", "ALPHA", "TEMPERATURE", "RIDGE", "KNN",
           "KNN_WHEN", "DECODER", "DECODER_WHEN", "DEFAULTS", "SIMILARITY", "RULES",
           "SEARCHED_FEATURE_NORMS", "K_MAX", "MEMBERS_MAX", "suggest"]

# --------------------------------------------------------------------- the paper's settings
PAPER: dict[str, Any] = {"alpha": 1000.0, "voxel_frac": 1.0, "selection": "corr",
                         "standardize": False, "metric": "euclidean", "rule": "nearest",
                         "k": 5, "temperature": 1.0}
"""Ferrante et al. 2022: Ridge(alpha=1000) on every voxel of the ROI, raw features, the
predictions z-scored over the test batch, and the 5 nearest bank images (Euclidean)
voting for their labels, nearest first."""
PAPER_RIDGE = {k: PAPER[k] for k in ("alpha", "voxel_frac", "selection", "standardize")}
PAPER_LABELS = {k: PAPER[k] for k in ("metric", "rule", "k", "temperature")}

# --------------------------------------------------------------------- shared ranges
ALPHA = FloatDistribution(1.0, 1e6, log=True)
"""The ridge penalty, for every tuner (the ridge-only tuner searched 1e-2 … 1e8 before
the tuners shared one space; the decoder tuner's range, around the paper's 1000, is kept
so that the default pipeline's study draws the same trials)."""
TEMPERATURE = FloatDistribution(0.01, 10.0, log=True)
K_MAX = 10
MEMBERS_MAX = 3

# --------------------------------------------------------------------- the ridge alone
RIDGE: dict[str, Any] = {
    "alpha": ALPHA,
    "alpha_mode": CategoricalDistribution(("shared", "per_target")),
    "voxel_frac": FloatDistribution(0.05, 1.0, step=0.05),
    "selection": CategoricalDistribution(tuple(SELECTIONS)),
    "standardize": CategoricalDistribution((False, True)),
}

# --------------------------------------------------------------------- the label stage alone
KNN: dict[str, Any] = {
    "k": IntDistribution(1, 50, log=True),
    "metric": CategoricalDistribution(tuple(knn.METRICS)),
    # the semantic rule needs WordNet tables per query: the decoder tuning searches it
    "rule": CategoricalDistribution(tuple(r for r in knn.RULES if r != "semantic")),
    "temperature": TEMPERATURE,
}
KNN_WHEN = {"temperature": ("weighted",)}

# --------------------------------------------------------------------- the whole decoder
SIMILARITY: dict[str, Any] = {"normalize": "zscore", "metric": "cosine"}
"""The label stage's similarity, fixed (see :mod:`sbd.decoding.tuning.decoder`)."""
SEARCHED_FEATURE_NORMS = ("rescale", "rescale_category")
RULES = tuple(r for r in knn.RULES if r not in ("centroid", "vote"))
DECODER: dict[str, Any] = {
    "alpha": ALPHA,
    "voxel_frac": FloatDistribution(0.1, 1.0, step=0.1),
    "selection": CategoricalDistribution(tuple(SELECTIONS)),
    "standardize": CategoricalDistribution((False, True)),
    "target_mix": FloatDistribution(0.0, 1.0, step=0.25),
    "feature_norm": CategoricalDistribution(SEARCHED_FEATURE_NORMS),
    **SIMILARITY,
    "rule": CategoricalDistribution(RULES),
    "k": IntDistribution(1, K_MAX, log=True),
    "temperature": TEMPERATURE,
    "members": IntDistribution(1, MEMBERS_MAX),
}
DECODER_WHEN = {"k": ("vote", "weighted"), "temperature": ("weighted", "semantic"),
                "members": ("nearest", "semantic")}
DEFAULTS: dict[str, Any] = {"k": 1, "temperature": 1.0, "members": 1}
"""Values of conditional parameters where they are not searched (the decoder's ``k`` is 1:
one nearest image per class)."""


def _draw(trial: optuna.Trial, name: str, dist: BaseDistribution) -> Any:
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    raise TypeError(f"{name}: unsupported distribution {dist!r}.")


def suggest(trial: optuna.Trial, space: Mapping[str, Any],
            when: Mapping[str, tuple[str, ...]] | None = None,
            defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One configuration of ``space``: distributions drawn in order, plain values kept; a
    parameter of ``when`` is drawn only when the drawn ``rule`` is one of its rules, else it
    takes its value in ``defaults`` (:data:`DEFAULTS`)."""
    when, defaults = when or {}, {**DEFAULTS, **(defaults or {})}
    p: dict[str, Any] = {}
    for name, dist in space.items():
        if name in when and p.get("rule") not in when[name]:
            p[name] = defaults[name]
        elif isinstance(dist, BaseDistribution):
            p[name] = _draw(trial, name, dist)
        else:
            p[name] = dist
    return p
