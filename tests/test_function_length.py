"""Readable units: no function of the package, its entry points or its benchmarks is over
80 lines (decorators and docstring included), and no step module over 150 lines — a step
reads its parameters, calls the library and logs; the science lives in the library."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION = 80
MAX_STEP_MODULE = 150


def long_functions(path: Path, limit: int = MAX_FUNCTION) -> list[str]:
    """``file:line name (n lines)`` of every function or method of ``path`` over ``limit``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            n = node.end_lineno - start + 1
            if n > limit:
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
                out.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
    return out


def _sources() -> list[Path]:
    return sorted(p for d in ("sbd", "entrypoints", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def test_no_function_is_over_80_lines():
    found = [f for p in _sources() for f in long_functions(p)]
    assert not found, "\n".join(found)


def test_no_step_module_is_over_150_lines():
    found = {p.name: n for p in sorted((ROOT / "sbd" / "steps").glob("*.py"))
             if (n := len(p.read_text().splitlines())) > MAX_STEP_MODULE}
    assert not found, found


def test_the_check_counts_what_it_says(tmp_path):
    """An 81-line function (decorator and docstring included) is caught, an 80-line one not."""
    body = "\n".join(f"    x{i} = {i}" for i in range(76))
    for lines, caught in ((80, False), (81, True)):
        extra = "\n    y = 0" if lines == 81 else ""
        code = f'@staticmethod\ndef f():\n    """doc"""\n{body}{extra}\n    return 0\n'
        path = tmp_path / f"f{lines}.py"
        path.write_text(code)
        assert bool(long_functions(path)) is caught, (lines, long_functions(path))
    assert _sources() and any(p.name == "knn" or p.parent.name == "knn" for p in _sources())
