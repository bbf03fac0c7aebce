"""From a photo to an answer: reading every kind of file, detection, alignment, the crop rule, records, video,
and the `ferzoo predict` command. Photos are built from the bundled public-domain face (ferzoo.demo_image)."""

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

import ferzoo
from ferzoo import faces as F
from ferzoo import predict as P
from ferzoo.cli import main
from ferzoo.weights import DEFAULT_MODEL, DEFAULT_WEIGHTS


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def model():
    return P.load_model(None, None, say=quiet)  # the embedded default


@pytest.fixture(scope="module")
def detector():
    return F.FaceDetector()


def background(size, seed=0):
    """A smooth, face-free backdrop (gradients plus a little noise)."""
    yy, xx = np.mgrid[0:size, 0:size] / max(1, size - 1)
    base = np.stack([60 + 120 * xx, 90 + 60 * yy, 140 - 60 * xx * yy], -1)
    noise = np.random.default_rng(seed).normal(0, 3, base.shape)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def face_photo(size=240, scale=1.0):
    face = ferzoo.demo_image()
    if scale != 1.0:
        face = np.asarray(Image.fromarray(face).resize((round(120 * scale),) * 2, Image.BICUBIC))
    canvas = background(size)
    off = (size - face.shape[0]) // 2
    canvas[off:off + face.shape[0], off:off + face.shape[1]] = face
    return canvas


def save(array, path, **kw):
    Image.fromarray(array).save(path, **kw)
    return str(path)


def by_file(records):
    out = {}
    for r in records:
        out.setdefault(os.path.basename(r["file"]), []).append(r)
    return out


# -- reading files ------------------------------------------------------------------------------------------
def test_conversions_scale_and_composite_correctly():
    gray16 = np.array([[0, 32896, 65535]], np.uint16)
    rgb = F.to_rgb8(Image.fromarray(gray16))
    assert rgb.shape == (1, 3, 3) and rgb[0, :, 0].tolist() == [0, 128, 255]  # scaled, not clipped to white
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    out = F.to_rgb8(Image.fromarray(rgba, "RGBA"))
    assert out[0, 0].tolist() == [10, 20, 30] and out[1, 1].tolist() == [255, 255, 255]  # transparent: white
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    assert F.to_rgb8(pal).tolist() == [[[255, 255, 255], [200, 0, 0]]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 0, 0))
    assert F.to_rgb8(cmyk)[0, 0].tolist() == [255, 0, 255]
    floats = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    assert F.to_rgb8(floats)[0, :, 1].tolist() == [0, 128, 255]


def test_read_image_reduces_and_reports_the_full_size(tmp_path, monkeypatch):
    path = save(face_photo(480, 2.0), tmp_path / "big.png")
    monkeypatch.setattr(F, "WORK_MAX_SIDE", 200)
    image, full = F.read_image_sized(path)
    assert image.shape == (200, 200, 3) and full == (480, 480)
    exif_path = tmp_path / "rotated.jpg"
    im = Image.fromarray(face_photo(240)[:, :200]).rotate(90, expand=True)  # stored lying on its side
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    im.save(exif_path, exif=exif)
    upright, size = F.read_image_sized(exif_path, max_side=None)
    assert upright.shape == (240, 200, 3) and size == (200, 240)


def test_huge_images_never_hit_the_decompression_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # Pillow refuses > 40,000 pixels now
    monkeypatch.setattr(F, "WORK_MAX_SIDE", 100)
    png = save(background(300), tmp_path / "huge.png")
    with pytest.raises(F.InputProblem, match=r"too large: 300x300 pixels \(more than 40,000"):
        F.read_image(png)
    jpg = save(face_photo(600, 2.0), tmp_path / "huge.jpg", quality=90)
    image, full = F.read_image_sized(jpg)  # decoded at 1/4 scale (draft mode), then reduced
    assert max(image.shape[:2]) == 100 and full == (600, 600)


