"""Occlusion saliency (spec 7, 9.13)."""

import numpy as np
import pytest

import ferzoo
from ferzoo_plugins.deep_emotion.explain import occlusion_saliency, occlusion_windows

BLOCK = (slice(20, 24), slice(30, 34))  # the 4x4 block the mock classifier looks at (rows 20-23, cols 30-33)


def _mock(label, num_classes=7):
    """Predicts ``label`` unless some pixel of BLOCK is 0, then predicts ``label + 1``."""
    def predict(batch):
        hit = (batch[:, BLOCK[0], BLOCK[1], 0] == 0).any(axis=(1, 2))
        out = np.zeros((len(batch), num_classes), np.float32)
        out[np.arange(len(batch)), np.where(hit, (label + 1) % num_classes, label)] = 1.0
        return out
    return predict


def test_window_count():
    assert len(occlusion_windows(48, 48, 12, 4)) == ((48 - 12) // 4 + 1) ** 2 == 100
    assert occlusion_windows(48, 48, 12, 4)[:2] == [(0, 0), (0, 4)]
    assert occlusion_windows(48, 48, 12, 4)[-1] == (36, 36)
    with pytest.raises(ValueError, match="window 50 is larger than the 48x48 image"):
        occlusion_windows(48, 48, 50, 4)


def test_mock_classifier_marks_exactly_the_windows_over_the_block():
    images = np.full((2, 48, 48, 1), 200.0, np.float32)
    s = occlusion_saliency(_mock(3), images, [3, 3], window=12, stride=4)
    assert s.shape == (2, 48, 48)
    assert s.min() >= 0 and s.max() <= 1
    expected = np.zeros((48, 48), bool)
    counts = np.zeros((48, 48))
    hits = np.zeros((48, 48))
    for r, c in occlusion_windows(48, 48, 12, 4):
        overlaps = r <= 23 and r + 12 > 20 and c <= 33 and c + 12 > 30
        counts[r:r + 12, c:c + 12] += 1
        if overlaps:
            expected[r:r + 12, c:c + 12] = True
            hits[r:r + 12, c:c + 12] += 1
    np.testing.assert_array_equal(s[0] > 0, expected)
    np.testing.assert_allclose(s[0], hits / counts, atol=1e-6)
    assert s[0, 21, 31] == 1.0  # every window covering the block breaks the prediction


def test_constant_classifier_gives_zero():
    images = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    def constant(batch):
        return np.tile(np.eye(7, dtype=np.float32)[2], (len(batch), 1))
    assert not np.any(occlusion_saliency(constant, images, [2, 2, 2]))
    assert not np.any(occlusion_saliency(constant, images, [2, 2, 2], mode="drop"))


def test_drop_mode_and_errors():
    images = np.full((1, 48, 48, 1), 100.0, np.float32)
    s = occlusion_saliency(_mock(0), images, [0], mode="drop")
    binary = occlusion_saliency(_mock(0), images, [0])
    np.testing.assert_allclose(s, binary, atol=1e-6)  # p_y drops from 1 to 0 exactly where the label flips
    with pytest.raises(ValueError, match="mode='soft'"):
        occlusion_saliency(_mock(0), images, [0], mode="soft")
    with pytest.raises(ValueError, match="1 images but 2 labels"):
        occlusion_saliency(_mock(0), images, [0, 1])


def test_model_explain_defaults_to_occlusion(model, images):
    assert ferzoo.model_info("deep_emotion").default_explainer == "occlusion"
    assert {"occlusion", "gradcam++", "saliency"} <= set(ferzoo.list_explainers("deep_emotion"))
    maps = model.explain(images[:2])
    assert maps.shape == (2, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    # the reference class is the prediction, so with a class no image is predicted as every window "flips"
    preds = model.predict(images[:2], verbose=0).argmax(-1)
    other = (preds + 1) % 7
    np.testing.assert_array_equal(model.explain(images[:2], class_index=other), 1.0)


def test_gradcam_plus_plus_runs_on_the_warped_map(model, images):
    pytest.importorskip("tf_keras_vis")
    maps = model.explain(images[:2], method="gradcam++")
    assert maps.shape == (2, 48, 48) and np.all(np.isfinite(maps))


def test_important_regions_keeps_only_correct_images(model, images):
    from ferzoo_plugins.deep_emotion.explain import important_regions

    preds = model.predict(images, verbose=0).argmax(-1)
    labels = preds.copy()
    labels[::2] = (preds[::2] + 1) % 7  # every other image is "misclassified"
    maps, kept = important_regions(model, images, labels)
    np.testing.assert_array_equal(kept, np.arange(1, 8, 2))
    assert maps.shape == (4, 48, 48) and maps.min() >= 0 and maps.max() <= 1
    with pytest.raises(ValueError, match="8 images but 3 labels"):
        important_regions(model, images, labels[:3])
