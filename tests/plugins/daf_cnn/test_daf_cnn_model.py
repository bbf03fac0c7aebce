"""DAF-CNN architecture: spec section 9 properties 1-6 (backbone, 3D attention, outputs, parameter counts),
config flags, serialisation, batch independence."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo_plugins.daf_cnn.layers import ChannelAttention, SpatialAttention, attention_3d


def _count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _attention_model(shape=(3, 3, 512), reduction=8, kernel=7):
    """X -> (M, A_c, A_s) with the module's own layers."""
    x = keras.Input(shape)
    m, a_c, a_s = attention_3d(x, reduction, kernel, prefix="att")
    model = keras.Model(x, [m, a_c, a_s])
    return model


# -- 9.1 backbone ------------------------------------------------------------------------------------------------
def test_backbone_layers_and_shapes(paper_model):
    kinds = [type(layer).__name__ for layer in paper_model.layers]
    assert kinds.count("Conv2D") == 18  # the spatial attention's conv is a sub-layer of SpatialAttention
    assert kinds.count("BatchNormalization") == 18
    assert kinds.count("MaxPooling2D") == 5
    sizes = [tuple(paper_model.get_layer(f"block{b}_pool").output.shape[1:]) for b in range(1, 6)]
    assert sizes == [(48, 48, 64), (24, 24, 128), (12, 12, 256), (6, 6, 512), (3, 3, 512)]
    # each conv is followed by its BN, then a ReLU (spec 8.3)
    names = [layer.name for layer in paper_model.layers]
    i = names.index("block3_conv2")
    assert names[i + 1:i + 3] == ["block3_bn2", "block3_relu2"]
    sub = keras.Model(paper_model.input, paper_model.get_layer("block5_pool").output)
    out = _np(sub(np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 1)).astype("float32"), training=False))
    assert out.shape == (2, 3, 3, 512)


def test_input_is_scaled_to_unit_range(paper_model):
    """9.14: the model takes raw 0..255 pixels; its first layer divides by 255 (no mean / std)."""
    raw = np.random.default_rng(1).uniform(0, 255, (2, 96, 96, 1)).astype("float32")
    raw[0, 0, 0, 0], raw[1, 0, 0, 0] = 0.0, 255.0
    scaled = _np(keras.Model(paper_model.input, paper_model.get_layer("standardize").output)(raw))
    assert scaled.dtype == np.float32 and scaled.shape == (2, 96, 96, 1)
    np.testing.assert_allclose(scaled, raw / 255.0, rtol=1e-6)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    from ferzoo.data import prepare

    batch = prepare(ferzoo.get_dataset("synthetic", per_class=1), (96, 96, 1), batch_size=7)
    images, _ = next(iter(batch))
    assert images.dtype == "float32" and tuple(images.shape) == (7, 96, 96, 1)  # 48 x 48 upsampled


# -- 9.2-9.5 attention -------------------------------------------------------------------------------------------
def test_attention_shapes_and_open_interval():
    model = _attention_model()
    x = np.abs(np.random.default_rng(2).normal(size=(4, 3, 3, 512)) * 0.1).astype("float32")  # no float32 saturation
    m, a_c, a_s = (_np(t) for t in model(x))
    assert m.shape == x.shape
    assert a_c.shape == (4, 1, 1, 512) and a_s.shape == (4, 3, 3, 1)
    for a in (a_c, a_s):
        assert a.min() > 0.0 and a.max() < 1.0


