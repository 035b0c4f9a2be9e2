"""What a generator and the tiny model share, in a module of its own (so the two never
import each other): the seed of each image, the wnid → class-index map of a
class-conditional model, ImageNet-1k's class list, and the error for a missing model."""

from __future__ import annotations

import hashlib
import logging
from typing import Sequence

from sbd.data.label_sets import imagenet1k_wnids

log = logging.getLogger(__name__)

OUT_OF_SET = ("nearest", "error")

__all__ = ["ModelNotFoundError", "image_seed", "imagenet1k_wnids", "LabelIndex", "OUT_OF_SET"]


class ModelNotFoundError(FileNotFoundError):
    """A model id that is neither a local folder nor in the Hugging Face cache / hub."""


def image_seed(seed: int, sample: int, wnid: str, n: int) -> int:
    """The 63-bit seed of one image: a hash of ``(seed, sample, wnid, n)``."""
    key = f"{int(seed)}:{int(sample)}:{wnid}:{int(n)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & (2**63 - 1)



class LabelIndex:
    """Map wnids onto the class indices of a class-conditional model.

    Parameters
    ----------
    classes : sequence of str
        The model's class wnids, in class-index order.
    out_of_set : {"nearest", "error"}
        A wnid outside ``classes``: map it to the class with the highest Wu-Palmer
        similarity (ties: shortest WordNet path, then lowest index), or raise ValueError.
    """

    def __init__(self, classes: Sequence[str], out_of_set: str = "nearest"):
        if out_of_set not in OUT_OF_SET:
            raise ValueError(f"Unknown out_of_set={out_of_set!r}; valid: {', '.join(OUT_OF_SET)}.")
        self.classes = list(classes)
        self.out_of_set = out_of_set
        self._index = {w: i for i, w in enumerate(self.classes)}
        self.mapped: dict[str, tuple[str, float]] = {}

    def __call__(self, wnid: str) -> int:
        """The class index for ``wnid`` (ValueError for unknown wnids)."""
        if wnid in self._index:
            return self._index[wnid]
        if wnid in self.mapped:
            return self._index[self.mapped[wnid][0]]
        from sbd import wordnet

        query = wordnet.synset(wnid)  # ValueError naming an unknown wnid
        if self.out_of_set == "error":
            raise ValueError(f"wnid {wnid!r} ({wordnet.name(wnid)}) is not one of the model's "
                             f"{len(self.classes)} classes (out_of_set='error').")
        scores = list(wordnet.wup_matrix([wnid], self.classes)[0])
        best = max(scores)
        ties = [i for i, s in enumerate(scores) if s == best]
        if len(ties) > 1:
            dist = [query.shortest_path_distance(wordnet.synset(self.classes[i])) for i in ties]
            ties = [i for _, i in sorted(zip([d if d is not None else 1e9 for d in dist], ties))]
        target = self.classes[ties[0]]
        self.mapped[wnid] = (target, best)
        log.info("wnid %s (%s) is not a model class: using nearest class %s (%s), Wu-Palmer %.3f",
                 wnid, wordnet.name(wnid), target, wordnet.name(target), best)
        return ties[0]
