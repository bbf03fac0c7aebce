"""The benchmark scripts keep running (CI runs them at a tiny size; the figures come from real runs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_train_throughput_benchmark_runs_at_a_small_size(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_train_throughput.py"), "--small",
                           "--models", "deep_emotion", "--json", str(out)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| resnet18 | 32x32x3 | float32 | no |" in proc.stdout
    data = json.loads(out.read_text())
    rows = {(r["model"], r["precision"]) for r in data["rows"]}
    assert rows == {("resnet18", "float32"), ("resnet18", "mixed_bfloat16"), ("deep_emotion", "float32"),
                    ("deep_emotion", "mixed_bfloat16")}
    assert all(r["images_per_second"] > 0 for r in data["rows"])
    assert data["pipeline"]["deep_emotion"]["ratio"] > 0
