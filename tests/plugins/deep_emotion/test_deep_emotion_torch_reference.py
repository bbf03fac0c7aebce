"""The PyTorch Deep-Emotion used by the speed comparison is the same network as ferzoo's (needs the torch extra)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from deep_emotion_torch_reference import TorchDeepEmotion, copy_from_keras  # noqa: E402


def test_same_parameter_count_and_logits_on_copied_weights(model, images):
    net = TorchDeepEmotion(num_classes=7)
    assert sum(p.numel() for p in net.parameters()) == model.count_params() == 76_777
    # a transform far from the identity (zoom, shear, shift), so the sampler's conventions are exercised
    rng = np.random.default_rng(5)
    loc = model.get_layer("loc_fc2")
    kernel, _ = loc.get_weights()
    loc.set_weights([rng.normal(0, 0.02, kernel.shape).astype("float32"),
                     np.array([0.8, 0.15, 0.1, -0.1, 0.9, -0.05], "float32")])
    copy_from_keras(net, model).eval()
    expected = np.asarray(model(images, training=False)["logits"])
    with torch.no_grad():
        got = net(torch.from_numpy((images.transpose(0, 3, 1, 2) / 255.0).astype("float32"))).numpy()
    assert np.abs(expected).max() > 1e-3  # logits that say something
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
