"""The layer order of DESIGN.md is mechanical: ``lint-imports`` (import-linter) checks the
contracts in pyproject.toml — lazy, function-level imports included — and fails on a
forbidden import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
pytestmark = pytest.mark.skipif(not Path(LINT).exists(), reason="import-linter is not installed")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([LINT, str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _renamed_copy(tmp_path: Path) -> Path:
    """The package and its contracts copied as ``sbdcopy`` (the installed ``sbd`` would
    shadow a copy of the same name); returns the copy's folder."""
    copy = tmp_path / "sbdcopy"
    shutil.copytree(ROOT / "sbd", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for f in copy.rglob("*.py"):
        f.write_text(re.sub(r"\bsbd\b(?=[. ])", "sbdcopy", f.read_text()))
    config = (ROOT / "pyproject.toml").read_text()
    section = config[config.index("[tool.importlinter]"):]
    (tmp_path / "pyproject.toml").write_text(re.sub(r"\bsbd\b", "sbdcopy", section))
    return copy


def test_the_package_keeps_its_layers():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_a_forbidden_lazy_import_fails(tmp_path):
    """The same code and contracts, renamed ``sbdcopy`` (the installed ``sbd`` would shadow
    a copy of the same name), with one lazy import of a step into the data layer."""
    copy = _renamed_copy(tmp_path)
    assert _lint(tmp_path).returncode == 0  # the renamed copy is clean too
    god = copy / "data" / "god.py"
    god.write_text(god.read_text() + "\n\ndef _shortcut():\n"
                   "    from sbdcopy.steps import evaluate  # data must not import steps\n"
                   "    return evaluate\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "sbdcopy.data.god -> sbdcopy.steps.evaluate" in out.stdout


def test_the_library_may_not_log_to_mlflow(tmp_path):
    """The forbidden contract: a lazy ``import mlflow`` in a metrics module breaks it."""
    copy = _renamed_copy(tmp_path)
    target = copy / "metrics" / "decoding.py"
    target.write_text(target.read_text() + "\n\ndef _log(m):\n    import mlflow\n\n"
                      "    mlflow.log_metrics(m)\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "sbdcopy.metrics.decoding -> mlflow" in out.stdout, out.stdout[-2000:]
