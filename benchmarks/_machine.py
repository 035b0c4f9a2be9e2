"""What the benchmarks state beside their figures: the CPU's AVX flags, and the ``--half``
choices of the kNN search (``auto``: float16 products where the CPU has AVX-512)."""

from __future__ import annotations

from pathlib import Path

HALF = {"auto": None, "on": True, "off": False}


def cpu_flags() -> str:
    """The CPU's AVX flags (``/proc/cpuinfo``), space-separated."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return " ".join(sorted({w for w in text.split() if w.startswith("avx")}))
