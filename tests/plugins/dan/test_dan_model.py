"""DAN architecture: spec section 9 properties 1-5, serialisation, batch independence."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.backbones.resnet import resnet18
from ferzoo_plugins.dan.layers import AttentionFusion, ChannelAttention, SpatialAttention


def _count(variables):
    return int(sum(np.prod(v.shape) for v in variables))


def test_backbone_shapes_and_nonnegative():
    rng = np.random.default_rng(0)
    big = resnet18((224, 224, 3))
    out = keras.ops.convert_to_numpy(big(rng.normal(size=(2, 224, 224, 3)).astype("float32"), training=False))
    assert out.shape == (2, 7, 7, 512) and out.min() >= 0.0 and out.max() > 0.0
    assert _count(big.trainable_weights) == 11_176_512
    small = resnet18((100, 100, 3))
    assert tuple(small(np.zeros((1, 100, 100, 3), "float32")).shape) == (1, 4, 4, 512)


@pytest.mark.parametrize("num_classes,expected", [(7, 19_723_733), (8, 19_724_248)])
def test_parameter_counts(num_classes, expected):
    model = ferzoo.build("dan", num_classes=num_classes)  # 224 x 224 x 3 by default
    centres = _count([v for loss in model.aux_losses for v in loss.trainable_weights])
    assert centres == num_classes * 512  # the affinity centres live beside the network, as in the code
    assert _count(model.trainable_weights) - centres == expected
    assert _count(model.get_layer("cat_head0_sa").trainable_weights) == 2_102_528
    assert _count(model.get_layer("cat_head0_ca").trainable_weights) == 33_376
    if num_classes == 7:
        assert _count(model.non_trainable_weights) == 24_206


def test_spatial_unit_map_and_product():
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(size=(3, 7, 7, 512)), 0).astype("float32")
    unit = SpatialAttention()
    s = keras.ops.convert_to_numpy(unit(x, training=False))
    m = keras.ops.convert_to_numpy(unit.attention_map(x, training=False))
    assert m.shape == (3, 7, 7, 1) and m.min() >= 0.0 and m.max() > 1.0  # unbounded: no sigmoid
    assert s.shape == x.shape
    np.testing.assert_allclose(s, x * m, rtol=1e-6)


def test_channel_unit_gate_and_bounds():
    rng = np.random.default_rng(2)
    s = np.abs(rng.normal(size=(4, 7, 7, 512)) * 5).astype("float32")
    unit = ChannelAttention()
    a = keras.ops.convert_to_numpy(unit(s, training=False))
    pooled = s.mean(axis=(1, 2))
    gate = keras.ops.convert_to_numpy(unit.gate(pooled, training=False))
    assert a.shape == (4, 512)
    assert gate.min() > 0.0 and gate.max() < 1.0
    assert a.min() >= 0.0 and np.all(a <= pooled + 1e-6)
    np.testing.assert_allclose(a, pooled * gate, rtol=1e-5)


def test_model_outputs_and_log_softmax_fusion(dan64, pixels):
    out = dan64(pixels, training=False)
    assert tuple(out["logits"].shape) == (4, 7)
    assert tuple(out["features"].shape) == (4, 2, 2, 512)
    v = keras.ops.convert_to_numpy(out["heads"])
    assert v.shape == (4, 4, 512)
    assert v.max() <= 0.0
    np.testing.assert_allclose(np.exp(v).sum(axis=1), 1.0, atol=1e-5)


def test_single_head_is_not_log_softmaxed(pixels):
    model = ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3), num_heads=1)
    raw = keras.Model(model.inputs, model.get_layer("cat_head0_ca").output)
    v = keras.ops.convert_to_numpy(model(pixels, training=False)["heads"])
    assert v.shape == (4, 1, 512)
    np.testing.assert_allclose(v[:, 0], keras.ops.convert_to_numpy(raw(pixels, training=False)), rtol=1e-6)
    assert v.min() >= 0.0  # a raw head output, not a log-probability


def test_fusion_layer_exact():
    a = np.array([[[1.0, 2.0]], [[3.0, 2.0]]], np.float32)  # two heads, batch 1, L = 2 -> pass as a list
    v = keras.ops.convert_to_numpy(AttentionFusion()([a[0], a[1]]))
    expected = np.log(np.exp(a) / np.exp(a).sum(axis=0)).transpose(1, 0, 2)
    np.testing.assert_allclose(v, expected, rtol=1e-6)


def test_inference_is_independent_of_the_batch(dan64):
    batch = np.random.default_rng(3).uniform(0, 255, (32, 64, 64, 3)).astype(np.float32)
    full = keras.ops.convert_to_numpy(dan64(batch, training=False)["logits"])
    one = keras.ops.convert_to_numpy(dan64(batch[5:6], training=False)["logits"])
    # float32 sums over 512 channels: agree to 1e-6 of the logits' scale (they reach ~170 here)
    np.testing.assert_allclose(one[0], full[5], rtol=1e-5, atol=1e-6 * np.abs(full[5]).max())
    probs = dan64.predict(batch, batch_size=32, verbose=0)
    probs1 = dan64.predict(batch[:1], batch_size=1, verbose=0)
    np.testing.assert_allclose(probs1[0], probs[0], rtol=1e-5, atol=1e-6)


def test_layers_serialise():
    for layer in (SpatialAttention(reduced_channels=16, name="sa"), ChannelAttention(hidden_units=8, name="ca"),
                  AttentionFusion(log_softmax=False, name="f")):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()


def test_config_errors():
    with pytest.raises(ValueError, match="num_heads must be >= 1"):
        ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3), num_heads=0)
    with pytest.raises(ValueError, match="unknown config keys"):
        ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3), heads=2)
    with pytest.raises(ValueError, match="input channels not supported"):
        ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match="partition loss: form must be one of"):
        ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3), partition_form="mean")


def _randomise_batch_norms(model, seed=0):
    """Non-trivial inference statistics and affine parameters in every batch norm, sub-layers included."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape
            layer.moving_mean.assign(rng.normal(0, 0.2, n).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.3, 3.0, n).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, n).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, n).astype("float32"))


