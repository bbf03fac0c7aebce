"""CK+, JAFFE, FERG-DB, MMI, Oulu-CASIA in their released layouts; subject-independent folds."""

import numpy as np
import pytest
from fakes import CANON, check_names, class_of, face, save
from PIL import Image

import ferzoo
from ferzoo.data.folds import subject_folds
from ferzoo.data.source import DataError

CK = ["neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]  # Emotion file ids 0..7


def make_ck_original(root, subjects=6):
    for s in range(subjects):
        subj = f"S{100 + s:03d}"
        for q in range(3):
            seq = f"{q + 1:03d}"
            emotion = (s * 3 + q) % 7 + 1
            labelled = not (s == 0 and q == 2)  # one unlabelled sequence, as in CK+
            for fr in range(1, 7):
                name = CK[emotion] if fr > 3 else "neutral"
                img = face(name, (49, 64), 1, fr)
                if s == 1 and q == 0:
                    img = np.repeat(img, 3, axis=-1)  # a few CK+ sequences are RGB
                save(root / "cohn-kanade-images" / subj / seq / f"{subj}_{seq}_{fr:08d}.png", img)
            if labelled:
                d = root / "Emotion" / subj / seq
                d.mkdir(parents=True, exist_ok=True)
                (d / f"{subj}_{seq}_{6:08d}_emotion.txt").write_text(f"   {emotion:.7e}\n")
        (root / "Landmarks" / subj).mkdir(parents=True, exist_ok=True)


def test_ckplus_original(tmp_path):
    make_ck_original(tmp_path)
    ds = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path))
    assert len(ds.labels) == 17 * 3  # 17 labelled sequences x the last 3 frames
    assert ds.class_names == ["angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"]
    assert check_names(ds) == 51
    assert next(ds.as_numpy_iterator())[0].shape == (49, 64, 1)
    ds = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), last_frames=1, neutral_frames=1, contempt=False)
    assert "neutral" in ds.class_names and "contempt" not in ds.class_names
    assert ds.info["excluded_sequences"]["contempt"] >= 1
    check_names(ds)
    # subject-independent folds: test subjects never appear in train
    tr = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split="train", folds=3, fold=1)
    te = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split="test", folds=3, fold=1)
    assert set(tr.subjects).isdisjoint(te.subjects) and len(tr.labels) + len(te.labels) == 51
    with pytest.raises(DataError, match="no val split unless val_folds"):
        ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split="val", folds=3)
    va = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), split="val", folds=3, fold=1, val_folds=1)
    assert set(va.subjects).isdisjoint(te.subjects)


def test_ckplus_errors(tmp_path):
    make_ck_original(tmp_path, subjects=2)
    bad = tmp_path / "Emotion" / "S100" / "001" / "S100_001_00000006_emotion.txt"
    bad.write_text("   9.0000000e+00\n")
    with pytest.raises(DataError, match=r"S100_001_00000006_emotion.txt:1: emotion .* out of range 0..7"):
        ferzoo.get_dataset("ckplus", data_dir=str(tmp_path))


def test_ckplus48(tmp_path):
    folders = {"anger": "angry", "contempt": "contempt", "disgust": "disgust", "fear": "fear", "happy": "happy",
               "sadness": "sad", "surprise": "surprise"}
    for k, (folder, name) in enumerate(folders.items()):
        for s in range(3):
            for fr in (15, 16, 17):
                save(tmp_path / "CK+48" / folder / f"S{10 + s:03d}_{k + 1:03d}_{fr:08d}.png", face(name, seed=fr))
    ds = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path))
    assert len(ds.labels) == 63 and check_names(ds) == 63
    assert len(ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), last_frames=1).labels) == 21
    ds = ferzoo.get_dataset("ckplus", data_dir=str(tmp_path), contempt=False, split="test", folds=3, fold=0)
    assert set(ds.subjects) == {ds.subjects[0]} and "contempt" not in ds.class_names


JAFFE_SUBJECTS = ["KA", "KL", "KM", "KR", "MK", "NA", "NM", "TM", "UY", "YM"]
CODES = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral", "SA": "sad", "SU": "surprise"}


