"""The phantom: a built-in dataset in exactly the GOD layout, with a known truth.

::

    <data_dir>/fMRI/GOD/Subject1.h5 … SubjectN.h5        BData (bdpy), GOD's keys
    <data_dir>/fMRI/imagenet/images/training/<image_id>.JPEG
    <data_dir>/fMRI/imagenet/images/test/<image_id>.JPEG
    <data_dir>/fMRI/imagenet/images/image_{training,test}_id.csv   "<stimulus_id>,<file>"
    <data_dir>/imagenet/train/<wnid>/<wnid>_<n>.JPEG    labelled bank (ILSVRC layout)
    <data_dir>/phantom_stimuli.npz                      what drove the voxels (cache)
    <data_dir>/phantom_manifest.json                    params, seed, sizes, hashes

**Images** are emoji of real WordNet concepts (:mod:`sbd.data.emoji`) on random
backgrounds. Training and test categories are disjoint, as in GOD. The bank holds the
training categories, the other categories the fonts can draw, and, as GOD's ILSVRC-1k bank
holds 20 of its 50 test categories, a share ``bank_test_fraction`` (0.4) of the test
categories (preset ``full-bank``: all of them); the absent ones keep their WordNet
neighbours. Bank images are distinct from every stimulus, part of them drawn from a second
(outline) font.

**Voxels** are simulated per ROI and subject. For each stimulus image ``i`` and voxel ``v``::

    s_v(i) = z( sqrt(1 - w_roi) * z(RF_v · lowlevel(i)) + sqrt(w_roi) * z(B_v · cnn(i)) )
    x_v(t) = base_v + scale_v * (sqrt(snr_s) * g_v * s_v(i_t) + e_v(t) + c_v * e(t)
                                 + drift_v(run_t, t))

``lowlevel`` = 16×16 maps of luminance, edge energy and two colour-opponent channels;
``RF_v`` a Gaussian receptive field (size grows V1 → V4) with random channel weights;
``cnn`` = the brain network's features (:mod:`sbd.data.brain`: rectified, pooled
intermediate blocks of EfficientNet-Lite2, which no registered decoding backbone
reproduces), ``B_v`` a fixed random map;
``w_roi`` the weight of the CNN part (V1 0 … FFA/PPA 0.9); ``g_v`` a per-voxel gain
(``g² ~ Exp(1)``); ``e`` unit Gaussian noise (``c_v * e(t)`` is noise shared across voxels);
``drift`` a per-run offset and slope; ``base``/``scale`` arbitrary raw units. ``snr`` is the
single-trial signal-to-noise variance ratio; each subject has its own maps, ROI sizes and a
subject factor on ``snr``. Imagery trials carry a weaker copy of the test image's signal
(``imagery_gain``, weaker still in early ROIs). ``z`` standardises over stimuli.

A rebuild with the same parameters is a no-op (the manifest is compared, and the files it
lists are checked); a changed fMRI parameter (``snr``, ``n_subjects``…) re-simulates the
voxels only; a changed image parameter rebuilds everything (and removes extracted features).
Every output is written to a staging folder and renamed into place.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from sbd.data import brain, emoji, layout
from sbd.files import record, records_intact, replace_path, write_text
from sbd.data.images import read_image

__all__ = ["PRESETS", "DEFAULT_SNR", "ROIS", "PhantomConfig", "resolve_config", "build",
           "read_manifest", "lowlevel_stats", "simulate_subject", "MANIFEST_NAME"]

MANIFEST_NAME = "phantom_manifest.json"
STIMULI_CACHE = "phantom_stimuli.npz"
FORMAT_VERSION = 1
SIMULATION_VERSION = 3  # bump when the voxel model changes (re-simulates existing builds)
BRAIN = brain.NAME  # what drives the higher ROIs (not a decoding backbone)

# Calibrated on the default preset, seed 0, VC (~1600 voxels), decoded with
# EfficientNet-Lite0 features (the brain network is Lite2's intermediate blocks), so that the
# paper's fixed pipeline (sbd.decoding.baseline.PaperPipeline: Ridge alpha=1000, test-batch
# z-scoring, 5 nearest of the bank's images, Euclidean) scores the paper's GOD figure, mean
# top-1 Wu-Palmer 0.57 ± 0.02, over subjects 1-3.  The bank lacks 30 of the 50 test
# categories, as GOD's ILSVRC-1k bank does (bank_test_fraction 0.4), which caps the figure:
# paper's pipeline, top-1 Wu-Palmer of subjects 1 / 2 / 3 (benchmarks/calibrate_phantom.py;
# the best constant answer scores 0.534, uniform chance 0.44):
#   snr 0.4   0.584 / 0.525 / 0.540  mean 0.550
#   snr 0.6   0.568 / 0.526 / 0.534  mean 0.543
#   snr 0.8   0.583 / 0.541 / 0.547  mean 0.557
#   snr 1.0   0.581 / 0.546 / 0.546  mean 0.558   (exact top-1 over the 20 test categories
#                                                  in the bank 0.20 / 0.15 / 0.20)
#   snr 1.6   0.601 / 0.552 / 0.528  mean 0.560
#   snr 2.5   0.594 / 0.575 / 0.550  mean 0.573
#   snr 4     0.615 / 0.595 / 0.554  mean 0.588
# The figure rises slowly with snr (the absent categories cap it), so the lowest snr inside
# the band that is not at its edge is taken: 1.0.  With every test category in the bank
# (preset full-bank) the same pipeline scored 0.569 at snr 0.4.
DEFAULT_SNR = 1.0

# Base ROIs, in GOD's order; unions are written as GOD has them.
ROIS = ("V1", "V2", "V3", "V4", "LOC", "FFA", "PPA")
UNIONS = {"LVC": ("V1", "V2", "V3"), "HVC": ("LOC", "FFA", "PPA"), "VC": ROIS}
CNN_WEIGHT = {"V1": 0.0, "V2": 0.1, "V3": 0.25, "V4": 0.5, "LOC": 0.85, "FFA": 0.9, "PPA": 0.9}
RF_SIGMA = {"V1": 0.05, "V2": 0.08, "V3": 0.12, "V4": 0.2, "LOC": 0.35, "FFA": 0.35, "PPA": 0.35}
SUBJECT_SNR_FACTOR = (1.0, 0.85, 1.15, 0.9, 1.1)
GRID = 16  # low-level maps are GRID × GRID

# Role codes in the per-image random streams.
_TRAIN, _TEST, _BANK = 1, 2, 3


@dataclass(frozen=True)
class PhantomConfig:
    """Every parameter of a phantom build (a preset plus overrides).

    Image parameters (change → full rebuild): category counts, images per category, bank,
    image size. fMRI parameters (change → voxels only): the rest.
    """

    n_train_categories: int = 150
    n_train_per_category: int = 8
    n_test_categories: int = 50
    bank_per_category: int = 6
    bank_extra_categories: int = -1  # categories beyond train+test in the bank; -1 = all
    # share of the test categories that the bank holds (GOD's ILSVRC-1k bank: 20 of 50); the
    # others are absent, their WordNet neighbours stay
    bank_test_fraction: float = 0.4
    bank_outline_fraction: float = 0.3
    image_size: int = 256
    jpeg_quality: int = 90
    n_subjects: int = 3
    voxels: tuple[tuple[str, int], ...] = (
        ("V1", 300), ("V2", 300), ("V3", 250), ("V4", 200), ("LOC", 250), ("FFA", 150),
        ("PPA", 150))
    snr: float = DEFAULT_SNR
    test_repeats: int = 35
    imagery_repeats: int = 10
    imagery_gain: float = 0.35
    shared_noise: float = 0.3
    drift: float = 0.5
    train_run_length: int = 50
    imagery_run_length: int = 25

    IMAGE_FIELDS = ("n_train_categories", "n_train_per_category", "n_test_categories",
                    "bank_per_category", "bank_extra_categories", "bank_test_fraction",
                    "bank_outline_fraction", "image_size", "jpeg_quality")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["voxels"] = dict(self.voxels)
        return d

    def image_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.IMAGE_FIELDS}

    def fmri_params(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: v for k, v in d.items() if k not in self.IMAGE_FIELDS}


PRESETS: dict[str, PhantomConfig] = {
    "default": PhantomConfig(),
    # The default with every test category in the bank (exact top-1 is not capped).
    "full-bank": PhantomConfig(bank_test_fraction=1.0),
    # Tests: seconds to build, features included.
    "small": PhantomConfig(
        n_train_categories=24, n_train_per_category=4, n_test_categories=10,
        bank_per_category=3, bank_extra_categories=10, image_size=128, n_subjects=2,
        # higher ROIs as large as in GOD: the brain network is not the decoding backbone,
        # and 96 training images need that many voxels to map one onto the other
        voxels=(("V1", 60), ("V2", 50), ("V3", 40), ("V4", 40), ("LOC", 150), ("FFA", 100),
                ("PPA", 100)),
        test_repeats=5, imagery_repeats=2, train_run_length=24, imagery_run_length=10),
    # End-to-end tests of main: a minute to build, and 40 test categories — enough test
    # images for a permutation p < 0.01 (10 are not).
    "medium": PhantomConfig(
        n_train_categories=80, n_train_per_category=4, n_test_categories=40,
        bank_per_category=3, bank_extra_categories=20, image_size=128, n_subjects=2,
        voxels=(("V1", 120), ("V2", 100), ("V3", 80), ("V4", 80), ("LOC", 250), ("FFA", 150),
                ("PPA", 150)),
        test_repeats=5, imagery_repeats=2, train_run_length=40, imagery_run_length=20),
}


def resolve_config(preset: str = "default", snr: float | None = None,
                   n_subjects: int | None = None, **overrides: Any) -> PhantomConfig:
    """The configuration of ``preset`` with ``snr`` / ``n_subjects`` / any field overridden.

    ``snr=None`` (or negative) and ``n_subjects=None`` (or 0) keep the preset's value.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset={preset!r}; valid: {', '.join(PRESETS)}.")
    cfg = PRESETS[preset]
    if snr is not None and snr >= 0:
        overrides["snr"] = float(snr)
    if n_subjects:
        overrides["n_subjects"] = int(n_subjects)
    valid = {f.name for f in dataclasses.fields(PhantomConfig)}
    unknown = set(overrides) - valid
    if unknown:
        raise ValueError(f"Unknown phantom parameter(s) {sorted(unknown)}; valid: "
                         f"{', '.join(sorted(valid))}.")
    if "voxels" in overrides:  # any mapping/pairs → ROIS order, so equal configs compare equal
        given = dict(overrides["voxels"])
        if sorted(given) != sorted(ROIS):
            raise ValueError(f"voxels must give a count for each of {ROIS}, got {given}.")
        overrides["voxels"] = tuple((r, int(given[r])) for r in ROIS)
    cfg = dataclasses.replace(cfg, **overrides)
    _check_config(cfg)
    return cfg


