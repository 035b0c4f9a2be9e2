"""Metrics of a ``generate`` run's images: its table (``generation.csv``, read by
:func:`read_generation`; the images, downloaded by the caller next to it, found by
:func:`with_local_paths`) and the 2AFC judge and n-way identification of the generated
images against the test stimuli (:func:`evaluate_generation`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from sbd.metrics.decoding import IDENTIFICATION_NS

__all__ = ["GENERATION_CSV", "GENERATION_COLUMNS", "check_run_tags", "read_generation", "image_folders",
           "with_local_paths", "evaluate_generation"]

log = logging.getLogger(__name__)

GENERATION_CSV = "generation.csv"
GENERATION_COLUMNS = ("sample_id", "image_id", "image_paths")
_RANK = re.compile(r"rank(\d+)_")


def check_run_tags(run_id: str, tags: dict[str, str], want: dict[str, str]) -> None:
    """Refuse a generation run made for other data: a ValueError naming each of its tags
    that differs from ``want`` (the data's tags; a tag the run lacks is not checked)."""
    wrong = {k: (tags[k], v) for k, v in want.items() if k in tags and tags[k] != v}
    if wrong:
        raise ValueError(f"generate_run={run_id!r} was made for other data: "
                         + ", ".join(f"{k}={a!r} (expected {b!r})" for k, (a, b) in wrong.items()))


def read_generation(csv: str | Path, source: str = "") -> pd.DataFrame:
    """The generation table in ``csv`` (all columns str), checked for
    :data:`GENERATION_COLUMNS`; ``source`` names it in the error (e.g. ``run <id>``)."""
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    missing = [c for c in GENERATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{GENERATION_CSV} of {source or csv} lacks columns {missing}; "
                         f"has {list(table.columns)}.")
    return table


def image_folders(table: pd.DataFrame) -> list[str]:
    """The top-level artifact folders of the table's ``image_paths`` (usually
    ``["generated"]``): what to download next to it."""
    paths = {p for ps in table["image_paths"] for p in ps.split(";") if p}
    return sorted({p.split("/")[0] for p in paths})


def with_local_paths(table: pd.DataFrame, dst: str | Path) -> pd.DataFrame:
    """``table`` with ``local_paths`` (its ``image_paths`` under ``dst``, where the run's
    artifacts were downloaded) and ``ranks`` (from the ``rank<r>_`` file names; else the
    position), one list per row."""
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
    table : from :func:`with_local_paths`
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
