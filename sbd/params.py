"""Reading parameter values that arrive as text (MLproject params, registry tags, CLI
options): one parser per type, used by the library and the entry points alike."""

from __future__ import annotations

from typing import Any

__all__ = ["as_bool", "as_int"]

_TRUE = ("1", "true", "yes", "y", "on")
_FALSE = ("0", "false", "no", "n", "off", "")


def as_bool(value: Any) -> bool:
    """``True``/``False`` from a bool or from text (``true``/``false``, ``1``/``0``,
    ``yes``/``no``, ``on``/``off``; empty is false); ValueError otherwise."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def as_int(value: Any) -> int:
    """A whole number from an int or text such as ``"30.0"`` (how MLproject passes float
    params); ValueError for a fraction."""
    number = float(value)
    if number != int(number):
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(number)


def check_choice(name: str, value: Any, valid: Any) -> None:
    """ValueError ``Unknown <name>=<value>; valid: …`` unless ``value`` is one of ``valid``."""
    if value not in valid:
        raise ValueError(f"Unknown {name}={value!r}; valid: {', '.join(map(str, valid))}.")
