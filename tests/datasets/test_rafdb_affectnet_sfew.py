import csv

import numpy as np
import pytest
from fakes import check_names, face, save

import ferzoo
from ferzoo.data.source import DataError

RAF = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]  # labels 1..7


def make_raf(root, n_train=14, n_test=7):
    lines = []
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            label = i % 7 + 1
            name = f"{split}_{i + 1:05d}"
            save(root / "Image" / "aligned" / f"{name}_aligned.jpg", face(RAF[label - 1], (100, 100), 3, i), quality=95)
            save(root / "Image" / "original" / f"{name}.jpg", face(RAF[label - 1], (120, 160), 3, i), quality=95)
            (root / "Annotation" / "manual").mkdir(parents=True, exist_ok=True)
            (root / "Annotation" / "boundingbox").mkdir(parents=True, exist_ok=True)
            (root / "Annotation" / "manual" / f"{name}_manu_attri.txt").write_text(
                "".join(f"{10 + k}.5\t{20 + k}.25\n" for k in range(5)) + "0\n1\n2\n")
            (root / "Annotation" / "boundingbox" / f"{name}_boundingbox.txt").write_text("10.0 20.0 110.0 100.0 \n")
            lines.append(f"{name}.jpg {label}\n")
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))


def test_rafdb(tmp_path):
    make_raf(tmp_path)
    ds = ferzoo.get_dataset("rafdb", data_dir=str(tmp_path), split="train")
    assert ds.class_names == RAF and len(ds.labels) == 14
    assert check_names(ds) == 14
    assert next(ds.as_numpy_iterator())[0].shape == (100, 100, 3)
    assert len(ferzoo.get_dataset("rafdb", data_dir=str(tmp_path), split="test").labels) == 7
    assert len(ferzoo.get_dataset("rafdb", data_dir=str(tmp_path)).labels) == 21
    ds = ferzoo.get_dataset("rafdb", data_dir=str(tmp_path), split="test", aligned=False, landmarks=True,
                            crop_box=True)
    assert ds.landmarks.shape == (7, 5, 2) and ds.landmarks[0, 1, 0] == pytest.approx(11.5)
    x, _ = next(ds.as_numpy_iterator())
    assert x.shape == (80, 100, 3)  # the box 10,20 .. 110,100 (x1 y1 x2 y2)
    ds = ferzoo.get_dataset("rafdb", data_dir=str(tmp_path), split="test", class_order="canonical")
    assert ds.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    check_names(ds)


def test_rafdb_errors(tmp_path):
    make_raf(tmp_path, 2, 1)
    label_file = tmp_path / "EmoLabel" / "list_patition_label.txt"
    label_file.write_text("train_00001.jpg 5\ntrain_00002.jpg 8\n")
    with pytest.raises(DataError, match=r"list_patition_label.txt:2: label 8 is out of range 1..7"):
        ferzoo.get_dataset("rafdb", data_dir=str(tmp_path))
    label_file.write_text("train_00001.jpg 5\ntrain_00009.jpg 1\n")
    with pytest.raises(DataError, match=r":2: image .*train_00009_aligned.jpg does not exist"):
        ferzoo.get_dataset("rafdb", data_dir=str(tmp_path))
    label_file.unlink()
    with pytest.raises(DataError, match="label file .*list_patition_label.txt.* does not exist"):
        ferzoo.get_dataset("rafdb", data_dir=str(tmp_path))


AFF = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"]
HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks", "expression",
          "valence", "arousal"]


def make_affectnet(root, header_in_val=False):
    rows = {"training.csv": [], "validation.csv": []}
    k = 0
    for fname, n in (("training.csv", 2), ("validation.csv", 1)):
        for expr in range(11):
            for i in range(n):
                k += 1
                rel = f"{100 + expr}/{k:04d}abc.jpg"
                img = np.full((80, 90, 3), 250, np.uint8)  # bright background outside the face box
                if expr < 8:
                    img[10:60, 20:70] = face(AFF[expr], (50, 50), 3, k)
                save(root / "Manually_Annotated" / "Manually_Annotated_Images" / rel, img, quality=95)
                lm = ";".join(str(v) for v in range(136))
                rows[fname].append([rel, "20", "10", "50", "50", lm, str(expr), "0.5", "-0.25"])
    (root / "Manually_Annotated_file_lists").mkdir(parents=True)
    for fname, r in rows.items():
        with open(root / "Manually_Annotated_file_lists" / fname, "w", newline="") as f:
            w = csv.writer(f)
            if fname == "training.csv" or header_in_val:
                w.writerow(HEADER)
            w.writerows(r)