def test_attention_product_and_reference_maths():
    """9.3: M = X * A_c * A_s with A_s computed from M' = X * A_c; A_c and A_s against numpy."""
    rng = np.random.default_rng(3)
    model = _attention_model(shape=(4, 5, 16), reduction=4, kernel=3)
    x = np.maximum(rng.normal(size=(2, 4, 5, 16)), 0).astype("float32")
    m, a_c, a_s = (_np(t) for t in model(x))
    channel, spatial = model.get_layer("att_channel"), model.get_layer("att_spatial")
    np.testing.assert_allclose(_np(spatial(x * a_c)), a_s, rtol=1e-6)
    np.testing.assert_allclose(m, x * a_c * a_s, rtol=1e-6)

    w1, b1 = (_np(v) for v in channel.fc1.weights)
    w2, b2 = (_np(v) for v in channel.fc2.weights)

    def net(v):
        return np.maximum(v @ w1 + b1, 0) @ w2 + b2

    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    ref_c = sig(net(x.mean(axis=(1, 2))) + net(x.max(axis=(1, 2))))
    np.testing.assert_allclose(a_c[:, 0, 0], ref_c, rtol=1e-5)

    refined = x * a_c
    s = np.stack([refined.mean(-1), refined.max(-1)], -1)  # (B, H, W, 2)
    k = _np(spatial.conv.kernel)  # (3, 3, 2, 1), 'same' padding 1
    padded = np.pad(s, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref_s = np.zeros((2, 4, 5))
    for i in range(4):
        for j in range(5):
            ref_s[:, i, j] = np.einsum("bhwc,hwc->b", padded[:, i:i + 3, j:j + 3], k[..., 0])
    np.testing.assert_allclose(a_s[..., 0], sig(ref_s), rtol=1e-5)


def test_attention_zero_weights_give_halves():
    """9.4: zero MLP -> A_c = 0.5; zero kernel -> A_s = 0.5; both -> M = X / 4; zero input -> zero output."""
    model = _attention_model()
    x = np.random.default_rng(4).normal(size=(3, 3, 3, 512)).astype("float32")
    channel, spatial = model.get_layer("att_channel"), model.get_layer("att_spatial")
    for v in channel.weights:
        v.assign(np.zeros(v.shape, "float32"))
    m, a_c, a_s = (_np(t) for t in model(x))
    np.testing.assert_array_equal(a_c, np.full((3, 1, 1, 512), 0.5, "float32"))
    assert not np.allclose(a_s, 0.5)
    spatial.conv.kernel.assign(np.zeros(spatial.conv.kernel.shape, "float32"))
    m, a_c, a_s = (_np(t) for t in model(x))
    np.testing.assert_array_equal(a_s, np.full((3, 3, 3, 1), 0.5, "float32"))
    np.testing.assert_array_equal(m, 0.25 * x)
    fresh = _attention_model()
    np.testing.assert_array_equal(_np(fresh(np.zeros((2, 3, 3, 512), "float32"))[0]), 0.0)


def test_attention_permutation_invariance_and_shared_mlp():
    """9.5: A_c ignores the order of spatial positions; the spatial pooling ignores the order of channels; one
    MLP for both branches: 66,210 parameters for C = 512, r = 8."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 3, 3, 512)).astype("float32")
    channel = ChannelAttention(8)
    a = _np(channel(x))
    perm = rng.permutation(9)
    shuffled = x.reshape(2, 9, 512)[:, perm].reshape(2, 3, 3, 512)
    np.testing.assert_allclose(_np(channel(shuffled)), a, rtol=1e-6, atol=1e-7)
    pooled = _np(SpatialAttention.pooled(x))
    np.testing.assert_allclose(_np(SpatialAttention.pooled(x[..., rng.permutation(512)])), pooled, rtol=1e-6,
                               atol=1e-7)
    spatial = SpatialAttention(7)
    spatial(x)
    assert len(channel.trainable_weights) == 4  # fc1 kernel + bias, fc2 kernel + bias: no second MLP
    assert _count(channel.trainable_weights) == 66_112
    assert _count(spatial.trainable_weights) == 98  # 7 x 7 x 2, no bias
    model = _attention_model()
    assert _count(model.trainable_weights) == 66_210


# -- 9.6 the model -----------------------------------------------------------------------------------------------
def test_paper_parameter_counts(paper_model):
    assert _count(paper_model.trainable_weights) == 22_648_745
    convs = [layer for layer in paper_model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert _count([w for layer in convs for w in layer.weights]) == 20_207_744
    bns = [layer for layer in paper_model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert _count([w for layer in bns for w in layer.trainable_weights]) == 11_392
    dense = [paper_model.get_layer(n) for n in ("fc1", "logits")]
    assert _count([w for layer in dense for w in layer.weights]) == 2_363_399
    centres = paper_model.aux_losses[0].centres
    assert tuple(centres.shape) == (7, 512) and not centres.trainable
    assert _count(paper_model.non_trainable_weights) == 11_392 + 7 * 512  # BN moving stats + TC centres
    assert paper_model.describe()["trainable_params"] == 22_648_745


def test_outputs_and_probabilities(paper_model):
    x = np.random.default_rng(6).uniform(0, 255, (2, 96, 96, 1)).astype("float32")
    out = paper_model(x, training=False)
    probs = _np(out["probabilities"])
    assert probs.shape == (2, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert tuple(out["embedding"].shape) == (2, 512) and _np(out["embedding"]).min() >= 0.0  # ReLU(FC1)
    assert tuple(out["features"].shape) == (2, 3, 3, 512)
    assert tuple(out["attention_spatial"].shape) == (2, 3, 3, 1)
    assert tuple(out["attention_channel"].shape) == (2, 1, 1, 512)


def test_no_attention_removes_exactly_the_module():
    model = ferzoo.build("daf_cnn", num_classes=7, attention=False)
    assert _count(model.trainable_weights) == 22_648_745 - 66_210
    assert not any(layer.name.startswith("attention") for layer in model.layers)
    out = model(np.zeros((1, 96, 96, 1), "float32"), training=False)
    assert set(out) == {"logits", "embedding", "features", "probabilities"}
    with pytest.raises(ValueError, match="attention=False"):
        model.explain(np.zeros((1, 96, 96, 1), "float32"))


def test_attention_before_last_pool(faces48):
    model = ferzoo.build("daf_cnn_compact", num_classes=7, attention_before_last_pool=True)
    out = model(faces48[:2], training=False)
    assert tuple(out["attention_spatial"].shape) == (2, 6, 6, 1)
    assert tuple(out["features"].shape) == (2, 3, 3, 256)  # pooled after the attention
    names = [layer.name for layer in model.layers]
    assert names.index("attention_out") < names.index("block4_pool")


def test_head_and_tc_source_flags(faces48):
    model = ferzoo.build("daf_cnn_compact", num_classes=5, fc_units=[64, 32], head_pool="gap")
    out = model(faces48[:2], training=False)
    assert tuple(out["embedding"].shape) == (2, 32)
    assert tuple(model.aux_losses[0].centres.shape) == (5, 32)
    assert {"fc1", "fc2", "gap"} <= {layer.name for layer in model.layers}
    on_logits = ferzoo.build("daf_cnn_compact", num_classes=7, tc_source="logits")
    assert tuple(on_logits.aux_losses[0].centres.shape) == (7, 7)
    assert on_logits.aux_losses[0].requires == ("logits",)
    no_tc = ferzoo.build("daf_cnn_compact", num_classes=7, tc=False)
    assert no_tc.aux_losses == []
    assert _count(no_tc.trainable_weights) == _count(on_logits.trainable_weights)


def test_compact_parameter_count(compact):
    trainable = _count(compact.trainable_weights)
    assert trainable == 1_782_249
    assert 500_000 <= trainable <= 2_000_000
    assert compact.input_shape_hwc == (48, 48, 1)
    assert not any(isinstance(layer, keras.layers.UpSampling2D) or "resiz" in layer.name for layer in compact.layers)
    assert tuple(compact.get_layer("block4_pool").output.shape[1:]) == (3, 3, 256)
    assert tuple(compact.aux_losses[0].centres.shape) == (7, 256)


def test_inference_is_independent_of_the_batch(compact):
    batch = np.random.default_rng(7).uniform(0, 255, (32, 48, 48, 1)).astype("float32")
    full = compact(batch, training=False)
    for i in (0, 13, 31):
        one = compact(batch[i:i + 1], training=False)
        for key in ("logits", "embedding", "attention_spatial", "attention_channel"):
            ref = _np(full[key])[i]
            np.testing.assert_allclose(_np(one[key])[0], ref, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(ref).max()))
    probs = compact.predict(batch, batch_size=32, verbose=0)
    probs1 = compact.predict(batch[4:5], batch_size=1, verbose=0)
    np.testing.assert_allclose(probs1[0], probs[4], rtol=1e-5, atol=1e-7)
    # evaluation is deterministic (dropout off)
    np.testing.assert_array_equal(_np(compact(batch, training=False)["logits"]), _np(full["logits"]))


def test_layers_serialise():
    for layer in (ChannelAttention(reduction=4, name="ca"), SpatialAttention(kernel_size=5, name="sa")):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    assert keras.saving.get_registered_name(ChannelAttention) == "ferzoo_daf_cnn>ChannelAttention"


def test_config_errors():
    with pytest.raises(ValueError, match="unknown config keys"):
        ferzoo.build("daf_cnn_compact", num_classes=7, margin=3)
    with pytest.raises(ValueError, match="same, non-zero length"):
        ferzoo.build("daf_cnn_compact", num_classes=7, widths=[8, 16], convs=[1])
    with pytest.raises(ValueError, match="too small"):
        ferzoo.build("daf_cnn_compact", num_classes=7, input_shape=(16, 16, 1), widths=[8] * 5, convs=[1] * 5)
    with pytest.raises(ValueError, match="centre_update must be one of"):
        ferzoo.build("daf_cnn_compact", num_classes=7, centre_update="sgd")
    with pytest.raises(ValueError, match="tc_source must be one of"):
        ferzoo.build("daf_cnn_compact", num_classes=7, tc_source="features")
    with pytest.raises(ValueError, match="reduction must be >= 1"):
        ChannelAttention(0)
