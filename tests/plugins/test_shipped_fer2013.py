"""The FER-2013 weights each paper's plugin ships (``NAME.fer2013``): found offline in the plugin's ``weights/``
folder, stored as the card says (int8 with a scale per output channel, or float16 where int8 cost 0.3 points or
more), the card's metrics are the measurement of that very file, and a real smiling face is called happy; with
``-m slow`` and the real FER-2013 (``FERZOO_FER2013_DIR``, default ``../shared/datasets/fer2013``) the card's val
accuracy is measured again. The embedded default has its own tests (``tests/plugins/daf_cnn/``)."""

from pathlib import Path

import pytest

import ferzoo
from ferzoo import weights as W

#: (model, plugin folder, input side): each is loaded once, for all the checks on it
SHIPPED = [("fdrl", "fdrl", 64), ("dan", "dan", 64), ("lnlattennet_cpu", "lnlattennet", 64), ("daf_cnn", "daf_cnn", 48)]


@pytest.fixture(scope="module", params=SHIPPED, ids=[name for name, _, _ in SHIPPED])
def shipped(request):
    name, folder, side = request.param
    return name, folder, side, ferzoo.load(name, weights="fer2013")


def test_shipped_file_is_packed_and_its_card_holds_both_measurements(shipped):
    name, folder, side, model = shipped
    path, card = W.resolve(name, "fer2013")
    assert Path(path).parent.name == "weights" and Path(path).parent.parent.name == folder
    assert card["storage_dtype"] in ("int8-per-channel", "float16")
    assert Path(path).stat().st_size < 2.2 * card["trainable_params"]  # about 1-2 bytes a parameter, not 4
    packing = card["packing"]
    assert packing and isinstance(packing, dict)
    assert card["metrics"]["split"] == "val" and card["metrics"]["accuracy"] > 0.6
    assert card["input_spec"]["height"] == side and model.input_shape_hwc == (side, side, card["input_spec"]["channels"])
    assert card["recipe_name"] == "fer2013" and card["dataset"] == "fer2013"


def test_shipped_weights_call_the_bundled_smiling_face_happy(shipped):
    *_, model = shipped
    [(label, p), *_] = model.predict_classes(ferzoo.demo_image(), top_k=3)[0]
    assert label == "happy" and p > 0.5


@pytest.mark.slow
def test_shipped_weights_reach_the_cards_accuracy_on_real_fer2013_val(shipped, real_fer2013_dir):
    from ferzoo.data import prepare

    name, _, _, model = shipped
    _, card = W.resolve(name, "fer2013")
    val = ferzoo.get_dataset("fer2013", data_dir=str(real_fer2013_dir), split="val")
    crop = {"load_size": model.eval_crop, "crop": "center"} if model.eval_crop else {}  # as the card measured
    report = model.evaluate(prepare(val, model.input_shape_hwc, batch_size=64, **crop))
    assert report["accuracy"] == pytest.approx(card["metrics"]["accuracy"], abs=0.002)
