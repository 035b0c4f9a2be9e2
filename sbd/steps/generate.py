"""The ``generate`` step: decoded labels of every test sample → generated images, all logged.

For each test sample (voxels of ``sbd.data.god.load(data_dir, subject, roi, "test")``) the
decoder (default ``models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion``) ranks labels;
the generator draws ``n_per_label`` images for each of the ``top_k`` first
(:func:`sbd.generate.samples.generate_samples`: sample ids, seeds). Artifacts::

    generated/<sample_id>/rank<r>_<wnid>_<n>.png   every generated image (mlflow.log_image)
    stimuli/<sample_id>.png                          the seen image
    grids/<sample_id>.png                            stimulus | decoded top-k names | generated
    grids/overview.png                               all sample grids, stacked
    generation.json (mlflow.log_table), generation.csv   one row per sample, columns
        :data:`sbd.generate.samples.COLUMNS` (paths relative to the run's artifacts)
    blanked.csv                                      images the safety checker blanked (if any)

Metrics: ``generate/n_images``, ``generate/n_blanked``, ``generate/seconds_per_image``,
``generate/n_stimuli_missing``. Tags: ``sbd.decoder_uri``, ``sbd.dataset``, ``sbd.subject``,
``sbd.roi``, ``sbd.generator``, ``sbd.model_id``.

``generator=tiny`` with no ``model_id`` uses the registered ``sbd-<dataset>-tiny-generator``
of this data folder's bank (preset ``tiny_preset``), trained first in a nested ``train_tiny``
run when there is none (:func:`sbd.generate.samples.open_generator`; ``tiny_preset="none"``
makes the absence an error instead).
"""

from __future__ import annotations

import logging
import time

import mlflow
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from sbd import tracking
from sbd.data.identity import data_identity
from sbd.data.layout import resolve_data_dir
from sbd.generate.samples import COLUMNS, GeneratedSample
from sbd.registry.common import decoder_for_data

log = logging.getLogger(__name__)


def _log_sample(s: GeneratedSample, blanked: list[dict]) -> dict[str, str]:
    """Log one sample's images (``generated/<sid>/rank<r>_<wnid>_<n>.png``), stimulus and
    grid; append the images the safety checker blanked to ``blanked``; its table row."""
    paths = []
    for r, (w, imgs) in enumerate(zip(s.wnids, s.images), start=1):
        for j, img in enumerate(imgs):
            path = f"generated/{s.sample_id}/rank{r}_{w}_{j}.png"
            mlflow.log_image(img, artifact_file=path)
            paths.append(path)
            if img.info.get("sbd.blanked") == "true":
                blanked.append({"sample_id": s.sample_id, "path": path, "wnid": w,
                                "seed": img.info.get("sbd.seed", "")})
    stim_path = f"stimuli/{s.sample_id}.png" if s.stimulus is not None else ""
    if s.stimulus is not None:
        mlflow.log_image(s.stimulus, artifact_file=stim_path)
    mlflow.log_image(s.grid, artifact_file=f"grids/{s.sample_id}.png")
    return s.row(paths, stim_path)


