"""Converter tests against a PyTorch re-statement of the official DAN (needs the optional torch extra)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ferzoo  # noqa: E402
from ferzoo.backbones.torch_port import CheckpointError  # noqa: E402

from dan_torch_reference import ResNet18, TorchDAN, randomise_batchnorm  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZE = 64


def _pixels(n, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, SIZE, SIZE, 3)).astype(np.float32)


def _torch_input(pixels):
    x = (pixels / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    torch.manual_seed(0)
    net = randomise_batchnorm(TorchDAN(num_classes=7, num_heads=4)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "rafdb_epoch21_acc0.897_bacc0.8275.pth"
    torch.save({"iter": 21, "model_state_dict": net.state_dict(), "optimizer_state_dict": {}}, path)
    return net, path


def test_converted_logits_match_pytorch(official, tmp_path):
    net, path = official
    weights = ferzoo.model_info("dan").converter
    from ferzoo.specs import resolve

    out = resolve(weights)(path, tag="rafdb_official", input_shape=(SIZE, SIZE, 3))
    assert out.name == "dan.weights.h5" and out.exists()
    model = ferzoo.load("dan", weights="rafdb_official")  # through the local store, by tag
    # the released RAF-DB order, taken from the file name's data set
    assert model.class_names == ["surprise", "fear", "disgust", "happy", "sad", "angry", "neutral"]
    assert model.weights_card["converted_from"] == path.name
    pixels = _pixels(3)
    with torch.no_grad():
        ref_logits, ref_map, ref_heads = net(_torch_input(pixels))
    got = model(pixels, training=False)
    np.testing.assert_allclose(got["features"].numpy(), ref_map.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["heads"].numpy(), ref_heads.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["logits"].numpy(), ref_logits.numpy(), atol=1e-4)
    assert np.abs(ref_logits.numpy()).max() > 0.1  # not a trivially small comparison


def test_cli_convert_and_affectnet_class_order(tmp_path):
    from ferzoo.cli import main

    torch.manual_seed(1)
    net = randomise_batchnorm(TorchDAN(num_classes=8, num_heads=2), seed=1).eval()
    path = tmp_path / "affecnet8_epoch5_acc0.6209.pth"
    torch.save({"iter": 5, "model_state_dict": net.state_dict(), "optimizer_state_dict": {}}, path)
    assert main(["convert", "dan", str(path), "--tag", "an8", "--config", "input_shape=[64,64,3]"]) == 0
    model = ferzoo.load("dan", weights="an8")
    assert model.class_names == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt"]
    assert model.build_config["num_heads"] == 2
    pixels = _pixels(2, seed=3)
    with torch.no_grad():
        ref = net(_torch_input(pixels))[0].numpy()
    np.testing.assert_allclose(model(pixels, training=False)["logits"].numpy(), ref, atol=1e-4)


def _save_state(state, path):
    torch.save({"iter": 1, "model_state_dict": state, "optimizer_state_dict": {}}, path)


def test_missing_key_is_named(official, tmp_path):
    net, _ = official
    state = dict(net.state_dict())
    del state["cat_head2.sa.conv_1x3.0.weight"]
    path = tmp_path / "broken.pth"
    _save_state(state, path)
    from ferzoo_plugins.dan.convert import convert

    with pytest.raises(CheckpointError, match=r"missing key 'cat_head2\.sa\.conv_1x3\.0\.weight'"):
        convert(path, tag="broken", input_shape=(SIZE, SIZE, 3))


def test_misshaped_key_is_named(official, tmp_path):
    net, _ = official
    state = dict(net.state_dict())
    state["features.5.0.downsample.0.weight"] = torch.zeros(128, 64, 3, 3)
    path = tmp_path / "misshaped.pth"
    _save_state(state, path)
    from ferzoo_plugins.dan.convert import convert

    with pytest.raises(CheckpointError, match=r"'features\.5\.0\.downsample\.0\.weight' has shape \(128, 64, 3, 3\), "
                                              r"expected \(128, 64, 1, 1\)"):
        convert(path, tag="bad", input_shape=(SIZE, SIZE, 3))
    state = dict(net.state_dict())
    state["cat_head0.extra.weight"] = torch.zeros(3)
    _save_state(state, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \['cat_head0\.extra\.weight'\]"):
        convert(path, tag="bad", input_shape=(SIZE, SIZE, 3))


def test_msceleb_backbone_conversion_and_use(tmp_path):
    torch.manual_seed(2)
    net = randomise_batchnorm(ResNet18(), seed=2).eval()
    path = tmp_path / "resnet18_msceleb.pth"
    torch.save({"epoch": 1, "state_dict": net.state_dict()}, path)
    from ferzoo_plugins.dan.convert import convert

    out = convert(path, tag="msceleb")
    assert out.name == "resnet18.weights.h5"
    # the backbone weights go into DAN through the build config
    model = ferzoo.build("dan", num_classes=7, input_shape=(SIZE, SIZE, 3), backbone_weights="msceleb")
    pixels = _pixels(2, seed=5)
    with torch.no_grad():
        ref = net.features(_torch_input(pixels)).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(model(pixels, training=False)["features"].numpy(), ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(FileNotFoundError, match="backbone_weights 'nope'"):
        ferzoo.build("dan", num_classes=7, input_shape=(SIZE, SIZE, 3), backbone_weights="nope")


def test_converter_rejects_non_dan_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, path)
    from ferzoo_plugins.dan.convert import convert

    with pytest.raises(CheckpointError, match="neither a DAN state dict"):
        convert(path, tag="x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert(tmp_path / "missing.pth", tag="x")
