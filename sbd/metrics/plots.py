"""Figures of the evaluation (matplotlib, Agg backend; every function returns a Figure).

- :func:`plot_wup_vs_chance` — per-sample top-1 Wu-Palmer against the chance distribution.
- :func:`plot_wordnet_graph` — true and decoded labels linked through their lowest common
  hypernym (the paper's WordNet figure), one chain per sample.
- :func:`plot_categories` — a metric per true category, bars, with the chance level.
- :func:`plot_by_roi` — a metric by ROI (mean ± sd over subjects, one dot per subject).
- :func:`plot_against_baseline` — the decoder beside the paper's pipeline and chance.
- :func:`split_figures` — the three figures of one evaluated split.
- :func:`report_figures` — every figure of an evaluation report.

Save with :func:`save_png` (temp name, then rename) or ``mlflow.log_figure``.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sbd.data.god import ROIS  # noqa: E402  (the display order of ROIs)
from sbd.files import staged_path  # noqa: E402

COLORS = {"true": "#2ca02c", "decoded": "#ff7f0e", "lcs": "#1f77b4", "path": "#7f7f7f",
          "chance": "#d62728"}


def save_png(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG to ``path`` (via a temporary name) and close it."""
    try:
        with staged_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return Path(path)


# --------------------------------------------------------------------------- Wu-Palmer
def plot_wup_vs_chance(wup_top1: Sequence[float], chance_pairs: Sequence[float],
                       chance_draws: Sequence[float] | None = None,
                       title: str = "Wu-Palmer similarity, top-1") -> Figure:
    """Histogram of per-sample top-1 Wu-Palmer against chance.

    Parameters
    ----------
    wup_top1 : (n,) per-sample top-1 Wu-Palmer of the decoder
    chance_pairs : Wu-Palmer of (true label, random bank label) pairs — the per-sample
        chance distribution (``ChanceLevel.pair_values``)
    chance_draws : per-draw means of the chance level (``ChanceLevel.draws``); when given, a
        second panel compares the decoder's mean with their distribution
    """
    wup_top1 = np.asarray(wup_top1, dtype=float)
    chance_pairs = np.asarray(chance_pairs, dtype=float)
    ncols = 2 if chance_draws is not None else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.5 * ncols, 4), squeeze=False)
    ax = axes[0, 0]
    bins = np.linspace(0, 1, 21)
    ax.hist(chance_pairs, bins=bins, density=True, alpha=0.5, color=COLORS["chance"],
            label=f"random bank label (mean {chance_pairs.mean():.3f})")
    ax.hist(wup_top1, bins=bins, density=True, alpha=0.6, color=COLORS["lcs"],
            label=f"decoded (mean {wup_top1.mean():.3f})")
    ax.axvline(chance_pairs.mean(), color=COLORS["chance"], ls="--")
    ax.axvline(wup_top1.mean(), color=COLORS["lcs"], ls="-")
    ax.set_xlabel("Wu-Palmer similarity to the true label")
    ax.set_ylabel("density")
    ax.set_title(f"{title} (n = {len(wup_top1)})")
    ax.legend(fontsize=8)
    if chance_draws is not None:
        draws = np.asarray(chance_draws, dtype=float)
        ax2 = axes[0, 1]
        ax2.hist(draws, bins=30, color=COLORS["chance"], alpha=0.6,
                 label=f"chance, {len(draws)} draws ({draws.mean():.3f} ± {draws.std():.3f})")
        ax2.axvline(wup_top1.mean(), color=COLORS["lcs"], lw=2,
                    label=f"decoder mean {wup_top1.mean():.3f}")
        ax2.set_xlabel("mean Wu-Palmer over samples")
        ax2.set_ylabel("draws")
        ax2.set_title("mean against chance")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- WordNet graph
def _up_path(start, goal) -> list:
    """Shortest hypernym chain ``[start, …, goal]`` (hypernyms and instance hypernyms)."""
    prev = {start: None}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        if s == goal:
            out = [s]
            while prev[out[-1]] is not None:
                out.append(prev[out[-1]])
            return out[::-1]
        for h in s.hypernyms() + s.instance_hypernyms():
            if h not in prev:
                prev[h] = s
                queue.append(h)
    return [start, goal]


