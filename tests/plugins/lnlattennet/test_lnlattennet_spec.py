"""The unit-testable properties of the spec's section 9, with its exact values, and the parameter count of 2.6."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo_plugins.lnlattennet import layers as L
from ferzoo_plugins.lnlattennet.geometry import grid_side, patch_grid, patch_size


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _shape(model, name, index=None):
    out = model.get_layer(name).output
    return tuple((out[index] if index is not None else out).shape)


# -- U-Net and patches ----------------------------------------------------------------------------------------
def test_unet_taps_f5_and_f9(paper_model):
    assert _shape(paper_model, "conv5_2") == (None, 9, 9, 1024)
    assert _shape(paper_model, "conv9_2") == (None, 144, 144, 64)
    assert _shape(paper_model, "patches") == (None, 48, 48, 16, 64)


def test_patch_k_is_the_f9_window_at_32r_32c():
    f9 = np.random.default_rng(0).normal(size=(2, 144, 144, 64)).astype("float32")
    grid = patch_grid(144, 144)
    stack = _np(L.PatchExtract(grid.ys, grid.xs, grid.height, grid.width)(f9))
    assert stack.shape == (2, 48, 48, 16, 64)
    for k in range(16):
        r, c = divmod(k, 4)
        np.testing.assert_array_equal(stack[:, :, :, k, :], f9[:, 32 * r:32 * r + 48, 32 * c:32 * c + 48, :])


def test_adjacent_patches_share_16_pixels_and_cover_the_map():
    grid = patch_grid(144, 144)
    assert (grid.height, grid.width, grid.ys, grid.xs) == (48, 48, (0, 32, 64, 96), (0, 32, 64, 96))
    assert grid.overlap() == (16, 16)
    for k in range(16):
        r, c = divmod(k, 4)
        y0, x0, y1, x1 = grid.box(k)
        if c < 3:  # right neighbour: exactly 16 shared columns
            _, nx0, _, _ = grid.box(k + 1)
            assert x1 - nx0 == 16
        if r < 3:
            ny0, _, _, _ = grid.box(k + 4)
            assert y1 - ny0 == 16
    covered = np.zeros((144, 144), bool)
    for y0, x0, y1, x1 in grid.boxes():
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_eq5_patch_sizes():
    assert patch_size(144, 4) == 48
    # Table VII: N overlapping pixels with M = 16 -> P = (144 + 3N) / 4
    for n_px, p in zip((4, 8, 12, 16, 20, 24), (39, 42, 45, 48, 51, 54)):
        grid = patch_grid(144, 144, 16, n_px)
        assert grid.height == p and grid.overlap() == (n_px, n_px)
    # Table VI: P about 86.4, 61.7, 48, 39.3, 33.2 for M = 4, 9, 16, 25, 36 (rounded)
    for m, p in zip((4, 9, 16, 25, 36), (86, 62, 48, 39, 33)):
        grid = patch_grid(144, 144, m)
        assert grid.height == p and grid.ys[0] == 0 and grid.ys[-1] + p == 144
    assert grid_side(25) == 5
    with pytest.raises(ValueError, match="not a square"):
        grid_side(12)
    with pytest.raises(ValueError, match="overlap"):
        patch_grid(144, 144, 16, -3)


# -- SimpleNet and local attention ----------------------------------------------------------------------------
def test_simplenet_48x48x64_to_6x6x256_and_9216(paper_model):
    assert _shape(paper_model, "simplenets") == (None, 6, 6, 16, 256)
    assert _shape(paper_model, "local_features") == (None, 16, 9216)
    # the same network run on two patches with the paper's widths
    net = L.SimpleNets(2, (64, 128, 256))
    x = np.random.default_rng(1).uniform(0, 1, (1, 48, 48, 2, 64)).astype("float32")
    out = net(x)
    assert tuple(out.shape) == (1, 6, 6, 2, 256)
    assert tuple(L.PatchFlatten()(out).shape) == (1, 2, 9216)
    assert len(net.convs) == 6  # six convolutions and three pools per SimpleNet (Table II)


def test_local_attention_stages_and_range():
    heads = L.LocalAttentionHeads(16, (256, 128, 128, 64), 64, "valid")
    x = np.maximum(np.random.default_rng(2).normal(size=(2, 6, 6, 16, 256)), 0).astype("float32")
    heads.build(x.shape)
    stages = [tuple(s.shape) for s in heads.stages(x)]
    # per patch: (6,6,256) -> (4,4,256) -> (4,4,128) -> (2,2,128) -> (2,2,64) -> 256 -> 64 -> 1
    assert stages == [(2, 4, 4, 16, 256), (2, 4, 4, 16, 128), (2, 2, 2, 16, 128), (2, 2, 2, 16, 64), (2, 16, 256),
                      (2, 16, 64), (2, 16, 1), (2, 16)]
    w_l = _np(heads(x))
    assert w_l.shape == (2, 16) and (w_l > 0).all() and (w_l < 1).all()


def test_attention_padding_switches_to_same_for_small_patches(tiny_config):
    from ferzoo_plugins.lnlattennet.model import attention_padding

    assert attention_padding(48, 3) == "valid" and attention_padding(39, 3) == "same"
    keras.utils.set_random_seed(0)
    model = ferzoo.build("lnlattennet", num_patches=25, **tiny_config)  # P = 39: 39 -> 19 -> 9 -> 4
    assert model.get_layer("local_attention").padding == "same"
    assert _shape(model, "patches") == (None, 39, 39, 25, 4)
    assert _shape(model, "local_attention") == (None, 25)


# -- non-local attention --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nonlocal_paper():
    keras.utils.set_random_seed(3)
    layer = L.NonLocalAttention(4, 512)
    f5 = np.maximum(np.random.default_rng(3).normal(size=(2, 9, 9, 1024)), 0).astype("float32")
    return layer, f5, [_np(t) for t in layer(f5)]


def test_qkv_shapes_and_the_9_to_4_pool(nonlocal_paper):
    layer, f5, (w_g, r, s) = nonlocal_paper
    q, k, v = (_np(t) for t in layer.qkv(f5))
    assert q.shape == k.shape == v.shape == (2, 4, 4, 512)
    full = _np(layer.query(f5))  # (2, 9, 9, 512) after the 1x1 conv + ReLU
    np.testing.assert_allclose(q, full[:, :8, :8].reshape(2, 4, 2, 4, 2, 512).max(axis=(2, 4)), rtol=1e-6)
    q_star = q.reshape(2, 16, 512)
    k_star = k.reshape(2, 16, 512).transpose(0, 2, 1)
    assert k_star.shape == (2, 512, 16)
    raw = q_star @ k_star
    np.testing.assert_allclose(r, raw / np.maximum(np.abs(raw).sum(-1, keepdims=True), 1e-8), rtol=1e-5)
    assert r.shape == (2, 16, 16) and w_g.shape == (2, 16) and s.shape == (2, 16, 512)
    np.testing.assert_allclose(s, r @ v.reshape(2, 16, 512), rtol=1e-4, atol=1e-6)


def test_r_rows_and_patch_weights_are_distributions(nonlocal_paper):
    _, _, (w_g, r, _) = nonlocal_paper
    assert (r >= 0).all()
    np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-5)
    assert (w_g >= 0).all()
    np.testing.assert_allclose(w_g.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(w_g, r.mean(axis=1), rtol=1e-6)
    assert w_g.std() > 0  # not uniform for a random F5


def test_equal_queries_and_keys_give_uniform_weights():
    q = np.tile(np.random.default_rng(4).uniform(0.1, 1, (1, 1, 8)), (2, 16, 1)).astype("float32")
    k = np.tile(np.random.default_rng(5).uniform(0.1, 1, (1, 8, 1)), (2, 1, 16)).astype("float32")
    r, w_g = (_np(t) for t in L.nonlocal_weights(q, k))
    np.testing.assert_allclose(r, 1 / 16, rtol=1e-6)
    np.testing.assert_allclose(w_g, 1 / 16, rtol=1e-6)
    # a hand case: q = [1, 0], k columns [1, 0] and [3, 0]: R~ row = [1, 3] -> R = [0.25, 0.75]
    r, w_g = (_np(t) for t in L.nonlocal_weights(np.array([[[1.0, 0.0], [2.0, 0.0]]], "float32"),
                                                 np.array([[[1.0, 3.0], [0.0, 0.0]]], "float32")))
    np.testing.assert_allclose(r, [[[0.25, 0.75], [0.25, 0.75]]])
    np.testing.assert_allclose(w_g, [[0.25, 0.75]])
    # eps guards only the division: small rows (R~ sum 4e-6; "+ eps" would give 0.9975) still sum to 1, a zero
    # row stays zero
    small_q = np.array([[[1e-3, 0.0], [0.0, 0.0]]], "float32")
    r, w_g = (_np(t) for t in L.nonlocal_weights(small_q, np.array([[[1e-3, 3e-3], [0.0, 0.0]]], "float32")))
    np.testing.assert_allclose(r, [[[0.25, 0.75], [0.0, 0.0]]], rtol=1e-6)
    assert np.isfinite(w_g).all()


def test_global_vector_and_eq1_blend(paper_model):
    assert _shape(paper_model, "global_vector") == (None, 8192)
    assert _shape(paper_model, "blend") == (None, 8192)
    rng = np.random.default_rng(6)
    g = rng.normal(size=(3, 8192)).astype("float32")
    s = rng.normal(size=(3, 16, 512)).astype("float32")
    flat = s.reshape(3, 8192)  # cell * 512 + channel, the order of flatten(4 x 4 x 512)
    np.testing.assert_array_equal(_np(L.BlendGlobal(0.0)([g, s])), g)
    np.testing.assert_array_equal(_np(L.BlendGlobal(1.0)([g, s])), flat)
    np.testing.assert_allclose(_np(L.BlendGlobal(0.3)([g, s])), 0.7 * g + 0.3 * flat, rtol=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        L.BlendGlobal(1.5)


def test_f_en_is_the_weighted_sum_of_local_features(paper_model):
    assert _shape(paper_model, "combine") == (None, 9216)
    rng = np.random.default_rng(7)
    f = rng.normal(size=(2, 16, 9216)).astype("float32")
    w_g = rng.dirichlet(np.ones(16), size=2).astype("float32")
    w_l = rng.uniform(0, 1, (2, 16)).astype("float32")
    loop = np.zeros((2, 9216), np.float32)
    for i in range(16):
        loop += w_g[:, i:i + 1] * w_l[:, i:i + 1] * f[:, i]
    np.testing.assert_allclose(_np(L.CombineLocal()([f, w_g, w_l])), loop, rtol=1e-5, atol=1e-5)
    uniform = _np(L.CombineLocal()([f, np.full((2, 16), 1 / 16, np.float32), np.ones((2, 16), np.float32)]))
    np.testing.assert_allclose(uniform, f.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_fused_vector_logits_and_softmax(paper_model, tiny, faces):
    assert _shape(paper_model, "fused") == (None, 17408)
    assert _shape(paper_model, "logits") == (None, 7)
    out = tiny(faces, training=False)
    assert tuple(out["logits"].shape) == (4, 7)
    np.testing.assert_allclose(_np(out["probabilities"]).sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(_np(out["patch_weights"]).sum(-1), 1.0, atol=1e-5)


# -- independence of the 16 local networks, parameter count ---------------------------------------------------
def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def _params(layer):
    return int(sum(np.prod(v.shape) for v in layer.trainable_weights))


def test_parameter_count_matches_the_spec(paper_model):
    unet = (_conv(3, 3, 64) + _conv(3, 64, 64) + _conv(3, 64, 128) + _conv(3, 128, 128) + _conv(3, 128, 256)
            + _conv(3, 256, 256) + _conv(3, 256, 512) + _conv(3, 512, 512) + _conv(3, 512, 1024)
            + _conv(3, 1024, 1024)
            + _conv(2, 1024, 512) + _conv(3, 1024, 512) + _conv(3, 512, 512)
            + _conv(2, 512, 256) + _conv(3, 512, 256) + _conv(3, 256, 256)
            + _conv(2, 256, 128) + _conv(3, 256, 128) + _conv(3, 128, 128)
            + _conv(2, 128, 64) + _conv(3, 128, 64) + _conv(3, 64, 64))
    simplenet = (_conv(3, 64, 64) * 2 + _conv(3, 64, 128) + _conv(3, 128, 128) + _conv(3, 128, 256)
                 + _conv(3, 256, 256))
    attention = (_conv(3, 256, 256) + _conv(1, 256, 128) + _conv(3, 128, 128) + _conv(1, 128, 64)
                 + (256 * 64 + 64) + (64 + 1))
    qkv = 3 * _conv(1, 1024, 512)
    g_branch = _conv(3, 1024, 512) + _conv(3, 512, 512)
    fc = (17408 * 1024 + 1024) + (1024 * 512 + 512) + (512 * 7 + 7)
    top = {}
    for v in paper_model.trainable_weights:
        name = v.path.split("/")[0]
        top[name] = top.get(name, 0) + int(np.prod(v.shape))
    assert sum(n for k, n in top.items() if k.startswith(("conv", "up"))) == unet == 31_031_680
    assert top["simplenets"] == 16 * simplenet == 18_888_704
    assert top["local_attention"] == 16 * attention == 12_725_264
    assert top["nonlocal_attention"] == qkv == 1_574_400
    assert top["global_vector"] == g_branch == 7_078_912
    assert top["fc1"] + top["fc2"] + top["logits"] == fc == 18_355_207
    total = _params(paper_model)
    assert total == unet + 16 * (simplenet + attention) + qkv + g_branch + fc == 89_654_167
    # the spec's rounded figures: 31.0 + 18.9 + 12.7 + 1.6 + 7.1 + 18.4 M, "about 89.7 M"
    assert [round(n / 1e6, 1) for n in (unet, 16 * simplenet, 16 * attention, qkv, g_branch, fc)] == \
        [31.0, 18.9, 12.7, 1.6, 7.1, 18.4]
    assert round(total / 1e6, 1) == 89.7


def test_each_patch_has_its_own_weights(paper_model):
    one = keras.Sequential([keras.Input((48, 48, 64))] + [
        keras.layers.Conv2D(w, 3, padding="same") for w in (64, 64, 128, 128, 256, 256)])
    assert _params(paper_model.get_layer("simplenets")) == 16 * _params(one)
    kernel = _np(paper_model.get_layer("simplenets").convs[0].kernel)  # (16, 3, 3, 64, 64)
    assert kernel.shape == (16, 3, 3, 64, 64)
    assert len({kernel[i].tobytes() for i in range(16)}) == 16  # 16 separately drawn initialisations
    limit = np.sqrt(6 / (9 * 64 + 9 * 64))  # Glorot-uniform of one Conv2D(64 -> 64, 3x3)
    assert kernel.max() <= limit and kernel.min() >= -limit and kernel.max() > 0.9 * limit


def test_patch_outputs_depend_on_their_own_patch_and_weights_only(tiny_config):
    import tensorflow as tf

    keras.utils.set_random_seed(8)
    net = L.SimpleNets(4, tiny_config["simplenet_widths"])
    x = tf.constant(np.random.default_rng(8).uniform(0, 1, (2, 48, 48, 4, 4)).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        out = net(x)
        score = tf.reduce_sum(out[:, :, :, 1, :])  # patch 1 only
    gx = tape.gradient(score, x).numpy()
    assert np.abs(gx[:, :, :, 1]).max() > 0
    np.testing.assert_array_equal(gx[:, :, :, [0, 2, 3]], 0.0)
    for conv in net.convs:
        gk = tape.gradient(score, conv.kernel).numpy()
        np.testing.assert_array_equal(gk[[0, 2, 3]], 0.0)


# -- ablations (Table IV) -------------------------------------------------------------------------------------
@pytest.mark.parametrize("local, nonlocal_", [(False, False), (True, False), (False, True)],
                         ids=["Model-S", "Model-Local", "Model-NonLocal"])
def test_ablation_variants(tiny_config, faces, local, nonlocal_):
    keras.utils.set_random_seed(9)
    model = ferzoo.build("lnlattennet", local_attention=local, nonlocal_attention=nonlocal_, **tiny_config)
    out = model(faces, training=False)
    w_g, w_l = _np(out["patch_weights"]), _np(out["local_weights"])
    names = {layer.name for layer in model.layers}
    if nonlocal_:
        assert w_g.std() > 0 and "nonlocal_attention" in names and "correlation" in out
        np.testing.assert_allclose(w_g.sum(-1), 1.0, atol=1e-5)
    else:
        np.testing.assert_allclose(w_g, 1 / 16)
        assert "nonlocal_attention" not in names and "blend" not in names and "correlation" not in out
        # g* = g: the first 16 * C values of z are the global vector itself
        probe = keras.Model(model.inputs, [model.get_layer("global_vector").output, model.get_layer("fused").output])
        g, z = (_np(t) for t in probe(faces))
        np.testing.assert_array_equal(z[:, :g.shape[1]], g)
    if local:
        assert (w_l > 0).all() and (w_l < 1).all() and "local_attention" in names
    else:
        np.testing.assert_array_equal(w_l, 1.0)
        assert "local_attention" not in names
