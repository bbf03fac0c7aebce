"""The benchmark scripts keep running (CI runs them at a tiny size, the two heaviest with `-m slow`; the figures
come from real runs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # about 20 s: a benchmark script's smoke run (the default run had passed 15 minutes)
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


def _run(script, *args):
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


@pytest.mark.slow  # about 18 s: a benchmark script's smoke run (the default run had passed 15 minutes)
def test_dan_profile_runs_at_a_small_size():
    proc = _run("profile_dan.py", "--size", "32", "--calls", "2", "--train-steps", "1", "--top", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for path in ("keras predict_on_batch, batch 1", "frozen graph, batch 1", "train_on_batch, batch 32"):
        assert f"{path}: " in proc.stdout
    assert proc.stdout.count("| op type | share of host self time | ops per call |") == 3
    assert "Conv2D" in proc.stdout
    bad = _run("profile_dan.py", "--calls", "0")
    assert bad.returncode == 2 and "--calls must be >= 1, got 0" in bad.stderr


@pytest.mark.parametrize("model,size,header,macs", [
    pytest.param("deep_emotion", None, "Deep-Emotion 48x48x1, 7 classes", (2e6, 4e6),  # the default size, printed
                 marks=pytest.mark.slow),  # about 19 s
    pytest.param("fdrl", "32", "FDRL 32x32x3, 7 classes", (3.5e7, 4.5e7),  # ResNet-18 at 32 px: 1.8 G x (32/224)^2
                 marks=pytest.mark.slow),  # about 40 s: XLA compiles a ResNet-18 per policy
])
def test_other_models_vs_pytorch_benchmark_runs(tmp_path, model, size, header, macs):
    """The same side-by-side script for the other models with a PyTorch statement (small: runs by default)."""
    pytest.importorskip("torch")
    out = tmp_path / "side.json"
    proc = _run("bench_dan_vs_torch.py", "--model", model, *(["--size", size] if size else []), "--rounds", "1",
                "--b1", "1", "--train-steps", "1", "--matmul", "64", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    if size is None:
        assert "input size 48 (the default for deep_emotion; --size chooses)" in proc.stderr
    assert header in proc.stdout
    result = json.loads(out.read_text())
    assert result["median"]["pytorch float32"]["train_img_s"] > 0 and result["median"]["ferzoo float32"]["b1_ms"] > 0
    assert macs[0] < result["macs"] < macs[1]  # this model's forward pass, not DAN's
    bad = _run("bench_dan_vs_torch.py", "--model", "lnlattennet")
    assert bad.returncode == 2 and "--model: invalid choice: 'lnlattennet'" in bad.stderr


@pytest.mark.slow  # about 1.5 min (two DAN models per policy, XLA compiles, PyTorch): keeps the default run short
def test_dan_vs_pytorch_benchmark_runs_at_a_small_size(tmp_path):
    pytest.importorskip("torch")  # the [torch] extra, which the README's test command installs
    out = tmp_path / "side.json"
    proc = _run("bench_dan_vs_torch.py", "--size", "32", "--rounds", "1", "--b1", "1", "--train-steps", "1",
                "--matmul", "256", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    median = json.loads(out.read_text())["median"]
    assert set(median) == {"ferzoo float32", "ferzoo float32 frozen", "ferzoo float32 xla", "ferzoo bfloat16",
                           "ferzoo bfloat16 frozen", "ferzoo bfloat16 xla", "pytorch float32", "pytorch bfloat16"}
    assert median["ferzoo float32 frozen"]["train_img_s"] is None and median["ferzoo float32"]["train_img_s"] > 0
    assert "| ferzoo float32 frozen |" in proc.stdout and "| - | - |" in proc.stdout
    result = json.loads(out.read_text())
    assert set(result["matmul_gflops"]) == {"ferzoo float32", "ferzoo bfloat16", "pytorch float32", "pytorch bfloat16"}
    assert all(v > 0 for v in result["matmul_gflops"].values()) and result["macs"] > 0
    assert "| side | matmul GFLOP/s | batch-1 floor ms |" in proc.stdout


@pytest.mark.slow  # about 28 s: a benchmark script's smoke run (the default run had passed 15 minutes)
def test_batchnorm_benchmark_runs_at_a_small_size():
    proc = _run("bench_batchnorm.py", "--size", "32", "--rounds", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| Keras' code path |" in proc.stdout and "| fused kernel |" in proc.stdout
    assert "(40 ferzoo batch-norm layers)" in proc.stdout  # ResNet-18 and the 4 heads; the 2-D logits BN is Keras
    assert "| fused / Keras |" in proc.stdout


@pytest.mark.slow  # about 1.5 min (TFLite conversion, training in two precisions)
def test_daf_cnn_benchmark_runs_at_a_small_size_with_the_tta_rows():
    proc = _run("bench_daf_cnn.py", "--small")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| daf_cnn_compact | 48x48x1 | 1,782,249 |" in proc.stdout
    assert "| model | Keras b1 ms: one pass / flip / ten-crop |" in proc.stdout


def test_latency_benchmark_runs_for_a_built_model():
    proc = _run("bench_latency.py", "deep_emotion", "--b1", "1", "--b64", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "deep_emotion (random weights), input 48x48x1, tta None, inter/intra-op threads default/default" in proc.stdout
    for path in ("Keras predict_on_batch", "frozen graph float32", "frozen graph bfloat16"):
        assert f"| {path} |" in proc.stdout
    bad = _run("bench_latency.py", "deep_emotion", "--weights", "x", "--input-shape", "48,48,1")
    assert bad.returncode == 2 and "--input-shape: the weights' card fixes the input shape" in bad.stderr


@pytest.mark.slow  # about 19 s: a benchmark script's smoke run (the default run had passed 15 minutes)
def test_explain_mass_script_trains_and_measures_every_method():
    proc = _run("explain_mass.py", "daf_cnn_compact:32:1:0.003", "--seeds", "0", "--images", "64",
                "--layers", "daf_cnn_compact=block3_conv2", "--layout", "distractors", "--untrained",
                "--recalibrate-bn")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "daf_cnn_compact 32x32x1 distractors seed 0: val accuracy per epoch [" in proc.stdout
    assert " after recalibrating'], " in proc.stdout
    assert proc.stdout.count("   untrained 0.") + proc.stdout.count("   untrained 1.") == 4
    for method in ("gradcam++", "saliency", "spatial_attention", "gradcam++ on block3_conv2"):
        assert f"    {method} " in proc.stdout
    assert "spatial_attention            mass" in proc.stdout and "ignores class_index: True" in proc.stdout
    bad = _run("explain_mass.py", "nosuch", "--seeds", "0")
    assert bad.returncode == 2 and "nosuch: no preset setup" in bad.stderr
    bad = _run("explain_mass.py", "deep_emotion", "--layout", "stripes")
    assert bad.returncode == 2 and "--layout must be one of patch, quadrant, distractors, got 'stripes'" in bad.stderr
