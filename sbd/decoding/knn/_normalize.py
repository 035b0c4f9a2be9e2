"""Feature normalisation of queries and bank rows, from training-feature statistics
(:data:`~sbd.decoding.knn.NORMALIZATIONS`; see the package doc)."""

from __future__ import annotations

import numpy as np

from sbd.decoding.knn._common import EPS, NORMALIZATIONS, check_choice


class FeatureNormalizer:
    """``x -> (x - shift) / scale`` per dimension, from training-feature statistics.

    Parameters
    ----------
    mode : {"none", "center", "zscore"} (:data:`NORMALIZATIONS`)
    mean, std : arrays (D,) of the training stimulus features (needed unless ``none``)
    """

    def __init__(self, mode: str = "none", mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        check_choice("normalize", mode, NORMALIZATIONS)
        self.mode = mode
        self.shift = self.scale = None
        if mode == "none":
            return
        if mean is None or (mode == "zscore" and std is None):
            raise ValueError(f"normalize={mode!r} needs the training features' mean"
                             f"{' and sd' if mode == 'zscore' else ''} (stats=).")
        self.shift = np.asarray(mean, dtype=np.float32).ravel()
        if mode == "zscore":
            sd = np.asarray(std, dtype=np.float32).ravel()
            if sd.shape != self.shift.shape:
                raise ValueError(f"Feature mean {self.shift.shape} and sd {sd.shape} differ.")
            self.scale = np.where(sd > 1e-6 * max(float(sd.max()), EPS), sd, 1.0
                                  ).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Normalised copy of ``x`` (n, D), float32."""
        x = np.asarray(x, dtype=np.float32)
        if self.shift is None:
            return x
        if x.shape[-1] != self.shift.shape[0]:
            raise ValueError(f"Features have {x.shape[-1]} columns; the normalisation "
                             f"statistics have {self.shift.shape[0]}.")
        out = x - self.shift
        return out / self.scale if self.scale is not None else out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its statistics as plain arrays (for ``np.savez``)."""
        out = {"mode": np.array(self.mode)}
        if self.shift is not None:
            out["shift"] = self.shift
        if self.scale is not None:
            out["scale"] = self.scale
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "FeatureNormalizer":
        norm = cls("none")
        norm.mode = str(arrays["mode"])
        check_choice("normalize", norm.mode, NORMALIZATIONS)
        norm.shift = np.asarray(arrays["shift"], np.float32) if "shift" in arrays else None
        norm.scale = np.asarray(arrays["scale"], np.float32) if "scale" in arrays else None
        return norm
