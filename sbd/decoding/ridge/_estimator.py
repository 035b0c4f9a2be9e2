""":class:`MultiRidge`, the sklearn-style estimator over the solvers, voxel selection and
the prediction rescalings."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from sbd.decoding.ridge._adjust import adjust_predictions
from sbd.decoding.ridge._selection import check_selection, select_voxels
from sbd.decoding.ridge._solvers import center_scale, check_alpha, decompose, ridge_weights


def _as_2d_float(A, what: str) -> np.ndarray:
    A = np.asarray(A)
    if A.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {A.dtype}.")
    A = A.astype(np.float64, copy=False)
    if A.ndim != 2:
        raise ValueError(f"{what} must be 2-D, got shape {A.shape}.")
    if A.shape[0] == 0:
        raise ValueError(f"{what} is empty (shape {A.shape}).")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"{what} contains NaN or infinite values.")
    return A


class MultiRidge(RegressorMixin, BaseEstimator):
    """Multi-target ridge regression, closed form, from one float64 decomposition.

    Parameters
    ----------
    alpha : float or ndarray (d,)
        Penalty, shared or one per target.
    standardize : bool
        Scale each (kept) voxel to unit variance on the training data.
    fit_intercept : bool
        Centre voxels and targets (unpenalised intercept), as sklearn's Ridge.
    n_voxels : None, int or float
        Voxels kept: None → all; int → that many; float in (0, 1] → that fraction.
    selection : {"corr", "f"}
        How kept voxels are chosen from the training data (:func:`voxel_scores`).
    test_time_adjust : bool
        Batch mode, the paper's baseline only: apply :func:`adjust_predictions` to every
        predicted batch (transductive; needs ≥ 2 rows; never registered or served).
    solver : {"auto", "svd", "eigh"}

    Attributes
    ----------
    coef_ : ndarray (v, d), in the units of the input voxels (0 for dropped voxels)
    intercept_ : ndarray (d,)
    support_ : ndarray (k,) of int, the kept voxel indices
    target_mean_, target_std_ : ndarray (d,), of the training targets
    rescale_mean_, rescale_std_ : ndarray (d,) or None — set by :meth:`set_rescale`:
        predictions are then mapped ``(P - rescale_mean_) / rescale_std_ * target_std_ +
        target_mean_`` (the paper's adjustment with statistics fixed at training time)
    n_features_in_ : int, v
    """

    def __init__(self, alpha: float | np.ndarray = 1.0, standardize: bool = False,
                 fit_intercept: bool = True, n_voxels: int | float | None = None,
                 selection: str = "corr", test_time_adjust: bool = False, solver: str = "auto"):
        self.alpha = alpha
        self.standardize = standardize
        self.fit_intercept = fit_intercept
        self.n_voxels = n_voxels
        self.selection = selection
        self.test_time_adjust = test_time_adjust
        self.solver = solver

    def fit(self, X: np.ndarray, Y: np.ndarray, groups: np.ndarray | None = None) -> "MultiRidge":
        """Fit on voxels ``X`` (n × v) and targets ``Y`` (n × d or n,); ``groups`` (n,) are
        the sample categories, needed only by ``selection="f"``."""
        X = _as_2d_float(X, "X")
        Y = np.asarray(Y)
        self._single_target = Y.ndim == 1
        Y = _as_2d_float(Y.reshape(-1, 1) if Y.ndim == 1 else Y, "Y")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but Y has {Y.shape[0]}.")
        check_selection(self.selection)
        alpha = check_alpha(self.alpha, Y.shape[1])
        support = select_voxels(X, Y, self.n_voxels, self.selection, groups)
        Xc, x_mean, x_scale = center_scale(X[:, support], self.fit_intercept, self.standardize)
        y_mean = Y.mean(axis=0) if self.fit_intercept else np.zeros(Y.shape[1])
        Yc = Y - y_mean
        dec = decompose(Xc, self.solver)
        W = ridge_weights(dec, dec.U.T @ Yc, alpha) / x_scale[:, None]
        coef = np.zeros((X.shape[1], Y.shape[1]))
        coef[support] = W
        self.coef_ = coef
        self.intercept_ = y_mean - x_mean @ W
        self.support_ = support
        self.target_mean_ = Y.mean(axis=0)
        self.target_std_ = Y.std(axis=0)
        self.rescale_mean_ = self.rescale_std_ = None
        self.n_features_in_ = X.shape[1]
        return self

    def set_rescale(self, pred_mean: np.ndarray | None, pred_std: np.ndarray | None
                    ) -> "MultiRidge":
        """Rescale every prediction with fixed statistics (inductive; one row works).

        ``pred_mean`` / ``pred_std`` (d,): the mean and sd of held-out predictions made at
        training time (e.g. category-averaged out-of-fold predictions); None switches
        the rescaling off.
        """
        self._check_fitted()
        if pred_mean is None or pred_std is None:
            self.rescale_mean_ = self.rescale_std_ = None
            return self
        m = np.asarray(pred_mean, dtype=np.float64).ravel()
        sd = np.asarray(pred_std, dtype=np.float64).ravel()
        d = self.coef_.shape[1]
        if m.shape != (d,) or sd.shape != (d,):
            raise ValueError(f"Rescale statistics must have shape ({d},), got {m.shape} and "
                             f"{sd.shape}.")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(sd))):
            raise ValueError("Rescale statistics contain NaN or infinite values.")
        self.rescale_mean_, self.rescale_std_ = m, np.where(sd > 0, sd, 1.0)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise ValueError("This MultiRidge is not fitted yet: call fit(X, Y) first.")

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted targets (m × d) for voxels ``X`` (m × v)."""
        self._check_fitted()
        X = _as_2d_float(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} voxels; this model was fitted on "
                             f"{self.n_features_in_}.")
        if len(self.support_) == self.n_features_in_:  # every voxel kept: no copy of coef_
            P = X @ self.coef_ + self.intercept_
        else:
            P = X[:, self.support_] @ self.coef_[self.support_] + self.intercept_
        if self.test_time_adjust:
            P = adjust_predictions(P, self.target_mean_, self.target_std_)
        elif getattr(self, "rescale_std_", None) is not None:
            P = (P - self.rescale_mean_) / self.rescale_std_ * self.target_std_ + self.target_mean_
        return P[:, 0] if getattr(self, "_single_target", False) else P

    # -- plain-array persistence (never pickles) ---------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (for ``np.savez``)."""
        self._check_fitted()
        return {
            "coef": self.coef_, "intercept": self.intercept_, "support": self.support_,
            "target_mean": self.target_mean_, "target_std": self.target_std_,
            "alpha": np.atleast_1d(np.asarray(self.alpha, dtype=np.float64)),
            "standardize": np.array(bool(self.standardize)),
            "fit_intercept": np.array(bool(self.fit_intercept)),
            "test_time_adjust": np.array(bool(self.test_time_adjust)),
            **({"rescale_mean": self.rescale_mean_, "rescale_std": self.rescale_std_}
               if getattr(self, "rescale_std_", None) is not None else {}),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "MultiRidge":
        """Rebuild a fitted model from :meth:`to_arrays` output; predicts identically."""
        missing = {"coef", "intercept", "support", "target_mean", "target_std",
                   "test_time_adjust"} - set(arrays)
        if missing:
            raise ValueError(f"Ridge weights are missing arrays: {sorted(missing)}.")
        alpha = np.asarray(arrays.get("alpha", [1.0]), dtype=np.float64)
        model = cls(alpha=float(alpha[0]) if alpha.size == 1 else alpha,
                    standardize=bool(arrays.get("standardize", False)),
                    fit_intercept=bool(arrays.get("fit_intercept", True)),
                    test_time_adjust=bool(arrays["test_time_adjust"]))
        model.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        model.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        model.support_ = np.asarray(arrays["support"], dtype=np.int64)
        model.target_mean_ = np.asarray(arrays["target_mean"], dtype=np.float64)
        model.target_std_ = np.asarray(arrays["target_std"], dtype=np.float64)
        model.n_features_in_ = model.coef_.shape[0]
        model.rescale_mean_ = model.rescale_std_ = None
        if "rescale_std" in arrays:
            model.set_rescale(arrays["rescale_mean"], arrays["rescale_std"])
        if model.coef_.ndim != 2 or model.intercept_.shape != (model.coef_.shape[1],):
            raise ValueError(f"Inconsistent ridge weights: coef {model.coef_.shape}, "
                             f"intercept {model.intercept_.shape}.")
        return model
