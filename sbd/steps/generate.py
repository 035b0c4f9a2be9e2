"""The ``generate`` step: decoded labels of every test sample → generated images, all logged.

For each test sample (voxels of ``sbd.data.god.load(data_dir, subject, roi, "test")``) the
decoder (default ``models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion``) ranks labels;
the generator draws ``n_per_label`` images for each of the ``top_k`` first. Artifacts::

    generated/<sample_id>/rank<r>_<wnid>_<n>.png   every generated image (mlflow.log_image)
    stimuli/<sample_id>.png                          the seen image
    grids/<sample_id>.png                            stimulus | decoded top-k names | generated
    grids/overview.png                               all sample grids, stacked
    generation.json (mlflow.log_table), generation.csv
        sample_id, image_id, true_wnid, true_name, decoded_wnids, decoded_names, scores,
        image_paths, stimulus_path   (lists ";"-joined; paths relative to the run's artifacts)
    blanked.csv                                      images the safety checker blanked (if any)

``sample_id`` is ``<row:03d>_<image_id>``. Image seeds: :func:`sbd.generate.labels.image_seed`
of ``(seed, row, wnid, n)``. Metrics: ``generate/n_images``, ``generate/n_blanked``,
``generate/seconds_per_image``. Tags: ``sbd.decoder_uri``, ``sbd.dataset``, ``sbd.subject``,
``sbd.roi``, ``sbd.generator``, ``sbd.model_id``.

``generator=tiny`` with no ``model_id`` uses the registered ``sbd-<dataset>-tiny-generator``
version trained on this data folder's bank with preset ``tiny_preset``
or, when there is none, trains one first in a nested ``train_tiny`` run, as the
``train_tiny`` entry point does (:func:`sbd.generate.tiny_models.find_or_train`;
``tiny_preset="none"`` accepts any preset and makes the absence an error instead).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from sbd.data.images import SkippedImages, try_read_image
from sbd.data.layout import resolve_data_dir
from sbd.data.identity import data_identity
from sbd.registry.common import decoder_for_data
from sbd import tracking
from sbd.tracking import step_run

log = logging.getLogger(__name__)

COLUMNS = ("sample_id", "image_id", "true_wnid", "true_name", "decoded_wnids", "decoded_names",
           "scores", "image_paths", "stimulus_path")
STIMULUS_SIZE = 256



def _stimulus_image(path: Path | None, record: SkippedImages) -> Image.Image | None:
    """The stimulus thumbnail, or None (missing, or unreadable: recorded)."""
    if path is None:
        return None
    im, reason = try_read_image(path, draft=(STIMULUS_SIZE, STIMULUS_SIZE))
    if im is None:
        log.warning("Stimulus image %s is unreadable (%s): a grey tile.", path, reason)
        record.add(path, reason, "generate")
        return None
    im.thumbnail((STIMULUS_SIZE, STIMULUS_SIZE))
    return im


def _log_images(sid: str, wnids: list[str], images: list[list[Image.Image]],
                blanked: list[dict]) -> list[str]:
    """Log one sample's images as ``generated/<sid>/rank<r>_<wnid>_<n>.png``; returns their
    artifact paths and appends the ones the safety checker blanked to ``blanked``."""
    paths = []
    for r, (w, imgs) in enumerate(zip(wnids, images), start=1):
        for j, img in enumerate(imgs):
            path = f"generated/{sid}/rank{r}_{w}_{j}.png"
            mlflow.log_image(img, artifact_file=path)
            paths.append(path)
            if img.info.get("sbd.blanked") == "true":
                blanked.append({"sample_id": sid, "path": path, "wnid": w,
                                "seed": img.info.get("sbd.seed", "")})
    return paths


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
    from sbd.generate import grids, tiny_models
    from sbd.generate.generators import GENERATORS, get_generator
    from sbd import wordnet

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
    with step_run("generate", params, tags=tags) as active:
        test = god.load(data_root, int(subject), roi, "test")
        n = len(test.image_ids) if not limit else min(int(limit), len(test.image_ids))
        all_wnids, all_scores, k = _decode(decoder_uri, test.voxels[:n], int(top_k))

        gen_model_id = model_id or None
        if generator == "tiny" and not model_id:
            gen_model_id = tiny_models.find_or_train(dataset, data_root, tiny_preset, progress)
        mlflow.set_tag(tracking.MODEL_ID_TAG,
                       str(gen_model_id or GENERATORS[generator].default_model_id))
        gen = get_generator(generator, gen_model_id, device=device,
                            steps=int(steps) or None, guidance=float(guidance))

        stim_paths, missing = god.stimulus_paths(data_root, test.image_ids[:n], "test")
        if missing:
            log.warning("%d test stimulus image(s) missing (e.g. %s): grey tiles.",
                        len(missing), missing[0])
        rows, grid_rows, blanked = [], [], []
        record, n_no_stimulus = SkippedImages(data_root), 0
        t0 = time.perf_counter()
        n_images = 0
        for i in tqdm(range(n), desc="generate", unit="sample", disable=not progress):
            image_id = test.image_ids[i]
            sid = f"{i:03d}_{image_id}"
            wnids, scores = all_wnids[i][:k], all_scores[i][:k]
            images = gen.generate(wnids, seed=int(seed), n_per_label=int(n_per_label), sample=i)
            paths = _log_images(sid, wnids, images, blanked)
            n_images += len(paths)
            stim = _stimulus_image(stim_paths[i], record)
            n_no_stimulus += stim is None
            stim_path = f"stimuli/{sid}.png"
            if stim is not None:
                mlflow.log_image(stim, artifact_file=stim_path)
            names = [wordnet.name(w) for w in wnids]
            true_name = wordnet.name(test.wnids[i])
            grid = grids.sample_grid(stim, images, names, list(scores), true_name=true_name,
                                     title=sid)
            mlflow.log_image(grid, artifact_file=f"grids/{sid}.png")
            grid_rows.append(grid)
            rows.append({"sample_id": sid, "image_id": image_id, "true_wnid": test.wnids[i],
                         "true_name": true_name, "decoded_wnids": ";".join(wnids),
                         "decoded_names": ";".join(names),
                         "scores": ";".join(f"{s:.6g}" for s in scores),
                         "image_paths": ";".join(paths),
                         "stimulus_path": stim_path if stim is not None else ""})
        mlflow.log_image(grids.overview_grid(grid_rows), artifact_file="grids/overview.png")
        _log_tables(rows, blanked, n_images)
        mlflow.log_metrics({"generate/n_images": n_images, "generate/n_blanked": len(blanked),
                            "generate/seconds_per_image":
                                (time.perf_counter() - t0) / max(1, n_images),
                            "generate/n_stimuli_missing": n_no_stimulus})
        return active.info.run_id


def _decode(decoder_uri: str, voxels: np.ndarray, top_k: int
            ) -> tuple[list[list[str]], list[list[float]], int]:
    """Ranked wnids and scores of the decoder for ``voxels``, and the ranks used (``top_k``
    capped at the decoder's K)."""
    from sbd.decoding.decoder import ranked_scores, ranked_wnids

    model = mlflow.pyfunc.load_model(decoder_uri)
    cols = [f"v{i}" for i in range(voxels.shape[1])]
    ranked = model.predict(pd.DataFrame(np.asarray(voxels, np.float64), columns=cols))
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
