"""Locks on what a step writes into a data folder, so that two runs on one folder take turns.

Every step that writes into a data folder (``prepare_data`` building the phantom,
``extract_features`` writing a backbone's features, the tiny generator's training) holds
:func:`folder_lock` on what it writes, under ``<data_dir>/.locks/<name>.lock``
(:class:`filelock.FileLock`: an OS lock, released when its process dies, so a killed run
leaves no stale lock).  A second run waits, logging who holds the lock every
``poll_s`` seconds, and then finds the first run's output in place and reuses it (each
step checks what is on disk once it holds the lock).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sbd.files import write_text

log = logging.getLogger(__name__)

LOCK_DIR = ".locks"


@contextmanager
def folder_lock(data_dir: str | Path, name: str, poll_s: float = 10.0) -> Iterator[bool]:
    """Hold the lock ``name`` of ``data_dir`` for the block; yields whether it had to wait.

    While another process holds it, logs (WARNING, at once and then every ``poll_s`` s)
    the holder: its pid, host and since when."""
    from filelock import FileLock, Timeout

    locks = Path(data_dir) / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(locks / f"{name}.lock"))
    owner = locks / f"{name}.owner"
    waited = False
    timeout = 0.0  # the first try says at once who holds it; then every poll_s
    while True:
        try:
            lock.acquire(timeout=timeout)
            break
        except Timeout:
            timeout = poll_s
            holder = owner.read_text().strip() if owner.exists() else "another process"
            log.warning("waiting for %s in %s: held by %s (%s)", name, data_dir, holder,
                        locks / f"{name}.lock")
            waited = True
    try:
        since = datetime.datetime.now().isoformat(timespec="seconds")
        write_text(owner, f"pid {os.getpid()} on {socket.gethostname()} since {since}\n")
        if waited:
            log.info("%s in %s: the lock is free; what the holder wrote is reused when it "
                     "matches", name, data_dir)
        yield waited
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
