"""The random augmentation layers share one base (seed, identity outside training, config): each one survives a
Keras serialise / deserialise round trip with its settings and seed, draws the same augmentation as the
original from the same seed, and leaves images untouched outside training."""

import keras
import numpy as np
import pytest

from ferzoo.data import augment as A

LAYERS = [(A.RandomAffineTV, {"degrees": 10.0, "translate": 0.1, "p": 0.5}),
          (A.RandomErasingTV, {"p": 1.0, "scale": (0.1, 0.3)}),
          (A.RandomHorizontalFlip, {}),
          (A.RandomPadCrop, {"padding": 2}),
          (A.RandomBoxJitter, {"scale": (0.8, 1.2), "shift": 0.1, "p": 0.9}),
          (A.RandomGaussianBlur, {"sigma": (0.5, 1.0), "p": 1.0}),
          (A.RandomGamma, {"gamma": (0.5, 2.0), "p": 1.0})]


@pytest.mark.parametrize("cls,kwargs", LAYERS, ids=[c.__name__ for c, _ in LAYERS])
def test_each_augmentation_layer_round_trips_and_is_the_identity_outside_training(cls, kwargs):
    x = np.random.default_rng(0).uniform(0, 255, (6, 16, 16, 1)).astype("float32")
    layer = cls(seed=3, **kwargs)
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(copy) is cls and copy.get_config()["seed"] == 3
    for key, value in kwargs.items():
        got = copy.get_config()[key]
        assert np.allclose(got, value) if not isinstance(value, str) else got == value, key
    a, b = np.asarray(layer(x, training=True)), np.asarray(copy(x, training=True))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-3)
    assert a.shape == x.shape and not np.allclose(a, x)  # it did augment
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)
