import os

import numpy as np
import pytest
from fakes import label_of_mean, pattern, save, truncate

import ferzoo
from ferzoo.data.source import DataError

FER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
FOLDERS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]  # the Kaggle release's names


def write_csv(path, rows, header="emotion,pixels,Usage"):
    with open(path, "w") as f:
        f.write(header + "\n")
        for label, usage, seed in rows:
            px = " ".join(str(int(v)) for v in pattern(label, seed=seed).reshape(-1))
            cols = {"emotion": str(label), "pixels": px, "usage": usage}
            f.write(",".join(cols[h.strip().lower()] for h in header.split(",")) + "\n")


ROWS = [(i % 7, u, i) for i, u in enumerate(["Training"] * 14 + ["PublicTest"] * 7 + ["PrivateTest"] * 8)]


def as_arrays(ds):
    xs, ys = [], []
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(int(y))
    return xs, np.array(ys)


def test_csv_splits_labels_and_pixels(tmp_path):
    write_csv(tmp_path / "fer2013.csv", ROWS)
    for split, n in (("train", 14), ("val", 7), ("test", 8), (None, 29)):
        ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split=split)
        assert ds.class_names == FER
        xs, ys = as_arrays(ds)
        assert len(ys) == n and list(ds.labels) == list(ys)
        assert all(x.shape == (48, 48, 1) and x.dtype == np.uint8 for x in xs)
        assert [label_of_mean(x.mean()) for x in xs] == list(ys)
    ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path / "fer2013.csv"), split="val")
    assert ds.table.origins[0].endswith("fer2013.csv:16")


def test_icml_face_data_header(tmp_path):
    write_csv(tmp_path / "icml_face_data.csv", ROWS, header="emotion, Usage, pixels")
    ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="test")
    assert len(ds.labels) == 8


def test_csv_errors_name_file_and_line(tmp_path):
    write_csv(tmp_path / "fer2013.csv", [(0, "Training", 0), (9, "Training", 1)])
    with pytest.raises(DataError, match=r"fer2013.csv:3: emotion 9 is out of range"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train")
    write_csv(tmp_path / "fer2013.csv", [(0, "Training", 0), (1, "Bogus", 1)])
    with pytest.raises(DataError, match=r"fer2013.csv:3: unknown Usage 'Bogus'"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path))
    write_csv(tmp_path / "fer2013.csv", [(0, "Training", 0)])
    with pytest.raises(DataError, match="split 'test' has no images"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="test")
    with pytest.raises(DataError, match="does not exist"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path / "nope"))
    os.remove(tmp_path / "fer2013.csv")
    with pytest.raises(DataError, match="holds neither"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path))


def make_folder_release(root, with_val_folder=False):
    """Kaggle image release: train/<class>/Training_*.jpg, test/<class>/Public|PrivateTest_*.jpg."""
    for c, folder in enumerate(FOLDERS):
        label = FER.index(folder)
        save(root / "train" / folder / f"Training_{1000 + c}.jpg", pattern(label, seed=c), quality=95)
        save(root / "train" / folder / f"Training_{2000 + c}.jpg", pattern(label, seed=c + 50), quality=95)
        save(root / "test" / folder / f"PrivateTest_{3000 + c}.jpg", pattern(label, seed=c + 9), quality=95)
        pub = root / ("val" if with_val_folder else "test") / folder / f"PublicTest_{4000 + c}.jpg"
        save(pub, pattern(label, seed=c + 7), quality=95)


@pytest.mark.parametrize("with_val_folder", [False, True])
def test_folder_release_splits(tmp_path, with_val_folder):
    make_folder_release(tmp_path, with_val_folder)
    (tmp_path / "train" / "angry" / "Thumbs.db").write_bytes(b"x")
    expect = {"train": ("Training_", 14), "val": ("PublicTest_", 7), "test": ("PrivateTest_", 7), None: ("", 28)}
    for split, (prefix, n) in expect.items():
        ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split=split)
        assert ds.class_names == FER
        xs, ys = as_arrays(ds)
        assert len(ys) == n, split
        assert all(os.path.basename(f).startswith(prefix) for f in ds.files)
        assert [label_of_mean(x.mean()) for x in xs] == list(ys)
        # every example's class name is its folder's name
        assert [ds.class_names[y] for y in ys] == [os.path.basename(os.path.dirname(f)) for f in ds.files]


def test_folder_release_errors(tmp_path):
    make_folder_release(tmp_path)
    save(tmp_path / "test" / "happy" / "img_1.jpg", pattern(3))
    with pytest.raises(DataError, match="img_1.jpg is in test/ but its name starts with neither"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="test")
    os.remove(tmp_path / "test" / "happy" / "img_1.jpg")
    os.makedirs(tmp_path / "train" / "bored")
    with pytest.raises(DataError, match="unknown class folder .*bored"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train")
    os.rmdir(tmp_path / "train" / "bored")
    truncate(tmp_path / "train" / "fear" / "Training_1002.jpg")
    ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train")
    with pytest.raises(Exception, match="Training_1002.jpg"):
        list(ds.as_numpy_iterator())
    with pytest.raises(DataError, match=r"1 unreadable image.*Training_1002.jpg"):
        ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train", on_error="check")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train", on_error="skip")
    assert len(ds.skipped) == 1 and ds.skipped[0][0].endswith("Training_1002.jpg")
    assert len(list(ds.as_numpy_iterator())) == 13


def test_color_size_order_and_cache(tmp_path):
    make_folder_release(tmp_path)
    ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train", color="rgb", image_size=(24, 32),
                            class_order="canonical", cache=True)
    xs, ys = as_arrays(ds)
    assert xs[0].shape == (24, 32, 3)
    a = [int(y) for _, y in ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train", shuffle=True,
                                                   seed=3).as_numpy_iterator()]
    b = [int(y) for _, y in ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train", shuffle=True,
                                                   seed=3).as_numpy_iterator()]
    assert a == b and sorted(a) == sorted(ys.tolist())
    ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train",
                            class_order=["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"])
    xs, ys = as_arrays(ds)
    assert [label_of_mean(x.mean()) for x in xs] == [FER.index(ds.class_names[y]) for y in ys]