def _check_config(cfg: PhantomConfig) -> None:
    if cfg.n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {cfg.n_subjects}.")
    if cfg.snr < 0:
        raise ValueError(f"snr must be >= 0, got {cfg.snr}.")
    for name in ("n_train_categories", "n_train_per_category", "n_test_categories",
                 "bank_per_category", "test_repeats", "imagery_repeats", "train_run_length",
                 "imagery_run_length", "image_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}.")
    rois = [r for r, _ in cfg.voxels]
    if sorted(rois) != sorted(ROIS) or any(n < 1 for _, n in cfg.voxels):
        raise ValueError(f"voxels must give a positive count for each of {ROIS}, got "
                         f"{dict(cfg.voxels)}.")
    for name in ("bank_outline_fraction", "bank_test_fraction"):
        if not 0 <= getattr(cfg, name) <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {getattr(cfg, name)}.")


# --------------------------------------------------------------------------- planning


@dataclass
class _Image:
    image_id: str
    wnid: str
    char: str
    style: str  # "color" | "outline"
    key: tuple[int, ...]  # random stream of this image

    @property
    def label(self) -> float:
        return stimulus_id(self.image_id)


@dataclass
class _Plan:
    train: list[_Image]
    test: list[_Image]
    bank: list[_Image]
    train_wnids: list[str]
    test_wnids: list[str]
    bank_wnids: list[str]
    names: dict[str, str] = field(default_factory=dict)