def save_palette_tiff(path, gray: np.ndarray):
    """An 8-bit palette TIFF whose palette is *reversed* (index i shows gray 255 - i), as a check that
    readers go through the palette instead of taking the raw indices."""
    im = Image.fromarray((255 - gray[..., 0]).astype(np.uint8), "P")
    im.putpalette([v for i in range(256) for v in (255 - i,) * 3])
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, format="TIFF")


def test_jaffe_palette_tiffs_and_folds(tmp_path):
    k = 0
    for s in JAFFE_SUBJECTS:
        for code, name in CODES.items():
            k += 1
            save_palette_tiff(tmp_path / "jaffe" / f"{s}.{code}{1}.{k}.tiff", face(name, (64, 64), 1, k))
    (tmp_path / "jaffe" / "README").write_text("JAFFE")
    assert Image.open(tmp_path / "jaffe" / "KA.AN1.1.tiff").mode == "P"
    ds = ferzoo.get_dataset("jaffe", data_dir=str(tmp_path))
    assert ds.class_names == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert check_names(ds) == 70
    te = ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), split="test", fold=3)
    assert len(set(te.subjects)) == 1 and len(te.labels) == 7  # leave one subject out
    tr = ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), split="train", fold=3)
    assert len(tr.labels) == 63 and te.subjects[0] not in tr.subjects
    rnd = {s: ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), split=s, protocol="random", test_per_class=2,
                                 val_size=7, split_seed=5) for s in ("train", "val", "test")}
    assert [len(rnd[s].labels) for s in ("train", "val", "test")] == [49, 7, 14]
    assert np.bincount(rnd["test"].labels).tolist() == [2] * 7
    assert not set(rnd["test"].files) & set(rnd["train"].files)
    corrupt = tmp_path / "jaffe" / "KA.AN1.1.tiff"
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated TIFF: the error names the file
    with pytest.raises(Exception, match="KA.AN1.1.tiff"):
        list(ferzoo.get_dataset("jaffe", data_dir=str(tmp_path)).as_numpy_iterator())
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        ds = ferzoo.get_dataset("jaffe", data_dir=str(tmp_path), on_error="skip")
    assert len(ds.labels) == 69 and ds.skipped[0][0].endswith("KA.AN1.1.tiff")
    (tmp_path / "jaffe" / "KA.XX1.99.tiff").write_bytes(b"II*\x00")
    with pytest.raises(DataError, match=r"KA.XX1.99.tiff: unknown expression code 'XX'"):
        ferzoo.get_dataset("jaffe", data_dir=str(tmp_path))


def test_subject_folds_reproducible():
    subjects = [f"S{i % 13}" for i in range(100)]
    a, b = subject_folds(subjects, 5, seed=1), subject_folds(subjects, 5, seed=1)
    assert (a == b).all() and set(a) == set(range(5))
    assert not (a == subject_folds(subjects, 5, seed=2)).all()
    for s in set(subjects):  # one fold per subject
        assert len({f for f, t in zip(a, subjects) if t == s}) == 1


FERG_EXPR = {"anger": "angry", "disgust": "disgust", "fear": "fear", "joy": "happy", "neutral": "neutral",
             "sadness": "sad", "surprise": "surprise"}


def test_ferg(tmp_path):
    for ch in ("aia", "bonnie", "jules"):
        for expr, name in FERG_EXPR.items():
            for i in range(1, 5):
                rgba = np.concatenate([face(name, (32, 32), 3, i), np.full((32, 32, 1), 255, np.uint8)], -1)
                save(tmp_path / "FERG_DB_256" / ch / f"{ch}_{expr}" / f"{ch}_{expr}_{i}.png", rgba)
    assert Image.open(tmp_path / "FERG_DB_256" / "aia" / "aia_joy" / "aia_joy_1.png").mode == "RGBA"
    ds = ferzoo.get_dataset("ferg", data_dir=str(tmp_path), test_per_class=2, val_size=14)
    assert len(ds.labels) == 84 and check_names(ds) == 84
    assert next(ds.as_numpy_iterator())[0].shape == (32, 32, 3)
    sizes = [len(ferzoo.get_dataset("ferg", data_dir=str(tmp_path), split=s, test_per_class=2, val_size=14).labels)
             for s in ("train", "val", "test")]
    assert sizes == [56, 14, 14]
    gray = ferzoo.get_dataset("ferg", data_dir=str(tmp_path), split="test", test_per_class=2, val_size=14,
                              color="grayscale")
    assert next(gray.as_numpy_iterator())[0].shape == (32, 32, 1)
    te = ferzoo.get_dataset("ferg", data_dir=str(tmp_path), split="test", protocol="kfold", folds=3, fold=0)
    assert len(set(te.subjects)) == 1


