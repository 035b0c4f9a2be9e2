"""Metrics of generated images against the stimuli, in CNN feature space.

- :func:`judge_2afc` — the automatic two-alternative forced-choice judge, the machine
  stand-in for the paper's human evaluation: a generated image is judged correct against a
  distractor when its features are closer (Pearson r, or another ``similarity``) to its own
  stimulus than to the distractor stimulus. The accuracy is averaged over **all** pairs
  (every generated image × every other test stimulus): the exact expectation of a judge
  shown one random distractor per trial.
- :func:`generated_identification` — n-way identification of the generated images among
  the test stimuli (:func:`sbd.scores.identification`).

Features come from :func:`sbd.features.extract.embed_images`, with the decoder's backbone,
when :func:`embed` is used; the metric functions themselves take feature arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from sbd.scores import identification, pearson_matrix

SIMILARITIES = ("correlation", "cosine", "euclidean")


def similarity_matrix(a: np.ndarray, b: np.ndarray, similarity: str = "correlation") -> np.ndarray:
    """Similarity (higher = closer) of every row of ``a`` (m, D) to every row of ``b`` (n, D).

    ``correlation``: Pearson r; ``cosine``: cosine similarity; ``euclidean``: minus the
    Euclidean distance. Returns (m, n) float64.
    """
    if similarity not in SIMILARITIES:
        raise ValueError(f"Unknown similarity={similarity!r}; valid: {', '.join(SIMILARITIES)}.")
    if similarity == "correlation":
        return pearson_matrix(a, b)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"Expected (m, D) and (n, D) features, got {a.shape} and {b.shape}.")
    if similarity == "cosine":
        na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
        a = np.divide(a, na, out=np.zeros_like(a), where=na > 0)
        b = np.divide(b, nb, out=np.zeros_like(b), where=nb > 0)
        return a @ b.T
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return -np.sqrt(np.maximum(sq, 0.0))


@dataclass
class Judge2AFC:
    """Result of :func:`judge_2afc`.

    Attributes
    ----------
    accuracy : fraction of correct (image, distractor) pairs, over all pairs
    n_pairs : number of pairs judged
    p_value : one-sided binomial p (H0: accuracy 0.5) with one trial per *sample*
        (``n_trials``), ``k`` = the rounded sum of per-sample accuracies; counting every pair
        as an independent trial would overstate the evidence (pairs share images)
    n_trials : samples with at least one generated image
    per_image : (m,) accuracy of each generated image over its distractors
    per_sample : (n,) mean over the sample's images (NaN for samples without images)
    """

    accuracy: float
    n_pairs: int
    p_value: float
    n_trials: int
    per_image: np.ndarray = field(repr=False)
    per_sample: np.ndarray = field(repr=False)


def judge_2afc(generated: np.ndarray, stimuli: np.ndarray, sample_index: Sequence[int],
               similarity: str = "correlation") -> Judge2AFC:
    """Automatic 2AFC judge: is each generated image closer to its own stimulus?

    Parameters
    ----------
    generated : (m, D) features of the generated images
    stimuli : (n, D) features of the test stimuli
    sample_index : (m,) index into ``stimuli`` of each generated image's own stimulus
    similarity : ``correlation`` (default), ``cosine`` or ``euclidean``

    Every other stimulus is a distractor: the exact 2-way identification of
    :func:`sbd.scores.identification` (ties count half).
    """
    from scipy.stats import binomtest

    sim = similarity_matrix(generated, stimuli, similarity)
    m, n = sim.shape
    idx = np.asarray(sample_index, dtype=int)
    if idx.shape != (m,):
        raise ValueError(f"sample_index must have one entry per generated image ({m}), got shape {idx.shape}.")
    if m and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"sample_index must lie in [0, {n}).")
    if n < 2 or m == 0:
        nan = float("nan")
        return Judge2AFC(nan, 0, nan, 0, np.full(m, np.nan), np.full(n, np.nan))
    per_image = identification(sim, 2, idx)[0]  # each other stimulus a distractor
    per_sample = np.full(n, np.nan)
    for s in np.unique(idx):
        per_sample[s] = per_image[idx == s].mean()
    judged = per_sample[np.isfinite(per_sample)]
    k = int(round(float(judged.sum())))
    p = float(binomtest(k, len(judged), 0.5, alternative="greater").pvalue)
    return Judge2AFC(accuracy=float(per_image.mean()), n_pairs=m * (n - 1), p_value=p,
                     n_trials=len(judged), per_image=per_image, per_sample=per_sample)


def generated_identification(generated: np.ndarray, stimuli: np.ndarray,
                             sample_index: Sequence[int], n: int,
                             similarity: str = "correlation") -> tuple[float, np.ndarray, int]:
    """n-way identification of generated images among the test stimuli.

    Parameters
    ----------
    generated : (m, D); stimuli : (c, D); sample_index : (m,) own stimulus of each image
    n : ways, capped at ``c``

    Returns
    -------
    accuracy, per_image (m,), n_eff
    """
    per, _, n_eff = identification(similarity_matrix(generated, stimuli, similarity), n,
                                   sample_index)
    acc = float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")
    return acc, per, n_eff


def embed(images: Sequence, backbone: str = "efficientnet-lite0", batch_size: int = 32) -> np.ndarray:
    """CNN features (n, D) float32 of PIL images or image paths (read with
    :func:`sbd.data.images.read_image`, which raises on an unreadable one), via
    ``embed_images``."""
    from PIL import Image

    from sbd.data.images import read_image
    from sbd.features.extract import embed_images

    pil = [im.convert("RGB") if isinstance(im, Image.Image) else read_image(im)
           for im in images]
    return np.asarray(embed_images(pil, backbone=backbone, batch_size=batch_size), dtype=np.float32)
