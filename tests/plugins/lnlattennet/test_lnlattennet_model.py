"""The uniform-model contract on a tiny LNLAttenNet: batched == branches, batch 1 == batch 32, batch-order
invariance, finite gradients (and the w^g feedback path at alpha = 0), weights-only round trip, the explainers,
serialisation of every custom layer and the config errors."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import ferzoo
from ferzoo_plugins.lnlattennet import layers as L

KEYS = ("logits", "probabilities", "patch_weights", "local_weights", "correlation", "features")


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def pair(tiny_config):
    """The same weights in both local implementations (dropout off, so training-mode outputs compare too)."""
    keras.utils.set_random_seed(5)
    batched = ferzoo.build("lnlattennet", dropout=0.0, **tiny_config)
    branches = ferzoo.build("lnlattennet", dropout=0.0, local_impl="branches", **tiny_config)
    assert [v.path for v in batched.weights] == [v.path for v in branches.weights]
    branches.set_weights(batched.get_weights())
    return batched, branches


def test_batched_and_branches_agree(pair, faces):
    batched, branches = pair
    a, b = batched(faces, training=False), branches(faces, training=False)
    for key in KEYS:
        np.testing.assert_allclose(_np(a[key]), _np(b[key]), rtol=1e-5, atol=1e-7, err_msg=key)
    y = np.array([0, 1, 2, 3])
    grads = []
    for model in pair:
        model.compile()
        with tf.GradientTape() as tape:
            loss = model.compute_loss(faces, y, model(faces, training=True), training=False)
        grads.append([_np(g) for g in tape.gradient(loss, model.trainable_variables)])
    for v, ga, gb in zip(batched.trainable_variables, *grads):
        np.testing.assert_allclose(ga, gb, rtol=1e-4, atol=1e-6 * (np.abs(ga).max() + 1e-30), err_msg=v.path)


def test_batch_1_and_batch_32_give_the_same_outputs(tiny):
    x = np.random.default_rng(1).uniform(0, 255, (32, 144, 144, 3)).astype("float32")
    full = {k: _np(v) for k, v in tiny(x, training=False).items()}
    for i in (0, 17, 31):
        one = tiny(x[i:i + 1], training=False)
        for key in KEYS:
            np.testing.assert_allclose(_np(one[key])[0], full[key][i], rtol=1e-5, atol=1e-6, err_msg=key)


def test_outputs_do_not_depend_on_the_batch_order(tiny, faces):
    order = np.array([2, 0, 3, 1])
    a = tiny(faces, training=False)
    b = tiny(faces[order], training=False)
    for key in KEYS:
        np.testing.assert_allclose(_np(b[key]), _np(a[key])[order], rtol=1e-5, atol=1e-7, err_msg=key)


def test_every_trainable_weight_gets_a_finite_gradient(tiny, faces):
    tiny.compile()
    y = np.array([0, 3, 5, 6])
    with tf.GradientTape() as tape:
        loss = tiny.compute_loss(faces, y, tiny(faces, training=True), training=True)
    grads = tape.gradient(loss, tiny.trainable_variables)
    assert len(grads) == len(tiny.trainable_variables) > 0
    by_path = {}
    for var, g in zip(tiny.trainable_variables, grads):
        assert g is not None, var.path
        g = _np(g)
        assert np.isfinite(g).all(), var.path
        by_path[var.path] = g
    for path in ("conv1_1/kernel", "conv5_2/kernel", "simplenets/conv3_2/kernel", "local_attention/fc2/kernel",
                 "nonlocal_attention/value/kernel", "global_vector/conv2/kernel", "logits/kernel"):
        assert np.abs(by_path[path]).max() > 0, path


def test_query_and_key_learn_through_the_patch_weights_at_alpha_0(tiny_config, faces):
    """With alpha = 0, g* = g: Q and K reach the loss only through w^g in f_en (Eq. 2, the feedback); V not at all."""
    keras.utils.set_random_seed(6)
    model = ferzoo.build("lnlattennet", alpha=0.0, dropout=0.0, l2=0.0, **tiny_config)
    model.compile()
    layer = model.get_layer("nonlocal_attention")
    with tf.GradientTape() as tape:
        loss = model.compute_loss(faces, np.array([0, 1, 2, 3]), model(faces, training=True), training=True)
    gq, gk, gv = tape.gradient(loss, [layer.query.kernel, layer.key.kernel, layer.value.kernel])
    assert np.abs(_np(gq)).max() > 0 and np.abs(_np(gk)).max() > 0
    assert gv is None or np.abs(_np(gv)).max() == 0.0


def test_weights_only_round_trip_gives_identical_outputs(tiny, faces, tmp_path):
    from ferzoo import weights

    path = weights.save(tiny, tmp_path / "lnlattennet.weights.h5", dataset="unit-test")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89HDF\r\n\x1a\n"  # HDF5 weights, no pickled objects
    loaded = ferzoo.load("lnlattennet", weights=str(path))
    assert loaded.weights_card["dataset"] == "unit-test"
    assert loaded.build_config == tiny.build_config
    a, b = tiny(faces, training=False), loaded(faces, training=False)
    for key in KEYS:
        np.testing.assert_array_equal(_np(b[key]), _np(a[key]), err_msg=key)
    # the two implementations share the weight layout: the same file loads into the branches model
    other = ferzoo.load("lnlattennet", weights=str(path), local_impl="branches")
    np.testing.assert_allclose(_np(other(faces, training=False)["probabilities"]), _np(a["probabilities"]),
                               rtol=1e-5, atol=1e-7)
    rebuilt = ferzoo.model.FERModel.from_config(tiny.get_config())
    assert rebuilt.build_config == tiny.build_config and rebuilt.count_params() == tiny.count_params()


@pytest.mark.parametrize("layer", [
    L.PatchConv2D(16, 8, 3, "valid", "relu", "branches", 1e-4),
    L.PatchDense(16, 4, "relu", "batched", 1e-4),
    L.PatchExtract([0, 32, 64, 96], [0, 32, 64, 96], 48, 48),
    L.SimpleNets(16, [4, 8], "branches", 1e-4),
    L.LocalAttentionHeads(16, [8, 8, 8, 4], 4, "same", "batched", 0.0),
    L.PatchFlatten(),
    L.NonLocalAttention(4, 8, 1e-6, 1e-4),
    L.GlobalVector(3, 8, 1e-4),
    L.BlendGlobal(0.7),
    L.CombineLocal(),
    L.ConstantPatchWeights(9, 1 / 9),
], ids=lambda layer: type(layer).__name__)
def test_every_custom_layer_serialises(layer):
    config = keras.saving.serialize_keras_object(layer)
    assert config["registered_name"] == f"ferzoo_lnlattennet>{type(layer).__name__}"
    clone = keras.saving.deserialize_keras_object(config)
    assert type(clone) is type(layer)
    assert clone.get_config() == layer.get_config()


def test_patch_weights_explainer_draws_the_grid(tiny, faces):
    from ferzoo_plugins.lnlattennet.explain import attention_weights, weight_grid

    assert tiny.spec.default_explainer == "patch_weights"
    assert {"patch_weights", "local_weights", "gradcam++", "saliency"} <= set(ferzoo.list_explainers("lnlattennet"))
    maps = tiny.explain(faces)
    assert maps.shape == (4, 144, 144) and maps.dtype == np.float32
    w_g = attention_weights(tiny, faces)
    grid = weight_grid(tiny, faces)
    np.testing.assert_array_equal(grid, w_g.reshape(4, 4, 4))
    edges = [0, 40, 72, 104, 144]  # halfway between the patch centres 24, 56, 88, 120
    for b in range(4):
        for k in range(16):
            r, c = divmod(k, 4)
            cell = maps[b, edges[r]:edges[r + 1], edges[c]:edges[c + 1]]
            np.testing.assert_allclose(cell, w_g[b, k] / w_g[b].max(), rtol=1e-6)
        assert maps[b].max() == pytest.approx(1.0)
    raw = tiny.explain(faces, normalize="none")
    np.testing.assert_allclose(raw[:, 0, 0], w_g[:, 0], rtol=1e-6)
    # overlap mode: the pixel (36, 36) lies in patches 0, 1, 4 and 5; (10, 10) only in patch 0
    blended = tiny.explain(faces, mode="overlap", normalize="none")
    np.testing.assert_allclose(blended[:, 36, 36], w_g[:, [0, 1, 4, 5]].mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(blended[:, 10, 10], w_g[:, 0], rtol=1e-6)
    np.testing.assert_array_equal(tiny.explain(faces, class_index=0), tiny.explain(faces, class_index=6))
    with pytest.raises(ValueError, match="mode must be one of"):
        tiny.explain(faces, mode="dots")
    with pytest.raises(ValueError, match="normalize must be one of"):
        tiny.explain(faces, normalize="log")


def test_local_weights_explainer(tiny, faces):
    from ferzoo_plugins.lnlattennet.explain import attention_weights

    w_l = attention_weights(tiny, faces, "local_weights")
    maps = tiny.explain(faces, method="local_weights", normalize="none")
    assert maps.shape == (4, 144, 144)
    np.testing.assert_allclose(maps[:, 140, 140], w_l[:, 15], rtol=1e-6)
    stretched = tiny.explain(faces, method="local_weights", normalize="minmax")
    assert stretched.min() == pytest.approx(0.0) and stretched.max() == pytest.approx(1.0)


def test_gradcam_plus_plus_uses_f9(tiny, faces):
    from ferzoo.explain import last_spatial_layer

    assert last_spatial_layer(tiny) == "conv9_2"
    maps = tiny.explain(faces[:2], method="gradcam++")
    assert maps.shape == (2, 144, 144) and np.isfinite(maps).all()
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    coarse = tiny.explain(faces[:2], method="gradcam++", layer="conv5_2")
    assert coarse.shape == (2, 144, 144) and np.isfinite(coarse).all()


@pytest.mark.parametrize("config, message", [
    ({"num_patches": 12}, "not a square"),
    ({"alpha": 1.5}, "alpha must be in"),
    ({"local_impl": "loops"}, "local_impl must be one of"),
    ({"local_attention_padding": "full"}, "local_attention_padding must be one of"),
    ({"local_attention_widths": [8, 8, 8]}, "local_attention_widths must be a list of 4"),
    ({"fc_units": []}, "fc_units must be a list"),
    ({"local_attention": "yes"}, "local_attention must be true or false"),
    ({"overlap": 200}, "does not fit"),
    ({"dropout": 1.0}, "dropout must be in"),
])
def test_bad_config_is_a_clear_error(tiny_config, config, message):
    with pytest.raises(ValueError, match=message):
        ferzoo.build("lnlattennet", **{**tiny_config, **config})


def test_bad_input_shape_and_unknown_keys(tiny_config):
    with pytest.raises(ValueError, match="divisible by 16"):
        ferzoo.build("lnlattennet", input_shape=(150, 150, 3), **tiny_config)
    with pytest.raises(ValueError, match="unknown config keys"):
        ferzoo.build("lnlattennet", patches=16)
    keras.utils.set_random_seed(0)
    gray = ferzoo.build("lnlattennet", input_shape=(144, 144, 1), **tiny_config)
    assert gray.get_layer("conv1_1").kernel.shape == (3, 3, 1, 4)