def run(decoder: str = "", dataset: str = "phantom", data_dir: str = "", subject: int = 1,
        roi: str = "VC", generator: str = "tiny", model_id: str = "", steps: int = 0,
        guidance: float = -1.0, top_k: int = 3, n_per_label: int = 1, seed: int = 0,
        device: str = "auto", tiny_preset: str = "default", limit: int = 0,
        progress: bool = True) -> str:
    """Generate images for the decoded labels of every test sample; returns the run id.

    Parameters
    ----------
    decoder : decoder model URI ("" → the champion decoder of dataset/subject/roi).
    generator : ``sd``, ``dit`` or ``tiny``; ``model_id`` its weights ("" → its default).
    steps : denoising steps (0 → the generator's default).
    guidance : guidance scale (< 0 → the generator's default).
    top_k : labels per sample (at most the decoder's K); ``n_per_label`` images per label.
    seed : base seed of every image. ``device``: auto, cpu, cuda.
    tiny_preset : preset used to train the tiny model when none is registered ("none":
        do not train, fail instead).
    limit : only the first ``limit`` test samples (0 = all).
    """
    from sbd.data import god
    from sbd.generate import grids
    from sbd.generate.generators import GENERATORS
    from sbd.generate.samples import generate_samples, open_generator

    if generator not in GENERATORS:
        raise ValueError(f"Unknown generator={generator!r}; valid: {', '.join(GENERATORS)}.")
    if int(top_k) < 1 or int(n_per_label) < 1:
        raise ValueError(f"top_k and n_per_label must be >= 1, got {top_k}, {n_per_label}.")
    data_root = resolve_data_dir(dataset, data_dir)
    identity = data_identity(dataset, data_root)
    decoder_uri = decoder or decoder_for_data(dataset, subject, roi, identity.data_id)
    params = dict(decoder=decoder, dataset=dataset, data_dir=data_dir, subject=int(subject),
                  roi=roi, generator=generator, model_id=model_id, steps=int(steps),
                  guidance=float(guidance), top_k=int(top_k), n_per_label=int(n_per_label),
                  seed=int(seed), device=device, tiny_preset=tiny_preset, limit=int(limit))
    tags = {tracking.model_tag("decoder"): decoder_uri,
            **tracking.chain_tags(dataset, subject, roi), tracking.GENERATOR_TAG: generator,
            **tracking.data_tags(identity)}
    with tracking.step_run("generate", params, tags=tags) as active:
        test = god.load(data_root, int(subject), roi, "test")
        n = len(test.image_ids) if not limit else min(int(limit), len(test.image_ids))
        all_wnids, all_scores, k = _decode(decoder_uri, test.voxels[:n], int(top_k))
        gen, gen_model = open_generator(generator, model_id, dataset, data_root, tiny_preset,
                                        device, steps, guidance, progress)
        mlflow.set_tag(tracking.MODEL_ID_TAG, gen_model)
        rows, grid_rows, blanked = [], [], []
        t0 = time.perf_counter()
        for s in tqdm(generate_samples(gen, data_root, test.image_ids[:n], test.wnids[:n],
                                       all_wnids, all_scores, k, int(seed), int(n_per_label)),
                      total=n, desc="generate", unit="sample", disable=not progress):
            rows.append(_log_sample(s, blanked))
            grid_rows.append(s.grid)
        mlflow.log_image(grids.overview_grid(grid_rows), artifact_file="grids/overview.png")
        n_images = sum(len(r["image_paths"].split(";")) for r in rows if r["image_paths"])
        _log_tables(rows, blanked, n_images)
        mlflow.log_metrics({"generate/n_images": n_images, "generate/n_blanked": len(blanked),
                            "generate/seconds_per_image":
                                (time.perf_counter() - t0) / max(1, n_images),
                            "generate/n_stimuli_missing":
                                sum(not r["stimulus_path"] for r in rows)})
        return active.info.run_id


def _decode(decoder_uri: str, voxels: np.ndarray, top_k: int
            ) -> tuple[list[list[str]], np.ndarray, int]:
    """Ranked wnids and scores of the decoder for ``voxels``, and the ranks used (``top_k``
    capped at the decoder's K)."""
    from sbd.decoding.decoder import ranked_scores, ranked_wnids, voxel_table

    ranked = mlflow.pyfunc.load_model(decoder_uri).predict(voxel_table(voxels))
    wnids, scores = ranked_wnids(ranked), ranked_scores(ranked)
    k = min(top_k, len(wnids[0]))
    if k < top_k:
        log.warning("The decoder ranks %d labels; top_k=%d reduced to %d.", k, top_k, k)
    return wnids, scores, k


def _log_tables(rows: list[dict], blanked: list[dict], n_images: int) -> None:
    """``generation.json`` / ``generation.csv`` (one row per sample) and ``blanked.csv``."""
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    mlflow.log_table(table, artifact_file="generation.json")
    mlflow.log_text(table.to_csv(index=False), "generation.csv")
    if blanked:
        mlflow.log_text(pd.DataFrame(blanked).to_csv(index=False), "blanked.csv")
        log.warning("The safety checker blanked %d of %d images (listed in blanked.csv).",
                    len(blanked), n_images)
