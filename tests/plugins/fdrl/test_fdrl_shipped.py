"""The shipped FER-2013 weights (``fdrl.fer2013``): found offline in the package, stored as the card says
(int8 with a scale per output channel, or float16 where int8 cost 0.3 points or more), the card's metrics are the
measurement of that very file, and a real smiling face is called happy; with ``-m slow`` and the real FER-2013
(``FERZOO_FER2013_DIR``, default ``../shared/datasets/fer2013``) the card's val accuracy is measured again."""

from pathlib import Path

import pytest

import ferzoo
from ferzoo import weights as W


@pytest.fixture(scope="module")
def shipped():
    return ferzoo.load("fdrl", weights="fer2013")


def test_shipped_file_is_packed_and_its_card_holds_both_measurements(shipped):
    path, card = W.resolve("fdrl", "fer2013")
    assert Path(path).parent.name == "weights" and Path(path).parent.parent.name == "fdrl"
    assert card["storage_dtype"] in ("int8-per-channel", "float16")
    assert Path(path).stat().st_size < 2.2 * card["trainable_params"]  # about 1-2 bytes a parameter, not 4
    packing = card["packing"]
    assert card["metrics"]["split"] == "val" and card["metrics"]["accuracy"] > 0.6
    assert card["input_spec"]["height"] == 64 and shipped.input_shape_hwc == (64, 64, 3)
    assert card["recipe_name"] == "fer2013" and card["dataset"] == "fer2013"
    assert packing and isinstance(packing, dict)


def test_shipped_weights_call_the_bundled_smiling_face_happy(shipped):
    [(name, p), *_] = shipped.predict_classes(ferzoo.demo_image(), top_k=3)[0]
    assert name == "happy" and p > 0.5


@pytest.mark.slow
def test_shipped_weights_reach_the_cards_accuracy_on_real_fer2013_val(shipped, real_fer2013_dir):
    data_dir = real_fer2013_dir
    from ferzoo.data import prepare

    _, card = W.resolve("fdrl", "fer2013")
    val = ferzoo.get_dataset("fer2013", data_dir=str(data_dir), split="val")
    crop = {"load_size": shipped.eval_crop, "crop": "center"} if shipped.eval_crop else {}  # as the card measured
    report = shipped.evaluate(prepare(val, shipped.input_shape_hwc, batch_size=64, **crop))
    assert report["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=0.002)
