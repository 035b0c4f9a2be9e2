"""Staged writes: the one way ``sbd`` writes a file that someone else may read.

A file is written under a temporary name next to its destination and renamed over it only
once it is complete (``os.replace``, atomic on one file system), so a reader — another run,
a served model, a resumed job after a kill — sees the old file or the new one, never half
of one.  The temporary name keeps the destination's suffix, because writers such as PIL,
NumPy and h5py choose the format by it.

>>> with staged_path("out/features.npy") as tmp:
...     np.save(tmp, features)          # out/features.npy appears only now, whole
>>> write_text("out/summary.txt", "done\\n")
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["staged_path", "write_text", "write_bytes", "write_json"]


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def staged_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit rename it to ``path``.

    The parent folder is created.  On an exception the temporary file (or folder) is removed
    and ``path`` is left as it was.  A folder written at the temporary path replaces an
    existing folder at ``path`` only when that one is empty; write into a fresh name
    otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` whole (staged); returns ``path``."""
    with staged_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole (staged); returns ``path``."""
    with staged_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` whole (staged; ``indent=2`` unless given)."""
    dump_kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **dump_kwargs) + "\n")
