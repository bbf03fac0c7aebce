"""The shipped compact weights (``daf_cnn_compact.fer2013``, the embedded default): offline, small, card-driven
flip averaging, a real smiling face called happy, and a TFLite export that agrees with Keras."""

from pathlib import Path

import numpy as np
import pytest

import ferzoo
from ferzoo import weights as W


@pytest.fixture(scope="module")
def shipped():
    return ferzoo.load("daf_cnn_compact", weights="fer2013")


def test_shipped_file_is_small_float16_and_its_card_says_how_it_predicts(shipped):
    path, card = W.resolve("daf_cnn_compact", "fer2013")
    assert Path(path).stat().st_size <= 5 * 2 ** 20
    assert card["storage_dtype"] == "float16" and card["tta"] == "flip" and shipped.tta == "flip"
    assert card["class_names"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert card["metrics"]["split"] == "val" and card["metrics"]["accuracy"] > 0.6
    assert card["sources"] == [{"package": "ferzoo_plugins.daf_cnn",
                                "path": "weights/daf_cnn_compact_fer2013.weights.h5"}]


def test_shipped_weights_call_the_bundled_smiling_face_happy(shipped):
    [(name, p), *_] = shipped.predict_classes(ferzoo.demo_image(), top_k=3)[0]
    assert name == "happy" and p > 0.5


def test_shipped_weights_export_to_tflite_with_the_same_top1(shipped):
    from ferzoo.export import convert_tflite, interpreter, keras_probabilities, parity, run_tflite

    faces = ferzoo.export.sample_images(shipped, "synthetic", count=63)
    images = np.concatenate([faces, shipped.preprocess(ferzoo.demo_image())])
    reference = keras_probabilities(shipped, images)
    lite = run_tflite(interpreter(model_content=convert_tflite(shipped, "none")), images)
    report = parity(reference, lite)
    assert report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 1e-4
