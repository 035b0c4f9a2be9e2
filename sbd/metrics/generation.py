"""Metrics of a ``generate`` run's images: the run's table (:func:`load_generation`, images
downloaded from its artifacts) and the 2AFC judge and n-way identification of the
generated images against the test stimuli (:func:`evaluate_generation`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from sbd.metrics.decoding import IDENTIFICATION_NS

__all__ = ["GENERATION_CSV", "GENERATION_COLUMNS", "load_generation", "evaluate_generation"]

log = logging.getLogger(__name__)

GENERATION_CSV = "generation.csv"
GENERATION_COLUMNS = ("sample_id", "image_id", "image_paths")
_RANK = re.compile(r"rank(\d+)_")


def load_generation(run_id: str, dst: str | Path) -> pd.DataFrame:
    """The generation run's table, with ``local_paths`` (downloaded images) and ``ranks``.

    Raises ValueError naming the run when ``generation.csv`` or its columns are missing.
    """
    from mlflow.exceptions import MlflowException

    try:
        csv = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=GENERATION_CSV,
                                                  dst_path=str(dst))
    except (MlflowException, OSError) as err:
        raise ValueError(f"Generation run {run_id} has no {GENERATION_CSV} artifact: {err}") from err
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in GENERATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{GENERATION_CSV} of run {run_id} lacks columns {missing}; "
                         f"has {list(table.columns)}.")
    paths = sorted({p for ps in table["image_paths"] for p in ps.split(";") if p})
    tops = sorted({p.split("/")[0] for p in paths})
    for top in tops:  # usually just "generated/"
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=top, dst_path=str(dst))
    local, ranks = [], []
    for ps in table["image_paths"]:
        items = [p for p in ps.split(";") if p]
        local.append([Path(dst) / p for p in items])
        ranks.append([int(m.group(1)) if (m := _RANK.search(Path(p).name)) else i + 1
                      for i, p in enumerate(items)])
    table["local_paths"], table["ranks"] = local, ranks
    return table


def evaluate_generation(table: pd.DataFrame, image_ids: list[str], stimulus_features: np.ndarray,
                        backbone: str, rank: int = 1, prefix: str = "test/",
                        ns=IDENTIFICATION_NS) -> tuple[dict[str, float], np.ndarray]:
    """2AFC judge and n-way identification of the rank-``rank`` generated images.

    Parameters
    ----------
    table : from :func:`load_generation`
    image_ids : (n,) the test samples, in the order of ``stimulus_features``
    stimulus_features : (n, D)

    Returns
    -------
    metrics : ``judge2afc_acc, judge2afc_p, judge2afc_n, gen_ident{n}_acc`` (prefixed)
    per_sample : (n,) judge accuracy per sample (NaN without images)
    """
    from sbd.metrics.images import embed, generated_identification, judge_2afc

    # samples without a stimulus image (NaN features) are left out: they have nothing to
    # compare a generated image with
    ok = np.isfinite(np.asarray(stimulus_features, dtype=np.float64)).all(axis=1)
    pos = np.cumsum(ok) - 1
    stimulus_features = np.asarray(stimulus_features)[ok]
    index = {i: int(pos[k]) for k, i in enumerate(image_ids) if ok[k]}
    unimaged = {i for k, i in enumerate(image_ids) if not ok[k]}
    paths, owner = [], []
    unknown = sorted(set(table["image_id"]) - set(index) - unimaged)
    if unknown:
        log.warning("generation rows for %d image ids not in the test split (e.g. %s) ignored",
                    len(unknown), unknown[:3])
    for image_id, local, ranks in zip(table["image_id"], table["local_paths"], table["ranks"]):
        if image_id not in index:
            continue
        for p, r in zip(local, ranks):
            if r == rank:
                paths.append(p)
                owner.append(index[image_id])
    if not paths:
        raise ValueError(f"No rank-{rank} generated image for any of the {len(image_ids)} test samples.")
    gen = embed(paths, backbone=backbone)
    judge = judge_2afc(gen, stimulus_features, owner)
    metrics = {"judge2afc_acc": judge.accuracy, "judge2afc_p": judge.p_value,
               "judge2afc_n": float(judge.n_trials), "judge2afc_n_images": float(len(paths))}
    for n in ns:
        metrics[f"gen_ident{n}_acc"] = generated_identification(gen, stimulus_features, owner, n)[0]
    per_sample = np.full(len(ok), np.nan)
    per_sample[ok] = judge.per_sample
    return {f"{prefix}{k}": float(v) for k, v in metrics.items()}, per_sample
