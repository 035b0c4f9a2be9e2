"""The project files agree with each other: dependencies, MLproject entry points, scripts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINTS = {"main", "prepare_data", "extract_features", "train_ridge", "train_knn", "train_decoder",
                "build_decoder", "train_tiny", "generate", "evaluate"}


def _normalise(req: str) -> tuple[str, str]:
    req = req.split(";")[0].strip()
    m = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", req)
    assert m, f"unparseable requirement {req!r}"
    name = re.sub(r"[-_.]+", "-", m.group(1)).lower()
    return name, m.group(3).replace(" ", "")


def test_conda_yaml_lists_the_same_dependencies_as_pyproject():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = dict(_normalise(r) for r in pyproject["project"]["dependencies"])
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda_deps = dict(_normalise(r) for r in pip_section)
    assert conda_deps == deps
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"


def test_pins_required_by_the_platform():
    deps = dict(_normalise(r) for r in
                tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps["torch"] == "==2.14.1"
    assert deps["torchvision"] == "==0.29.1"
    assert deps["mlflow"] == "==3.17.2"


def test_mlproject_declares_every_entry_point_with_typed_defaults():
    spec = yaml.safe_load((ROOT / "MLproject").read_text())
    assert spec["conda_env"] == "conda.yaml"
    assert set(spec["entry_points"]) == ENTRY_POINTS
    for name, ep in spec["entry_points"].items():
        script = ROOT / "entrypoints" / f"{name}.py"
        assert script.is_file(), f"entry point {name}: {script} missing"
        assert f"entrypoints/{name}.py" in ep["command"]
        for pname, p in ep["parameters"].items():
            assert p.get("type") in {"string", "float", "path", "uri"}, (name, pname)
            assert "default" in p, (name, pname)
            assert "{" + pname + "}" in ep["command"], f"{name}: param {pname} unused in command"
