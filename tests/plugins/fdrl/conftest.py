import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "datasets"))  # tests/datasets/fakes.py: writers of real layouts

SIZE = 32  # the smallest input the ResNet-18 takes here (layer4 map 1 x 1)


@pytest.fixture(scope="module")
def small():
    """A 7-class FDRL at 32 x 32, random init (seed 0), shared by a test module."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(0)
    return ferzoo.build("fdrl", num_classes=7, input_shape=(SIZE, SIZE, 3))


@pytest.fixture
def pixels():
    return np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
