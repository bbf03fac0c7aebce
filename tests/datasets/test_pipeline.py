"""Augmentation recipes, samplers, ten-crop evaluation and cross-data-set evaluation by class name."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf
from fakes import face, save

import ferzoo
from ferzoo.data import prepare
from ferzoo.data.augment import apply_sampler, build_augmentation
from ferzoo.data.tencrop import ten_crop

FER = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
RAF = ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]


def test_random_erasing_torchvision_semantics():
    x = tf.fill((200, 40, 50, 3), 100.0)
    aug = build_augmentation({"random_erasing": {"p": 1.0, "scale": [0.02, 0.25], "ratio": [0.3, 3.3],
                                                 "value": [1.0, 2.0, 3.0]}}, (40, 50, 3), seed=0)
    y = aug(x).numpy()
    erased = (y != 100.0)
    frac = erased.all(-1).mean(axis=(1, 2))
    assert (frac > 0).mean() > 0.95  # p = 1: nearly always a rectangle fits within 10 tries
    assert frac.max() <= 0.25 + 0.05 and frac[frac > 0].min() >= 0.02 - 0.01
    assert np.allclose(y[erased.all(-1)], [1.0, 2.0, 3.0])  # the fill is the per-channel value
    for img, e in zip(y, erased.all(-1)):  # one axis-aligned rectangle
        rows, cols = np.flatnonzero(e.any(1)), np.flatnonzero(e.any(0))
        if rows.size:
            assert e[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
    none = build_augmentation({"random_erasing": {"p": 0.0}}, (40, 50, 3), seed=0)
    assert none is not None and np.array_equal(none(x).numpy(), x.numpy())


def test_shear_affine_random_apply_shapes_and_identity():
    x = tf.random.uniform((8, 48, 48, 1), 0, 255, seed=1)
    for spec in ({"shear": 10}, {"shear": {"radians": 0.1}}, {"affine": {"degrees": 20, "translate": [0.2, 0.2],
                                                                          "scale": [0.8, 1.0], "p": 0.7}},
                 {"random_apply": {"p": 0.2, "ops": {"rotation": 20, "crop_padding": 4}}, "flip": True,
                  "random_erasing": True}):
        y = build_augmentation(spec, (48, 48, 1), seed=0)(x)
        assert y.shape == x.shape and float(tf.reduce_min(y)) >= 0 and float(tf.reduce_max(y)) <= 255
    same = build_augmentation({"affine": {"degrees": 0, "scale": [1, 1]}}, (48, 48, 1), seed=0)(x)
    assert np.allclose(same.numpy(), x.numpy(), atol=1e-3)
    # a centred shear keeps the centre row in place
    img = tf.tile(tf.range(48, dtype=tf.float32)[None, None, :, None], (1, 48, 1, 1))
    sheared = build_augmentation({"shear": 20}, (48, 48, 1), seed=0)(img).numpy()
    assert np.allclose(sheared[0, 23:25, 5:-5, 0], img.numpy()[0, 23:25, 5:-5, 0], atol=1.0)
    with pytest.raises(ValueError, match="unknown augmentation operations"):
        build_augmentation({"shearing": 1}, (48, 48, 1))


def _fer_folder(root, per_class, classes=FER, size=(24, 24)):
    for c in classes:
        for i in range(per_class[c] if isinstance(per_class, dict) else per_class):
            save(root / "train" / c / f"Training_{FER.index(c)}{i:04d}.png", face(c, size, 1, i))


def test_samplers_decode_only_what_they_draw(tmp_path):
    counts = {"angry": 40, "disgust": 4, "fear": 1, "happy": 20, "sad": 10, "surprise": 5, "neutral": 8}
    _fer_folder(tmp_path, counts)
    ds = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path), split="train")
    over = apply_sampler(ds, {"oversample": 0.5}, seed=0)
    ys = np.array([int(y) for _, y in over.as_numpy_iterator()])
    n = np.bincount(ys, minlength=7)
    assert over.class_names == FER and int(over.cardinality()) == len(ys)
    assert n.tolist() == [40, 20, 20, 20, 20, 20, 20]  # every class >= 0.5 * 40, originals kept
    bal = apply_sampler(ds, "balanced", seed=0)
    ys1 = np.array([int(y) for _, y in bal.as_numpy_iterator()])
    ys2 = np.array([int(y) for _, y in bal.as_numpy_iterator()])
    assert len(ys1) == len(ds.labels) and not np.array_equal(ys1, ys2)  # a fresh draw every epoch
    # images and labels stay paired
    for x, y in bal.take(20).as_numpy_iterator():
        assert FER[int(round((x.mean() - 20) / 25))] == FER[y]


def test_balanced_sampler_frequencies():
    from ferzoo.data.augment import _sample_indices

    labels = np.array([0] * 1000 + [1] * 100 + [2] * 10)
    stream = _sample_indices(labels, "balanced", 0).batch(4096)
    draws = np.concatenate([b for _ in range(30) for b in stream.as_numpy_iterator()])  # 30 epochs
    freq = np.bincount(labels[draws]) / len(draws)
    assert np.allclose(freq, 1 / 3, atol=0.02)


def test_sampler_fallback_for_plain_datasets():
    ds = ferzoo.data.with_class_names(tf.data.Dataset.from_tensor_slices(
        (np.zeros((6, 4, 4, 1), np.uint8), np.array([0, 0, 0, 0, 1, 2], np.int32))), ["a", "b", "c"])
    ys = [int(y) for _, y in apply_sampler(ds, {"oversample": 1.0}).as_numpy_iterator()]
    assert np.bincount(ys).tolist() == [4, 4, 4]


def test_ten_crop_order_and_prediction():
    img = np.arange(6 * 6, dtype=np.float32).reshape(1, 6, 6, 1)
    crops = ten_crop(img, (4, 4)).numpy()
    assert crops.shape == (1, 10, 4, 4, 1)
    assert crops[0, 0, 0, 0, 0] == 0 and crops[0, 1, 0, 0, 0] == 2 and crops[0, 2, 0, 0, 0] == 12
    assert crops[0, 4, 0, 0, 0] == 7 and np.array_equal(crops[0, 5], crops[0, 0][:, ::-1])


@pytest.fixture
def toy_registry():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "core"))
    from toy_plugin import ToyPlugin

    from ferzoo import registry as reg_mod

    reg = reg_mod.reset_registry()
    reg.register(ToyPlugin(), name="toy_plugin")
    yield reg
    reg_mod.reset_registry()


def texture(name, size=16, seed=0, channels=1):
    """Class-specific textures a tiny CNN learns in a few epochs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    pat = {"angry": (yy // 2) % 2, "disgust": (xx // 2) % 2, "fear": ((xx + yy) // 2) % 2,
           "surprise": np.zeros((size, size))}[name]
    img = np.clip(60 + 140 * pat + rng.normal(0, 8, (size, size)), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(img, channels, axis=-1)


def test_trained_on_fer_evaluated_on_rafdb_by_class_name(tmp_path, toy_registry):
    """A model trained on FER-2013 (FER order) evaluates correctly on RAF-DB (RAF order): labels are
    matched by canonical class name, not by index."""
    import keras

    classes = ["angry", "disgust", "fear", "surprise"]  # no class has the same index in FER and RAF order
    for c in classes:
        for i in range(12):
            save(tmp_path / "fer" / "train" / c / f"Training_{FER.index(c)}{i:04d}.png", texture(c, seed=i))
    raf = tmp_path / "raf"
    lines = []
    for i in range(24):
        c = classes[i % 4]
        name = f"test_{i + 1:05d}"
        save(raf / "Image" / "aligned" / f"{name}_aligned.jpg", texture(c, seed=100 + i, channels=3), quality=98)
        lines.append(f"{name}.jpg {RAF.index(c) + 1}\n")
    (raf / "EmoLabel").mkdir()
    (raf / "EmoLabel" / "list_patition_label.txt").write_text("".join(lines))

    keras.utils.set_random_seed(0)
    train = ferzoo.get_dataset("fer2013", data_dir=str(tmp_path / "fer"), split="train")
    model = ferzoo.build("toy", num_classes=7, class_names=train.class_names, input_shape=(16, 16, 1))
    model.compile(aux_loss_weights={"centre": 0.0})
    model.fit(prepare(train, (16, 16, 1), batch_size=8, shuffle=64, seed=0, cache=True), epochs=8, verbose=0)
    assert model.evaluate(prepare(train, (16, 16, 1)), verbose=0)["accuracy"] > 0.9
    test = ferzoo.get_dataset("rafdb", data_dir=str(raf), split="test")
    assert test.class_names == RAF != model.class_names
    report = model.evaluate(prepare(test, (16, 16, 1)), verbose=0)
    assert report["accuracy"] > 0.9 and report["class_names"] == FER
    # taking RAF's label indices as FER's would score (nearly) nothing
    assert model.evaluate(prepare(test, (16, 16, 1)), class_names=FER, verbose=0)["accuracy"] < 0.2
    from ferzoo.data.tencrop import ten_crop_evaluate

    assert ten_crop_evaluate(model, test, (16, 16))["accuracy"] > 0.9  # crops: the image and its mirror


def test_crop_padding_is_per_image():
    x = tf.tile(tf.reshape(tf.range(1.0, 17.0), (1, 4, 4, 1)), (64, 1, 1, 1))
    y = build_augmentation({"crop_padding": 2}, (4, 4, 1), seed=0)(x).numpy()
    assert y.shape == x.shape
    assert len({img.tobytes() for img in y}) > 5  # different offsets within one batch
    for img in y:  # each is the padded image cropped at some offset: a shifted copy with zero fill
        nz = img[..., 0][img[..., 0] > 0]
        assert set(nz.tolist()) <= set(range(1, 17))
