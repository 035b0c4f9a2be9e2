"""Multi-alpha ridge cross-validation: sbd (one decomposition per fold) vs sklearn (a refit
per alpha and fold), on GOD-sized synthetic data.

Default: 1200 samples (150 categories × 8) × 4500 voxels → 2048 features, 5 category
folds, 50 alphas; both pick the alpha of best mean per-sample Pearson r on the same folds
with the same scoring code.  The last line printed is one JSON object: ``sbd_s``,
``sklearn_s``, ``speedup``, ``max_rel_diff`` (max |Δ| / max |sklearn| of the validation
predictions at the chosen alpha, over all folds), ``same_best_alpha`` and the settings.

    python benchmarks/bench_ridge.py            # GOD size (sklearn part: minutes)
    python benchmarks/bench_ridge.py --quick    # small, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from sklearn.linear_model import Ridge

from sbd.decoding.ridge import MultiRidge
from sbd.decoding.tuning import FoldCache, evaluate_params, score_predictions


def synthetic(n_cat: int, per_cat: int, v: int, d: int, seed: int = 0):
    """Category-structured non-negative features; voxels = a random map of them + noise."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"n{i:08d}" for i in range(n_cat)], per_cat)
    centres = rng.gamma(2.0, 0.3, (n_cat, d))
    Y = np.maximum(np.repeat(centres, per_cat, axis=0)
                   + 0.3 * rng.standard_normal((n_cat * per_cat, d)), 0.0)
    B = rng.standard_normal((d, v)) / np.sqrt(d)
    X = (Y - Y.mean(0)) @ B + 1.0 * rng.standard_normal((len(Y), v))
    return X, Y, groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--categories", type=int, default=150)
    ap.add_argument("--per-category", type=int, default=8)
    ap.add_argument("--voxels", type=int, default=4500)
    ap.add_argument("--features", type=int, default=2048)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--alphas", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="320 × 900 → 256, 10 alphas")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS threads for both sides (threadpoolctl); 0: leave as is")
    args = ap.parse_args()
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    if args.quick:
        args.categories, args.voxels, args.features, args.alphas = 40, 900, 256, 10
        args.per_category = 8
    X, Y, groups = synthetic(args.categories, args.per_category, args.voxels, args.features,
                             args.seed)
    alphas = np.logspace(0, 7, args.alphas)

    t0 = time.perf_counter()
    cache = FoldCache(X, Y, groups, n_splits=args.folds)
    sbd_r = np.array([evaluate_params(cache, {"alpha": a})["r"] for a in alphas])
    sbd_s = time.perf_counter() - t0
    sbd_best = float(alphas[int(np.argmax(sbd_r))])
    print(f"sbd: {sbd_s:.1f} s, best alpha {sbd_best:.4g} (r = {sbd_r.max():.4f})", flush=True)

    t0 = time.perf_counter()
    sk_r = np.zeros((len(alphas), len(cache.folds)))
    sk_pred: dict[tuple[int, int], np.ndarray] = {}
    for f, (tr, va) in enumerate(cache.folds):
        for i, a in enumerate(alphas):
            P = Ridge(alpha=a).fit(X[tr], Y[tr]).predict(X[va])
            sk_r[i, f] = score_predictions(P, Y[va], groups[va])["r"]
            sk_pred[(i, f)] = P
        print(f"sklearn: fold {f + 1}/{len(cache.folds)} done "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    sklearn_s = time.perf_counter() - t0
    best_i = int(np.argmax(sk_r.mean(axis=1)))
    sk_best = float(alphas[best_i])

    rel = 0.0
    for f, (tr, va) in enumerate(cache.folds):
        ours = MultiRidge(alpha=sbd_best).fit(X[tr], Y[tr]).predict(X[va])
        ref = sk_pred[(int(np.argmin(np.abs(alphas - sbd_best))), f)]
        rel = max(rel, float(np.abs(ours - ref).max() / np.abs(ref).max()))
    figures = {
        "sbd_s": round(sbd_s, 3), "sklearn_s": round(sklearn_s, 3),
        "speedup": round(sklearn_s / sbd_s, 2), "max_rel_diff": float(f"{rel:.3g}"),
        "same_best_alpha": bool(sbd_best == sk_best), "best_alpha": sbd_best,
        "max_r_diff": float(f"{np.abs(sbd_r - sk_r.mean(axis=1)).max():.3g}"),
        "n_samples": int(X.shape[0]), "n_voxels": int(X.shape[1]), "n_features": int(Y.shape[1]),
        "n_folds": len(cache.folds), "n_alphas": len(alphas),
        "n_decompositions": cache.n_decompositions, "cpus": os.cpu_count(),
        "blas_threads": args.threads or "default", "load_avg_1min": round(os.getloadavg()[0], 1),
        "machine": platform.machine(),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
