"""Training the compact DAF-CNN with plain compile()/fit() on generated data: the loss falls, the centres move on
training steps only, gradients are finite, weights (centres included) round-trip, the explainers and the TFLite
export work, the t-SNE helper."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo.data import prepare


def _np(x):
    return keras.ops.convert_to_numpy(x)


class CentreWatch(keras.callbacks.Callback):
    """Records the TC centres around every training batch and every validation pass of fit()."""

    def __init__(self, loss):
        super().__init__()
        self.loss = loss
        self.train_moves = []
        self.test_pairs = []

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self.loss.centres.numpy().copy()

    def on_train_batch_end(self, batch, logs=None):
        self.train_moves.append(float(np.abs(self.loss.centres.numpy() - self._before).max()))

    def on_test_begin(self, logs=None):
        self._test_before = self.loss.centres.numpy().copy()

    def on_test_end(self, logs=None):
        self.test_pairs.append((self._test_before, self.loss.centres.numpy().copy()))


@pytest.fixture(scope="module")
def data():
    train = ferzoo.get_dataset("synthetic", split="train", per_class=8, seed=0)
    val = ferzoo.get_dataset("synthetic", split="val", per_class=3, seed=0)
    images = np.stack([x for x, _ in train.as_numpy_iterator()]).astype(np.float32)
    labels = np.array([y for _, y in train.as_numpy_iterator()])
    return train, val, images, labels


@pytest.fixture(scope="module")
def trained(data):
    train, val, _, _ = data
    keras.utils.set_random_seed(0)
    model = ferzoo.build("daf_cnn_compact", num_classes=7, recipe="synthetic")
    model.compile()  # the recipe: Adam 1e-3, CE + 0.007 * TC (m = 11)
    initial = model.aux_losses[0].centres.numpy().copy()
    watch = CentreWatch(model.aux_losses[0])
    history = model.fit(prepare(train, model.input_shape_hwc, batch_size=14, shuffle=64, seed=0),
                        validation_data=prepare(val, model.input_shape_hwc, batch_size=21), epochs=4, verbose=0,
                        callbacks=[watch])
    return model, history.history, watch, initial


def test_fit_lowers_the_loss_and_logs_tc(trained):
    model, hist, _, _ = trained
    assert {"loss", "tc_loss", "accuracy", "val_loss", "val_accuracy"} <= set(hist)
    assert all(np.isfinite(hist["loss"])) and all(np.isfinite(hist["tc_loss"]))
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["accuracy"][-1] > hist["accuracy"][0]
    assert model.aux_loss_weight(model.aux_losses[0]) == pytest.approx(0.007)


def test_centres_move_in_training_and_never_in_validation(trained, data):
    model, _, watch, initial = trained
    assert len(watch.train_moves) == 4 * 4  # 56 images / batch 14, 4 epochs
    assert sum(m > 0 for m in watch.train_moves) >= 4
    assert not np.array_equal(model.aux_losses[0].centres.numpy(), initial)
    assert len(watch.test_pairs) == 4
    for before, after in watch.test_pairs:  # fit()'s validation passes
        np.testing.assert_array_equal(after, before)
    _, val, images, labels = data
    before = model.aux_losses[0].centres.numpy().copy()
    report = model.evaluate(prepare(val, model.input_shape_hwc, batch_size=8), verbose=0)
    assert report["num_examples"] == 21
    model.keras_evaluate(images, labels, batch_size=8, verbose=0)
    model.predict(images, verbose=0)
    np.testing.assert_array_equal(model.aux_losses[0].centres.numpy(), before)


def test_centre_step_in_fit_is_the_rule(data):
    """One training step of fit() moves the centres by tc_centre_update on that step's embeddings (dropout 0,
    so the embeddings are reproducible after the step from the pre-step weights)."""
    from ferzoo_plugins.daf_cnn.losses import tc_centre_update

    _, _, images, labels = data
    keras.utils.set_random_seed(2)
    model = ferzoo.build("daf_cnn_compact", num_classes=7, recipe="synthetic", dropout=0.0)
    model.compile()
    loss = model.aux_losses[0]
    x, y = images[:16], labels[:16]
    before = loss.centres.numpy().copy()
    emb = model(x, training=True)["embedding"]  # BN in training mode, as in the step
    expected = _np(tc_centre_update(emb, y, before, loss.margin, loss.alpha))
    model.train_on_batch(x, y)
    after = loss.centres.numpy()
    moved = np.abs(after - before).max()
    assert moved > 1e-2
    # the graph step and this eager replay differ by float32 rounding (oneDNN) only
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-4 * moved)


def test_every_trainable_weight_gets_a_finite_gradient(data):
    _, _, images, labels = data
    keras.utils.set_random_seed(3)
    model = ferzoo.build("daf_cnn_compact", num_classes=7, recipe="fer2013")
    model.compile()
    x, y = images[:16], labels[:16]
    with tf.GradientTape() as tape:
        pred = model(x, training=True)
        value = model.compute_loss(x, y, pred, training=False)
    grads = tape.gradient(value, model.trainable_variables)
    assert len(grads) == len(model.trainable_variables)
    for var, g in zip(model.trainable_variables, grads):
        assert g is not None, var.path
        g = _np(g)
        assert np.all(np.isfinite(g)), var.path
    by_name = {v.path: _np(g) for v, g in zip(model.trainable_variables, grads)}
    for name in ("attention_channel/fc1/kernel", "attention_spatial/conv/kernel", "block1_conv1/kernel"):
        assert np.abs(by_name[name]).max() > 0.0, name


def test_weights_only_round_trip_keeps_outputs_and_centres(trained, data, tmp_path):
    from ferzoo import weights

    model, _, _, _ = trained
    _, _, images, _ = data
    x = images[:6]
    path = weights.save(model, tmp_path / "daf_cnn_compact.weights.h5", dataset="unit-test")
    loaded = ferzoo.load("daf_cnn_compact", weights=str(path))
    assert loaded.weights_card["dataset"] == "unit-test"
    for key in ("logits", "probabilities", "embedding", "attention_spatial", "attention_channel"):
        np.testing.assert_array_equal(_np(loaded(x, training=False)[key]), _np(model(x, training=False)[key]))
    np.testing.assert_array_equal(loaded.aux_losses[0].centres.numpy(), model.aux_losses[0].centres.numpy())
    assert loaded.aux_losses[0].margin == model.aux_losses[0].margin
    # the centres are model weights: get_weights / set_weights (the plateau protocol's best-weights reload) carry them
    paths = [v.path for v in model.weights]
    assert "tc/centres" in paths and len(model.get_weights()) == len(paths)
    saved = model.get_weights()
    model.aux_losses[0].centres.assign(np.zeros((7, 256), np.float32))
    model.set_weights(saved)
    np.testing.assert_array_equal(model.aux_losses[0].centres.numpy(), loaded.aux_losses[0].centres.numpy())


def test_spatial_attention_explainer(trained, data):
    from ferzoo_plugins.daf_cnn.explain import spatial_attention_maps

    model, _, _, _ = trained
    _, _, images, _ = data
    x = images[:4]
    assert model.spec.default_explainer == "spatial_attention"
    assert {"spatial_attention", "gradcam++", "saliency"} <= set(ferzoo.list_explainers("daf_cnn_compact"))
    maps = model.explain(x)
    assert maps.shape == (4, 48, 48) and maps.dtype == np.float32
    raw = spatial_attention_maps(model, x)
    assert raw.shape == (4, 3, 3)
    for m, r in zip(maps, raw):
        if r.max() - r.min() > 1e-6:
            assert m.min() == pytest.approx(0.0, abs=1e-6) and m.max() == pytest.approx(1.0, abs=1e-6)
            # the brightest 16 x 16 cell of the upsampled map is the cell of A_s's maximum
            cells = m.reshape(3, 16, 3, 16).mean(axis=(1, 3))
            assert cells.argmax() == r.argmax()
    plain = model.explain(x, normalize=False)
    assert plain.min() >= raw.min() - 1e-6 and plain.max() <= raw.max() + 1e-6
    np.testing.assert_array_equal(model.explain(x, class_index=0), model.explain(x, class_index=6))


def test_gradcam_plus_plus_works(trained, data):
    model, _, _, _ = trained
    _, _, images, _ = data
    from ferzoo.explain import last_spatial_layer

    assert last_spatial_layer(model) == "attention_out"  # M, the refined map
    maps = model.explain(images[:3], method="gradcam++")
    assert maps.shape == (3, 48, 48) and maps.min() >= 0.0 and maps.max() <= 1.0
    assert np.isfinite(maps).all() and maps.max() > 0.0


def test_tflite_export_uses_builtin_ops_only(trained):
    from ferzoo import export as ex

    model, _, _, _ = trained
    images = ex.sample_images(model, count=16)
    flat = ex.convert_tflite(model, "none")
    interp = ex.interpreter(model_content=flat)
    ops = {op["op_name"] for op in interp._get_ops_details()}  # noqa: SLF001
    assert {"CONV_2D", "LOGISTIC", "MEAN", "REDUCE_MAX", "MUL", "SOFTMAX"} <= ops
    assert not any(op.startswith("Flex") or op == "CUSTOM" for op in ops), ops
    probs = np.concatenate([ex.run_tflite(interp, images[i:i + 8]) for i in range(0, 16, 8)])
    report = ex.parity(ex.keras_probabilities(model, images), probs)
    assert report["max_abs_diff"] < 1e-4 and report["top1_agreement"] == 1.0


def test_transfer_from_a_notcl_model_keeps_new_centres():
    """SFEW fine-tuning (spec 4): every layer of an attention + softmax model carries over; the TC centres are
    new (the source has none)."""
    from ferzoo.train import transfer_weights

    keras.utils.set_random_seed(5)
    source = ferzoo.build("daf_cnn_compact", num_classes=7, recipe="fer2013", tc=False)
    target = ferzoo.build("daf_cnn_compact", num_classes=7, recipe="sfew")
    fresh = target.aux_losses[0].centres.numpy().copy()
    report = transfer_weights(source, target)
    assert "aux:tc" in report["not_transferred"] and "logits" in report["transferred"]
    assert len(report["not_transferred"]) == 1
    np.testing.assert_array_equal(target.aux_losses[0].centres.numpy(), fresh)
    np.testing.assert_array_equal(_np(target.get_layer("block1_conv1").kernel),
                                  _np(source.get_layer("block1_conv1").kernel))
    assert target.aux_losses[0].margin == 13.0


def test_the_train_driver_runs_the_compact_cpu_recipe(tmp_path):
    """ferzoo.train with the compact default recipe (AdamW, cosine, augmentation, label smoothing, TC)."""
    from ferzoo.train import train

    lines = []
    result = train("daf_cnn_compact", "synthetic", epochs=2, batch_size=16, recipe="default", limit=48,
                   output=str(tmp_path / "run"), verbose=0, say=lines.append)
    hist = result["history"]
    assert len(hist["loss"]) == 2 and all(np.isfinite(hist["loss"])) and "tc_loss" in hist
    assert isinstance(result["model"].optimizer, keras.optimizers.AdamW)
    assert hist["learning_rate"][1] < hist["learning_rate"][0]  # cosine
    card = result["card"]
    assert card["recipe"]["config"]["tc_margin"] == 11.0 and card["config"]["tc_margin"] == 11.0


# -- t-SNE -------------------------------------------------------------------------------------------------------
def _have_tsne_deps():
    try:
        import matplotlib  # noqa: F401
        import sklearn  # noqa: F401
    except ImportError:
        return False
    return True


def test_collect_embeddings_first_points_in_order(trained, data):
    from ferzoo_plugins.daf_cnn.tsne import collect_embeddings, hls_palette

    model, _, _, _ = trained
    train, _, images, labels = data
    vectors, got = collect_embeddings(model, train, max_points=20, batch_size=8)
    assert vectors.shape == (20, 256)
    np.testing.assert_array_equal(got, labels[:20])
    np.testing.assert_allclose(vectors, _np(model(images[:20], training=False)["embedding"]), rtol=1e-5, atol=1e-6)
    batched, got2 = collect_embeddings(model, prepare(train, (48, 48, 1), batch_size=7), max_points=20)
    np.testing.assert_allclose(batched, vectors, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got2, got)
    small, _ = collect_embeddings(model, (images[:5, ::2, ::2], labels[:5]))  # 24 x 24: resized by preprocess
    assert small.shape == (5, 256)
    palette = hls_palette(7)
    assert len(set(palette)) == 7 and all(0.0 <= v <= 1.0 for c in palette for v in c)


@pytest.mark.skipif(_have_tsne_deps(), reason="scikit-learn and matplotlib are installed")
def test_write_tsne_names_the_missing_packages(trained, data, tmp_path):
    from ferzoo_plugins.daf_cnn.tsne import write_tsne

    model, _, _, _ = trained
    with pytest.raises(ImportError, match="pip install scikit-learn matplotlib"):
        write_tsne(model, data[0], tmp_path / "tsne.png", max_points=16)
    assert not (tmp_path / "tsne.png").exists()


@pytest.mark.skipif(not _have_tsne_deps(), reason="needs scikit-learn and matplotlib")
def test_write_tsne_writes_a_png(trained, data, tmp_path):
    from ferzoo_plugins.daf_cnn.tsne import write_tsne

    model, labels = trained[0], data[3]
    out = write_tsne(model, data[0], tmp_path / "fig" / "tsne.png", max_points=40)
    assert out["points"].shape == (40, 2) and np.isfinite(out["points"]).all()
    np.testing.assert_array_equal(out["labels"], labels[:40])
    assert (tmp_path / "fig" / "tsne.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
