import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: the paper's method and geometry (144 x 144 input, 16 patches of 48 px, F5 9 x 9, valid attention convs) with a
#: few channels per layer and no BatchNorm, so the numeric tests run in milliseconds
TINY = {"unet_widths": [4, 8, 8, 16, 16], "simplenet_widths": [4, 8, 8], "local_attention_widths": [8, 8, 8, 4],
        "local_attention_hidden": 4, "nonlocal_channels": 8, "fc_units": [16, 8]}


@pytest.fixture(scope="session")
def paper_model():
    """The paper's LNLAttenNet (144 x 144 x 3, 89.7 M parameters), random init; only inspected, never run."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(0)
    return ferzoo.build("lnlattennet", num_classes=7)


@pytest.fixture(scope="module")
def tiny():
    """A tiny LNLAttenNet (batched local networks), dropout active only in training."""
    import keras

    import ferzoo

    keras.utils.set_random_seed(1)
    return ferzoo.build("lnlattennet", num_classes=7, **TINY)


@pytest.fixture
def faces():
    """Four random 144 x 144 RGB images in raw 0..255 pixels."""
    return np.random.default_rng(0).uniform(0, 255, (4, 144, 144, 3)).astype("float32")


@pytest.fixture(scope="session")
def tiny_config():
    return dict(TINY)