def lcs_chain(true_wnid: str, decoded_wnid: str) -> tuple[list[str], str]:
    """The chain true → … → lowest common hypernym → … → decoded, as wnids.

    Uses the subsumer that NLTK's Wu-Palmer uses (``lowest_common_hypernyms`` with
    ``use_min_depth=True``, the synset itself when it subsumes the other).

    Returns
    -------
    chain : wnids from the true label to the decoded label, through the hypernym
    lcs : the wnid of the lowest common hypernym
    """
    from sbd.wordnet import synset, wnid_of

    a, b = synset(true_wnid), synset(decoded_wnid)
    subsumers = a.lowest_common_hypernyms(b, use_min_depth=True)
    if not subsumers:
        raise ValueError(f"{true_wnid} and {decoded_wnid} have no common hypernym.")
    lcs = a if a in subsumers else subsumers[0]
    up = _up_path(a, lcs)
    down = _up_path(b, lcs)[::-1]
    chain = up + down[1:]
    return [wnid_of(s) for s in chain], wnid_of(lcs)


def plot_wordnet_graph(pairs: Sequence[tuple[str, str]], max_pairs: int = 12,
                       max_hops: int = 3, title: str = "True and decoded labels in WordNet") -> Figure:
    """True and decoded labels linked through their lowest common hypernym.

    One row per (true, decoded) pair: the true label (green) climbs its hypernym chain to
    the lowest common hypernym (blue), which descends to the decoded label (orange); the
    Wu-Palmer similarity is written at the right. Chains longer than ``max_hops`` on a side
    are shortened (``… k more …``), keeping the node below the hypernym and those nearest the
    label. Identical pairs show one node.

    Parameters
    ----------
    pairs : (true wnid, decoded wnid) pairs; the first ``max_pairs`` are drawn
    """
    from sbd.metrics.decoding import wup_cached
    from sbd.wordnet import name

    pairs = list(pairs)[:max_pairs]
    height = max(2.0, 0.75 * len(pairs) + 1.0)
    fig, ax = plt.subplots(figsize=(14, height))
    ax.set_axis_off()
    ax.set_title(title)
    if not pairs:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center")
        return fig
    half = max_hops + 1
    for row, (t, d) in enumerate(pairs):
        chain, lcs = lcs_chain(t, d)
        top = chain.index(lcs)
        left, right = chain[: top + 1], chain[top:]
        nodes = []  # (x offset from lcs, label, kind)
        for side, seq in ((-1, left[::-1]), (1, right)):  # seq starts at the lcs
            seq = seq[1:]
            if len(seq) > half:
                seq = seq[:1] + [f"… {len(seq) - max_hops} more …"] + seq[len(seq) - max_hops + 1:]
            for j, w in enumerate(seq, start=1):
                last = j == len(seq)
                kind = ("true" if side < 0 else "decoded") if last else "path"
                label = w if w.startswith("…") else name(w)
                nodes.append((side * j, label, kind))
        nodes.append((0, name(lcs), "true" if lcs == t else "decoded" if lcs == d else "lcs"))
        y = len(pairs) - row
        xs = sorted(x for x, _, _ in nodes)
        ax.plot(xs, [y] * len(xs), color=COLORS["path"], lw=1, zorder=1)
        for x, label, kind in nodes:
            color = COLORS[kind]
            ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=2,
                    bbox=dict(boxstyle="round,pad=0.25", fc="white", ec=color, lw=1.5))
        ax.text(half + 1.2, y, f"wup {wup_cached(t, d):.2f}", ha="left", va="center", fontsize=8)
    ax.set_xlim(-half - 1, half + 2.2)
    ax.set_ylim(0.3, len(pairs) + 0.7)
    handles = [plt.Line2D([], [], marker="s", ls="", mfc="white", mec=COLORS[k], mew=2, label=lab)
               for k, lab in (("true", "true label"), ("lcs", "lowest common hypernym"),
                              ("decoded", "decoded label"))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8,
              frameon=False)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- bars
def plot_categories(table: pd.DataFrame, metric: str = "wup_top1", label: str = "true_name",
                    chance: float | None = None, title: str | None = None) -> Figure:
    """One bar per category (rows of ``table``), sorted by ``metric``.

    Parameters
    ----------
    table : columns ``metric`` and ``label`` (e.g. the per-category table of evaluate)
    chance : drawn as a dashed line when given
    """
    for col in (metric, label):
        if col not in table.columns:
            raise ValueError(f"Column {col!r} not in table; columns: {', '.join(map(str, table.columns))}.")
    t = table.sort_values(metric, ascending=False)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.28 * len(t) + 2), 4))
    ax.bar(np.arange(len(t)), t[metric].to_numpy(dtype=float), color=COLORS["lcs"])
    ax.set_xticks(np.arange(len(t)))
    ax.set_xticklabels(t[label].astype(str), rotation=90, fontsize=7)
    if chance is not None and np.isfinite(chance):
        ax.axhline(chance, color=COLORS["chance"], ls="--", label=f"chance {chance:.3f}")
        ax.legend(fontsize=8)
    ax.set_ylabel(metric)
    ax.set_title(title or f"{metric} per category")
    fig.tight_layout()
    return fig


