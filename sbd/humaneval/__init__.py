"""Human evaluation: the paper's two-alternative forced-choice (2AFC) test as a web page.

Raters see a test stimulus and two candidates — the image generated from the decoded
labels of that stimulus and a foil (the generated image of another test sample, or a
random bank image) — and pick the one closer to the stimulus::

    python -m sbd.humaneval serve  --run-id <generate run> [--foil generated|bank] [--port 8765]
    python -m sbd.humaneval report --run-id <generate run>     # logs human/2afc_acc, … to the run
    python -m sbd.humaneval export --run-id <generate run> [--out answers.csv]

Modules: :mod:`~sbd.humaneval.schedule` (trials, per-rater order), :mod:`~sbd.humaneval.store`
(SQLite answers), :mod:`~sbd.humaneval.study` (run → study folder + image cache),
:mod:`~sbd.humaneval.server` (Flask page), :mod:`~sbd.humaneval.stats` and
:mod:`~sbd.humaneval.report`.
"""

from sbd.humaneval.schedule import FOILS, Trial, build_trials, rater_schedule
from sbd.humaneval.stats import binomial_summary, fleiss_kappa, pairwise_agreement, summarize
from sbd.humaneval.store import AnswerStore
from sbd.humaneval.study import Study, open_study, study_dir

__all__ = ["FOILS", "Trial", "build_trials", "rater_schedule", "binomial_summary", "fleiss_kappa",
           "pairwise_agreement", "summarize", "AnswerStore", "Study", "open_study", "study_dir"]