def stimulus_id(image_id: str) -> float:
    """GOD's float label of an image id: ``"n01518878_5958"`` → ``1518878.005958``."""
    wnid, num = image_id.split("_")
    return int(wnid[1:]) + int(num) / 1e6


def _plan(cfg: PhantomConfig, seed: int, cats: list[emoji.Category]) -> _Plan:
    n_used = cfg.n_train_categories + cfg.n_test_categories
    if n_used > len(cats):
        raise ValueError(
            f"The phantom needs {n_used} categories ({cfg.n_train_categories} train + "
            f"{cfg.n_test_categories} test) but the emoji fonts give {len(cats)}.")
    order = np.random.default_rng([seed, 0]).permutation(len(cats))
    test_c = sorted((cats[i] for i in order[:cfg.n_test_categories]), key=lambda c: c.wnid)
    train_c = sorted((cats[i] for i in order[cfg.n_test_categories:n_used]),
                     key=lambda c: c.wnid)
    rest = [cats[i] for i in order[n_used:]]
    if cfg.bank_extra_categories >= 0:
        rest = rest[:cfg.bank_extra_categories]
    # the test categories the bank holds; the images of every category are drawn as with a
    # full bank, so the stimuli do not depend on bank_test_fraction
    n_in_bank = int(round(cfg.bank_test_fraction * len(test_c)))
    in_bank = np.random.default_rng([seed, 9]).permutation(len(test_c))[:n_in_bank]
    absent = {test_c[i].wnid for i in range(len(test_c)) if i not in set(in_bank.tolist())}
    all_c = sorted(train_c + test_c + rest, key=lambda c: c.wnid)
    roles = {c.wnid: (cfg.n_train_per_category if c in train_c else 0,
                      1 if c in test_c else 0) for c in all_c}

    train, test, bank = [], [], []
    for c in all_c:
        woff = int(c.wnid[1:])
        n_tr, n_te = roles[c.wnid]
        n_bank = cfg.bank_per_category
        numbers = np.random.default_rng([seed, 4, woff]).choice(
            np.arange(1, 100000), size=n_tr + n_te + n_bank, replace=False)
        if c.wnid in absent:
            n_bank = 0
        ids = [f"{c.wnid}_{int(n)}" for n in numbers]
        start = int(np.random.default_rng([seed, 5, woff]).integers(len(c.chars)))
        for k in range(n_tr):
            train.append(_Image(ids[k], c.wnid, c.chars[(start + k) % len(c.chars)], "color",
                                (seed, _TRAIN, woff, k)))
        for k in range(n_te):
            test.append(_Image(ids[n_tr + k], c.wnid, c.chars[(start + n_tr + k) % len(c.chars)],
                               "color", (seed, _TEST, woff, k)))
        n_out = int(round(cfg.bank_outline_fraction * n_bank)) if c.outline_chars else 0
        for k in range(n_bank):
            if k < n_out:
                ch, style = c.outline_chars[k % len(c.outline_chars)], "outline"
            else:
                ch, style = c.chars[(start + k) % len(c.chars)], "color"
            bank.append(_Image(ids[n_tr + n_te + k], c.wnid, ch, style, (seed, _BANK, woff, k)))
    train.sort(key=lambda im: im.image_id)
    test.sort(key=lambda im: im.image_id)
    return _Plan(train, test, bank, [c.wnid for c in train_c], [c.wnid for c in test_c],
                 [c.wnid for c in all_c if c.wnid not in absent],
                 {c.wnid: c.name for c in all_c})


