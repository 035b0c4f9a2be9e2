"""Helpers shared by the thin entry-point scripts: numeric MLproject params arrive as
strings like ``"30.0"``; booleans as ``true``/``false``."""

from __future__ import annotations

import argparse


def as_int(text: str) -> int:
    value = float(text)
    if value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def as_bool(text: str) -> bool:
    t = str(text).strip().lower()
    if t in ("1", "true", "yes", "y", "on"):
        return True
    if t in ("0", "false", "no", "n", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
