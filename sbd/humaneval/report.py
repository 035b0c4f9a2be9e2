"""Report of a human study: figures, a comparison figure, everything logged to the generate run.

Metrics (prefix ``human/`` for the ``generated`` foil, ``human/bank/`` for the ``bank`` foil):
``2afc_acc`` (all answers pooled), ``2afc_p`` (one-sided binomial, chance 0.5),
``2afc_ci_low`` / ``2afc_ci_high`` (exact 95 % interval), ``n_answers``, ``n_raters``,
``n_trials``, ``agreement`` (pairwise, on common trials), ``fleiss_kappa``.
Artifacts under ``humaneval/``: the figure ``2afc_<foil>.png`` (each rater, all raters and
the automatic judge ``test/judge2afc_acc`` — with its interval when ``test/judge2afc_n`` is
logged — of the evaluate run of this generate run, when there is one), ``raters_<foil>.csv``, ``answers_<foil>.csv`` and ``report_<foil>.json``.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.entities import Metric

from sbd.humaneval.stats import binomial_summary, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure
from sbd.humaneval.study import get_run, open_study

JUDGE_METRIC = "test/judge2afc_acc"
JUDGE_N_METRIC = "test/judge2afc_n"
METRIC_KEYS = {"acc": "2afc_acc", "p": "2afc_p", "ci_low": "2afc_ci_low", "ci_high": "2afc_ci_high",
               "n": "n_answers", "n_raters": "n_raters", "n_trials": "n_trials",
               "agreement": "agreement", "fleiss_kappa": "fleiss_kappa"}


def metric_prefix(foil: str) -> str:
    return "human/" if foil == "generated" else f"human/{foil}/"


def find_judge_run(run_id: str) -> mlflow.entities.Run | None:
    """The latest run carrying ``test/judge2afc_acc`` for generate run ``run_id``.

    Looks at the generate run itself, then at runs with param ``generate_run = run_id``
    (the evaluate entry point), finished ones first, newest first.
    """
    if not re.fullmatch(r"[A-Za-z0-9_-]+", run_id):
        raise ValueError(f"Malformed run id {run_id!r}.")
    run = get_run(run_id)
    if JUDGE_METRIC in run.data.metrics:
        return run
    client = mlflow.MlflowClient()
    exp_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exp_ids, filter_string=f"params.generate_run = '{run_id}'",
                              order_by=["attributes.start_time DESC"], max_results=100)
    runs = [r for r in runs if JUDGE_METRIC in r.data.metrics]
    runs.sort(key=lambda r: r.info.status != "FINISHED")
    return runs[0] if runs else None


def plot(per_rater: pd.DataFrame, overall: dict[str, Any], judge: dict[str, float] | None, foil: str) -> Figure:
    """Bar chart: each rater and all raters (95 % intervals), the automatic judge, chance.

    ``judge``: ``{"acc", "ci_low", "ci_high"}`` (interval NaN when its n is unknown) or None.
    """
    from matplotlib.figure import Figure    # no pyplot: no global backend or figure state

    labels = list(per_rater["rater"]) + ["all raters"]
    acc = list(per_rater["acc"]) + [overall["acc"]]
    lo = list(per_rater["ci_low"]) + [overall["ci_low"]]
    hi = list(per_rater["ci_high"]) + [overall["ci_high"]]
    colors = ["#8fb3d9"] * len(per_rater) + ["#1f5fa8"]
    if judge is not None:
        labels.append("automatic judge")
        acc.append(judge["acc"])
        lo.append(judge["acc"] if math.isnan(judge["ci_low"]) else judge["ci_low"])
        hi.append(judge["acc"] if math.isnan(judge["ci_high"]) else judge["ci_high"])
        colors.append("#d98c2b")
    err = [[a - l for a, l in zip(acc, lo)], [h - a for a, h in zip(acc, hi)]]
    fig = Figure(figsize=(max(4.0, 0.9 * len(labels) + 2), 3.6), dpi=100)
    ax = fig.subplots()
    ax.bar(range(len(labels)), acc, yerr=err, color=colors, capsize=4)
    ax.axhline(0.5, color="gray", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("2AFC proportion correct")
    ax.set_title(f"Human 2AFC (foil: {foil}; n={overall['n']}, p={overall['p']:.2g})")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def report(run_id: str, foil: str = "generated", store_dir: str | Path | None = None,
           judge_run_id: str | None = None, log: bool = True) -> dict[str, Any]:
    """Compute a study's figures and (``log=True``) log them to the generate run ``run_id``.

    Returns
    -------
    dict
        ``metrics`` (logged names → values), ``raters`` (per-rater rows), ``judge_run_id``
        and ``judge_acc`` (None without an automatic judge), ``n_answers``.
    """
    study = open_study(run_id, foil=foil, store_dir=store_dir, create=False)
    answers = study.store.answers()
    if answers.empty:
        raise ValueError(f"No answers yet in {study.store.path}.")
    per_rater, overall = summarize(answers)
    judge = get_run(judge_run_id) if judge_run_id else find_judge_run(run_id)
    judge_acc = judge.data.metrics.get(JUDGE_METRIC) if judge is not None else None
    judge_fig = None
    if judge_acc is not None:
        n_judge = int(judge.data.metrics.get(JUDGE_N_METRIC, 0))
        ci = (binomial_summary(round(judge_acc * n_judge), n_judge) if n_judge
              else binomial_summary(0, 0))
        judge_fig = {"acc": judge_acc, "ci_low": ci.ci_low, "ci_high": ci.ci_high}
    prefix = metric_prefix(foil)
    metrics = {prefix + name: float(overall[key]) for key, name in METRIC_KEYS.items()
               if overall[key] is not None and not math.isnan(float(overall[key]))}
    result = {"run_id": run_id, "foil": foil, "metrics": metrics, "n_answers": len(answers),
              "raters": per_rater.to_dict("records"),
              "judge_run_id": judge.info.run_id if judge is not None else None, "judge_acc": judge_acc}
    if log:
        client = mlflow.MlflowClient()
        stamp = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in metrics.items()])
        if judge is not None:
            client.set_tag(run_id, f"sbd.human.{foil}.judge_run", judge.info.run_id)
        fig = plot(per_rater, overall, judge_fig, foil)
        client.log_figure(run_id, fig, f"humaneval/2afc_{foil}.png")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            per_rater.to_csv(tmp / f"raters_{foil}.csv", index=False)
            study.store.export_csv(tmp / f"answers_{foil}.csv")
            (tmp / f"report_{foil}.json").write_text(json.dumps(result, indent=2, default=float))
            for name in (f"raters_{foil}.csv", f"answers_{foil}.csv", f"report_{foil}.json"):
                client.log_artifact(run_id, str(tmp / name), "humaneval")
    return result

