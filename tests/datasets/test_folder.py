import numpy as np
import pytest
from fakes import label_of_mean, pattern, save

import ferzoo
from ferzoo.data.source import DataError


def test_split_tree_with_expression_names(tmp_path):
    for split, n in (("train", 3), ("val", 1)):
        for c, folder in enumerate(["Happy", "Anger", "Neutral"]):
            for i in range(n):
                save(tmp_path / split / folder / f"{i}.png", pattern(c, size=(30, 40), channels=3, seed=i))
    ds = ferzoo.get_dataset("folder", data_dir=str(tmp_path), split="train")
    assert ds.class_names == ["angry", "happy", "neutral"]  # alphabetical folder order, canonical names
    xs = list(ds.as_numpy_iterator())
    assert len(xs) == 9 and xs[0][0].shape == (30, 40, 3)
    folder_label = {"Anger": 1, "Happy": 0, "Neutral": 2}  # the pattern index each folder was written with
    for (x, y), f in zip(xs, ds.files):
        assert label_of_mean(x.mean()) == folder_label[f.split("/")[-2]]
    val = ferzoo.get_dataset("folder", data_dir=str(tmp_path), split="val", color="grayscale")
    assert val.class_names == ds.class_names and len(val.labels) == 3
    assert next(val.as_numpy_iterator())[0].shape == (30, 40, 1)
    assert len(ferzoo.get_dataset("folder", data_dir=str(tmp_path)).labels) == 12
    with pytest.raises(DataError, match="no test/ folder"):
        ferzoo.get_dataset("folder", data_dir=str(tmp_path), split="test")


def test_flat_tree_generic_names_and_class_names(tmp_path):
    for c, folder in enumerate(["cat", "dog"]):
        save(tmp_path / folder / "a.jpg", pattern(c, size=(16, 16)))
    ds = ferzoo.get_dataset("folder", data_dir=str(tmp_path))
    assert ds.class_names == ["cat", "dog"]
    assert next(ds.as_numpy_iterator())[0].shape == (16, 16, 1)  # grayscale JPEGs -> 1 channel
    ds = ferzoo.get_dataset("folder", data_dir=str(tmp_path), class_names=["dog", "cat"])
    assert ds.class_names == ["dog", "cat"] and list(ds.labels) == [1, 0]
    with pytest.raises(DataError, match=r"\['dog'\] .* are not among class_names"):
        ferzoo.get_dataset("folder", data_dir=str(tmp_path), class_names=["cat"])
    with pytest.raises(DataError, match="is not an expression name"):
        ferzoo.get_dataset("folder", data_dir=str(tmp_path), canonical=True)


def test_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ferzoo.get_dataset("folder", data_dir=str(tmp_path / "missing"))
    (tmp_path / "happy").mkdir()
    with pytest.raises(DataError, match="has no images"):
        ferzoo.get_dataset("folder", data_dir=str(tmp_path))
    save(tmp_path / "happy" / "x.png", pattern(1))
    (tmp_path / "joy").mkdir()
    with pytest.raises(DataError, match="name the same class"):
        ferzoo.get_dataset("folder", data_dir=str(tmp_path))


def test_formats_to_gray_and_rgb(tmp_path):
    """GIF, BMP and WebP decode only to RGB in TensorFlow: they are converted for grayscale output too."""
    formats = {"GIF": "angry", "BMP": "disgust", "WEBP": "fear", "PNG": "happy", "JPEG": "sad"}
    for k, (fmt, name) in enumerate(formats.items()):
        img = np.repeat(pattern(k, size=(20, 30)), 3, axis=-1)
        save(tmp_path / name / f"a.{fmt.lower()}", img, fmt=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    for color, c in (("grayscale", 1), ("rgb", 3)):
        ds = ferzoo.get_dataset("folder", data_dir=str(tmp_path), color=color)
        for x, y in ds.as_numpy_iterator():
            assert x.shape == (20, 30, c) and label_of_mean(x.mean()) == y
