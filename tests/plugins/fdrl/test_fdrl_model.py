"""FDRL's architecture: spec section 9 items 1-7 and 15 with their exact values, the parameter counts of spec 2,
batch independence, serialisation, the ablation flags, config errors and the shared backbone's init file."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo_plugins.fdrl.layers import (BranchDense, BranchScale, BranchSum, InterRelation, IntraWeight, NodeFusion,
                                        inter_weight_matrix, pairwise_distances)
from ferzoo_plugins.fdrl.model import build_frn, head_parameter_counts


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _probe(model, *names):
    """A model from the raw input to the outputs of the named layers (a layer with two outputs gives both)."""
    outs = []
    for name in names:
        out = model.get_layer(name).output
        outs.extend(out if isinstance(out, (list, tuple)) else [out])
    return keras.Model(model.inputs[0], outs)


@pytest.fixture(scope="module")
def paper():
    keras.utils.set_random_seed(0)
    return ferzoo.build("fdrl", num_classes=7)


# -- 9.1 / 9.2 / 9.7 ------------------------------------------------------------------------------------------
def test_shapes_ranges_and_relu_outputs_at_224(paper):
    """9.1: N = 4, K = 7 at the paper's 224 x 224; 9.2: l, g >= 0 and Intra-W = the plain sum of a."""
    x = np.random.default_rng(0).uniform(0, 255, (4, 224, 224, 3)).astype("float32")
    basic, latent, a, w, f, g, f_hat, omega, y_nodes, y, logits = (_np(t) for t in _probe(
        paper, "gap", "fdn", "intra_fc", "intra_w", "intra_aware", "message", "inter_relation", "node_fusion",
        "reconstruction", "epn")(x, training=False))
    assert tuple(paper.get_layer("layer4_1_out").output.shape[1:]) == (7, 7, 512)
    assert basic.shape == (4, 512)
    for t in (latent, a, f, g, f_hat, y_nodes):
        assert t.shape == (4, 9, 128)
    assert w.shape == (4, 9) and omega.shape == (4, 9, 9) and y.shape == (4, 128) and logits.shape == (4, 7)
    assert a.min() > 0.0 and a.max() < 1.0
    assert w.min() > 0.0 and w.max() < 128.0
    assert latent.min() >= 0.0 and g.min() >= 0.0 and latent.max() > 0.0
    np.testing.assert_allclose(w, a.sum(axis=-1), rtol=1e-6)
    np.testing.assert_allclose(f, w[..., None] * latent, rtol=1e-6)
    np.testing.assert_allclose(y_nodes, 0.5 * f + 0.5 * f_hat, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(y, y_nodes.sum(axis=1), rtol=1e-5, atol=1e-4)
    out = paper(x, training=False)
    assert sorted(out) == ["basic", "expression", "inter_weights", "intra_weights", "latent", "logits",
                           "probabilities"]
    np.testing.assert_allclose(_np(out["probabilities"]).sum(axis=1), 1.0, rtol=1e-6)


def test_parameter_counts_of_spec_2(paper):
    counts = head_parameter_counts(paper)
    assert counts == {"fdn": 590_976, "intra_fc": 148_608, "message": 148_608, "epn": 903, "backbone": 11_176_512}
    assert sum(counts.values()) - counts["backbone"] == 889_095
    six = ferzoo.build("fdrl", num_classes=6, input_shape=(32, 32, 3))
    assert sum(v for k, v in head_parameter_counts(six).items() if k != "backbone") == 888_966
    assert six.describe()["trainable_params"] == 11_176_512 + 888_966
    # the centres are state, not trainable: M x D latent centres and K x M class centres
    shapes = {loss.name: tuple(loss.centres.shape) for loss in six.aux_losses if hasattr(loss, "centres")}
    assert shapes == {"compactness": (9, 128), "distribution": (6, 9)}
    assert all(not v.trainable for loss in six.aux_losses for v in loss.weights)


def test_branches_are_independent_and_permute_with_their_weights(small, pixels):
    """9.7: each branch has its own weights; permuting the FDN branch weights permutes L along axis 1."""
    fdn = small.get_layer("fdn")
    assert tuple(fdn.kernel.shape) == (9, 512, 128) and tuple(fdn.bias.shape) == (9, 128)
    kernel, bias = _np(fdn.kernel), _np(fdn.bias)
    assert not np.allclose(kernel[0], kernel[1])  # no sharing
    probe = _probe(small, "fdn")
    before = _np(probe(pixels, training=False))
    perm = np.array([3, 0, 8, 1, 2, 7, 6, 5, 4])
    try:
        fdn.kernel.assign(kernel[perm])
        fdn.bias.assign(bias[perm])
        after = _np(probe(pixels, training=False))
    finally:
        fdn.kernel.assign(kernel)
        fdn.bias.assign(bias)
    np.testing.assert_allclose(after, before[:, perm], rtol=1e-6, atol=1e-7)
    # one branch equals a plain Dense with that branch's weights
    basic = _np(_probe(small, "gap")(pixels, training=False))
    np.testing.assert_allclose(before[:, 4], np.maximum(basic @ kernel[4] + bias[4], 0), rtol=1e-5, atol=1e-6)


# -- 9.3 ------------------------------------------------------------------------------------------------------
def test_zero_intra_fc_gives_intra_w_of_d_over_2():
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3))
    layer = model.get_layer("intra_fc")
    layer.kernel.assign(np.zeros(layer.kernel.shape, "float32"))
    layer.bias.assign(np.zeros(layer.bias.shape, "float32"))
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    w = _np(model(x, training=False)["intra_weights"])
    np.testing.assert_array_equal(w, np.full((3, 9), 64.0, "float32"))


