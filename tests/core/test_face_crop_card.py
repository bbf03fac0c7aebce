"""A data set's framing travels into the weights' card: ``ferzoo train`` on FER-2013 writes
``input_spec.face_crop`` (the photo crop rule that matches its registered crops), so ``predict`` cuts faces
from photos by the card's rule rather than by a stand-in default."""

import numpy as np
import pytest

import ferzoo
from ferzoo.faces import DEFAULT_CROP, crop_for_card
from ferzoo.specs import DatasetSpec
from ferzoo.train import train


def _fer2013_csv(path, per_split=(14, 7, 7)):
    rng = np.random.default_rng(0)
    usages = ["Training"] * per_split[0] + ["PublicTest"] * per_split[1] + ["PrivateTest"] * per_split[2]
    with open(path, "w") as fh:
        fh.write("emotion,pixels,Usage\n")
        for i, usage in enumerate(usages):
            pixels = " ".join(str(v) for v in rng.integers(0, 256, 48 * 48))
            fh.write(f"{i % 7},{pixels},{usage}\n")


def test_training_on_fer2013_writes_its_crop_rule_into_the_card(registry, tmp_path):
    _fer2013_csv(tmp_path / "fer2013.csv")
    result = train("toy", dataset="fer2013", data_dir=str(tmp_path), epochs=1, batch_size=4, verbose=0,
                   output=str(tmp_path / "run"), say=lambda _line: None)
    spec = result["card"]["input_spec"]
    assert spec["face_crop"] == {"detector": "mtcnn", "margin": 0.0, "align": "eyes"} == DEFAULT_CROP.to_dict()
    model_spec = result["model"].input_spec_info.to_dict()
    assert spec["face_alignment"] == "FER-2013's registered 48x48 gray crops (the face fills the image)"
    own = ("face_crop", "face_alignment")  # the data set's framing; the rest is the model's own
    assert {k: v for k, v in spec.items() if k not in own} == {k: v for k, v in model_spec.items() if k not in own}
    rule, note = crop_for_card(result["card"])
    assert rule == DEFAULT_CROP and note is None  # the card's own rule: no stand-in note
    loaded = ferzoo.load("toy", weights=result["weights"])  # a card with the extra field still loads
    assert loaded.input_shape_hwc == result["model"].input_shape_hwc


def test_a_data_set_without_a_known_framing_writes_none(registry, tmp_path):
    result = train("toy", dataset="synthetic", epochs=1, verbose=0, output=str(tmp_path / "run"),
                   dataset_options={"size": 16, "per_class": 2}, say=lambda _line: None)
    assert "face_crop" not in result["card"]["input_spec"]
    # in words, the card names the data set, not the model's paper's faces
    assert result["card"]["input_spec"]["face_alignment"] == "the images of the 'synthetic' data set, as its reader gives them"
    assert crop_for_card(result["card"])[1] is not None  # predict says the default stands in


def test_a_data_sets_face_crop_is_checked(registry, tmp_path):
    class BadFrame:
        @ferzoo.hookimpl
        def register_datasets(self, register):
            register(DatasetSpec(name="badframe", loader="ferzoo.data:synthetic", face_crop={"margin": 3.0}))

    registry.register(BadFrame(), name="badframe_plugin")
    with pytest.raises(ValueError, match="data set 'badframe': face_crop: face_crop.margin must be a number"):
        train("toy", dataset="badframe", epochs=1, verbose=0, output=str(tmp_path / "run"),
              dataset_options={"size": 16, "per_class": 2}, say=lambda _line: None)
