"""Staged writes: the one way ``sbd`` writes a file that someone else may read.

A file is written under a temporary name next to its destination and renamed over it only
once it is complete (``os.replace``, atomic on one file system), so a reader — another run,
a served model, a resumed job after a kill — sees the old file or the new one, never half
of one.  The temporary name keeps the destination's suffix, because writers such as PIL,
NumPy and h5py choose the format by it.

>>> with staged_path("out/features.npy") as tmp:
...     np.save(tmp, features)          # out/features.npy appears only now, whole
>>> write_text("out/summary.txt", "done\\n")

A folder is staged the same way (:func:`staged_dir`), and :func:`replace_path` puts a
finished file or folder in place of an existing one.  :func:`record` and
:func:`records_intact` describe what was written (files, bytes, SHA-256) so that a later run
can tell, cheaply, whether it is still there as written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["staged_path", "staged_dir", "replace_path", "write_text", "write_bytes",
           "write_json", "file_sha256", "record", "records_intact"]


def _temp_name(path: Path, tag: str = "tmp") -> Path:
    """A fresh hidden name beside ``path`` with its suffix (unique per process and call, so
    two threads of one process never share one)."""
    return path.with_name(f".{path.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{tag}{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
        _remove(tmp)
        raise


@contextmanager
def staged_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh, empty temporary folder beside ``path``; on a clean exit it takes the
    place of ``path`` (:func:`replace_path`: a folder already there, empty or not, is
    replaced).  On an exception the temporary folder is removed and ``path`` left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    tmp.mkdir()
    try:
        yield tmp
        replace_path(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def replace_path(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the file or folder ``src`` to ``dst`` (same file system), replacing what is there.

    A file is replaced by one rename.  A folder at ``dst`` is first renamed aside and removed
    once ``src`` is in place, so ``dst`` is missing only between two renames and never holds a
    mix of the old and the new.  Returns ``dst``."""
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if os.path.lexists(dst) and (dst.is_dir() or src.is_dir()):
        old = _temp_name(dst, "old")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        _remove(old)
    return dst


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


# --------------------------------------------------------------------------- records


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def record(path: str | os.PathLike) -> dict[str, Any]:
    """What was written at ``path``: ``{"files", "bytes", "sha256"}``.

    For a file, its size and content hash (``files`` 1); for a folder, the number and total
    size of the files under it and one hash over their relative names and contents."""
    path = Path(path)
    if path.is_file():
        return {"files": 1, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
    h = hashlib.sha256()
    n = size = 0
    for p in sorted(path.rglob("*")):
        if p.is_file():
            n += 1
            size += p.stat().st_size
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
            h.update(file_sha256(p).encode())
    return {"files": n, "bytes": size, "sha256": h.hexdigest()}


def records_intact(root: str | os.PathLike, records: dict[str, dict[str, Any]]) -> bool:
    """Whether every ``root/<rel>`` of ``records`` (rel → :func:`record`) is still there as
    recorded, by a cheap check: existence, number of files and bytes (no hashing)."""
    root = Path(root)
    for rel, rec in records.items():
        p = root / rel
        if rec["files"] == 1 and p.is_file():
            if p.stat().st_size != rec["bytes"]:
                return False
            continue
        if not p.is_dir():
            return False
        files = [q for q in p.rglob("*") if q.is_file()]
        if len(files) != rec["files"] or sum(q.stat().st_size for q in files) != rec["bytes"]:
            return False
    return True
