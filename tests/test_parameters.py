"""Every entry point's parameters are declared alike in its three places: the MLproject
entry (parameters and the command that passes them), the entry-point script's options,
and the ``run()`` of its step — names and defaults."""

from __future__ import annotations

import inspect
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
# run() arguments that are not parameters of a run (how it shows, not what it computes)
NOT_PARAMS = {"progress"}


def _script_options(entry: str) -> set[str]:
    """The ``--options`` of ``entrypoints/<entry>.py``, from its ``--help``."""
    out = subprocess.run([sys.executable, str(ROOT / "entrypoints" / f"{entry}.py"), "--help"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return {o[2:].replace("-", "_") for o in re.findall(r"--[a-z][a-z0-9-]*", out.stdout)
            if o != "--help"}


def _coerce(value, like):
    if isinstance(like, bool):
        return str(value).lower() in ("1", "true", "yes", "on")
    if isinstance(like, (int, float)) and not isinstance(like, bool):
        return type(like)(float(value))
    return "" if value is None else str(value)


@pytest.mark.parametrize("entry", sorted(SPEC))
def test_mlproject_script_and_run_agree(entry):
    spec = SPEC[entry]
    params = spec.get("parameters") or {}
    command = spec["command"]
    for name in params:
        assert f"--{name.replace('_', '-')} {{{name}}}" in command, \
            f"{entry}: MLproject parameter {name} is not passed by its command"
    options = _script_options(entry)
    assert options == set(params), (
        f"{entry}: script options and MLproject parameters differ: only in the script "
        f"{sorted(options - set(params))}, only in MLproject {sorted(set(params) - options)}")
    run = importlib.import_module(f"sbd.steps.{entry}").run
    sig = {n: p.default for n, p in inspect.signature(run).parameters.items()
           if n not in NOT_PARAMS}
    assert set(sig) == set(params), (
        f"{entry}: run() and MLproject differ: only in run() {sorted(set(sig) - set(params))}"
        f", only in MLproject {sorted(set(params) - set(sig))}")
    for name, p in params.items():
        want = sig[name]
        if want is inspect.Parameter.empty:
            continue
        assert _coerce(p.get("default"), want) == want, \
            f"{entry}: default of {name}: MLproject {p.get('default')!r}, run() {want!r}"


def test_one_parser_per_type_for_library_and_scripts():
    """Tags, MLproject params and CLI options are read by sbd.params (the scripts wrap it
    in argparse's error type)."""
    import argparse

    from sbd.params import as_bool, as_int

    sys.path.insert(0, str(ROOT / "entrypoints"))
    try:
        import _cli
    finally:
        sys.path.remove(str(ROOT / "entrypoints"))
    for text, want in (("true", True), ("False", False), ("1", True), ("", False),
                       (True, True), ("on", True), ("no", False)):
        assert as_bool(text) is want and _cli.as_bool(str(text)) is want
    assert as_int("30.0") == 30 == _cli.as_int("30")
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        as_bool("maybe")
    with pytest.raises(argparse.ArgumentTypeError, match="whole number, got '2.5'"):
        _cli.as_int("2.5")
