"""Register a logged model, tag it, and move the ``candidate`` / ``champion`` aliases."""

from __future__ import annotations

import logging
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

log = logging.getLogger(__name__)

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


def champion_alias(data_id: str | None = None) -> str:
    """``champion-<data_id>``: the best version trained on that data; ``champion`` without."""
    return f"{CHAMPION}-{data_id}" if data_id else CHAMPION


def decoder_champion_uri(dataset: str, subject: int | str, roi: str,
                         data_id: str | None = None) -> str:
    """``models:/sbd-<dataset>-s<subject>-<roi>-decoder@champion-<data_id>``: the decoder the
    generate and evaluate steps use when none is given, the best one trained on the data of
    ``data_id`` (:mod:`sbd.data.identity`); ``@champion`` when ``data_id`` is None."""
    return f"models:/{model_name('decoder', dataset, subject, roi)}@{champion_alias(data_id)}"


METRIC_TAG = "val_metric"
DATA_ID_TAG = "data_id"


def decoder_for_data(dataset: str, subject: int | str, roi: str, data_id: str) -> str:
    """The decoder URI the generate and evaluate steps use when none is given: the champion
    trained on the data of ``data_id`` (``@champion-<data_id>``). Without one, ``@champion``
    when its version does not record its data (registered by ``build_decoder``, or by an
    earlier sbd; a warning says so); a LookupError when that champion was trained on other
    data, naming both. When the model does not exist at all the ``@champion-<data_id>`` URI
    is returned, and loading it says to run ``train_decoder``."""
    own = decoder_champion_uri(dataset, subject, roi, data_id)
    name = model_name("decoder", dataset, subject, roi)
    client = MlflowClient()
    if _champion(client, name, champion_alias(data_id)) is not None:
        return own
    mv = _champion(client, name, CHAMPION)
    if mv is None:
        return own
    held_on = mv.tags.get(DATA_ID_TAG)
    if held_on and held_on != data_id:
        raise LookupError(
            f"No decoder {name!r} was trained on this data (data_id {data_id}); its champion "
            f"(version {mv.version}) was trained on data_id {held_on} "
            f"({mv.tags.get('data_dir', '?')}). Run train_decoder on this data folder, or pass "
            "decoder= explicitly.")
    log.warning(
        "%s@%s (version %s) does not record the data it was trained on; using it for "
        "data_id %s.", name, CHAMPION, mv.version, data_id)
    return f"models:/{name}@{CHAMPION}"


def _champion(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _beats(mv: ModelVersion | None, score: float, metric: str | None, data_id: str | None,
           higher_is_better: bool) -> bool:
    """Whether a version of ``score`` (of validation ``metric``, trained on ``data_id``)
    takes an alias held by ``mv``: when there is none, when ``mv`` is scored on another
    metric (not comparable: replaced), or when the score is better. A holder trained on
    other data keeps the alias (scores on other data are not comparable, and replacing it
    would change what a user serving it gets); one with no data tag (an sbd that did not
    record data) is replaced like a holder of another metric."""
    if mv is None:
        return True
    held_on = mv.tags.get(DATA_ID_TAG)
    if held_on and held_on != data_id:
        return False
    if metric is not None and mv.tags.get(METRIC_TAG) != metric:
        return True
    if data_id and not held_on:
        return True
    value = mv.tags.get(SCORE_TAG)
    if value in (None, ""):
        return True
    return score > float(value) if higher_is_better else score < float(value)


def register_model_version(model_uri: str, name: str, score: float,
                           tags: dict[str, Any] | None = None,
                           higher_is_better: bool = True) -> tuple[ModelVersion, bool]:
    """Register ``model_uri`` as a new version of ``name``.

    The version gets ``tags`` and ``val_score=score``; alias ``candidate`` points to it.
    When ``tags`` hold a ``data_id`` (:mod:`sbd.data.identity`), alias
    ``champion-<data_id>`` moves to it when there is none yet or ``score`` beats that
    champion's: scores are compared only among versions trained on the same data. Alias
    ``champion`` follows the same rule, except that a ``champion`` trained on other data
    keeps it (see :func:`_beats`): it stays the champion of the data it was first given
    to. When ``tags`` name the validation metric (``val_metric``), a champion scored on
    another metric is not comparable and is replaced.
    Returns ``(version, became_champion)``: champion of its data (of ``name`` without a
    ``data_id``).
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
    metric, data_id = all_tags.get(METRIC_TAG), all_tags.get(DATA_ID_TAG)
    became = False
    for alias in dict.fromkeys([champion_alias(data_id), CHAMPION]):
        if _beats(_champion(client, name, alias), float(score), metric, data_id,
                  higher_is_better):
            client.set_registered_model_alias(name, alias, mv.version)
            became = became or alias == champion_alias(data_id)
    return client.get_model_version(name, mv.version), became


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
    (``models:/<name>/<version>``) and the version's tags (plus ``name``, ``version`` and
    ``model_id``, its LoggedModel's id, "" for a version registered from a run path).

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
            {**dict(mv.tags), "name": mv.name, "version": str(mv.version),
             "model_id": logged_model_id(mv)})


def logged_model_id(mv: ModelVersion) -> str:
    """The id of the LoggedModel a version was registered from ("" for one registered from
    a run path): ``mv.model_id``, which the SQL store leaves empty, else its source's
    ``models:/<model id>``."""
    if getattr(mv, "model_id", None):
        return str(mv.model_id)
    m = re.fullmatch(r"models:/(m-[0-9a-f]+)", str(mv.source or ""))
    return m.group(1) if m else ""


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
