"""Names and checks shared by the kNN modules: metrics, normalisations, backends."""

from __future__ import annotations

from collections.abc import Sequence

METRICS = ("euclidean", "cosine")
NORMALIZATIONS = ("none", "center", "zscore")
BACKENDS = ("torch", "faiss-flat", "faiss-ivfpq")
EPS = 1e-12


def check_choice(kind: str, value: str, valid: Sequence[str]) -> None:
    """ValueError naming ``kind`` and the valid values when ``value`` is not one of them."""
    if value not in valid:
        raise ValueError(f"Unknown {kind}={value!r}; valid: {', '.join(valid)}.")
