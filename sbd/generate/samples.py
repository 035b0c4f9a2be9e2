"""Decoded test samples → generated images, one :class:`GeneratedSample` at a time.

For each test sample the generator draws ``n_per_label`` images for each of its first ``k``
decoded labels (seeds: :func:`sbd.generate.labels.image_seed` of ``(seed, row, wnid, n)``),
beside the stimulus thumbnail and the sample's grid (:func:`sbd.generate.grids.sample_grid`);
:meth:`GeneratedSample.row` is its row of the generation table (:data:`COLUMNS`, the
``generation.csv`` a ``generate`` run logs and :mod:`sbd.metrics.generation` reads).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from PIL import Image

from sbd.data.images import SkippedImages, try_read_image

__all__ = ["COLUMNS", "STIMULUS_SIZE", "GeneratedSample", "stimulus_thumbnail",
           "open_generator", "generate_samples"]

log = logging.getLogger(__name__)

COLUMNS = ("sample_id", "image_id", "true_wnid", "true_name", "decoded_wnids", "decoded_names",
           "scores", "image_paths", "stimulus_path")
STIMULUS_SIZE = 256


@dataclass
class GeneratedSample:
    """One test sample's generation: ``images[r][j]`` is image ``j`` of rank ``r + 1``."""

    sample_id: str
    image_id: str
    true_wnid: str
    true_name: str
    wnids: list[str]
    names: list[str]
    scores: list[float]
    images: list[list[Image.Image]]
    stimulus: Image.Image | None
    grid: Image.Image

    def row(self, image_paths: Sequence[str], stimulus_path: str) -> dict[str, str]:
        """The sample's row of the generation table (:data:`COLUMNS`; lists ";"-joined)."""
        return {"sample_id": self.sample_id, "image_id": self.image_id,
                "true_wnid": self.true_wnid, "true_name": self.true_name,
                "decoded_wnids": ";".join(self.wnids), "decoded_names": ";".join(self.names),
                "scores": ";".join(f"{s:.6g}" for s in self.scores),
                "image_paths": ";".join(image_paths), "stimulus_path": stimulus_path}


def stimulus_thumbnail(path: Path | None, record: SkippedImages) -> Image.Image | None:
    """The stimulus thumbnail (at most :data:`STIMULUS_SIZE` px), or None (missing, or
    unreadable: recorded in ``record``)."""
    if path is None:
        return None
    im, reason = try_read_image(path, draft=(STIMULUS_SIZE, STIMULUS_SIZE))
    if im is None:
        log.warning("Stimulus image %s is unreadable (%s): a grey tile.", path, reason)
        record.add(path, reason, "generate")
        return None
    im.thumbnail((STIMULUS_SIZE, STIMULUS_SIZE))
    return im


def open_generator(name: str, model_id: str, dataset: str, root: Path, tiny_preset: str,
                   device: str = "auto", steps: int = 0, guidance: float = -1.0,
                   progress: bool = True) -> tuple[Any, str]:
    """The generator ``name`` of :data:`sbd.generate.generators.GENERATORS` and the model it
    runs. ``tiny`` with no ``model_id``: the registered tiny model of this data folder's
    bank, trained first when there is none (:func:`sbd.generate.tiny_models.find_or_train`).
    ``steps`` 0 and ``guidance`` < 0: the generator's defaults."""
    from sbd.generate import tiny_models
    from sbd.generate.generators import GENERATORS, get_generator

    gen_model_id = model_id or None
    if name == "tiny" and not model_id:
        gen_model_id = tiny_models.find_or_train(dataset, root, tiny_preset, progress)
    gen = get_generator(name, gen_model_id, device=device, steps=int(steps) or None,
                        guidance=float(guidance))
    return gen, str(gen_model_id or GENERATORS[name].default_model_id)


def generate_samples(generator: Any, root: Path, image_ids: Sequence[str],
                     true_wnids: Sequence[str], wnids: Sequence[Sequence[str]],
                     scores: Sequence[Sequence[float]], k: int, seed: int,
                     n_per_label: int = 1) -> Iterator[GeneratedSample]:
    """Generate, sample by sample, the images of the first ``k`` decoded labels.

    Parameters
    ----------
    generator : from :func:`open_generator` (``generate(wnids, seed, n_per_label, sample)``)
    root : the data folder (test stimulus images; a missing or unreadable one is a grey
        tile, the unreadable ones recorded in its :class:`~sbd.data.images.SkippedImages`)
    image_ids, true_wnids : (n,) the test samples; ``sample_id`` is ``<row:03d>_<image_id>``
    wnids, scores : (n, K) the decoder's ranked labels and scores, K >= k
    seed : base seed of every image
    """
    from sbd import wordnet
    from sbd.data import god
    from sbd.generate import grids

    stimulus_paths, missing = god.stimulus_paths(root, list(image_ids), "test")
    if missing:
        log.warning("%d test stimulus image(s) missing (e.g. %s): grey tiles.",
                    len(missing), missing[0])
    record = SkippedImages(root)
    for i, image_id in enumerate(image_ids):
        sid = f"{i:03d}_{image_id}"
        labels, ranked_scores = list(wnids[i][:k]), list(scores[i][:k])
        images = generator.generate(labels, seed=int(seed), n_per_label=int(n_per_label),
                                    sample=i)
        stim = stimulus_thumbnail(stimulus_paths[i], record)
        names = [wordnet.name(w) for w in labels]
        true_name = wordnet.name(true_wnids[i])
        grid = grids.sample_grid(stim, images, names, ranked_scores, true_name=true_name,
                                 title=sid)
        yield GeneratedSample(sid, image_id, true_wnids[i], true_name, labels, names,
                              ranked_scores, images, stim, grid)