# --------------------------------------------------------------------------- images


def _render(im: _Image, fonts: emoji.Fonts, size: int) -> Image.Image:
    rng = np.random.default_rng(list(im.key))
    glyph = emoji.render_glyph(im.char, fonts, im.style, rng)
    return emoji.compose(glyph, rng, size)


def _write_images(plan: _Plan, cfg: PhantomConfig, fonts: emoji.Fonts, stage: Path,
                  progress: bool) -> None:
    jobs = ([(im, layout.images_dir(stage, "training") / f"{im.image_id}.JPEG")
             for im in plan.train]
            + [(im, layout.images_dir(stage, "test") / f"{im.image_id}.JPEG") for im in plan.test]
            + [(im, layout.bank_dir(stage) / im.wnid / f"{im.image_id}.JPEG") for im in plan.bank])
    for d in {p.parent for _, p in jobs}:
        d.mkdir(parents=True, exist_ok=True)
    for im, path in tqdm(jobs, desc="phantom images", unit="img", disable=not progress):
        _render(im, fonts, cfg.image_size).save(path, "JPEG", quality=cfg.jpeg_quality)
    for name, images in (("training", plan.train), ("test", plan.test)):
        lines = "".join(f'{im.label:.6f},"{im.image_id}.JPEG"\n' for im in images)
        layout.image_list_csv(stage, name).write_text(lines)


