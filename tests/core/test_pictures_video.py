"""Pictures, video, live input and images in memory: label placement on annotated photos, faces numbered in
reading order, `ferzoo explain`'s pictures, annotated videos, `ferzoo predict --stream`, `ferzoo.detect` and
the model kept loaded between calls. Faces are the bundled public-domain photo (ferzoo.demo_image)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ferzoo
from ferzoo import faces as F
from ferzoo import plots
from ferzoo import predict as P
from ferzoo import weights as W
from ferzoo.cli import main


def quiet(_line):
    pass


@pytest.fixture(scope="module")
def model():
    return P.load_model(None, None, say=quiet)


@pytest.fixture(scope="module")
def detector():
    return F.FaceDetector()


def inside(rect, size):
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= size[0] and rect[3] <= size[1]


def gap(a, b):
    """Distance between two rectangles (0 when they touch or overlap), written out independently of plots."""
    dx = max(0, b[0] - a[2], a[0] - b[2])
    dy = max(0, b[1] - a[3], a[1] - b[3])
    return (dx ** 2 + dy ** 2) ** 0.5


def check_labels(boxes, sizes, size, strict=True):
    labels = plots.place_labels(boxes, sizes, size, gap=2)
    for i, (rect, (w, h)) in enumerate(zip(labels, sizes)):
        assert (rect[2] - rect[0], rect[3] - rect[1]) == (w, h)
        assert inside(rect, size), (i, rect, size)
        own = gap(rect, boxes[i])
        for j, other in enumerate(boxes):
            if j != i:
                assert (own < gap(rect, other)) if strict else (own <= gap(rect, other)), (i, j, rect)
    return labels


def grid_boxes(cols=4, rows=2, side=110, space=4, offset=4):
    return [(offset + c * (side + space), offset + r * (side + space), offset + c * (side + space) + side,
             offset + r * (side + space) + side) for r in range(rows) for c in range(cols)]


# -- labels ---------------------------------------------------------------------------------------------------
def test_labels_stay_inside_the_picture_whatever_the_box():
    label = (72, 18)
    # the README's demo: the box starts 11 px from the top, too near for a label above it
    rect, = check_labels([(35, 11, 119, 120)], [label], (120, 120))
    assert rect[1] >= 0 and rect[3] <= 120
    for box in [(0, 0, 120, 120), (0, 0, 30, 30), (90, 90, 120, 120), (100, 0, 120, 120), (0, 100, 120, 120),
                (40, 40, 41, 41)]:
        check_labels([box], [label], (120, 120))
    # a label as wide as the picture
    assert check_labels([(10, 10, 50, 50)], [(120, 18)], (120, 120))[0][0] == 0


def test_labels_sit_nearer_their_own_box_than_any_other_on_a_grid_of_eight():
    """A 4 x 2 grid with 4 px between faces: a top-row label below its box would be read as the label of the face
    under it. Each label is nearer its own box, by more than twice its distance plus the gap."""
    boxes = grid_boxes()
    size = (4 * 114 + 4, 2 * 114 + 4)
    labels = check_labels(boxes, [(72, 18)] * 8, size)
    for i, (rect, box) in enumerate(zip(labels, boxes)):
        others = min(gap(rect, b) for j, b in enumerate(boxes) if j != i)
        assert others > 2 * gap(rect, box)
    for i in range(4):  # the top row's labels are not below their boxes, between the rows
        assert (labels[i][1] + labels[i][3]) / 2 < boxes[i][3]
    assert not any(plots._overlap(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])


def test_labels_on_random_layouts_are_inside_and_never_nearer_another_box():
    rng = np.random.default_rng(0)
    for _ in range(300):
        W, H = int(rng.integers(60, 400)), int(rng.integers(60, 400))
        boxes = []
        for _ in range(int(rng.integers(1, 9))):
            w, h = int(rng.integers(8, 120)), int(rng.integers(8, 120))
            x, y = int(rng.integers(0, max(1, W - w))), int(rng.integers(0, max(1, H - h)))
            box = (x, y, min(W, x + w), min(H, y + h))
            if all(gap(box, b) >= 2 for b in boxes):
                boxes.append(box)
        sizes = [(int(rng.integers(20, min(W, 100))), int(rng.integers(10, min(H, 24)))) for _ in boxes]
        check_labels(boxes, sizes, (W, H), strict=False)


def test_faces_are_numbered_in_reading_order():
    def face(x, y, side=40.0):
        return F.Face((x, y, side, side), 0.99)

    layout = [face(10, 12), face(60, 5), face(110, 15), face(15, 70), face(62, 64), face(108, 75), face(30, 140)]
    shuffled = [layout[i] for i in (5, 2, 0, 6, 3, 1, 4)]  # e.g. the detector's order, best first
    assert F.reading_order(shuffled) == layout
    # two faces of very different heights in one row: the centres decide, within half the smaller height
    assert F.reading_order([face(100, 0, 80), face(0, 30, 30)]) == [face(0, 30, 30), face(100, 0, 80)]
    assert F.reading_order([face(100, 0, 20), face(0, 40, 20)]) == [face(100, 0, 20), face(0, 40, 20)]


def grid_photo(space=4, cols=4, rows=2):
    face = ferzoo.demo_image()
    h, w = face.shape[:2]
    canvas = np.full((rows * h + (rows + 1) * space, cols * w + (cols + 1) * space, 3), 90, np.uint8)
    for r in range(rows):
        for c in range(cols):
            y, x = space + r * (h + space), space + c * (w + space)
            canvas[y:y + h, x:x + w] = face if (r + c) % 2 == 0 else face[:, ::-1]
    return canvas


def test_an_annotated_grid_of_eight_faces(tmp_path, model, detector):
    photo = tmp_path / "grid.png"
    Image.fromarray(grid_photo()).save(photo)
    records = P.predict_files(photo, model=model, detector=detector, annotate=tmp_path / "ann", say=quiet)
    assert [r["face"] for r in records] == list(range(8)) and all(r["status"] == "ok" for r in records)
    centres = [(r["box"][0] + r["box"][2] / 2, r["box"][1] + r["box"][3] / 2) for r in records]
    assert all(cy < 130 for _, cy in centres[:4]) and all(cy > 130 for _, cy in centres[4:])
    assert [cx for cx, _ in centres[:4]] == sorted(cx for cx, _ in centres[:4])
    assert [cx for cx, _ in centres[4:]] == sorted(cx for cx, _ in centres[4:])
    drawn = np.asarray(Image.open(tmp_path / "ann" / "grid.png"))
    size = (drawn.shape[1], drawn.shape[0])
    marks = [{"box": r["box"], "text": f"{r['class']} {r['probabilities'][r['class']]:.2f}", "face": r["face"]}
             for r in records]
    layout = plots.label_layout(size, marks)
    boxes = layout["boxes"]
    for i, rect in enumerate(layout["labels"]):
        assert inside(rect, size)
        assert all(gap(rect, boxes[i]) < gap(rect, b) for j, b in enumerate(boxes) if j != i)
        colour = plots.FACE_COLOURS[i % len(plots.FACE_COLOURS)]
        assert drawn[rect[1] + 1, rect[0] + 1].tolist() == list(colour)  # the label is drawn where laid out


def test_the_readme_demo_annotation_has_its_label_inside(tmp_path, model, detector):
    records = P.predict_files(ferzoo.demo_image(path_only=True), model=model, detector=detector,
                              annotate=tmp_path, say=quiet)
    drawn = np.asarray(Image.open(tmp_path / "astronaut_face.png"))
    r = records[0]
    layout = plots.label_layout((drawn.shape[1], drawn.shape[0]),
                                [{"box": r["box"], "text": f"happy {r['probabilities']['happy']:.2f}", "face": 0}])
    rect = layout["labels"][0]
    assert inside(rect, (drawn.shape[1], drawn.shape[0]))
    patch = drawn[rect[1]:rect[3], rect[0]:rect[2]].reshape(-1, 3)
    assert (patch == plots.FACE_COLOURS[0]).all(axis=1).mean() > 0.5  # the label's background
    assert (patch == 0).all(axis=1).sum() > 10  # and its black text


# -- explain --------------------------------------------------------------------------------------------------
def test_explain_leads_with_a_method_that_localises_and_draws_what_the_model_sees(tmp_path, model, detector,
                                                                                   monkeypatch):
    from ferzoo.explain import LOCALISING, caption, default_methods

    assert default_methods("daf_cnn_compact") == ["saliency", "spatial_attention"]
    assert default_methods("deep_emotion") == ["occlusion"]
    assert "same for every class" in caption("daf_cnn_compact", "spatial_attention", "happy")
    assert "happy" in caption("daf_cnn_compact", "saliency", "happy")
    assert LOCALISING[0] == "occlusion"
    seen = []
    real = P.explain_panel

    def spy(picture, heat, label, method, text, **kw):
        seen.append((picture.copy(), method, text))
        return real(picture, heat, label, method, text, **kw)

    monkeypatch.setattr(P, "explain_panel", spy)
    lines = []
    records = P.explain_files(ferzoo.demo_image(path_only=True), model=model, detector=detector,
                              output=tmp_path, size=128, say=lines.append)
    assert [m for _, m, _ in seen] == ["saliency", "spatial_attention"]
    assert any("methods: saliency, spatial_attention" in line for line in lines)
    for picture, _, _ in seen:  # a gray model sees a gray face
        assert picture.shape == (128, 128, 3)
        assert (picture[..., 0] == picture[..., 1]).all() and (picture[..., 1] == picture[..., 2]).all()
    rec = records[0]
    sheet = np.asarray(Image.open(rec["explanation"]))
    panels = [np.asarray(Image.open(rec["explanations"][m])) for m in ("saliency", "spatial_attention")]
    assert panels[0].shape == panels[1].shape and sheet.shape[0] == panels[0].shape[0]
    assert sheet.shape[1] > 2 * 128 and np.array_equal(sheet[:, :128], panels[0])
    # the colour scale under the face: blue on the left, red on the right
    rows = panels[0].astype(int)
    scale = [y for y in range(rows.shape[0] - 40, rows.shape[0])
             if rows[y, 6, 2] > rows[y, 6, 0] + 10 and rows[y, -8, 0] > rows[y, -8, 2] + 40]
    assert len(scale) >= 4, scale
    assert panels[0].shape[0] > 128 + 40  # title, caption, face, scale


def test_model_view_is_gray_for_one_channel():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    gray = P.model_view(rgb, 1)
    assert gray.shape == (4, 4, 3) and (gray == round(0.299 * 200)).all()
    assert P.model_view(rgb, 3) is rgb


# -- video ----------------------------------------------------------------------------------------------------
def write_clip(path, frames=9, fourcc="MJPG"):
    """``frames`` frames of 200 x 200 at 10 fps: the face in frames 0-2 and 6-8, moving right 8 px a frame;
    frames 3-5 empty."""
    import cv2

    face = ferzoo.demo_image()[..., ::-1]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (200, 200))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((200, 200, 3), 100, np.uint8)
        if i < 3 or i >= 6:
            x = 10 + 8 * (i % 6)
            frame[40:160, x:x + 120] = face
        writer.write(frame)
    writer.release()
    return path


def read_frames(path):
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame[..., ::-1])
    cap.release()
    return out


def test_annotate_writes_a_video_with_labels_held_between_sampled_frames(tmp_path, model, detector):
    clip = write_clip(tmp_path / "clip.avi")
    odd = tmp_path / "odd.ogv"  # an ending OpenCV reads but cannot write here: the annotation is an MP4
    odd.write_bytes(clip.read_bytes())
    lines = []
    records = P.predict_files([clip, odd], model=model, detector=detector, every=3, annotate=tmp_path / "ann",
                              say=lines.append)
    assert [(Path(r["file"]).name, r["frame"], r["status"]) for r in records] == [
        (name, f, s) for name in ("clip.avi", "odd.ogv") for f, s in ((0, "ok"), (3, "no face (blank image)"),
                                                                     (6, "ok"))]
    written = sorted(p.name for p in (tmp_path / "ann").iterdir())
    assert written == ["clip.avi", "odd.mp4"]
    assert any("odd.ogv: OpenCV cannot write .ogv; the annotated video is odd.mp4" in line for line in lines)
    original = read_frames(clip)
    for name in written:
        frames = read_frames(tmp_path / "ann" / name)
        assert len(frames) == 9 and frames[0].shape == (200, 200, 3)
        red = [int(((f.astype(int) - (255, 64, 64)) ** 2).sum(-1).__lt__(40 ** 2).sum()) for f in frames]
        assert all(red[i] > 100 for i in (0, 1, 2, 6, 7, 8)), red  # frame 0's and 6's labels, held two frames
        assert all(red[i] < 20 for i in (3, 4, 5)), red  # frame 3 had no face: nothing is drawn until frame 6
        x, y, w, h = records[0]["box"]
        for i in (0, 1, 2):  # frame 0's box, held: its left edge is where frame 0's face was
            edge = frames[i][y + h // 2, x].astype(int)
            assert edge[0] > 180 and edge[1] < 130, (i, edge)
        assert np.abs(frames[4].astype(int) - original[4].astype(int)).mean() < 4


# -- live input -----------------------------------------------------------------------------------------------
def test_stream_writes_json_lines_as_frames_arrive(tmp_path, capsys, monkeypatch):
    import cv2

    clip = write_clip(tmp_path / "clip.avi")
    assert main(["predict", "--stream", str(clip), "--every", "3", "--quiet"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    assert [(r["frame"], r["face"], r["status"]) for r in rows] == [(0, 0, "ok"), (3, None, "no face (blank image)"),
                                                                   (6, 0, "ok")]
    assert rows[0]["class"] == "happy" and rows[0]["file"] == str(clip)
    assert set(rows[0]) >= {"file", "frame", "face", "box", "class", "probabilities", "status", "face_confidence"}
    assert "3 sampled frame(s), 2 face(s)" in out.err

    grabs = []
    real = cv2.VideoCapture

    class Counting:  # a wrapper (a subclass of cv2.VideoCapture crashed the garbage collector)
        def __init__(self, *args):
            self.cap = real(*args)

        def grab(self):
            grabs.append(1)
            return self.cap.grab()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    monkeypatch.setattr(cv2, "VideoCapture", Counting)
    records = P.stream(str(clip), every=3, say=quiet, cache=True)
    first = next(records)
    assert first["frame"] == 0 and len(grabs) == 1  # the first frame's record comes before the next is read
    records.close()


def test_stream_stops_cleanly_on_ctrl_c_and_reports_a_source_it_cannot_open(tmp_path, capsys, monkeypatch):
    def interrupted(source, **_):
        yield {"file": source, "frame": 0, "face": 0, "status": "ok"}
        raise KeyboardInterrupt

    monkeypatch.setattr(P, "stream", interrupted)
    assert main(["predict", "--stream", "0", "--quiet"]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 1 and "stopped (Ctrl-C)" in out.err and "Traceback" not in out.err
    monkeypatch.undo()
    assert main(["predict", "--stream", str(tmp_path / "missing.avi"), "--quiet"]) == 1
    out = capsys.readouterr()
    assert "unreadable stream: OpenCV cannot open" in out.err and out.out == ""
    assert main(["predict", "--stream", "0", "--demo"]) == 2
    assert "--stream" in capsys.readouterr().err
    assert main(["predict", "--stream", "0", "--annotate", str(tmp_path / "a")]) == 2
    assert "--annotate: not with --stream" in capsys.readouterr().err


# -- Python: images in memory, the model kept loaded ----------------------------------------------------------
def test_detect_takes_images_in_memory_and_keeps_the_model_loaded(monkeypatch):
    loads = []
    real = ferzoo.load

    def counting(name, weights=None, **kw):
        loads.append((name, weights))
        return real(name, weights=weights, **kw)

    monkeypatch.setattr(ferzoo, "load", counting)
    P.clear_cache()
    path = ferzoo.demo_image(path_only=True)
    photo = ferzoo.demo_image()
    first = ferzoo.detect(photo, say=quiet)
    assert len(loads) == 1
    again = ferzoo.detect([photo, Image.fromarray(photo)], say=quiet)
    from_files = ferzoo.predict_files([path], say=quiet, progress=False)
    assert len(loads) == 1  # the default stayed loaded, for detect and predict_files alike

    def same(a, b):  # two images detected in one batch may differ from one alone in the sixth decimal
        keys = set(a) - {"file"}
        if keys != set(b) - {"file"} or any(a[k] != b[k] for k in ("frame", "face", "box", "class", "status")):
            return False
        return (np.allclose([a["probabilities"][n] for n in a["probabilities"]],
                            [b["probabilities"][n] for n in a["probabilities"]], atol=1e-4)
                and abs(a["face_confidence"] - b["face_confidence"]) < 1e-4)

    assert first[0]["file"] == "<image 0>" and [r["file"] for r in again] == ["<image 0>", "<image 1>"]
    assert same(first[0], from_files[0]) and same(again[1], from_files[0]) and first[0]["status"] == "ok"
    # gray, RGBA and 0..1 floats are converted; a batch is several images; a bad array is a record, not an error
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    rgba = np.concatenate([photo, np.full(photo.shape[:2] + (1,), 255, np.uint8)], -1)
    mixed = ferzoo.detect([gray, rgba, photo.astype(np.float32) / 255.0, np.zeros((3, 3, 7))], say=quiet)
    assert [r["class"] for r in mixed[:3]] == ["happy"] * 3
    assert same(mixed[1], first[0])
    assert mixed[3]["status"].startswith("not an image: an array of shape (3, 3, 7)")
    assert [r["file"] for r in ferzoo.detect(np.stack([photo, photo]), say=quiet)] == ["<image 0>", "<image 1>"]
    mixed_inputs = ferzoo.predict_files([path, photo], say=quiet, progress=False)
    assert [r["file"] for r in mixed_inputs] == [str(path), "<image 1>"]
    assert len(loads) == 1
    # a named model is loaded once too, beside the default
    ferzoo.detect(photo, model="deep_emotion", weights="fer2013", say=quiet)
    ferzoo.detect(photo, model="deep_emotion", weights="fer2013", say=quiet)
    ferzoo.detect(photo, say=quiet)
    assert loads == [(W.DEFAULT_MODEL, W.DEFAULT_WEIGHTS), ("deep_emotion", "fer2013")]
    with pytest.raises(ValueError, match="not a numpy array or PIL image"):
        ferzoo.detect([str(path)])
    P.clear_cache()


def test_the_readme_quick_example_trains_enough_to_learn():
    """The README's quick training example once stopped after 3 epochs, and its model answered 1/7 for every
    class; every synthetic training line there runs at least the recipe's 12 epochs, or says it will not learn."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("ferzoo train deep_emotion --dataset synthetic")]
    assert lines
    for line in lines:
        epochs = re.search(r"--epochs (\d+)", line)
        assert epochs is None or int(epochs.group(1)) >= 12 or "will not learn" in line, line
