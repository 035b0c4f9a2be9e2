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


def test_the_package_keeps_its_layers():
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_a_forbidden_lazy_import_fails(tmp_path):
    """The same code and contracts, renamed ``sbdcopy`` (the installed ``sbd`` would shadow
    a copy of the same name), with one lazy import of a step into the data layer."""
    copy = tmp_path / "sbdcopy"
    shutil.copytree(ROOT / "sbd", copy, ignore=shutil.ignore_patterns("__pycache__"))
    for f in copy.rglob("*.py"):
        text = f.read_text()
        f.write_text(re.sub(r"\bsbd\b(?=[. ])", "sbdcopy", text))
    config = (ROOT / "pyproject.toml").read_text()
    section = config[config.index("[tool.importlinter]"):]
    (tmp_path / "pyproject.toml").write_text(re.sub(r"\bsbd\b", "sbdcopy", section))
    assert _lint(tmp_path).returncode == 0  # the renamed copy is clean too
    god = copy / "data" / "god.py"
    god.write_text(god.read_text() + "\n\ndef _shortcut():\n"
                   "    from sbdcopy.steps import evaluate  # data must not import steps\n"
                   "    return evaluate\n")
    out = _lint(tmp_path)
    assert out.returncode != 0
    assert "BROKEN" in out.stdout and "sbdcopy.data.god -> sbdcopy.steps.evaluate" in out.stdout