def _metric_column(table: pd.DataFrame, metric: str) -> str:
    for col in (metric, f"test/{metric}"):
        if col in table.columns:
            return col
    raise ValueError(f"Metric {metric!r} not in table; columns: {', '.join(map(str, table.columns))}.")


def plot_by_roi(table: pd.DataFrame, metric: str, chance: str | float | None = "auto",
                title: str | None = None) -> Figure:
    """A metric by ROI: bar = mean over subjects, error bar = sd, dots = subjects.

    Parameters
    ----------
    table : one row per (subject, ROI) run, columns ``roi``, optional ``subject``, and the
        metric (``metric`` or ``test/<metric>``)
    metric : e.g. ``"wup_top1"`` or ``"test/wup_top1"``
    chance : a number, a column name (its mean is drawn), or ``"auto"`` (the matching
        ``…wup_chance`` column for Wu-Palmer metrics, when present; 0 for ``wup_specific``);
        None for no line
    """
    if "roi" not in table.columns:
        raise ValueError(f"plot_by_roi needs a 'roi' column; columns: {', '.join(map(str, table.columns))}.")
    col = _metric_column(table, metric)
    rois = [r for r in ROIS if r in set(table["roi"])] + sorted(
        set(table["roi"]) - set(ROIS))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(rois) + 2), 4))
    means, sds = [], []
    for i, roi in enumerate(rois):
        vals = table.loc[table["roi"] == roi, col].to_numpy(dtype=float)
        means.append(np.nanmean(vals))
        sds.append(np.nanstd(vals, ddof=1) if np.isfinite(vals).sum() > 1 else 0.0)
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(i + jitter, vals, color="black", s=12, zorder=3)
    ax.bar(np.arange(len(rois)), means, yerr=sds, color=COLORS["lcs"], alpha=0.7, capsize=3)
    ax.set_xticks(np.arange(len(rois)))
    ax.set_xticklabels(rois)
    if isinstance(chance, str) and chance == "auto":
        chance = None
        if "wup_specific" in col:  # the same answers shuffled across samples score the same
            chance = 0.0
        elif "wup" in col:
            prefix = col.rsplit("wup", 1)[0]
            if f"{prefix}wup_chance" in table.columns:
                chance = f"{prefix}wup_chance"
    if isinstance(chance, str):
        if chance not in table.columns:
            raise ValueError(f"Chance column {chance!r} not in table.")
        chance = float(table[chance].astype(float).mean())
    if chance is not None and np.isfinite(chance):
        ax.axhline(chance, color=COLORS["chance"], ls="--", label=f"chance {chance:.3f}")
        ax.legend(fontsize=8)
    ax.set_xlabel("ROI")
    ax.set_ylabel(col)
    n_sub = table["subject"].nunique() if "subject" in table.columns else 1
    ax.set_title(title or f"{col} by ROI ({n_sub} subject{'s' if n_sub != 1 else ''})")
    fig.tight_layout()
    return fig


HEADLINE = ("wup_top1", "wup_specific", "top1_acc_inbank", "top5_acc_inbank", "ident2_acc")