def test_every_bad_input_gets_a_status_and_the_batch_goes_on(tmp_path, model, detector, capsys):
    d = tmp_path / "in"
    d.mkdir()
    photo = face_photo()
    im = Image.fromarray(photo)
    (d / "empty.jpg").write_bytes(b"")
    (d / "notes.jpg").write_text("not a picture")
    im.save(d / "whole.jpg")
    data = (d / "whole.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    os.symlink(tmp_path / "nowhere.png", d / "broken.png")
    im.convert("L").save(d / "gray.png")
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(d / "gray16.png")
    import cv2

    cv2.imwrite(str(d / "rgb16.png"), photo[..., ::-1].astype(np.uint16) * 257)
    im.convert("CMYK").save(d / "cmyk.jpg")
    im.convert("P", palette=Image.ADAPTIVE).save(d / "palette.png")
    save(background(240, seed=3), d / "noface.png")
    save(np.zeros((1, 1, 3), np.uint8), d / "one_pixel.png")
    save(np.full((900, 1200, 3), 200, np.uint8), d / "blank.png")
    (d / "broken.mp4").write_bytes(b"\0" * 512)
    (d / "readme.txt").write_text("skipped: no image ending")
    (d / "sub").mkdir()
    (d / "empty_folder").mkdir()
    lines = []
    records = P.predict_files([d, d / "empty_folder", tmp_path / "missing.png"], model=model, detector=detector,
                              say=lines.append)  # a folder named as an input gets a row; empty subfolders do not
    got = by_file(records)
    status = {name: rows[0]["status"] for name, rows in got.items()}
    assert status["empty.jpg"] == "empty file"
    assert status["notes.jpg"] == "not an image"
    assert status["truncated.jpg"].startswith("unreadable: truncated file")
    assert status["broken.png"] == "broken link"
    assert status["noface.png"] == "no face"
    assert status["one_pixel.png"].startswith("too small: 1x1 pixels")
    assert status["blank.png"] == "no face (blank image)"
    assert status["broken.mp4"].startswith("unreadable video")
    assert status["empty_folder"] == "empty folder" and status["missing.png"] == "not found"
    assert "readme.txt" not in status and any("readme.txt" in l and "skipped 1 file" in l for l in lines)
    converted = ["whole.jpg", "gray.png", "rgba.png", "gray16.png", "rgb16.png", "cmyk.jpg", "palette.png"]
    reference = got["whole.jpg"][0]
    for name in converted:
        rows = got[name]
        assert len(rows) == 1 and rows[0]["status"] == "ok", (name, rows)
        assert rows[0]["class"] == "happy", (name, rows[0]["probabilities"])  # a smiling face, in every format
        assert np.allclose(rows[0]["box"], reference["box"], atol=6), name
    failures = {n for n, s in status.items() if P.failed(s)}
    assert failures == {"empty.jpg", "notes.jpg", "truncated.jpg", "broken.png", "one_pixel.png", "broken.mp4",
                        "empty_folder", "missing.png"}
    # the command: same records, exit code 1 because inputs failed; 0 when every input was ok or had no face
    assert main(["predict", str(d), "--quiet"]) == 1
    out = capsys.readouterr()
    assert f"{d / 'empty.jpg'}: empty file" in out.out and "6 failed" in out.err  # the folder's 6 failures
    assert main(["predict", str(d / "whole.jpg"), str(d / "noface.png"), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "whole.jpg: happy" in out.out and "noface.png: no face" in out.out
    assert f"model: {DEFAULT_MODEL}, weights: {DEFAULT_WEIGHTS} (the default" in out.err


def test_boxes_are_in_the_files_pixels_when_the_photo_is_read_reduced(tmp_path, model, detector, monkeypatch):
    path = save(face_photo(480, 2.0), tmp_path / "big.png")
    full = P.predict_files(path, model=model, detector=detector, say=quiet)[0]
    monkeypatch.setattr(F, "WORK_MAX_SIDE", 240)
    reduced = P.predict_files(path, model=model, detector=detector, say=quiet)[0]
    assert full["status"] == reduced["status"] == "ok"
    assert full["box"][2] > 150  # the face is about 230 px in the file
    assert np.allclose(reduced["box"], full["box"], atol=8)


# -- detection, alignment and the crop rule -------------------------------------------------------------------
def test_align_crop_levels_the_eyes_and_sizes_the_square():
    img = np.zeros((200, 200), np.uint8)
    angle = math.radians(25)
    centre = np.array([100.0, 100.0])
    eyes = [centre + 30 * np.array([-math.cos(angle), -math.sin(angle)]),
            centre + 30 * np.array([math.cos(angle), math.sin(angle)])]
    for x, y in eyes:
        img[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3] = 255
    face = F.Face((50.0, 50.0, 100.0, 100.0), 0.99, {"left_eye": tuple(eyes[0]), "right_eye": tuple(eyes[1])})
    assert math.degrees(face.eye_angle()) == pytest.approx(25, abs=0.01)

    def dots(crop):
        ys, xs = np.nonzero(crop > 100)
        left, right = xs < crop.shape[1] / 2, xs >= crop.shape[1] / 2
        return (ys[left].mean(), xs[left].mean()), (ys[right].mean(), xs[right].mean())

    (ly, lx), (ry, rx) = dots(F.align_crop(img, face, F.FaceCrop(0.0, "eyes"), (100, 100)))
    assert abs(ly - ry) < 1.0 and rx - lx == pytest.approx(60, abs=1.5)  # level, at the photo's scale
    (ly, lx), (ry, rx) = dots(F.align_crop(img, face, F.FaceCrop(0.0, "none"), (100, 100)))
    assert ry - ly == pytest.approx(60 * math.sin(angle), abs=1.5)  # upright crop: still tilted
    (ly, lx), (ry, rx) = dots(F.align_crop(img, face, F.FaceCrop(0.5, "eyes"), (100, 100)))
    assert rx - lx == pytest.approx(30, abs=1.5)  # margin 0.5: the square is twice the box, the eyes half as far


def test_detector_finds_the_tilted_face_and_the_crop_is_level(detector):
    photo = np.asarray(Image.fromarray(face_photo(300)).rotate(20, resample=Image.BICUBIC, fillcolor=(90, 110, 120)))
    faces = detector.detect([photo, background(300, 1), np.zeros((10, 10, 3), np.uint8)])
    assert len(faces[0]) == 1 and faces[1] == [] and faces[2] == []
    face = faces[0][0]
    assert face.confidence > 0.95 and abs(math.degrees(face.eye_angle()) + 20) < 6  # PIL rotates anticlockwise
    crop = F.align_crop(photo, face, F.DEFAULT_CROP, (160, 160))
    again = detector.detect([crop])[0]
    assert len(again) == 1 and abs(math.degrees(again[0].eye_angle())) < 4


def test_the_crop_rule_comes_from_the_card():
    crop, note = F.crop_for_card({"input_spec": {"face_crop": {"margin": 0.2, "align": "none"}}}, "m.t")
    assert crop == F.FaceCrop(0.2, "none", "mtcnn") and note is None
    crop, note = F.crop_for_card({"input_spec": {"face_alignment": "aligned RAF-DB crops"}}, "dan.rafdb")
    assert crop == F.DEFAULT_CROP and "the default" in note and "dan.rafdb" in note and "aligned RAF-DB" in note
    with pytest.raises(ValueError, match=r"input_spec.face_crop: face_crop.margin must be a number in \[-0.3, 1.0\]"):
        F.crop_for_card({"input_spec": {"face_crop": {"margin": 3}}}, "m.t")
    with pytest.raises(ValueError, match=r"unknown keys \['scale'\]"):
        F.FaceCrop.from_dict({"scale": 1})
    with pytest.raises(ValueError, match="face_crop.align must be one of eyes, none"):
        F.FaceCrop(align="nose")


def test_predict_uses_the_cards_crop_and_prints_the_default_when_it_stands_in(tmp_path, model, detector):
    path = save(face_photo(), tmp_path / "face.png")
    card = model.weights_card
    silent = {k: v for k, v in card["input_spec"].items() if k != "face_crop"}  # a card that states no rule
    try:
        model.weights_card = {**card, "input_spec": silent}
        lines = []
        default = P.predict_files(path, model=model, detector=detector, say=lines.append)[0]
        assert any(l.startswith("face crop: mtcnn box, margin 0, eyes level (the default") for l in lines)
        model.weights_card = {**card, "input_spec": {**silent, "face_crop": {"margin": 0.6, "align": "none"}}}
        lines = []
        wide = P.predict_files(path, model=model, detector=detector, say=lines.append)[0]
    finally:
        model.weights_card = card
    assert not any("face crop" in l for l in lines)
    assert wide["box"] == default["box"] and wide["probabilities"] != default["probabilities"]


# -- records, files, annotation, no-detect, video -------------------------------------------------------------
def test_folders_recursively_json_and_csv(tmp_path, model, detector):
    root = tmp_path / "photos"
    (root / "b" / "c").mkdir(parents=True)
    (root / ".hidden").mkdir()
    save(face_photo(), root / "a.png")
    save(face_photo(260), root / "b" / "c" / "deep.jpg", quality=92)
    save(face_photo(), root / ".hidden" / "x.png")
    save(background(200), root / "b" / "plain.png")
    out_json, out_csv = tmp_path / "out.json", tmp_path / "out.csv"
    records = P.predict_files([root], model=model, detector=detector, output=out_json, say=quiet)
    assert [os.path.relpath(r["file"], root) for r in records] == ["a.png", "b/c/deep.jpg", "b/plain.png"]
    assert [r["status"] for r in records] == ["ok", "ok", "no face"]
    assert json.loads(out_json.read_text()) == records
    for r in records:
        assert set(r) == {"file", "frame", "face", "box", "class", "probabilities", "status", "face_confidence"}
    ok = records[0]
    assert ok["frame"] is None and ok["face"] == 0 and len(ok["box"]) == 4 and ok["class"] in model.class_names
    assert set(ok["probabilities"]) == set(model.class_names)
    assert sum(ok["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    P.write_records(records, out_csv, model.class_names)
    header = out_csv.read_text().splitlines()[0].split(",")
    assert header == ["file", "frame", "face", "box", "class"] + [f"p_{n}" for n in model.class_names] + \
        ["status", "face_confidence"]
    assert P.read_records_csv(out_csv) == records
    with pytest.raises(ValueError, match=r"--output .*out.txt: the file must end in .json or .csv"):
        P.predict_files([root], model=model, output=tmp_path / "out.txt", say=quiet)


def test_output_is_atomic_and_a_failed_run_keeps_the_old_file(tmp_path, model, capsys):
    out = tmp_path / "keep.json"
    out.write_text("[]\n")
    assert main(["predict", str(tmp_path), "--model", "deep_emotion", "--weights", "no-such-tag",
                 "--output", str(out)]) == 2
    assert "no weights tagged 'no-such-tag'" in capsys.readouterr().err
    assert out.read_text() == "[]\n" and [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_annotate_draws_boxes_and_labels(tmp_path, model, detector):
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    save(face_photo(), root / "sub" / "face.jpg")
    save(background(100), root / "none.png")
    (root / "bad.png").write_text("x")
    records = P.predict_files([root], model=model, detector=detector, annotate=tmp_path / "ann", say=quiet)
    written = sorted(str(p.relative_to(tmp_path / "ann")) for p in (tmp_path / "ann").rglob("*.png"))
    assert written == ["in/none.png", "in/sub/face.png"]  # no picture for the file that failed
    face = next(r for r in records if r["status"] == "ok")
    drawn = np.asarray(Image.open(tmp_path / "ann" / "in" / "sub" / "face.png"))
    x, y, w, h = face["box"]
    edge = drawn[y + h // 2, x]  # the left edge of the box, in the first face's colour
    assert edge.tolist() == [255, 64, 64]
    assert not np.array_equal(drawn, face_photo())


def test_no_detect_takes_each_image_as_a_face(tmp_path, model):
    class NoDetector:
        batch_size = 8

        def detect(self, images):
            raise AssertionError("--no-detect must not run the detector")

    crops = tmp_path / "crops"
    crops.mkdir()
    face48 = np.asarray(Image.fromarray(ferzoo.demo_image()).convert("L").resize((48, 48), Image.BOX))
    save(face48, crops / "a.png")
    save(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8), crops / "b.png")
    save(np.zeros((4, 4), np.uint8) + 7, crops / "tiny.png")
    records = P.predict_files([crops], model=model, detect=False, detector=NoDetector(), say=quiet)
    st = {os.path.basename(r["file"]): r for r in records}
    assert st["a.png"]["status"] == "ok" and st["a.png"]["box"] == [0, 0, 48, 48]
    assert st["a.png"]["face_confidence"] is None and st["a.png"]["class"] == "happy"
    assert st["b.png"]["status"] == "ok"
    assert st["tiny.png"]["status"].startswith("too small: 4x4 pixels (at least 8x8 for a face crop)")


def test_video_is_sampled_every_nth_frame(tmp_path, model, detector):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (240, 240))
    assert writer.isOpened()
    face = face_photo()[..., ::-1]
    for i in range(12):
        writer.write(face if i % 2 == 0 else np.full_like(face, 128))
    writer.release()
    lines = []
    records = P.predict_files(path, model=model, detector=detector, every=3, say=lines.append)
    assert [r["frame"] for r in records] == [0, 3, 6, 9]
    assert [r["status"] for r in records][0::2] == ["ok", "ok"]
    assert all(r["status"].startswith("no face") for r in records[1::2])
    assert all(r["class"] == "happy" for r in records[0::2])
    assert not any("every" in l for l in lines)
    records = P.predict_files(path, model=model, detector=detector, say=lines.append)
    assert [r["frame"] for r in records] == [0, 10] and any("every 10th frame" in l for l in lines)
    with pytest.raises(ValueError, match="every must be an integer >= 1"):
        P.predict_files(path, model=model, every=0, say=quiet)


# -- the command ----------------------------------------------------------------------------------------------
def test_predict_command_line(tmp_path, capsys):
    photo = save(face_photo(), tmp_path / "face.png")
    assert main(["predict", "deep_emotion", photo]) == 2  # usage errors: exit 2 (tests/core/test_usage_errors.py)
    assert "'deep_emotion' is a model name, not a file: use --model deep_emotion" in capsys.readouterr().err
    assert main(["predict", photo, "--top-k", "8"]) == 2
    assert "--top-k: must be at most 7" in capsys.readouterr().err
    assert main(["predict", photo, "--model", "dan"]) == 2
    assert "--weights: model 'dan' needs weights" in capsys.readouterr().err
    out_csv = tmp_path / "r.csv"
    assert main(["predict", "--demo", photo, "--top-k", "2", "--output", str(out_csv), "--quiet"]) == 0
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0].startswith(f"{photo}: happy") and "(face 0, box " in lines[0]
    assert lines[0].split(": ")[1].split("  (")[0].count(",") == 1  # --top-k 2: two classes
    assert lines[1].startswith(str(ferzoo.demo_image(path_only=True)) + ": happy")  # --demo comes last
    assert f"records written to {out_csv}" in out.err
    assert len(P.read_records_csv(out_csv)) == 2


def test_face_margin_and_align_override_the_cards_crop_on_the_command_line(tmp_path, capsys):
    default_json, wide_json = tmp_path / "default.json", tmp_path / "wide.json"
    assert main(["predict", "--demo", "--output", str(default_json), "--quiet"]) == 0
    assert "--face-margin" not in capsys.readouterr().err
    assert main(["predict", "--demo", "--face-margin", "0.4", "--align", "none", "--output", str(wide_json),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "face crop: mtcnn box, margin 0.4, not rotated (--face-margin / --align; the card's rule: mtcnn box, " \
           "margin 0, eyes level)" in err
    default, wide = (json.loads(p.read_text())[0] for p in (default_json, wide_json))
    assert default["box"] == wide["box"] and default["status"] == wide["status"] == "ok"
    assert default["probabilities"] != wide["probabilities"]  # another crop reached the model
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--demo", "--face-margin", "2"])
    assert exc.value.code == 2
    assert "--face-margin: must be a number in [-0.3, 1.0], got 2" in capsys.readouterr().err
    out = tmp_path / "explain"
    assert main(["explain", "--demo", "--face-margin", "0.1", "--output", str(out), "--quiet"]) == 0
    assert "margin 0.1, eyes level (--face-margin / --align" in capsys.readouterr().err
    assert list(out.glob("*.png"))


def test_min_confidence_drops_the_faces_mtcnn_scores_lower(tmp_path, capsys):
    kept, dropped = tmp_path / "kept.json", tmp_path / "dropped.json"
    assert main(["predict", "--demo", "--output", str(kept), "--quiet"]) == 0
    [face] = json.loads(kept.read_text())
    assert face["status"] == "ok" and F.DEFAULT_MIN_CONFIDENCE <= face["face_confidence"] < 1.0
    higher = (face["face_confidence"] + 1.0) / 2  # the demo face scores below this one
    capsys.readouterr()
    assert main(["predict", "--demo", "--min-confidence", f"{higher:.7f}", "--output", str(dropped), "--quiet"]) == 0
    [record] = json.loads(dropped.read_text())
    assert record["status"] == "no face" and record["box"] is None
    assert ": no face" in capsys.readouterr().out