def test_intra_w_norm_mean_divides_alpha_by_d_and_shrinks_the_initial_logits():
    x = np.random.default_rng(1).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    outs = {}
    for norm in ("l1", "mean"):
        keras.utils.set_random_seed(3)
        model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), intra_w_norm=norm)
        assert model.get_layer("intra_w").norm == norm
        outs[norm] = model(x, training=False)
    np.testing.assert_allclose(_np(outs["mean"]["intra_weights"]), _np(outs["l1"]["intra_weights"]) / 128.0,
                               rtol=1e-6)
    assert np.all(_np(outs["mean"]["intra_weights"]) < 1.0)
    assert np.abs(_np(outs["mean"]["logits"])).max() < 0.1 * np.abs(_np(outs["l1"]["logits"])).max()


# -- 9.4 ------------------------------------------------------------------------------------------------------
def test_inter_weights_symmetric_zero_diagonal_and_tanh_of_distance():
    g = np.array([[[0.0, 0.0], [3.0, 4.0]]], "float32")
    omega = _np(inter_weight_matrix(g))
    np.testing.assert_allclose(omega, [[[0.0, np.tanh(5.0)], [np.tanh(5.0), 0.0]]], rtol=1e-6)
    assert omega[0, 0, 1] == pytest.approx(0.9999092, abs=1e-7)
    rng = np.random.default_rng(2)
    g = np.abs(rng.normal(size=(5, 9, 16))).astype("float32") * 0.3
    omega = _np(inter_weight_matrix(g))
    np.testing.assert_allclose(omega, np.transpose(omega, (0, 2, 1)), rtol=0, atol=0)
    np.testing.assert_array_equal(np.diagonal(omega, axis1=1, axis2=2), 0.0)
    assert omega.min() >= 0.0 and omega.max() < 1.0
    ref = np.tanh(np.sqrt(((g[:, :, None] - g[:, None]) ** 2).sum(-1))) * (1 - np.eye(9))
    np.testing.assert_allclose(omega, ref, rtol=1e-5, atol=1e-6)
    # larger distance, larger weight (the paper's literal eq. 9)
    near, far = _np(inter_weight_matrix(np.array([[[0, 0], [0.1, 0]], [[0, 0], [1.0, 0]]], "float32")))[:, 0, 1]
    assert far > near