def plot_against_baseline(metrics: dict[str, float], prefix: str = "test/",
                          baseline: str = "baseline/paper/",
                          names: Sequence[str] = HEADLINE,
                          arms: dict[str, str] | None = None, title: str = "") -> Figure:
    """Grouped bars: the decoder (``prefix``), the baseline (``baseline``), optional further
    ``arms`` (label → metric prefix, e.g. the attribution arms) and each metric's floor:
    chance (``wup_chance``; ``top5_chance_inbank``; 0.5 for identification; 0 for
    ``wup_specific``, whose error bars are its bootstrap interval) and, for ``wup_top1``,
    the best constant answer (``wup_constant``), which no figure of evidence may reach."""
    methods = {"sbd decoder": prefix, "paper's pipeline": baseline, **(arms or {})}
    colours = [COLORS["decoded"], COLORS["lcs"], "#ffbb78", "#aec7e8", "#c5b0d5"]
    floors = {"wup_top1": metrics.get(f"{prefix}wup_chance"), "wup_specific": 0.0,
              "top5_acc_inbank": metrics.get(f"{prefix}top5_chance_inbank"),
              "top5_acc": metrics.get(f"{prefix}top5_chance"),
              "top1_acc": metrics.get(f"{prefix}top1_chance")}
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) * (1 + 0.25 * len(methods)) + 2, 4.8))
    x = np.arange(len(names))
    for j, (label, pre) in enumerate(methods.items()):
        vals = np.array([metrics.get(f"{pre}{n}", np.nan) for n in names], dtype=float)
        err = None
        if "wup_specific" in names:
            k = list(names).index("wup_specific")
            lo, hi = (metrics.get(f"{pre}wup_specific_ci_{b}", np.nan) for b in ("low", "high"))
            err = np.zeros((2, len(names)))
            if np.isfinite(lo) and np.isfinite(hi):
                err[:, k] = [vals[k] - lo, hi - vals[k]]
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, vals, width * 0.95, label=label, color=colours[j % len(colours)],
               yerr=err, capsize=2, error_kw={"lw": 0.8})
        for px, v in zip(pos, vals):
            if np.isfinite(v):
                ax.text(px, max(v, 0) + 0.012, f"{v:.2f}", ha="center", va="bottom",
                        fontsize=7, rotation=90 if len(methods) > 2 else 0)
    for i, n in enumerate(names):
        c = floors.get(n, 0.5 if n.startswith("ident2") else None)
        if c is not None and np.isfinite(c):
            ax.hlines(c, i - 0.45, i + 0.45, colors=COLORS["chance"], linestyles="--",
                      label="chance" if i == 0 else None)
    const = metrics.get(f"{prefix}wup_constant")
    if "wup_top1" in names and const is not None and np.isfinite(const):
        i = list(names).index("wup_top1")
        ax.hlines(const, i - 0.45, i + 0.45, colors="k", linestyles=":",
                  label="best constant answer")
    n_in = metrics.get(f"{prefix}n_inbank")
    labels = [f"{n}\n(n={int(n_in)} in bank)" if n.endswith("_inbank") and n_in else n
              for n in names]
    ax.set_xticks(x, labels, fontsize=8)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_ylim(min(0, np.nanmin([metrics.get(f"{p}wup_specific_ci_low", 0) or 0
                                  for p in methods.values()]) - 0.02), 1.12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, ncols=4)
    ax.set_title(title or "decoder vs the paper's pipeline, same test samples "
                 "(wup_specific: top-1 Wu-Palmer minus the same answers shuffled)", fontsize=9)
    fig.tight_layout()
    return fig


def split_figures(split: str, evaluation, categories: pd.DataFrame) -> dict[str, Figure]:
    """The figures of one evaluated split (``figures/<split>_<key>.png``): ``wup_vs_chance``,
    ``wordnet_graph`` and ``categories``, from its
    :class:`~sbd.metrics.decoding.DecodingEvaluation` (sample table: ``wup_top1``,
    ``true_wnid``, ``top1_wnid``; chance level) and its category table."""
    samples, chance = evaluation.samples, evaluation.chance
    return {
        "wup_vs_chance": plot_wup_vs_chance(
            samples["wup_top1"], chance.pair_values, chance.draws,
            title=f"{split}: Wu-Palmer similarity, top-1"),
        "wordnet_graph": plot_wordnet_graph(
            list(zip(samples["true_wnid"], samples["top1_wnid"])),
            title=f"{split}: true (green) and decoded (orange) labels in WordNet"),
        "categories": plot_categories(categories, "wup_top1", chance=chance.mean,
                                      title=f"{split}: top-1 Wu-Palmer per category"),
    }


def report_figures(report) -> dict[str, Figure]:
    """Every figure of an :class:`~sbd.metrics.report.EvaluationReport`, name → Figure
    (``figures/<name>.png``): ``test_vs_paper`` (decoder, paper, attribution arms, chance),
    ``<split>_<key>`` (:func:`split_figures`) and, with the field's metrics,
    ``field_metrics`` (:func:`sbd.metrics.field.plot_field_table`)."""
    from sbd.metrics.baselines import ARMS
    from sbd.metrics.field import plot_field_table

    figures = {"test_vs_paper": plot_against_baseline(report.metrics, arms=ARMS)}
    for split, e in report.splits.items():
        for key, fig in split_figures(split, e, report.categories[split]).items():
            figures[f"{split}_{key}"] = fig
    if report.field is not None:
        f = report.field.result
        figures["field_metrics"] = plot_field_table(
            f.long, f.skipped, title=f"The field's metrics ({report.field.n} test samples)")
    return figures