def test_folded_spatial_unit_is_the_branch_maths():
    """inference_fold's two convolutions give the map of the unit's four conv-BN layers and three branches."""
    from ferzoo.layers import folded_for_inference, inference_constants

    inputs = keras.Input((5, 6, 8))
    unit = SpatialAttention(reduced_channels=4)
    model = keras.Model(inputs, unit(inputs))
    for conv in [unit.conv1x1, *unit.convs.values()]:
        conv.bias.assign(np.random.default_rng(1).normal(0, 0.3, conv.bias.shape).astype("float32"))
    _randomise_batch_norms(model)
    x = np.random.default_rng(2).normal(size=(3, 5, 6, 8)).astype("float32")
    branches = keras.ops.convert_to_numpy(unit.attention_map(x, training=False))
    assert inference_constants(unit) is None
    with folded_for_inference(model):
        assert inference_constants(unit) is not None
        folded = keras.ops.convert_to_numpy(unit.attention_map(x, training=False))
        in_training = keras.ops.convert_to_numpy(unit.attention_map(x, training=True))
    assert inference_constants(unit) is None  # nothing outlives the block
    assert branches.max() > 0.1
    np.testing.assert_allclose(folded, branches, rtol=1e-4, atol=1e-4 * float(np.abs(branches).max()))
    # training ignores the fold: batch statistics, not the moving ones
    assert not np.allclose(in_training, branches, atol=1e-3)
    k1, b1, k3, b3 = unit.inference_fold()
    assert k1.shape == (1, 1, 8, 4) and k3.shape == (3, 3, 4, 8) and b1.shape == (4,) and b3.shape == (8,)


@pytest.mark.slow  # about 18 s: traces DAN twice; the fold's arithmetic is tested by default above
def test_frozen_dan_uses_the_fold_and_matches_keras(dan64, pixels):
    """The frozen predictor traces the folded heads (fewer convolutions) and gives Keras' answers; it is a
    snapshot: later weight changes reach Keras, not the frozen graph."""
    from ferzoo.export import frozen_predictor

    model = ferzoo.build("dan", num_classes=7, input_shape=(64, 64, 3))
    model.set_weights(dan64.get_weights())
    _randomise_batch_norms(model, seed=3)
    # the final batch norm scales the logits down so the softmax is not saturated
    model.get_layer("bn").moving_variance.assign(np.full(7, 1e6, "float32"))
    frozen = frozen_predictor(model)
    unfolded = frozen_predictor(model, fold=False)

    def head_convs(predictor):
        return [n for n in predictor._fn.graph.as_graph_def().node if n.op == "Conv2D" and "head" in n.name]

    assert len(head_convs(frozen)) == 4 * 2  # 4 heads x (1x1 + the folded 3x3)
    assert len(head_convs(unfolded)) == 4 * 4 and frozen.fold and not unfolded.fold
    want = _probabilities(model, pixels)
    assert 0.05 < want.max() < 0.95  # not saturated, so the comparison can fail
    np.testing.assert_allclose(frozen(pixels), want, atol=1e-5)
    np.testing.assert_allclose(unfolded(pixels), want, atol=1e-5)
    # bfloat16: the folded constants are cast to the compute dtype; answers stay near float32's
    half = frozen_predictor(model, precision="bfloat16")
    assert half.precision == "bfloat16" and len(head_convs(half)) == 4 * 2
    np.testing.assert_allclose(half(pixels), want, atol=0.05)
    before = frozen(pixels)
    model.get_layer("bn").moving_variance.assign(np.full(7, 1.0, "float32"))
    np.testing.assert_array_equal(frozen(pixels), before)
    assert not np.allclose(_probabilities(model, pixels), before, atol=1e-3)


def _probabilities(model, pixels):
    return np.asarray(model.predict_on_batch(pixels))