# -- 9.5 ------------------------------------------------------------------------------------------------------
def test_worked_frn_case():
    """M = 2, D = 2, biases 0: l_1 = [1, 0], l_2 = [0, 1]; W_s = 0 -> alpha = 1, f = l; W_e = I -> g = f;
    omega = tanh(sqrt 2); y_1 = [0.5, 0.4441928], y_2 = [0.4441928, 0.5], y = [0.9441928, 0.9441928]."""
    latent = keras.Input((2, 2))
    out = build_frn(latent)
    frn = keras.Model(latent, [out["expression"], out["intra_weights"], out["inter_weights"]])
    names = [l.name for l in frn.layers]
    intra_fc, message = frn.get_layer("intra_fc"), frn.get_layer("message")
    intra_fc.kernel.assign(np.zeros((2, 2, 2), "float32"))
    intra_fc.bias.assign(np.zeros((2, 2), "float32"))
    message.kernel.assign(np.stack([np.eye(2), np.eye(2)]).astype("float32"))
    message.bias.assign(np.zeros((2, 2), "float32"))
    l = np.array([[[1.0, 0.0], [0.0, 1.0]]], "float32")
    y, w, omega = (_np(t) for t in frn(l))
    np.testing.assert_allclose(w, [[1.0, 1.0]], rtol=1e-7)
    assert omega[0, 0, 1] == pytest.approx(0.8883856, abs=1e-7) and omega[0, 0, 0] == 0.0
    nodes = _np(keras.Model(latent, frn.get_layer("node_fusion").output)(l))
    np.testing.assert_allclose(nodes[0], [[0.5, 0.4441928], [0.4441928, 0.5]], atol=1e-7)
    np.testing.assert_allclose(y, [[0.9441928, 0.9441928]], atol=1e-7)
    assert names.count("node_fusion") == 1


def test_one_latent_feature_has_no_graph():
    """9.1: M = 1 works; Omega = 0 and f_hat = 0, so y = 0.5 f."""
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), num_latent=1)
    x = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    f, f_hat, omega, y = (_np(t) for t in _probe(model, "intra_aware", "inter_relation", "reconstruction")(x))
    assert omega.shape == (2, 1, 1) and np.all(omega == 0.0)
    assert np.all(f_hat == 0.0)
    np.testing.assert_allclose(y, 0.5 * f[:, 0], rtol=1e-6)


# -- 9.6 (the distance at zero; the loss gradient is in test_fdrl_losses) -------------------------------------------
def test_zero_distance_has_finite_value_and_gradient():
    g = keras.ops.convert_to_tensor(np.zeros((2, 3, 4), "float32"))
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(g)
        d = pairwise_distances(g)
        omega = inter_weight_matrix(g)
        total = tf.reduce_sum(omega) + tf.reduce_sum(d)
    grad = tape.gradient(total, g).numpy()
    assert np.all(np.isfinite(d.numpy())) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(d.numpy(), 1e-6, rtol=1e-6)  # sqrt(1e-12)
    assert np.all(omega.numpy() < 1e-5)


# -- 9.15 -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, layers, outputs, losses", [
    ({"fdn": False, "intra_rm": False, "inter_rm": False}, set(), {"basic"}, []),
    ({"intra_rm": False, "inter_rm": False}, {"fdn"}, {"basic", "latent", "expression"}, ["compactness"]),
    ({"intra_rm": False}, {"fdn", "message", "inter_relation", "node_fusion"},
     {"basic", "latent", "expression", "inter_weights"}, ["compactness"]),
    ({"inter_rm": False}, {"fdn", "intra_fc", "intra_w", "intra_aware"},
     {"basic", "latent", "expression", "intra_weights"}, ["compactness", "balance", "distribution"]),
])
def test_ablation_switches_build_the_expected_graphs(flags, layers, outputs, losses):
    """Spec A8: baseline = GAP + linear 512 -> K with CE only; FDN only; FDN + Inter-RM (f = l); FDN + Intra-RM
    (y = sum_j f_ij, no message network)."""
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), **flags)
    head = {"fdn", "intra_fc", "intra_w", "intra_aware", "message", "inter_relation", "node_fusion"}
    assert {l.name for l in model.layers} & head == layers
    assert set(model._outputs_struct) == outputs | {"logits", "probabilities"}
    assert [l.name for l in model.aux_losses] == losses
    epn = model.get_layer("epn")
    assert tuple(epn.kernel.shape) == ((512, 7) if not flags.get("fdn", True) else (128, 7))
    model.compile()  # every variant compiles with the recipe (the lambdas live in the config)
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    if "intra_rm" in flags and "inter_rm" not in flags:  # FDN + Inter-RM: the messages read l directly
        latent, g = (_np(t) for t in _probe(model, "fdn", "message")(x))
        msg = model.get_layer("message")
        ref = np.maximum(np.einsum("nmi,mio->nmo", latent, _np(msg.kernel)) + _np(msg.bias), 0)
        np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-5)
    if flags == {"inter_rm": False}:  # y = sum_j f_ij
        f, y = (_np(t) for t in _probe(model, "intra_aware", "reconstruction")(x))
        np.testing.assert_allclose(y, f.sum(axis=1), rtol=1e-5, atol=1e-4)


