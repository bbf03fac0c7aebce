"""Training with plain compile()/fit() on tiny generated data, weights round trip, per-head Grad-CAM++."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.data import synthetic


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    model = ferzoo.build("dan", num_classes=4, input_shape=(64, 64, 3))
    ds = synthetic(num_classes=4, size=64, channels=3, per_class=6, seed=0)
    batches = ds.map(lambda x, y: (keras.ops.cast(x, "float32"), y)).batch(12)
    model.compile()  # the recipe: SGD 0.1 momentum 0.9, coupled weight decay, affinity + partition weights 1
    history = model.fit(batches, epochs=5, verbose=0)
    images = np.stack([x for x, _ in ds.as_numpy_iterator()]).astype(np.float32)
    return model, history.history, images


def test_fit_lowers_the_loss_and_tracks_aux_losses(trained):
    model, hist, _ = trained
    assert {"loss", "affinity_loss", "partition_loss", "accuracy"} <= set(hist)
    assert all(np.isfinite(hist["loss"]))
    assert hist["loss"][-1] < hist["loss"][0]
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model._coupled_wd == pytest.approx(1e-4)


def test_weights_only_save_and_rebuild_from_config(trained, tmp_path):
    from ferzoo import weights

    model, _, images = trained
    x = images[:5]
    path = weights.save(model, tmp_path / "dan.weights.h5", dataset="unit-test")
    rebuilt = type(model).from_config(model.get_config())
    rebuilt.load_weights(str(path))
    for key in ("logits", "features", "heads"):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(x, training=False)[key]),
                                      keras.ops.convert_to_numpy(model(x, training=False)[key]))
    # the centres (trained by the same optimizer) travel with the weights
    np.testing.assert_array_equal(rebuilt.aux_losses[0].centres.numpy(), model.aux_losses[0].centres.numpy())
    loaded = ferzoo.load("dan", weights=str(path))
    assert loaded.weights_card["dataset"] == "unit-test"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x, training=False)["probabilities"]),
                                  keras.ops.convert_to_numpy(model(x, training=False)["probabilities"]))


def test_explain_gives_one_map_per_head(trained):
    model, _, images = trained
    assert model.spec.default_explainer == "heads_gradcam++"
    maps = model.explain(images[:3])
    assert maps.shape == (3, 4, 64, 64) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    peaks = maps.reshape(3, 4, -1).max(axis=-1)
    assert np.all((peaks == 0.0) | np.isclose(peaks, 1.0))  # each head's map is normalised on its own
    assert np.any(peaks == 1.0)
    two = model.explain(images[:3], heads=[1, 3])
    np.testing.assert_allclose(two, maps[:, [1, 3]], atol=1e-6)
    with pytest.raises(ValueError, match="head index 4 out of range"):
        model.explain(images[:1], heads=[4])


def test_gradcam_maps_the_backbone_every_head_sees(trained):
    model, _, images = trained
    default = model.explain(images[:3], method="gradcam++")
    np.testing.assert_allclose(default, model.explain(images[:3], method="gradcam++", layer="layer4_1_out"), atol=1e-6)
    assert default.shape == (3, 64, 64)
    assert not np.allclose(default, model.explain(images[:3], method="gradcam++", layer="cat_head3_sa"), atol=1e-3)
