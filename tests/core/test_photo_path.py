"""Faces as they arrive from the detector (issue 25): the augmentation operations box_jitter, blur and gamma,
and the photo-path benchmark's small run (benchmarks/bench_photo_path.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ferzoo.data.augment import build_augmentation

REPO = Path(__file__).resolve().parents[2]
SHAPE = (32, 32)


def _batch(channels=1, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, (n, *SHAPE, channels)).astype(np.float32)


def _blob_batch(n=16, sigma=3.0):
    """n copies of a bright Gaussian blob centred in a dark 32x32 image."""
    yy, xx = np.mgrid[0:SHAPE[0], 0:SHAPE[1]].astype(np.float32)
    c = (SHAPE[0] - 1) / 2
    blob = 255.0 * np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2 * sigma ** 2))
    return np.repeat(blob[None, ..., None], n, axis=0).astype(np.float32)


def _centre(images):
    w = np.clip(images[..., 0] - 20.0, 0, None)  # the blob, not the (near zero) background
    yy, xx = np.mgrid[0:images.shape[1], 0:images.shape[2]]
    total = w.sum(axis=(1, 2))
    return (w * xx).sum(axis=(1, 2)) / total, (w * yy).sum(axis=(1, 2)) / total


def _high_frequency_energy(images):
    return float(np.mean(np.diff(images, axis=1) ** 2) + np.mean(np.diff(images, axis=2) ** 2))


OPS = {
    "box_jitter": {"scale": [0.8, 1.3], "shift": 0.1},
    "blur": {"p": 1.0, "sigma": [0.5, 1.5]},
    "gamma": {"p": 1.0, "range": [0.6, 1.6]},
}


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("channels", [1, 3])
def test_ops_keep_shape_dtype_and_range_and_differ_per_image(name, channels):
    aug = build_augmentation({name: OPS[name]}, (*SHAPE, channels), seed=1)
    x = np.repeat(_batch(channels, n=1), 6, axis=0)  # six copies of one image
    out = np.asarray(aug(tf.constant(x)))
    assert out.shape == x.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert not np.allclose(out, x, atol=1e-3), "the operation changed nothing"
    diffs = [np.abs(out[i] - out[0]).mean() for i in range(1, 6)]
    assert min(diffs) > 0.05, f"copies of one image were transformed alike: {diffs}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_ops_repeat_under_a_seed_and_run_in_tf_data_and_tf_function(name):
    x = _batch(3)
    first = np.asarray(build_augmentation({name: OPS[name]}, (*SHAPE, 3), seed=7)(tf.constant(x)))
    again = np.asarray(build_augmentation({name: OPS[name]}, (*SHAPE, 3), seed=7)(tf.constant(x)))
    np.testing.assert_allclose(first, again, atol=1e-4)
    other = np.asarray(build_augmentation({name: OPS[name]}, (*SHAPE, 3), seed=8)(tf.constant(x)))
    assert not np.allclose(first, other, atol=1e-3)

    aug = build_augmentation({name: OPS[name]}, (*SHAPE, 3), seed=3)
    in_graph = tf.function(lambda t: aug(t))(tf.constant(x))
    assert in_graph.shape == x.shape
    ds = tf.data.Dataset.from_tensor_slices(x).batch(3).map(lambda t: aug(t))
    out = np.concatenate(list(ds.as_numpy_iterator()))
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 255


@pytest.mark.parametrize("spec", [{"box_jitter": {"scale": [0.7, 1.4], "shift": 0.2, "p": 0}},
                                  {"blur": {"p": 0, "sigma": [1, 2]}},
                                  {"gamma": {"p": 0, "range": [0.5, 2]}}])
def test_p_zero_is_the_identity(spec):
    x = _batch(3)
    out = np.asarray(build_augmentation(spec, (*SHAPE, 3), seed=0)(tf.constant(x)))
    np.testing.assert_allclose(out, x, atol=1e-3)


def test_blur_removes_high_frequency_energy_and_more_with_larger_sigma():
    x = _batch(1, n=8)
    light = np.asarray(build_augmentation({"blur": {"p": 1, "sigma": [0.6, 0.6]}}, (*SHAPE, 1), seed=0)(x))
    heavy = np.asarray(build_augmentation({"blur": {"p": 1, "sigma": [2.0, 2.0]}}, (*SHAPE, 1), seed=0)(x))
    e0, e1, e2 = (_high_frequency_energy(v) for v in (x, light, heavy))
    assert e1 < 0.5 * e0 and e2 < 0.5 * e1
    # a blur keeps the mean (the kernel sums to one)
    assert abs(heavy.mean() - x.mean()) < 2.0


def test_box_jitter_moves_a_centred_blob_within_the_stated_bounds():
    lo, hi, shift = 0.8, 1.25, 0.1
    x = _blob_batch(n=32)
    out = np.asarray(build_augmentation({"box_jitter": {"scale": [lo, hi], "shift": shift}}, (*SHAPE, 1),
                                        seed=5)(tf.constant(x)))
    cx, cy = _centre(out)
    c = (SHAPE[1] - 1) / 2
    bound = shift * SHAPE[1] / lo + 0.6  # the face centre moves at most shift / scale image sides (+ rounding)
    assert np.all(np.abs(cx - c) <= bound) and np.all(np.abs(cy - c) <= bound)
    assert np.std(cx) > 0.5 and np.std(cy) > 0.5, "the blob did not move"
    # the blob's size follows 1 / scale: its spread lies between 1/hi and 1/lo of the original's
    def spread(img):
        w = np.clip(img[..., 0] - 20.0, 0, None)
        return np.sqrt((w > 0.5 * w.max(axis=(1, 2), keepdims=True)).sum(axis=(1, 2)))
    ratio = spread(out) / spread(x)
    assert np.all(ratio > 1 / hi - 0.15) and np.all(ratio < 1 / lo + 0.15)
    assert ratio.max() - ratio.min() > 0.1


def test_unknown_parameters_are_named():
    with pytest.raises(ValueError, match="box_jitter"):
        build_augmentation({"box_jitter": {"scale": [1, 1.2], "zoom": 3}}, (*SHAPE, 1))
    with pytest.raises(ValueError, match="box_jitter: fill"):
        build_augmentation({"box_jitter": {"fill": "constant"}}, (*SHAPE, 1))
    with pytest.raises(ValueError, match="blur: sigma"):
        build_augmentation({"blur": {"sigma": [2, 1]}}, (*SHAPE, 1))


def test_photo_path_benchmark_small_run(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_photo_path.py"), "--small",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bench_photo_path.py" in proc.stdout  # the command is printed
    result = json.loads((out / "photo_path.json").read_text())
    table = (out / "photo_path.md").read_text()
    assert "| photo path" in table
    assert result["faces"] > 0 and result["faces"] == len(result["per_face"])
    for key in ("ratio", "ratio_single"):
        assert result[key] is not None and 0.0 <= result[key] <= 2.0, (key, result[key])
    assert 0.0 <= result["found_share"] <= 1.0
    for face in result["per_face"]:
        assert face["crop_rule"] is None or set(face["crop_rule"]) >= {"margin", "align", "detector"}
    assert isinstance(result["rule_mismatches"], int)