def test_node_intra_term_message_uses_g():
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), node_intra_term="message")
    x = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    g, f_hat, _, nodes = (_np(t) for t in _probe(model, "message", "inter_relation", "node_fusion")(x))
    np.testing.assert_allclose(nodes, 0.5 * g + 0.5 * f_hat, rtol=1e-6, atol=1e-6)


# -- uniform-model properties ----------------------------------------------------------------------------------
def test_batch_of_one_equals_batch_of_32(small):
    batch = np.random.default_rng(7).uniform(0, 255, (32, 32, 32, 3)).astype("float32")
    full = small(batch, training=False)
    for i in (0, 17, 31):
        one = small(batch[i:i + 1], training=False)
        for key in ("logits", "latent", "intra_weights", "inter_weights", "expression", "basic"):
            ref = _np(full[key])[i]
            np.testing.assert_allclose(_np(one[key])[0], ref, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(ref).max()))
    probs = small.predict(batch, batch_size=32, verbose=0)
    np.testing.assert_allclose(small.predict(batch[5:6], batch_size=1, verbose=0)[0], probs[5], rtol=1e-5, atol=1e-6)


def test_layers_serialise():
    layers = [BranchDense(3, 5, "sigmoid", shared_input=True, use_bias=False, name="b"), IntraWeight(name="w"),
              IntraWeight("mean", name="w2"), BranchScale(name="s"), InterRelation(eps=1e-10, name="r"), NodeFusion(0.25, name="n"),
              BranchSum(name="y")]
    for layer in layers:
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
        assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    assert keras.saving.get_registered_name(InterRelation) == "ferzoo_fdrl>InterRelation"


def test_config_errors_name_the_key():
    cases = [({"num_latent": 0}, "num_latent must be an integer >= 1"),
             ({"delta": 1.5}, r"delta must be a number in \[0, 1\]"),
             ({"fdn": False}, "fdn=false .* needs intra_rm=false and inter_rm=false"),
             ({"intra_rm": "yes"}, "intra_rm must be true or false"),
             ({"node_intra_term": "g"}, "node_intra_term must be one of"),
             ({"distance_eps": 0}, "distance_eps must be a number > 0"),
             ({"intra_w_norm": "l2"}, r"intra_w_norm must be one of \('l1', 'mean'\)"),
             ({"lambda_b": -1}, "lambda_b must be a number >= 0"),
             ({"centre_update": "sgd"}, "centre_update must be one of"),
             ({"centre_rate": 2}, r"centre_rate must be a number in \[0, 1\]"),
             ({"M": 9}, "unknown config keys")]
    for config, message in cases:
        with pytest.raises(ValueError, match=message):
            ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), **config)
    with pytest.raises(ValueError, match="input channels not supported"):
        ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="activation must be one of"):
        BranchDense(2, 2, "tanh")


def test_backbone_weights_initialise_the_resnet_and_stay_out_of_the_card(tmp_path):
    """The shared ResNet-18 store (DAN's): a converted backbone file initialises the backbone by layer name."""
    from ferzoo import weights as W
    from ferzoo.backbones.pretrained import backbone_dir
    from ferzoo.backbones.resnet import resnet18

    keras.utils.set_random_seed(11)
    donor = resnet18(input_shape=(64, 64, 3))
    W.save_weights_and_card(donor, backbone_dir("resnet18", "unit") / "resnet18.weights.h5",
                            {"model": "resnet18_backbone", "class_names": [], "input_spec": {}})
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), backbone_weights="unit")
    for name in ("conv1", "layer3_1_conv2", "layer4_0_downsample_1"):
        for got, want in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert "backbone_weights" not in model.card_config()
    with pytest.raises(FileNotFoundError, match="ferzoo convert resnet18"):
        ferzoo.build("fdrl", num_classes=7, input_shape=(32, 32, 3), backbone_weights="missing")


def test_plugin_import_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys, ferzoo, ferzoo_plugins.fdrl as p; ferzoo.model_info('fdrl'); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(sorted(p.DEFAULT_CONFIG))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    spec = ferzoo.model_info("fdrl")
    assert spec.default_input_shape == (224, 224, 3) and spec.default_explainer == "intra_weights"
    assert spec.init_config == ("backbone_weights",)
    assert {"fdrl_compactness", "fdrl_balance", "fdrl_distribution"} <= set(ferzoo.list_losses())