def lowlevel_stats(img: Image.Image) -> np.ndarray:
    """Low-level image statistics on a GRID × GRID grid.

    Parameters
    ----------
    img : any PIL image.

    Returns
    -------
    (4, GRID, GRID) float32: mean luminance, edge energy (gradient magnitude), red-green and
    blue-yellow opponent colour, per grid cell.
    """
    side = GRID * 4
    a = np.asarray(img.convert("RGB").resize((side, side), Image.BILINEAR), np.float32) / 255.0
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    lum = 0.299 * r + 0.587 * g + 0.114 * b
    gy, gx = np.gradient(lum)
    maps = np.stack([lum, np.sqrt(gx ** 2 + gy ** 2), r - g, b - 0.5 * (r + g)])
    return maps.reshape(4, GRID, 4, GRID, 4).mean(axis=(2, 4)).astype(np.float32)


def _stimulus_stats(plan: _Plan, stage: Path, progress: bool,
                    batch_size: int = 32) -> dict[str, np.ndarray]:
    items = ([(im, layout.images_dir(stage, "training") / f"{im.image_id}.JPEG")
              for im in plan.train]
             + [(im, layout.images_dir(stage, "test") / f"{im.image_id}.JPEG")
                for im in plan.test])
    net = brain.load_network()
    cnn, low = [], []
    bar = tqdm(total=len(items), desc="phantom brain network", unit="img", disable=not progress)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        imgs = [read_image(path) for _, path in chunk]
        cnn.append(brain.raw_brain_features(imgs, net, batch_size=batch_size))
        low.extend(lowlevel_stats(x) for x in imgs)
        bar.update(len(chunk))
    bar.close()
    return {"image_ids": np.array([im.image_id for im, _ in items]),
            "cnn": brain.mix(np.concatenate(cnn)),
            "lowlevel": np.stack(low).astype(np.float32)}


# --------------------------------------------------------------------------- voxels


def _z(x: np.ndarray, axis: int = 0) -> np.ndarray:
    sd = x.std(axis=axis, keepdims=True)
    return (x - x.mean(axis=axis, keepdims=True)) / np.where(sd > 0, sd, 1.0)


@dataclass
class _Trials:
    stim: np.ndarray      # (n,) index into the stimulus arrays (test image for imagery)
    datatype: np.ndarray  # (n,) 1 train, 2 test, 3 imagery
    run: np.ndarray       # (n,) 1-based, unique across the file
    block: np.ndarray     # (n,) 1-based trial number within its run
    label: np.ndarray     # (n,) GOD stimulus id (imagery: the category id)


def _trials(plan: _Plan, cfg: PhantomConfig, seed: int) -> _Trials:
    """Run structure as GOD's: training runs, test runs (each shows every test image once),
    imagery runs. The same for every subject."""
    rng = np.random.default_rng([seed, 6])
    n_train, n_test = len(plan.train), len(plan.test)
    labels = np.array([im.label for im in plan.train + plan.test])
    stim, dtype, run, block = [], [], [], []
    r = 0

    def add_runs(order: np.ndarray, dt: int, run_len: int) -> None:
        nonlocal r
        for start in range(0, len(order), run_len):
            chunk = order[start:start + run_len]
            r += 1
            stim.extend(chunk)
            dtype.extend([dt] * len(chunk))
            run.extend([r] * len(chunk))
            block.extend(range(1, len(chunk) + 1))

    add_runs(rng.permutation(n_train), 1, cfg.train_run_length)
    for _ in range(cfg.test_repeats):
        add_runs(n_train + rng.permutation(n_test), 2, n_test)
    imag = np.repeat(np.arange(n_test), cfg.imagery_repeats)
    add_runs(n_train + rng.permutation(imag), 3, cfg.imagery_run_length)
    stim_a = np.asarray(stim)
    dt_a = np.asarray(dtype)
    lab = labels[stim_a].copy()
    lab[dt_a == 3] = np.floor(lab[dt_a == 3])
    return _Trials(stim_a, dt_a, np.asarray(run), np.asarray(block), lab)


def _roi_sizes(cfg: PhantomConfig, subject: int, seed: int) -> dict[str, int]:
    if subject == 1:
        return dict(cfg.voxels)
    rng = np.random.default_rng([seed, 7, subject])
    return {r: max(4, int(round(n * rng.uniform(0.85, 1.15)))) for r, n in cfg.voxels}


