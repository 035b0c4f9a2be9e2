"""Register a logged model, tag it, and move the ``candidate`` / ``champion`` aliases."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

import sbd
from sbd.tracking import source_files

KINDS = ("ridge", "knn", "decoder")
SCORE_TAG = "val_score"
CANDIDATE = "candidate"
CHAMPION = "champion"


def model_name(kind: str, dataset: str, subject: int | str | None = None,
               roi: str | None = None, backbone: str | None = None) -> str:
    """Registered model name of one kind (see :mod:`sbd.registry`)."""
    if kind == "knn":
        if not backbone:
            raise ValueError("model_name('knn', ...) needs backbone=.")
        return f"sbd-{dataset}-{backbone}-knn"
    if kind in ("ridge", "decoder"):
        if subject is None or not roi:
            raise ValueError(f"model_name({kind!r}, ...) needs subject= and roi=.")
        return f"sbd-{dataset}-s{int(subject)}-{roi}-{kind}"
    raise ValueError(f"Unknown kind={kind!r}; valid: {', '.join(KINDS)}.")


def decoder_champion_uri(dataset: str, subject: int | str, roi: str) -> str:
    """``models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion``: the decoder the generate and
    evaluate steps use when none is given."""
    return f"models:/{model_name('decoder', dataset, subject, roi)}@{CHAMPION}"


METRIC_TAG = "val_metric"


def _champion_score(client: MlflowClient, name: str, metric: str | None = None
                    ) -> float | None:
    """The champion's validation score; None when there is no champion, or when its score
    is of another validation metric than ``metric`` (then the two are not comparable)."""
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None
    if metric is not None and mv.tags.get(METRIC_TAG) != metric:
        return None
    value = mv.tags.get(SCORE_TAG)
    return float(value) if value not in (None, "") else None


def register_model_version(model_uri: str, name: str, score: float,
                           tags: dict[str, Any] | None = None,
                           higher_is_better: bool = True) -> tuple[ModelVersion, bool]:
    """Register ``model_uri`` as a new version of ``name``.

    The version gets ``tags`` and ``val_score=score``; alias ``candidate`` points to it;
    alias ``champion`` moves to it when there is no champion yet or ``score`` beats the
    champion's.  When ``tags`` name the validation metric (``val_metric``), a champion
    scored on another metric is not comparable and is replaced.
    Returns ``(version, became_champion)``.
    """
    if score is None or not math.isfinite(float(score)):
        raise ValueError(f"Validation score of {name!r} must be a finite number, got {score!r}.")
    client = MlflowClient()
    mv = mlflow.register_model(model_uri, name)
    all_tags = {k: str(v) for k, v in (tags or {}).items()}
    all_tags[SCORE_TAG] = repr(float(score))
    for k, v in all_tags.items():
        client.set_model_version_tag(name, mv.version, k, v)
    client.set_registered_model_alias(name, CANDIDATE, mv.version)
    current = _champion_score(client, name, all_tags.get(METRIC_TAG))
    better = current is None or (score > current if higher_is_better else score < current)
    if better:
        client.set_registered_model_alias(name, CHAMPION, mv.version)
    return client.get_model_version(name, mv.version), better


STUDY_TAG = "optuna_study"


def study_version(name: str, study_name: str, match: dict[str, Any],
                  at_least: float | None = None) -> tuple[str, bool] | None:
    """The version of ``name`` that a worker of the shared Optuna study ``study_name`` uses
    instead of registering its own, or None (register).  Called under
    :func:`sbd.decoding.tuning.study_lock`, so the workers of one study register its best
    once.  A version of the study qualifies when its tags equal ``match`` (the same trial,
    or the same chosen configuration), or, with ``at_least``, when its ``val_score`` is at
    least that (a worker whose own choice validated no better does not add a version).
    Returns ``(models:/name/version, is champion)`` of the oldest qualifying version."""
    try:
        versions = MlflowClient().search_model_versions(
            f"name = '{name}' and tags.{STUDY_TAG} = '{study_name}'")
    except MlflowException:  # no such model yet
        return None

    def qualifies(v: ModelVersion) -> bool:
        if all(v.tags.get(k) == str(val) for k, val in match.items()):
            return True
        score = float(v.tags.get(SCORE_TAG, "nan"))
        return at_least is not None and score >= at_least

    ok = [v for v in versions if qualifies(v)]
    if not ok:
        return None
    mv = min(ok, key=lambda v: int(v.version))
    return f"models:/{mv.name}/{mv.version}", CHAMPION in (mv.aliases or [])


_MODEL_URI = re.compile(r"models:/([^/@]+)(?:@([^/@]+)|/(\d+))")


def resolve_model_version(uri: str, step: str = "") -> tuple[str, dict[str, str]]:
    """``models:/<name>/<version>`` or ``models:/<name>@<alias>`` → the exact version URI
    (``models:/<name>/<version>``) and the version's tags (plus ``name`` and ``version``).

    Raises ValueError for another kind of URI, LookupError (naming ``step``, the step that
    registers it) for a version or alias that does not exist.
    """
    m = _MODEL_URI.fullmatch(str(uri))
    if not m:
        raise ValueError(f"{step + ' model ' if step else ''}{uri!r} is not a registered model "
                         "URI (models:/<name>/<version> or models:/<name>@<alias>).")
    name, alias, version = m.groups()
    hint = f": run the {step} step first" if step else ""
    client = MlflowClient()
    try:
        mv = (client.get_model_version_by_alias(name, alias) if alias
              else client.get_model_version(name, version))
    except MlflowException as e:
        what = f"alias {alias!r} of {name!r}" if alias else f"version {version} of {name!r}"
        raise LookupError(f"No registered model version {uri!r} ({what}){hint}.") from e
    return (f"models:/{mv.name}/{mv.version}",
            {**dict(mv.tags), "name": mv.name, "version": str(mv.version)})


def copy_package(dest: Path, module: str) -> Path:
    """A copy, in ``dest/sbd``, of the part of the ``sbd`` package that importing ``module``
    needs (:func:`sbd.tracking.source_files`): the ``code_paths`` a registered model ships,
    not the whole package."""
    import shutil

    src = Path(sbd.__file__).resolve().parent
    target = Path(dest) / "sbd"
    for path in source_files(module, src):
        out = target / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    return target


def model_code(folder: str | Path, module: str, cls: str) -> str:
    """A models-from-code entry script, ``<folder>/<cls>_pyfunc.py``, that builds
    ``module.cls()``: MLflow stores this script with the model, never a pickled instance
    (loading a pickle runs whatever code it names)."""
    path = Path(folder) / f"{cls.lower()}_pyfunc.py"
    path.write_text(f'"""MLflow models-from-code entry of {module}.{cls}."""\n'
                    "from mlflow.models import set_model\n\n"
                    f"from {module} import {cls}\n\n"
                    f"set_model({cls}())\n")
    return str(path)
