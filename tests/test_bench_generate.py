"""benchmarks/bench_generate.py runs on the CPU at test sizes and prints one JSON line of
figures per generator (the real sizes need minutes on a CPU, a GPU for their figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_generate_tiny_sizes_on_the_cpu():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_generate.py"),
                           "--tiny", "--steps", "2", "--device", "cpu", "--threads", "1"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["generator"] for r in lines] == ["sd", "dit", "tiny"]
    for r in lines:
        assert r["device"] == "cpu" and r["sizes"] == "tiny" and r["steps"] == 2
        assert r["batch"] == 1 and r["n_params"] == sum(r["components"].values()) > 0
        assert r["image_size"] == 16 and len(r["load_average"]) == 3 and r["threads"] == 1
        fp32 = r["fp32"]
        assert fp32["images_per_s"] > 0 and fp32["seconds"] > 0 and fp32["peak_memory_mb"] > 0
        assert 0 < fp32["denoiser_s_per_step"] * 2 <= fp32["seconds"]
        assert fp32["images_per_s_at_default_steps"] > 0
        assert fp32["largest_batch"] is None and "CPU" in r["notes"]["largest_batch"]
        assert r["fp16"] is None and "CPU" in r["notes"]["fp16"]  # not measured there: why
    assert lines[0]["fp32"]["default_steps"] == 50 and lines[2]["fp32"]["default_steps"] == 4
    assert set(lines[0]["components"]) == {"unet", "vae", "text_encoder", "safety_checker"}
    assert set(lines[1]["components"]) == {"transformer", "vae"}