def test_affectnet_csv_modes_and_crop(tmp_path):
    make_affectnet(tmp_path)
    ds = ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="train")
    assert ds.class_names == AFF and len(ds.labels) == 16
    assert ds.info["excluded"] == {"none": 2, "uncertain": 2, "non-face": 2}
    assert check_names(ds) == 16  # only the face box is read (the background would be 250)
    x, _ = next(ds.as_numpy_iterator())
    assert x.shape == (50, 50, 3)
    assert ds.valence[0] == pytest.approx(0.5)
    ds7 = ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="val", classes=7)
    assert ds7.class_names == AFF[:7] and len(ds7.labels) == 7 and ds7.info["excluded"]["contempt"] == 1
    full = ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="val", crop_face=False)
    assert next(full.as_numpy_iterator())[0].shape == (80, 90, 3)
    margin = ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="val", face_margin=0.1)
    assert next(margin.as_numpy_iterator())[0].shape == (60, 60, 3)


def test_affectnet_errors_and_balanced_sampler(tmp_path):
    from ferzoo.data.augment import apply_sampler

    make_affectnet(tmp_path, header_in_val=True)
    ds = ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="train")
    # class-balanced sampler (DAN): N draws per epoch, every class equally likely, drawn by index
    sampled = apply_sampler(ds, "balanced", seed=0)
    assert sampled.class_names == AFF
    ys = [int(y) for _, y in sampled.as_numpy_iterator()]
    assert len(ys) == 16
    path = tmp_path / "Manually_Annotated_file_lists" / "validation.csv"
    text = path.read_text().splitlines()
    text[3] = text[3].replace(",2,0.5,", ",12,0.5,")
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DataError, match=r"validation.csv:4: expression 12 is out of range 0..10"):
        ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="val")


def test_affectnet_4g_layout(tmp_path):
    for split, n in (("train_set", 2), ("val_set", 1)):
        for i in range(n * 9):
            expr = i % 9
            save(tmp_path / split / "images" / f"{i}.jpg", face(AFF[expr] if expr < 8 else "neutral", (224, 224), 3, i))
            (tmp_path / split / "annotations").mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / split / "annotations" / f"{i}_exp.npy", np.array(str(expr)))
    ds = ferzoo.get_dataset("affectnet", data_dir=str(tmp_path), split="train")
    assert len(ds.labels) == 16 and ds.info["excluded"] == {"none": 2}
    check_names(ds)


SFEW = ["Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise"]


def test_sfew(tmp_path):
    for split, n in (("Train", 2), ("Val", 1), ("Test", 1)):
        for c in SFEW:
            for i in range(n):
                if split == "Test":
                    save(tmp_path / split / f"{c}_{i}.png", face("happy", (72, 64), 3))
                else:
                    save(tmp_path / split / c / f"{c}_{i:03d}_00012.png", face(c.lower().replace("angry", "angry"),
                                                                               (72, 64), 3, i))
    ds = ferzoo.get_dataset("sfew", data_dir=str(tmp_path), split="train")
    assert ds.class_names == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert check_names(ds) == 14
    assert len(ferzoo.get_dataset("sfew", data_dir=str(tmp_path), split="val").labels) == 7
    with pytest.raises(DataError, match="Test labels are not public"):
        ferzoo.get_dataset("sfew", data_dir=str(tmp_path), split="test")
    assert len(ferzoo.get_dataset("sfew", data_dir=str(tmp_path), split="test", test_is_val=True).labels) == 7
    (tmp_path / "Val" / "Contempt").mkdir()
    with pytest.raises(DataError, match="Contempt.* is not a class of sfew"):
        ferzoo.get_dataset("sfew", data_dir=str(tmp_path), split="val")


def test_train_on_the_rafdb_release_needs_no_extra_flag(tmp_path):
    """`ferzoo train NAME --dataset rafdb --data-dir D`: RAF-DB has only train and test; the recipe (or, with
    no recipe of its own, one printed line) picks the split that validates."""
    from ferzoo.cli import main

    make_raf(tmp_path / "basic")
    out = tmp_path / "run"
    assert main(["train", "deep_emotion", "--dataset", "rafdb", "--data-dir", str(tmp_path / "basic"), "--epochs",
                 "1", "--batch-size", "7", "--output", str(out)]) == 0
    card = ferzoo.weights.read_card(out / "deep_emotion.weights.h5")
    assert card["metrics"]["split"] == "test" and card["metrics"]["num_examples"] == 7