MMI_EMO = ["angry", "disgust", "fear", "happy", "sad", "surprise"]  # Emotion metatag 1..6


def make_mmi(root):
    sid = 0
    for subject in (1, 2, 3, 5):
        for emotion in range(1, 7):
            sid += 1
            d = root / "Sessions" / str(sid)
            n = 9
            for fr in range(n):
                name = MMI_EMO[emotion - 1] if 3 <= fr <= 5 else "neutral"
                save(d / f"S{subject:03d}-{emotion:03d}-{fr:03d}.jpg", face(name, (40, 36), 3, fr), quality=95)
            (d / "session.xml").write_text(
                f'<?xml version="1.0" encoding="utf-8"?>\n<session sessionId="{sid}" subjectId="{subject}" '
                f'filename="S{subject:03d}-{emotion:03d}.avi">\n  <Metatag Name="Emotion" Value="{emotion}" />\n'
                f'  <Metatag Name="Gender" Value="1" />\n</session>\n')
    d = root / "Sessions" / str(sid + 1)  # an AU-only session without an Emotion label
    save(d / "S001-100-000.jpg", face("neutral", (40, 36), 3))
    (d / "session.xml").write_text('<session sessionId="99" subjectId="1"><Metatag Name="Gender" Value="1"/></session>')


def test_mmi(tmp_path):
    make_mmi(tmp_path)
    ds = ferzoo.get_dataset("mmi", data_dir=str(tmp_path))
    assert ds.class_names == MMI_EMO and len(ds.labels) == 24 * 3
    assert ds.info["unlabelled_sessions"] == 1
    assert check_names(ds) == 72  # the 3 middle (apex) frames
    ds = ferzoo.get_dataset("mmi", data_dir=str(tmp_path), peak_frames=1, neutral_frames=1, split="test", folds=4)
    assert "neutral" in ds.class_names and len(set(ds.subjects)) == 1
    check_names(ds)
    bad = tmp_path / "Sessions" / "3" / "session.xml"
    bad.write_text(bad.read_text().replace('Value="3"', 'Value="9"'))
    with pytest.raises(DataError, match=r"Sessions/3/session.xml: Emotion 9 is out of range 1..6"):
        ferzoo.get_dataset("mmi", data_dir=str(tmp_path))
    ds = ferzoo.get_dataset("mmi", data_dir=str(tmp_path), unknown_emotion="skip")
    assert ds.info["skipped_unknown_emotion"] == ["3"]


OULU = ["Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise"]


def test_oulu_casia(tmp_path):
    for light in ("Strong", "Weak"):
        for p in range(1, 5):
            for expr in OULU:
                name = {"Anger": "angry", "Happiness": "happy", "Sadness": "sad"}.get(expr, expr.lower())
                for fr in range(8):
                    img = face(name if fr >= 4 else "neutral", (48, 64), 3, fr)
                    save(tmp_path / "OriginalImg" / "VL" / light / f"P{p:03d}" / expr / f"{fr:03d}.jpeg", img,
                         fmt="JPEG", quality=95)
    ds = ferzoo.get_dataset("oulu_casia", data_dir=str(tmp_path))
    assert ds.class_names == ["angry", "disgust", "fear", "happy", "sad", "surprise"]
    assert len(ds.labels) == 4 * 6 * 3 and check_names(ds) == 72
    ds = ferzoo.get_dataset("oulu_casia", data_dir=str(tmp_path), illumination="Weak", last_frames=1,
                            neutral_frames=1, split="train", folds=4, fold=2)
    assert len(ds.labels) == 3 * 6 * 2 and "neutral" in ds.class_names
    check_names(ds)
    with pytest.raises(DataError, match="no Dark/ folder"):
        ferzoo.get_dataset("oulu_casia", data_dir=str(tmp_path), illumination="Dark")
    assert class_of(face("contempt")) == "contempt" and CANON[-1] == "contempt"
