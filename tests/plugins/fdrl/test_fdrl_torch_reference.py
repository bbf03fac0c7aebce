"""The PyTorch FDRL used by the speed comparison is the same network as ferzoo's (needs the torch extra)."""

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ferzoo  # noqa: E402
from ferzoo.backbones.pretrained import save_resnet18  # noqa: E402

from fdrl_torch_reference import FDRLLosses, TorchFDRL, copy_heads_from_keras  # noqa: E402

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def test_same_parameter_count_and_outputs_on_copied_weights():
    from dan_torch_reference import randomise_batchnorm

    torch.manual_seed(0)
    net = TorchFDRL(num_classes=7)
    randomise_batchnorm(net.backbone, seed=1)
    state = {k: v.numpy() for k, v in net.backbone.state_dict().items()}
    save_resnet18(state, tag="torch_reference")  # the test's own FERZOO_HOME
    keras.utils.set_random_seed(2)
    model = ferzoo.build("fdrl", num_classes=7, input_shape=(64, 64, 3), backbone_weights="torch_reference")
    copy_heads_from_keras(net, model).eval()
    backbone_fc = sum(p.numel() for p in net.backbone.fc.parameters())  # torchvision's classifier, unused here
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    assert sum(p.numel() for p in net.parameters()) - backbone_fc == trainable  # BN statistics: buffers in PyTorch

    pixels = np.random.default_rng(3).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    out = model(pixels, training=False)
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(((pixels / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)))
        logits, latent, alpha = net(x)
    np.testing.assert_allclose(latent.numpy(), np.asarray(out["latent"]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(alpha.numpy(), np.asarray(out["intra_weights"]), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(logits.numpy(), np.asarray(out["logits"]), rtol=1e-4,
                               atol=1e-4 * float(np.abs(logits.numpy()).max()))
    assert float(np.abs(np.asarray(out["logits"])).std()) > 1e-3  # logits that differ between images and classes


def test_the_losses_train_and_move_the_centres():
    torch.manual_seed(0)
    net, losses = TorchFDRL(num_classes=3), FDRLLosses(num_classes=3)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    loss = losses(net(x), y)
    loss.backward()
    assert torch.isfinite(loss) and net.fdn.kernel.grad.abs().sum() > 0
    assert losses.latent_centres.abs().sum() > 0 and losses.class_centres[1].abs().sum() > 0
