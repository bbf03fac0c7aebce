"""``lnlattennet_cpu`` (issue 24): the CPU configuration of LNLAttenNet as its own model name, the way
``daf_cnn_compact`` is DAF-CNN's: a quarter of the channels, BatchNorm in the U-Net, 64 x 64 x 3 by default, its own
recipe table; ``lnlattennet`` stays the paper's model."""

import keras
import numpy as np
import pytest

import ferzoo
from ferzoo.recipes import resolve_recipe
from ferzoo_plugins.lnlattennet import CPU_CONFIG, DEFAULT_CONFIG

PAPER_PARAMS = 89_654_167  # the paper model's count, derived layer by layer in test_lnlattennet_spec.py


@pytest.fixture(scope="module")
def cpu_model():
    keras.utils.set_random_seed(0)
    return ferzoo.build("lnlattennet_cpu", num_classes=7)


def _conv(k, cin, cout, bias=True):
    return k * k * cin * cout + (cout if bias else 0)


def _conv_bn(k, cin, cout):
    """A bias-free conv + BatchNorm: gamma and beta trained, mean and variance tracked."""
    return _conv(k, cin, cout, bias=False) + 4 * cout


def _expected_params(cfg, model, num_classes=7):
    """The parameter count from the config's widths (U-Net with BatchNorm, 16 SimpleNets, 16 local attentions,
    Q / K / V, the global branch, the FC head); only two fan-ins depend on the input size and are read from the
    graph: the local-attention map side and FC1's input."""
    assert cfg["unet_batch_norm"] is True and cfg["num_patches"] == 16
    w, s, a = cfg["unet_widths"], cfg["simplenet_widths"], cfg["local_attention_widths"]
    unet = _conv_bn(3, 3, w[0]) + _conv_bn(3, w[0], w[0])
    for i in range(1, 5):
        unet += _conv_bn(3, w[i - 1], w[i]) + _conv_bn(3, w[i], w[i])
    for i in range(4, 0, -1):  # up-conv 2x2 (with bias), then two convs on the skip concatenation
        unet += _conv(2, w[i], w[i - 1]) + _conv_bn(3, 2 * w[i - 1], w[i - 1]) + _conv_bn(3, w[i - 1], w[i - 1])
    simplenet = (_conv(3, w[0], s[0]) + _conv(3, s[0], s[0]) + _conv(3, s[0], s[1]) + _conv(3, s[1], s[1])
                 + _conv(3, s[1], s[2]) + _conv(3, s[2], s[2]))
    side = model.get_layer("local_attention").input.shape[1]
    out_side = side - 4 if side >= 5 else side  # 'auto': two valid 3x3 convs, or 'same' below 5 x 5 (spec 8.12)
    hidden = cfg["local_attention_hidden"]
    attention = (_conv(3, s[2], a[0]) + _conv(1, a[0], a[1]) + _conv(3, a[1], a[2]) + _conv(1, a[2], a[3])
                 + (a[3] * out_side * out_side * hidden + hidden) + (hidden + 1))
    n = cfg["nonlocal_channels"]
    qkv = 3 * _conv(1, w[4], n)
    g_branch = _conv(3, w[4], n) + _conv(3, n, n)
    f1, f2 = cfg["fc_units"]
    fan_in = model.get_layer("fc1").input.shape[-1]
    fc = (fan_in * f1 + f1) + (f1 * f2 + f2) + (f2 * num_classes + num_classes)
    return unet + 16 * (simplenet + attention) + qkv + g_branch + fc


def test_registered_as_its_own_model_beside_the_paper_model():
    spec = ferzoo.model_info("lnlattennet_cpu")
    assert spec.plugin == "lnlattennet" and tuple(spec.default_input_shape) == (64, 64, 3)
    assert spec.default_config == CPU_CONFIG and "not in the paper" in spec.paper
    paper = ferzoo.model_info("lnlattennet")
    assert tuple(paper.default_input_shape) == (144, 144, 3) and paper.default_config == DEFAULT_CONFIG
    assert paper.default_config["unet_widths"] == [64, 128, 256, 512, 1024]
    changed = {k for k in CPU_CONFIG if CPU_CONFIG[k] != DEFAULT_CONFIG[k]}
    assert changed == {"unet_widths", "unet_batch_norm", "simplenet_widths", "local_attention_widths",
                       "local_attention_hidden", "nonlocal_channels", "fc_units"}
    assert set(spec.recipe_table()) >= {"default", "fer2013"}


