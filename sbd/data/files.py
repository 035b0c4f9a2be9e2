"""Opening the HDF5 files sbd reads (GOD's BData files, sbd's feature banks) with an answer
a user can act on when one is broken.

h5py reports a download cut off mid-file as ``OSError: Unable to synchronously open file
(truncated file: eof = 33752, …)``, which names neither the file nor the fix.
:func:`open_hdf5` names both: the file, what is wrong with it (empty, cut off — with its size
against the size it declares —, not HDF5 at all, locked by another process) and the
``remedy`` the caller gives (re-download it from figshare, re-extract it, …).
"""

from __future__ import annotations

import re
from pathlib import Path

from sbd.files import file_sha256  # re-exported: its home is sbd.files

__all__ = ["BrokenFileError", "open_hdf5", "GOD_DOWNLOAD", "file_sha256"]

GOD_DOWNLOAD = "figshare 7387130 (https://doi.org/10.6084/m9.figshare.7387130)"


class BrokenFileError(ValueError):
    """A data file that exists but cannot be read; the message says what to do."""


def _problem(message: str, size: int) -> tuple[str, bool]:
    """What an h5py open error means, and whether fetching the file again fixes it."""
    m = re.search(r"truncated file: eof = (\d+).*?stored_eof = (\d+)", message)
    if m:
        return (f"is cut off: {int(m.group(1)):,} bytes of the {int(m.group(2)):,} it "
                "declares (an interrupted download or copy)"), True
    if "truncated file" in message:
        return f"is cut off ({size:,} bytes; an interrupted download or copy)", True
    if "lock" in message.lower():
        return ("is locked by another process (HDF5 file locking): close the program that "
                "is writing it, or set HDF5_USE_FILE_LOCKING=FALSE to read a file on a "
                "read-only share"), False
    if "signature not found" in message:
        return "is not an HDF5 file (no HDF5 signature)", True
    return f"could not be opened as HDF5 ({message})", True


def open_hdf5(path: str | Path, remedy: str):
    """``h5py.File(path, "r")``, or a :class:`BrokenFileError` naming the file, the problem and
    ``remedy`` (said when fetching or rebuilding the file would fix it).

    Raises FileNotFoundError when ``path`` does not exist.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. {remedy}")
    size = path.stat().st_size
    if size == 0:
        raise BrokenFileError(f"{path} is empty (0 bytes). {remedy}")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        problem, refetch = _problem(str(err), size)
        raise BrokenFileError(f"{path} {problem}." + (f" {remedy}" if refetch else "")) from err
