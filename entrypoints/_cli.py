"""Helpers shared by the thin entry-point scripts: numeric MLproject params arrive as
strings like ``"30.0"``; booleans as ``true``/``false`` — parsed by :mod:`sbd.params`, as
the library parses tags, with argparse's error type."""

from __future__ import annotations

import argparse

from sbd import params


def as_int(text: str) -> int:
    try:
        return params.as_int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def as_bool(text: str) -> bool:
    try:
        return params.as_bool(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err
