"""The composite brain decoder: voxels → (ridge) → predicted features → (kNN) → ranked wnids.

:class:`Decoder` composes any feature predictor (``predict(X) -> (n, D)``, e.g. a fitted
``MultiRidge``) with a fitted :class:`~sbd.decoding.knn.KNNLabeller`.  Its ranked output
is the table every consumer of a decoder reads (:func:`ranked_frame`): one row per sample,
columns ``wnid_1..wnid_K``, ``name_1..name_K``, ``score_1..score_K`` (rank 1 = best).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

_RANK_COL = re.compile(r"^(wnid|name|score)_(\d+)$")


def ranked_columns(top_k: int) -> list[str]:
    """Output column names for ``top_k`` ranks: wnids, then names, then scores."""
    r = range(1, int(top_k) + 1)
    return [f"wnid_{i}" for i in r] + [f"name_{i}" for i in r] + [f"score_{i}" for i in r]


def ranked_frame(wnids: np.ndarray, scores: np.ndarray,
                 names: Mapping[str, str] | Callable[[str], str] | None = None) -> pd.DataFrame:
    """The decoder output table.

    Parameters
    ----------
    wnids : str array (n, K)
        Ranked labels, rank 1 first.
    scores : float array (n, K)
    names : mapping or callable wnid → readable name, optional
        Default: :func:`sbd.wordnet.name`.

    Returns
    -------
    DataFrame (n rows) with columns ``wnid_1..K`` (str), ``name_1..K`` (str),
    ``score_1..K`` (float64).
    """
    wnids = np.asarray(wnids, dtype=str)
    scores = np.asarray(scores, dtype=np.float64)
    if wnids.ndim != 2 or wnids.shape != scores.shape:
        raise ValueError(f"wnids {wnids.shape} and scores {scores.shape} must be equal 2-D shapes.")
    if names is None:
        from sbd.wordnet import name as names
    lookup = names.get if isinstance(names, Mapping) else names
    k = wnids.shape[1]
    cols: dict[str, Any] = {}
    for i in range(k):
        cols[f"wnid_{i + 1}"] = wnids[:, i].tolist()
    for i in range(k):
        cols[f"name_{i + 1}"] = [str(lookup(w) or w) for w in wnids[:, i]]
    for i in range(k):
        cols[f"score_{i + 1}"] = scores[:, i]
    return pd.DataFrame(cols, columns=ranked_columns(k))


def _rank_cols(df: pd.DataFrame, kind: str) -> list[str]:
    found = sorted(((int(m.group(2)), c) for c in df.columns
                    if (m := _RANK_COL.match(str(c))) and m.group(1) == kind))
    if not found:
        raise ValueError(f"No {kind}_<rank> columns in the decoder output (columns: "
                         f"{list(df.columns)[:8]}...).")
    return [c for _, c in found]


def ranked_wnids(df: pd.DataFrame) -> list[list[str]]:
    """Per row of a decoder output table, its wnids in rank order (rank 1 first)."""
    cols = _rank_cols(df, "wnid")
    return [[str(w) for w in row] for row in df[cols].itertuples(index=False, name=None)]


def voxel_table(x: np.ndarray) -> pd.DataFrame:
    """The decoder pyfunc's input: voxels (n, v) as float64 columns ``v0..v{v-1}``."""
    return pd.DataFrame(np.asarray(x, dtype=np.float64),
                        columns=[f"v{i}" for i in range(x.shape[1])])


def ranked_names(df: pd.DataFrame) -> list[list[str]] | None:
    """Per row of a decoder output table, its label names in rank order; None when the
    table has no ``name_<rank>`` columns."""
    try:
        cols = _rank_cols(df, "name")
    except ValueError:
        return None
    return [[str(v) for v in row] for row in df[cols].itertuples(index=False, name=None)]


def ranked_scores(df: pd.DataFrame) -> np.ndarray:
    """Scores (n, K) of a decoder output table, rank 1 first."""
    return df[_rank_cols(df, "score")].to_numpy(dtype=np.float64)


class Decoder:
    """Voxels → features → ranked labels.

    Parameters
    ----------
    feature_model : object with ``predict(X (n, v)) -> (n, D)``
        e.g. a fitted :class:`sbd.decoding.ridge.MultiRidge`.
    labeller : fitted :class:`sbd.decoding.knn.KNNLabeller`
    names : mapping or callable wnid → name, optional
    """

    def __init__(self, feature_model: Any, labeller: Any,
                 names: Mapping[str, str] | Callable[[str], str] | None = None) -> None:
        self.feature_model = feature_model
        self.labeller = labeller
        self.names = names

    def predict_features(self, X: Any) -> np.ndarray:
        """Predicted features, float32 (n, D)."""
        f = self.feature_model.predict(X)
        f = f.to_numpy() if isinstance(f, pd.DataFrame) else np.asarray(f)
        return f.astype(np.float32, copy=False)

    def predict(self, X: Any) -> pd.DataFrame:
        """Ranked labels table (see :func:`ranked_frame`) of voxels ``X`` (n, v)."""
        feats = self.predict_features(X)
        wnids, scores = self.labeller.predict_ranked(feats)
        return ranked_frame(wnids, scores, self.names)
