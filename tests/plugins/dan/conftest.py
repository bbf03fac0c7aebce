import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

SIZE = 64


@pytest.fixture(scope="module")
def dan64():
    """A 7-class DAN at 64 x 64 (2 x 2 feature map), random init, shared by a test module."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(0)
    return ferzoo.build("dan", num_classes=7, input_shape=(SIZE, SIZE, 3))


@pytest.fixture
def pixels():
    return np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
