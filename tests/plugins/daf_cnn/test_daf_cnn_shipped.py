"""The compact weights shipped first (``daf_cnn_compact.fer2013``, the embedded default until 2026-12-05): offline, small, card-driven
ten-crop averaging, a real smiling face called happy, and a TFLite export that agrees with Keras; with
``-m slow`` and the real FER-2013 (``FERZOO_FER2013_DIR``, default ``../shared/datasets/fer2013``), the
card's val accuracy."""

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
    assert card["storage_dtype"] == "float16" and card["tta"] == "tencrop" and shipped.tta == "tencrop"
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
    reference = keras_probabilities(shipped, images, tta=True)  # the card's ten-crop, as the conversion computes
    lite = run_tflite(interpreter(model_content=convert_tflite(shipped, "none")), images)
    report = parity(reference, lite)
    assert report["top1_agreement"] == 1.0 and report["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_shipped_weights_reach_68_percent_on_real_fer2013_val_with_their_cards_tencrop(shipped, real_fer2013_dir):
    data_dir = real_fer2013_dir
    ds = ferzoo.get_dataset("fer2013", data_dir=str(data_dir), split="val")
    tencrop = shipped.evaluate(ds, verbose=0)
    single = shipped.evaluate(ds, verbose=0, tta=None)
    assert tencrop["tta"] == "tencrop" and tencrop["num_examples"] == 3589
    assert tencrop["accuracy"] >= 0.68 and single["accuracy"] < tencrop["accuracy"]