def simulate_subject(cnn: np.ndarray, lowlevel: np.ndarray, trials: _Trials,
                     cfg: PhantomConfig, subject: int, seed: int) -> dict[str, Any]:
    """Simulated responses of one subject.

    Parameters
    ----------
    cnn : (n_stimuli, D) CNN features of the stimulus images.
    lowlevel : (n_stimuli, 4, GRID, GRID) from :func:`lowlevel_stats`.
    trials : the run structure (``_trials``).
    cfg, subject, seed : the subject's maps, ROI sizes and noise follow from these.

    Returns
    -------
    dict with ``voxels`` (n_trials, V) float32 raw values, ``roi`` (V,) ROI name per
    voxel, ``xyz`` (V, 3) voxel coordinates.
    """
    rng = np.random.default_rng([seed, 8, subject])
    n_stim = cnn.shape[0]
    hi = cnn.astype(np.float64) - cnn.mean(axis=0)
    hi /= np.sqrt((hi ** 2).sum(axis=1).mean())
    lo = _z(lowlevel.reshape(n_stim, 4, GRID * GRID).astype(np.float64))
    centres = (np.arange(GRID) + 0.5) / GRID
    gy, gx = np.meshgrid(centres, centres, indexing="ij")
    sizes = _roi_sizes(cfg, subject, seed)
    snr = cfg.snr * SUBJECT_SNR_FACTOR[(subject - 1) % len(SUBJECT_SNR_FACTOR)]
    is_imag = trials.datatype == 3
    signals, roi_of, xyz = [], [], []
    for k, roi in enumerate(ROIS):
        n = sizes[roi]
        # Low-level part: Gaussian receptive fields over the 4 maps.
        cx, cy = rng.uniform(0.1, 0.9, n), rng.uniform(0.1, 0.9, n)
        sigma = RF_SIGMA[roi] * rng.uniform(0.7, 1.3, n)
        rf = np.exp(-((gx.ravel()[None] - cx[:, None]) ** 2
                      + (gy.ravel()[None] - cy[:, None]) ** 2) / (2 * sigma[:, None] ** 2))
        rf /= rf.sum(axis=1, keepdims=True)
        chan = rng.normal(size=(n, 4)) * np.array([1.0, 1.0, 0.6, 0.6])
        w_lo = (chan[:, :, None] * rf[:, None, :]).reshape(n, -1)  # (n, 4·GRID²)
        s_lo = _z(lo.reshape(n_stim, -1) @ w_lo.T)
        w = CNN_WEIGHT[roi]
        s = np.sqrt(1 - w) * s_lo
        if w > 0:
            b = rng.normal(size=(hi.shape[1], n)) / np.sqrt(hi.shape[1])
            s = s + np.sqrt(w) * _z(hi @ b)
        signals.append(_z(s))
        roi_of += [roi] * n
        xyz.append(rng.integers(-60, 60, (n, 3)) + np.array([0, -80 + 10 * k, 0]))
    sig = np.concatenate(signals, axis=1)  # (n_stim, V)
    n_vox = sig.shape[1]
    roi_arr = np.array(roi_of)
    gain = np.sqrt(rng.exponential(1.0, n_vox)) * np.sqrt(snr)
    imag_gain = np.array([cfg.imagery_gain * (0.2 + 0.8 * CNN_WEIGHT[r]) for r in roi_of])

    n_tr = len(trials.stim)
    amp = np.where(is_imag[:, None], imag_gain[None], 1.0)
    x = sig[trials.stim] * amp * gain[None]
    x += rng.normal(size=(n_tr, n_vox))
    x += cfg.shared_noise * rng.normal(size=(n_tr, 1)) * rng.normal(size=(1, n_vox))
    for r in np.unique(trials.run):
        m = trials.run == r
        t_rel = (trials.block[m] - 1) / max(int(m.sum()) - 1, 1) - 0.5
        x[m] += cfg.drift * (rng.normal(size=(1, n_vox))
                             + t_rel[:, None] * rng.normal(size=(1, n_vox)))
    base = 100.0 + 20.0 * np.abs(rng.normal(size=n_vox))
    scale = rng.uniform(0.5, 2.0, n_vox)
    x = base[None] + scale[None] * x
    return {"voxels": x.astype(np.float32), "roi": roi_arr,
            "xyz": np.concatenate(xyz).astype(np.float64)}


