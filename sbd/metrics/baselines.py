"""Reference decoders scored on the same test samples as sbd's decoder.

Each baseline is a class of the registry :data:`sbd.decoding.baseline.BASELINES` (the
paper's fixed pipeline is ``paper``), fitted on the decoder's training data and bank and
scored like the decoder (:func:`sbd.metrics.decoding.evaluate_decoding`) under
``baseline/<name>/*``; ``baseline/<name>/gain_<m>`` is the decoder minus the baseline on the
headline measures (:data:`HEADLINE` and ``top5_acc``), with a bootstrap CI of the gain in
``wup_specific`` over test samples.  For the paper's pipeline two crossed arms attribute the
gain (:data:`ARMS`): the paper's predicted features through sbd's label stage
(``attribution/paper_features/*``) and sbd's through the paper's (``attribution/sbd_features/*``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sbd.data.layout import features_file
from sbd.metrics.decoding import DecodingEvaluation, evaluate_decoding, mean_ci

__all__ = ["ARMS", "HEADLINE", "make_baseline", "score_baselines"]

ARMS = {"paper features + sbd labels": "attribution/paper_features/",
        "sbd features + paper labels": "attribution/sbd_features/"}
HEADLINE = ("wup_top1", "wup_shuffled", "wup_specific", "top1_acc_inbank", "top5_acc_inbank",
            "rank1_distinct", "ident2_acc")


def make_baseline(name: str) -> Any:
    """An unfitted baseline of the registry :data:`sbd.decoding.baseline.BASELINES`."""
    from sbd.decoding.baseline import BASELINES

    if name not in BASELINES:
        raise ValueError(f"Unknown baseline={name!r}; valid: {', '.join(BASELINES)}.")
    return BASELINES[name]()


def _arms(name: str, baseline: Any, sbd_labeller: Any, base_pred: np.ndarray,
          sbd_pred: np.ndarray) -> dict[str, tuple[Any, np.ndarray]]:
    """Prefix → (labeller, predicted features (n, D)) of the baseline and, for the paper's
    pipeline, of the two crossed arms."""
    arms = {f"baseline/{name}/": (baseline.labeller_, base_pred)}
    if name == "paper":
        arms[ARMS["paper features + sbd labels"]] = (sbd_labeller, base_pred)
        arms[ARMS["sbd features + paper labels"]] = (baseline.labeller_, sbd_pred)
    return arms


def score_baselines(root: Path, subject: int, roi: str, backbone: str, test: Any,
                    test_features: np.ndarray, label_set: Sequence[str], ev: DecodingEvaluation,
                    sbd_labeller: Any, sbd_pred: np.ndarray, n_chance: int, seed: int,
                    names: Sequence[str] = ("paper",)) -> dict[str, float]:
    """The metrics of each baseline on the decoder's test samples (module doc).

    Parameters
    ----------
    test : the test split (``sbd.data.god.load``: ``voxels`` (n, v), ``wnids``)
    test_features : (n, D) stimulus features (NaN rows: no image)
    ev : the decoder's evaluation; gains are taken against it, and each baseline's labels
        are added to ``ev.samples`` (``<name>_top1_wnid``, ``<name>_wup_top1``,
        ``<name>_wup_specific``)
    sbd_labeller : the decoder's fitted label stage; sbd_pred : its features (n, D)
    """
    from sbd.decoding.training_data import load_training_data

    # what train_decoder trained on (its floor was checked there)
    X, Y, _, _ = load_training_data(root, subject, roi, backbone, min_train_fraction=0.0)
    out: dict[str, float] = {}
    for name in names:
        baseline = make_baseline(name).fit(X, Y, features_file(root, backbone, "bank"))
        base_pred = baseline.predict_features(test.voxels)
        for prefix, (labeller, features) in _arms(name, baseline, sbd_labeller, base_pred,
                                                  sbd_pred).items():
            wnids, _ = labeller.predict_ranked(features)
            ranked = [[str(w) for w in row] for row in wnids]
            arm = evaluate_decoding(test.wnids, ranked, label_set, features, test_features,
                                    n_chance=n_chance, seed=seed, prefix=prefix)
            out.update(arm.metrics)
            if prefix == f"baseline/{name}/":
                ev.samples[f"{name}_top1_wnid"] = [r[0] for r in ranked]
                ev.samples[f"{name}_wup_top1"] = arm.samples["wup_top1"].to_numpy()
                ev.samples[f"{name}_wup_specific"] = arm.samples["wup_specific"].to_numpy()
        out.update(_gains(name, ev, out, seed))
    return out


def _gains(name: str, ev: DecodingEvaluation, out: dict[str, float], seed: int
           ) -> dict[str, float]:
    """``baseline/<name>/gain_<m>`` (decoder minus baseline) and the CI of the gain in
    ``wup_specific`` over test samples."""
    gains = {}
    for m in HEADLINE + ("top5_acc",):
        key = f"baseline/{name}/{m}"
        if f"test/{m}" in ev.metrics and key in out:
            gains[f"baseline/{name}/gain_{m}"] = ev.metrics[f"test/{m}"] - out[key]
    gain = (ev.samples["wup_specific"].to_numpy()
            - ev.samples[f"{name}_wup_specific"].to_numpy())
    lo, hi = mean_ci(gain, seed=seed)
    gains[f"baseline/{name}/gain_wup_specific_ci_low"] = lo
    gains[f"baseline/{name}/gain_wup_specific_ci_high"] = hi
    return gains
