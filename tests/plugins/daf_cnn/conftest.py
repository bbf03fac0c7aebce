import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def paper_model():
    """The paper's DAF-CNN (96 x 96 x 1, 22.6 M parameters), random init; never trained in the default tests."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(0)
    return ferzoo.build("daf_cnn", num_classes=7)


@pytest.fixture(scope="module")
def compact():
    """The compact variant (48 x 48 x 1), random init, shared by a test module."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(1)
    return ferzoo.build("daf_cnn_compact", num_classes=7)


@pytest.fixture
def faces48():
    """Eight random 48 x 48 grayscale images in raw 0..255 pixels."""
    return np.random.default_rng(0).uniform(0, 255, (8, 48, 48, 1)).astype("float32")