def _write_bdata(path: Path, sim: dict[str, Any], trials: _Trials) -> None:
    import bdpy

    bd = bdpy.BData()
    bd.add(sim["voxels"].astype(np.float64), "VoxelData")
    bd.add(trials.run.astype(np.float64), "Run")
    bd.add(trials.block.astype(np.float64), "Block")
    bd.add(trials.datatype.astype(np.float64), "DataType")
    bd.add(trials.label, "stimulus_id")
    bd.add(trials.label, "Label")
    bd.set_metadatadescription("DataType", "1 = training, 2 = test (perception), 3 = imagery")
    bd.set_metadatadescription(
        "stimulus_id", "stimulus id: WordNet offset + image number / 1e6 (imagery: category)")
    bd.set_metadatadescription("Label", "same as stimulus_id")
    roi = sim["roi"]
    for name in ROIS:
        bd.add_metadata(f"ROI_{name}", (roi == name).astype(np.float64),
                        f"1 = ROI {name} voxel", where="VoxelData")
    for name, parts in UNIONS.items():
        bd.add_metadata(f"ROI_{name}", np.isin(roi, parts).astype(np.float64),
                        f"1 = ROI {name} voxel ({' + '.join(parts)})", where="VoxelData")
    for i, axis in enumerate("xyz"):
        bd.add_metadata(f"voxel_{axis}", sim["xyz"][:, i], f"voxel {axis} coordinate (mm)",
                        where="VoxelData")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bd.save(str(path))


# --------------------------------------------------------------------------- manifest


