"""Trials of a two-alternative (2AFC) human study, and each rater's schedule.

A *trial* shows one test sample's stimulus and two candidates: the **target** (the first
image listed for that sample in the generate run's ``generation.csv``, i.e. rank 1) and a
**foil**: the target image of another test sample of another category (``foil="generated"``,
the paper's design) or a random bank image of another category (``foil="bank"``).

Trials are drawn once per study (seeded), so every rater sees the same pairs — which is
what inter-rater agreement needs.  Each rater sees every trial exactly once, in an own
seeded order, with the target's side balanced: left and right counts differ by at most one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

FOILS = ("generated", "bank")
SIDES = ("left", "right")
GENERATION_COLUMNS = ("sample_id", "image_id", "true_wnid", "true_name", "image_paths",
                      "stimulus_path")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class Trial:
    """One stimulus with its two candidates; paths are never taken from a client.

    ``stimulus`` and ``target`` are artifact paths of the generate run; ``foil`` is an
    artifact path (``foil_kind="generated"``) or a ``<wnid>/<file>`` path relative to the
    bank folder (``foil_kind="bank"``).
    """

    trial_id: int
    sample_id: str
    image_id: str
    true_wnid: str
    true_name: str
    stimulus: str
    target: str
    foil: str
    foil_kind: str
    foil_sample_id: str = ""


def check_relative_path(path: str, what: str) -> str:
    """``path`` if it is a safe relative POSIX path to an image, else ValueError.

    Safe: not absolute, no ``..`` or empty parts, no backslash, an image suffix.
    """
    p = PurePosixPath(path)
    if (not path or "\\" in path or p.is_absolute() or any(part in ("", ".", "..") for part in path.split("/"))
            or p.suffix.lower() not in IMAGE_SUFFIXES):
        raise ValueError(f"Unsafe or non-image {what} path {path!r}: expected a relative path "
                         f"without '..' ending in one of {', '.join(IMAGE_SUFFIXES)}.")
    return path


def read_generation_table(path: str | Path) -> pd.DataFrame:
    """Read a generate run's ``generation.csv`` (all columns as strings) and check its columns."""
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in GENERATION_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}; expected at least {list(GENERATION_COLUMNS)}.")
    if table["sample_id"].duplicated().any():
        dup = table.loc[table["sample_id"].duplicated(), "sample_id"].tolist()
        raise ValueError(f"{path}: duplicated sample_id {dup[:5]}.")
    return table


def _foil_indices(wnids: list[str], rng: np.random.Generator, tries: int = 1000) -> np.ndarray:
    """For each sample the index of another sample of another category.

    A random derangement (every target image used once as a foil) when one exists among
    ``tries`` draws, else an independent draw per sample.  Shape (n,).
    """
    n = len(wnids)
    labels = np.asarray(wnids)
    for _ in range(tries):
        perm = rng.permutation(n)
        if np.all(labels[perm] != labels):
            return perm
    out = np.empty(n, dtype=int)
    for i in range(n):
        pool = np.flatnonzero(labels != labels[i])
        if pool.size == 0:
            raise ValueError("foil='generated' needs test samples of at least two categories.")
        out[i] = rng.choice(pool)
    return out


def _bank_image(bank_dir: Path, exclude_wnid: str, wnid_dirs: list[str], rng: np.random.Generator) -> str:
    """A random ``<wnid>/<file>`` bank image of a category other than ``exclude_wnid``."""
    candidates = [w for w in wnid_dirs if w != exclude_wnid]
    rng.shuffle(candidates)
    for wnid in candidates:
        files = sorted(f.name for f in (bank_dir / wnid).iterdir()
                       if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            return f"{wnid}/{files[rng.integers(len(files))]}"
    raise ValueError(f"No bank image of a category other than {exclude_wnid} under {bank_dir}.")


def build_trials(table: pd.DataFrame, foil: str = "generated", seed: int = 0,
                 bank_dir: str | Path | None = None) -> list[Trial]:
    """The trials of a study: one per test sample that has a generated image.

    Parameters
    ----------
    table : DataFrame
        ``generation.csv`` as read by :func:`read_generation_table` (n rows).
    foil : {"generated", "bank"}
        Where the foil comes from.
    seed : int
        Seeds the choice of foils.
    bank_dir : path, optional
        The bank folder ``<wnid>/<image>`` (``layout.bank_dir``); needed for ``foil="bank"``.

    Returns
    -------
    list of Trial
        ``trial_id`` 0..m-1 in the table's order (m ≤ n: samples without images are skipped).
    """
    if foil not in FOILS:
        raise ValueError(f"Unknown foil={foil!r}; valid: {', '.join(FOILS)}.")
    rows = []
    for rec in table.to_dict("records"):
        paths = [p for p in rec["image_paths"].split(";") if p]
        if not paths:
            continue
        rows.append((rec, check_relative_path(paths[0], "generated image"),
                     check_relative_path(rec["stimulus_path"], "stimulus")))
    if len(rows) < (2 if foil == "generated" else 1):
        raise ValueError(f"Too few samples with generated images ({len(rows)}) for foil={foil!r}.")
    rng = np.random.default_rng([int(seed), FOILS.index(foil)])
    if foil == "generated":
        idx = _foil_indices([r[0]["true_wnid"] for r in rows], rng)
        foils = [(rows[j][1], rows[j][0]["sample_id"]) for j in idx]
    else:
        if bank_dir is None or not Path(bank_dir).is_dir():
            raise ValueError(f"foil='bank' needs the bank folder <data_dir>/imagenet/train; not found: {bank_dir}.")
        bank_dir = Path(bank_dir)
        wnid_dirs = sorted(d.name for d in bank_dir.iterdir() if d.is_dir())
        foils = [(_bank_image(bank_dir, r[0]["true_wnid"], wnid_dirs, rng), "") for r in rows]
    return [Trial(trial_id=i, sample_id=rec["sample_id"], image_id=rec["image_id"],
                  true_wnid=rec["true_wnid"], true_name=rec["true_name"], stimulus=stim,
                  target=target, foil=f_path, foil_kind=foil, foil_sample_id=f_sample)
            for i, ((rec, target, stim), (f_path, f_sample)) in enumerate(zip(rows, foils))]


def rater_rng(rater: str, seed: int = 0) -> np.random.Generator:
    """A generator seeded by (``seed``, a stable hash of the rater's name)."""
    digest = hashlib.sha256(rater.encode("utf-8")).digest()
    return np.random.default_rng([int(seed), int.from_bytes(digest[:8], "little")])


def rater_schedule(n_trials: int, rater: str, seed: int = 0) -> list[tuple[int, str]]:
    """The order in which ``rater`` sees the trials and the target's side in each.

    Parameters
    ----------
    n_trials : int
        Number of trials of the study (ids 0..n_trials-1).
    rater : str
        The rater's name (the schedule depends on it, reproducibly).
    seed : int
        The study's seed.

    Returns
    -------
    list of (trial_id, target_side)
        Length ``n_trials``; every trial once; ``target_side`` is "left" for
        ``n_trials // 2`` or ``(n_trials + 1) // 2`` trials (which one is drawn).
    """
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}.")
    rng = rater_rng(rater, seed)
    order = rng.permutation(n_trials)
    n_left = n_trials // 2 + (int(rng.integers(2)) if n_trials % 2 else 0)
    sides = np.array(["left"] * n_left + ["right"] * (n_trials - n_left))
    rng.shuffle(sides)
    return [(int(t), str(s)) for t, s in zip(order, sides)]
