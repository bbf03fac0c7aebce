"""Training FDRL with plain compile()/fit() on generated data: the loss falls, the centres follow the rule on
training steps only, weights (centres included) round-trip through a weights-only file, the explainers run."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.data import prepare
from ferzoo_plugins.fdrl.losses import class_centre_update, latent_centre_update

SIZE = 32


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _ce(model, images, labels):
    logits = _np(model(images, training=False)["logits"]).astype(np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return float(np.mean(np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(labels)), labels]))


class CentreWatch(keras.callbacks.Callback):
    """The centres of every aux loss around each training batch and each validation pass."""

    def __init__(self, losses):
        super().__init__()
        self.losses = [l for l in losses if hasattr(l, "centres")]
        self.train_moves, self.test_moves = [], []

    def _snap(self):
        return [l.centres.numpy().copy() for l in self.losses]

    def on_train_batch_begin(self, batch, logs=None):
        self._before = self._snap()

    def on_train_batch_end(self, batch, logs=None):
        self.train_moves.append(max(float(np.abs(a - b).max()) for a, b in zip(self._snap(), self._before)))

    def on_test_begin(self, logs=None):
        self._test_before = self._snap()

    def on_test_end(self, logs=None):
        self.test_moves.append(max(float(np.abs(a - b).max()) for a, b in zip(self._snap(), self._test_before)))


@pytest.fixture(scope="module")
def data():
    train = ferzoo.get_dataset("synthetic", split="train", size=SIZE, channels=3, per_class=4, seed=0)
    val = ferzoo.get_dataset("synthetic", split="val", size=SIZE, channels=3, per_class=2, seed=0)
    images = np.stack([x for x, _ in train.as_numpy_iterator()]).astype(np.float32)
    labels = np.array([y for _, y in train.as_numpy_iterator()])
    return train, val, images, labels


@pytest.fixture(scope="module")
def trained(data):
    train, val, images, labels = data
    keras.utils.set_random_seed(0)
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(SIZE, SIZE, 3), recipe="synthetic")
    model.compile()  # the synthetic recipe: Adam 1e-3; CE + 1e-4 L_C + 1.0 L_B + 1e-4 L_D
    ce_before = _ce(model, images, labels)
    watch = CentreWatch(model.aux_losses)
    history = model.fit(prepare(train, model.input_shape_hwc, batch_size=14, shuffle=64, seed=0),
                        validation_data=prepare(val, model.input_shape_hwc, batch_size=14), epochs=4, verbose=0,
                        callbacks=[watch])
    return model, history.history, watch, ce_before


def test_fit_lowers_the_loss_with_all_of_the_papers_losses(trained, data):
    model, hist, _, ce_before = trained
    _, _, images, labels = data
    assert {"loss", "compactness_loss", "balance_loss", "distribution_loss", "accuracy", "val_accuracy"} <= set(hist)
    assert all(np.isfinite(v).all() for v in hist.values())
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["balance_loss"][-1] < hist["balance_loss"][0]  # the Intra-Ws move towards 1/M
    assert _ce(model, images, labels) < ce_before  # the classification term itself falls
    assert isinstance(model.optimizer, keras.optimizers.Adam)


def test_centres_move_on_training_steps_only(trained, data):
    model, _, watch, _ = trained
    _, val, images, labels = data
    assert len(watch.train_moves) == 8 and min(watch.train_moves) > 0.0
    assert watch.test_moves == [0.0] * 4  # fit's validation passes
    before = [l.centres.numpy().copy() for l in model.aux_losses if hasattr(l, "centres")]
    model.evaluate(prepare(val, model.input_shape_hwc, batch_size=7), verbose=0)
    model.keras_evaluate(images, labels, verbose=0)
    model.predict(images, verbose=0)
    after = [l.centres.numpy() for l in model.aux_losses if hasattr(l, "centres")]
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


def test_a_training_step_applies_exactly_the_rule(data):
    _, _, images, labels = data
    keras.utils.set_random_seed(3)
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(SIZE, SIZE, 3), recipe="synthetic")
    model.compile()
    comp, _, dist = model.aux_losses
    x, y = images[:6], labels[:6]
    comp.centres.assign(np.random.default_rng(0).normal(size=comp.centres.shape).astype("float32"))
    dist.centres.assign(np.random.default_rng(1).uniform(0, 64, dist.centres.shape).astype("float32"))
    c0, mu0 = comp.centres.numpy().copy(), dist.centres.numpy().copy()
    out = model(x, training=True)  # the step's forward pass (batch-norm batch statistics, no dropout)
    want_c = _np(latent_centre_update(out["latent"], c0, 0.5))
    want_mu = _np(class_centre_update(out["intra_weights"], y, mu0, 0.5))
    model.train_on_batch(x, y)
    np.testing.assert_allclose(comp.centres.numpy(), want_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dist.centres.numpy(), want_mu, rtol=1e-5, atol=1e-4)
    absent = sorted(set(range(7)) - set(y.tolist()))
    assert absent and np.array_equal(dist.centres.numpy()[absent], mu0[absent])


def test_weights_only_save_and_rebuild_from_the_card(trained, data, tmp_path):
    from ferzoo import weights as W

    model, _, _, _ = trained
    x = data[2][:5]
    path = W.save(model, tmp_path / "fdrl.weights.h5", dataset="unit-test")
    card = W.read_card(path)
    assert card["config"]["num_latent"] == 9 and "backbone_weights" not in card["config"]
    rebuilt = type(model).from_config(model.get_config())
    rebuilt.load_weights(str(path))
    loaded = ferzoo.load("fdrl", weights=str(path))
    for other in (rebuilt, loaded):
        got, want = other(x, training=False), model(x, training=False)
        for key in ("logits", "probabilities", "latent", "intra_weights", "inter_weights", "expression"):
            np.testing.assert_array_equal(_np(got[key]), _np(want[key]))
        for a, b in zip(other.aux_losses, model.aux_losses):
            for va, vb in zip(a.weights, b.weights):
                np.testing.assert_array_equal(va.numpy(), vb.numpy())
    assert loaded.weights_card["dataset"] == "unit-test"


def test_default_explainer_is_the_intra_weight_bar_chart(trained, data):
    from ferzoo_plugins.fdrl.explain import bar_maps, intra_weight_values

    model, _, _, _ = trained
    x = data[2][:3]
    assert model.spec.default_explainer == "intra_weights"
    maps = model.explain(x)
    assert maps.shape == (3, SIZE, SIZE) and maps.min() >= 0.0 and maps.max() == 1.0
    w = intra_weight_values(model, x)
    np.testing.assert_allclose(w, _np(model(x, training=False)["intra_weights"]), rtol=1e-6)
    # the tallest bar fills the map's height; each bar's filled rows encode alpha_ij / max_j alpha_ij
    np.testing.assert_array_equal(maps, bar_maps(w, SIZE, SIZE))
    hand = bar_maps(np.array([[1.0, 0.5, 0.0]]), 10, 9, gap=0.0)[0]
    np.testing.assert_array_equal(hand.sum(axis=0), [10, 10, 10, 5, 5, 5, 0, 0, 0])
    assert hand[-1, 4] == 1.0 and hand[0, 4] == 0.0  # bars grow from the bottom
    # weights trained with resize-then-crop: a batch already of the input size is not cropped a second time,
    # a photo of another size is resized to the load size and centre-cropped
    model.eval_crop = [40, 40]
    try:
        np.testing.assert_array_equal(intra_weight_values(model, x), w)
        photo = np.random.default_rng(0).uniform(0, 255, (50, 50, 3)).astype("float32")
        crop = model.preprocess(photo)
        np.testing.assert_allclose(intra_weight_values(model, photo), intra_weight_values(model, crop), rtol=1e-6)
    finally:
        model.eval_crop = None


def test_gradcam_plus_plus_and_saliency_run(trained, data):
    model, _, _, _ = trained
    for method in ("gradcam++", "saliency"):
        maps = model.explain(data[2][:2], method=method)
        assert maps.shape == (2, SIZE, SIZE) and np.all(np.isfinite(maps))
        assert maps.min() >= 0.0 and maps.max() <= 1.0


def test_bar_chart_pngs(trained, data, tmp_path):
    from PIL import Image

    from ferzoo_plugins.fdrl.explain import (class_mean_intra_weights, dominant_latent, plot_class_means,
                                             plot_intra_weights)

    model, _, _, _ = trained
    train, _, images, labels = data
    path = plot_intra_weights(model, images[:3], tmp_path / "w.png", names=["a", "b", "c"])
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[1] >= 3 * 120
        assert len(set(im.convert("RGB").getdata())) > 3  # drawn, not blank
    means, counts = class_mean_intra_weights(model, train, batch_size=10)
    assert counts.tolist() == [4] * 7 and means.shape == (7, 9)
    w = _np(model(images, training=False)["intra_weights"])
    np.testing.assert_allclose(means[2], w[labels == 2].mean(axis=0), rtol=1e-5)
    assert dominant_latent(model, images[:4]).tolist() == w[:4].argmax(axis=1).tolist()
    with Image.open(plot_class_means(means, model.class_names, tmp_path / "fig6.png")) as im:
        assert im.format == "PNG"


def test_explainer_without_intra_rm_says_what_to_use():
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(SIZE, SIZE, 3), intra_rm=False)
    with pytest.raises(ValueError, match=r"without Intra-RM .*\(use method='gradcam\+\+'\)"):
        model.explain(np.zeros((1, SIZE, SIZE, 3), "float32"))