def _key(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def read_manifest(data_dir: str | Path) -> dict[str, Any] | None:
    """The manifest of the phantom in ``data_dir``, or None when there is none."""
    path = Path(data_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


# --------------------------------------------------------------------------- build

_IMAGE_OUTPUTS = ("fMRI/imagenet/images", "imagenet/train", STIMULI_CACHE)


def _fmri_outputs(n_subjects: int) -> list[str]:
    return [f"fMRI/GOD/Subject{s}.h5" for s in range(1, n_subjects + 1)]


def build(data_dir: str | Path, preset: str = "default", snr: float | None = None,
          seed: int = 0, n_subjects: int | None = None, progress: bool = True,
          **overrides: Any) -> dict[str, Any]:
    """Build (or reuse) the phantom dataset in ``data_dir``.

    Parameters
    ----------
    data_dir : destination folder (created); must not hold another, non-phantom dataset.
    preset : ``"default"`` (GOD-sized), ``"medium"`` (end-to-end tests) or ``"small"`` (tests).
    snr : single-trial signal-to-noise variance ratio; None → the preset's.
    seed : everything random follows from it.
    n_subjects : None → the preset's.
    progress : show tqdm bars.
    **overrides : any other :class:`PhantomConfig` field.

    Returns
    -------
    The manifest (also written to ``data_dir/phantom_manifest.json``).
    """
    t0 = time.perf_counter()
    root = Path(data_dir)
    cfg = resolve_config(preset, snr, n_subjects, **overrides)
    seed = int(seed)
    fonts = emoji.find_fonts()
    cats = emoji.categories(fonts)
    image_key = _key({"format": FORMAT_VERSION, "seed": seed, "params": cfg.image_params(),
                      "fonts": fonts.sha256(), "table": emoji.table_sha256(cats),
                      "brain": BRAIN})
    fmri_key = _key({"image_key": image_key, "params": cfg.fmri_params(),
                     "simulation": SIMULATION_VERSION})

    old = read_manifest(root)
    reuse_images = _images_reusable(root, old, image_key)
    if (reuse_images and old.get("fmri_key") == fmri_key
            and records_intact(root, old["outputs"])):
        return old

    plan = _plan(cfg, seed, cats)
    n_trials = _build_files(root, plan, cfg, fonts, seed, reuse_images, progress)
    outputs = {}
    for rel in _IMAGE_OUTPUTS:
        outputs[rel] = old["outputs"][rel] if reuse_images else record(root / rel)
    for rel in _fmri_outputs(cfg.n_subjects):
        outputs[rel] = record(root / rel)
    manifest = {
        "format": "sbd-phantom", "format_version": FORMAT_VERSION,
        "preset": preset, "seed": seed, "params": cfg.to_dict(),
        "image_key": image_key, "fmri_key": fmri_key, "brain": BRAIN,
        "fonts": {"color": str(fonts.color), "outline": str(fonts.outline) if fonts.outline
                  else None, **{f"{k}_sha256": v for k, v in fonts.sha256().items()}},
        "emoji_table_sha256": emoji.table_sha256(cats),
        "sizes": {"categories_available": len(cats), "train_categories": len(plan.train_wnids),
                  "test_categories": len(plan.test_wnids), "bank_categories": len(plan.bank_wnids),
                  "train_images": len(plan.train), "test_images": len(plan.test),
                  "bank_images": len(plan.bank), "trials": n_trials,
                  "subjects": {str(s): _roi_sizes(cfg, s, seed)
                               for s in range(1, cfg.n_subjects + 1)}},
        "categories": {"train": plan.train_wnids, "test": plan.test_wnids,
                       "test_in_bank": sorted(set(plan.test_wnids) & set(plan.bank_wnids)),
                       "names": plan.names},
        "outputs": outputs,
        "build_seconds": round(time.perf_counter() - t0, 1),
        "images_reused": reuse_images,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    write_text(root / MANIFEST_NAME, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _images_reusable(root: Path, old: dict | None, image_key: str) -> bool:
    """Whether the stimulus images on disk (described by manifest ``old``) are those of
    ``image_key`` and intact; FileExistsError when ``root`` holds fMRI data of another
    dataset (no phantom manifest)."""
    god_dir = root / "fMRI" / "GOD"
    if (old is None and not (root / STIMULI_CACHE).exists() and god_dir.is_dir()
            and any(god_dir.iterdir())):
        raise FileExistsError(
            f"{root} already holds fMRI data that is not a phantom (no {MANIFEST_NAME}); "
            "choose another data_dir for the phantom.")
    outputs = (old or {}).get("outputs", {})
    return bool(old and old.get("image_key") == image_key
                and all(k in outputs for k in _IMAGE_OUTPUTS)
                and records_intact(root, {k: outputs[k] for k in _IMAGE_OUTPUTS}))


def _build_files(root: Path, plan, cfg: PhantomConfig, fonts, seed: int, reuse_images: bool,
                 progress: bool) -> int:
    """Write the images (unless reused) and every subject's BData in a staging folder, then
    swap them into ``root`` (the manifest, written after, marks the build done; an
    interrupted build is redone).  Returns the number of trials."""
    root.mkdir(parents=True, exist_ok=True)
    stage = root / f".phantom-stage-{os.getpid()}"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    try:
        if reuse_images:
            with np.load(root / STIMULI_CACHE) as z:
                stats = {k: z[k] for k in z.files}
        else:
            _write_images(plan, cfg, fonts, stage, progress)
            stats = _stimulus_stats(plan, stage, progress)
            np.savez(stage / STIMULI_CACHE, **stats)
        expected = [im.image_id for im in plan.train + plan.test]
        if list(stats["image_ids"]) != expected:
            raise RuntimeError(f"{root / STIMULI_CACHE} does not match the planned stimuli; "
                               "delete it and the manifest to rebuild.")
        trials = _trials(plan, cfg, seed)
        (stage / "fMRI" / "GOD").mkdir(parents=True, exist_ok=True)
        for s in tqdm(range(1, cfg.n_subjects + 1), desc="phantom subjects",
                      disable=not progress):
            sim = simulate_subject(stats["cnn"], stats["lowlevel"], trials, cfg, s, seed)
            _write_bdata(layout.fmri_file(stage, s), sim, trials)
        _swap_build(stage, root, cfg.n_subjects, reuse_images)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return int(len(trials.stim))


def _swap_build(stage: Path, root: Path, n_subjects: int, reuse_images: bool) -> None:
    """Move a staged build into place: the old manifest goes first, stale features (of
    other images) and other subjects' files with it."""
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    if not reuse_images:
        for rel in _IMAGE_OUTPUTS:
            replace_path(stage / rel, root / rel)
        stale = root / "features"
        if stale.exists():  # features of the previous images
            shutil.rmtree(stale)
    god = root / "fMRI" / "GOD"
    if god.exists():
        for p in god.glob("Subject*.h5"):
            p.unlink()
    god.mkdir(parents=True, exist_ok=True)
    for rel in _fmri_outputs(n_subjects):
        replace_path(stage / rel, root / rel)
