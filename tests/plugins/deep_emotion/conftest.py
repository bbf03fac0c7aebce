import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def model():
    import keras

    import ferzoo

    keras.utils.set_random_seed(1)
    return ferzoo.build("deep_emotion", num_classes=7)


@pytest.fixture
def images():
    """Eight random 48x48 grayscale faces in raw 0..255 pixels."""
    return np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype("float32")
