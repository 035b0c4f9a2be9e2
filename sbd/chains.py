"""The plan of ``main``'s subject × ROI chains and what came back from them.

:func:`plan` turns ``main``'s parameters into a :class:`ChainPlan` (the data folder, the
subject and ROI lists, the backbone and generator with the dataset's defaults, the tiny
generator's training preset, the GPUs a chain asks for); :func:`collect` gathers the
:class:`~sbd.executors.ChainResult` of each chain into summary rows, generation grids,
step reuse and failures (:class:`ChainOutcome`).  No MLflow here: ``main`` logs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["DEFAULT_GENERATOR", "GPU_GENERATORS", "ChainPlan", "ChainOutcome", "split_list",
           "plan", "collect"]

DEFAULT_GENERATOR = {"phantom": "tiny", "god": "sd", "god-npz": "sd"}
# generators whose chains ask the Ray cluster for a GPU
GPU_GENERATORS = ("sd", "dit")


def split_list(text: str | list | tuple, what: str, valid: Sequence[str] | None = None
               ) -> list[str]:
    """The items of a comma-separated list (or a sequence); a ValueError when it is empty
    or names an item not in ``valid``."""
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if str(t).strip()]
    if not items:
        raise ValueError(f"{what} is empty; give a comma-separated list.")
    if valid is not None:
        unknown = [t for t in items if t not in valid]
        if unknown:
            raise ValueError(f"Unknown {what}={unknown!r}; valid: {', '.join(valid)}.")
    return items


@dataclass
class ChainPlan:
    """What ``main`` runs: ``chains`` are the keyword arguments of each chain but the
    cache's (``feat_run``, ``force``), added by ``main``."""

    root: str
    backbone: str
    generator: str
    circular: str
    allow_circular: bool
    gen_opts: dict[str, str]
    num_gpus: int
    chains: list[dict[str, Any]]


def plan(dataset: str, root: str, preset: str, subjects: str, rois: str, backbone: str,
         generator: str, n_trials: int, seed: int, allow_circular: bool) -> ChainPlan:
    """The chains of ``main`` (module doc): ``subjects``/``rois`` comma-separated, empty
    ``backbone``/``generator`` → the dataset's defaults; a circular backbone is refused
    unless ``allow_circular`` (:func:`sbd.features.backbones.check_circular`)."""
    from sbd.data.god import ROIS
    from sbd.features.backbones import check_circular, resolve_backbone

    subject_list = [int(s) for s in split_list(subjects, "subjects")]
    roi_list = split_list(rois, "rois", ROIS)
    backbone = resolve_backbone(dataset, backbone)
    circular = check_circular(dataset, backbone, allow_circular)
    generator = generator or DEFAULT_GENERATOR[dataset]
    # the tiny generator trains once per dataset; a test-sized phantom gets a short training
    gen_opts = ({"tiny_preset": "default" if preset == "default" else "small"}
                if generator == "tiny" else {})
    chains = [dict(subject=subject, roi=roi, dataset=dataset, root=root, backbone=backbone,
                   n_trials=n_trials, seed=seed, generator=generator, gen_opts=gen_opts,
                   allow_circular=allow_circular)
              for subject in subject_list for roi in roi_list]
    return ChainPlan(root, backbone, generator, circular, allow_circular, gen_opts,
                     1 if generator in GPU_GENERATORS else 0, chains)


@dataclass
class ChainOutcome:
    """The chains' results: summary ``rows`` and generation ``grids`` (subject, roi, run)
    of the finished ones, ``reused`` (step → reused) and the ``failed`` ones (subject, roi,
    error)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    grids: list[tuple[int, str, str]] = field(default_factory=list)
    reused: dict[str, bool] = field(default_factory=dict)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def failure_message(self, n_chains: int) -> str:
        """One line per failed chain: its subject, ROI and the last line of its error."""
        return (f"{len(self.failed)} of {n_chains} chains failed (the others finished and are "
                "logged): " + "; ".join(f"s{f['subject']} {f['roi']}: "
                                        f"{f['error'].strip().splitlines()[-1]}"
                                        for f in self.failed))


def collect(results: Sequence[Any], reused: dict[str, bool]) -> ChainOutcome:
    """Gather the chains' :class:`~sbd.executors.ChainResult` (``ok``, ``value``, ``error``,
    ``kwargs``); ``reused`` holds the steps run before the chains."""
    out = ChainOutcome(reused=dict(reused))
    for result in results:
        if not result.ok:
            out.failed.append({"subject": result.kwargs["subject"], "roi": result.kwargs["roi"],
                               "error": result.error})
            continue
        out.rows.append(result.value["row"])
        out.grids.append(result.value["grid"])
        out.reused.update(result.value["reused"])
    return out