def test_the_old_cpu_recipe_of_the_paper_model_is_this_architecture(cpu_model):
    """``ferzoo train lnlattennet --recipe cpu`` (old commands) builds exactly the variant: the recipe's config is
    the variant's width keys, so the two cannot drift apart."""
    rec = resolve_recipe(ferzoo.model_info("lnlattennet").recipe_table(), "cpu", "lnlattennet")
    assert rec["config"] == {k: v for k, v in CPU_CONFIG.items() if v != DEFAULT_CONFIG[k]}
    assert ferzoo.build("lnlattennet", num_classes=7, input_shape=(64, 64, 3), recipe="cpu").build_config == \
        cpu_model.build_config


def test_reduced_width_parameter_count_follows_from_the_config(cpu_model):
    assert cpu_model.input_shape_hwc == (64, 64, 3)
    assert cpu_model.get_layer("patches").output.shape[1:] == (21, 21, 16, 16)  # Eq. 5 at 64: 21 px patches
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in cpu_model.layers)
    expected = _expected_params(CPU_CONFIG, cpu_model)
    assert cpu_model.count_params() == expected
    assert expected < 0.15 * PAPER_PARAMS  # about a tenth of the paper model
    # the description's rounded figure is this count
    assert f"{expected / 1e6:.1f} M" in ferzoo.model_info("lnlattennet_cpu").description


def test_the_fer2013_recipe_is_ferzoos_and_sized_for_the_cpu():
    rec = resolve_recipe(ferzoo.model_info("lnlattennet_cpu").recipe_table(), "fer2013", "lnlattennet_cpu")
    assert rec["note"].startswith("ferzoo's recipe, not the paper's")
    assert rec["input_shape"] == [64, 64, 3] and rec["load_size"] == [72, 72]
    assert rec["schedule"] == {"type": "cosine", "epochs": rec["epochs"], "min_lr": 1e-5}
    assert rec["epochs"] * 9.4 <= 3 * 60  # 9.4 min a FER-2013 epoch measured here: within about 3 hours
    assert rec["protocol"]["keep"] == "best" and rec["protocol"]["tta"] == "flip"
    assert rec["config"] == {}  # the architecture is the model's, not the recipe's


@pytest.mark.slow
def test_a_training_step_on_tiny_data_lowers_the_loss():
    """The variant's full widths in a training step (14 s: slow since the default run neared 15 minutes). The
    default run trains the same code with BatchNorm in the U-Net through the `synthetic` recipe
    (test_lnlattennet_training.py), and `lnlattennet_cpu.fer2013` was trained at these widths."""
    keras.utils.set_random_seed(3)
    model = ferzoo.build("lnlattennet_cpu", num_classes=7, recipe="fer2013", dropout=0.0)
    model.compile()
    rng = np.random.default_rng(0)
    x = model.preprocess(rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32"))
    y = np.arange(8) % 7
    before = [np.array(v) for v in model.trainable_weights[:2]]
    first = float(model.train_on_batch(x, y)[0])
    for _ in range(3):
        last = float(model.train_on_batch(x, y)[0])
    assert np.isfinite(first) and np.isfinite(last) and last < first
    assert any(not np.allclose(b, np.array(v)) for b, v in zip(before, model.trainable_weights[:2]))


def test_weights_only_round_trip(cpu_model, tmp_path):
    from ferzoo import weights as W

    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    path = W.save(cpu_model, tmp_path / "lnlattennet_cpu.weights.h5")
    card = W.read_card(path)
    assert card["model"] == "lnlattennet_cpu" and card["config"]["unet_widths"] == CPU_CONFIG["unet_widths"]
    again = ferzoo.load("lnlattennet_cpu", weights=str(path))
    assert again.model_name == "lnlattennet_cpu" and again.count_params() == cpu_model.count_params()
    np.testing.assert_allclose(again.predict(images, verbose=0), cpu_model.predict(images, verbose=0), atol=1e-5)
