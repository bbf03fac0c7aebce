"""A PyTorch statement of FDRL's default configuration, written from the spec (section 2: ResNet-18 -> GAP ->
FDN of M branches -> Intra-RM (eqs. 3, 4, 7) -> Inter-RM (eqs. 8-10) -> node fusion (eq. 11) -> reconstruction
(eq. 12) -> EPN; section 3: L_C, L_B, L_D with rule-updated centres), used as the PyTorch side of
``benchmarks/bench_dan_vs_torch.py --model fdrl`` and checked against ferzoo's model on copied weights
(``test_fdrl_torch_reference.py``). The backbone is the tests' torchvision-layout ResNet-18 of the DAN plugin's
reference (the same network FDRL uses); the branch weights keep ferzoo's layout, kernel (M, in, out).

Inputs are ``(B, 3, H, W)`` already normalised with ImageNet's mean and std; ``forward`` returns
``(logits, latent, intra_weights)``.
"""

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dan"))
from dan_torch_reference import ResNet18  # noqa: E402


class Branches(nn.Module):
    """M independent linear layers: kernel (M, in, out), bias (M, out), PyTorch's default init per branch."""

    def __init__(self, branches, fan_in, units, shared_input=False):
        super().__init__()
        bound = 1.0 / np.sqrt(fan_in)
        self.kernel = nn.Parameter(torch.empty(branches, fan_in, units).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(branches, units).uniform_(-bound, bound))
        self.shared_input = shared_input

    def forward(self, x):
        y = torch.einsum("ni,mio->nmo" if self.shared_input else "nmi,mio->nmo", x, self.kernel)
        return y + self.bias[None]


class TorchFDRL(nn.Module):
    def __init__(self, num_classes=7, num_latent=9, latent_dim=128, delta=0.5, eps=1e-12):
        super().__init__()
        self.backbone = ResNet18()
        self.fdn = Branches(num_latent, 512, latent_dim, shared_input=True)
        self.intra_fc = Branches(num_latent, latent_dim, latent_dim)
        self.message = Branches(num_latent, latent_dim, latent_dim)
        self.epn = nn.Linear(latent_dim, num_classes)
        self.delta, self.eps = delta, eps
        self.register_buffer("off_diagonal", 1.0 - torch.eye(num_latent))

    def forward(self, x):
        basic = self.backbone.features(x).mean(dim=(2, 3))
        latent = torch.relu(self.fdn(basic))  # eq. 1
        alpha = torch.sigmoid(self.intra_fc(latent)).abs().sum(-1)  # eqs. 3-4
        intra = alpha[..., None] * latent  # eq. 7
        g = torch.relu(self.message(intra))  # eq. 8
        distance = ((g[:, :, None] - g[:, None]) ** 2).sum(-1).clamp_min(self.eps).sqrt()
        omega = torch.tanh(distance) * self.off_diagonal  # eq. 9
        nodes = self.delta * intra + (1 - self.delta) * torch.einsum("njm,nmd->njd", omega, g)  # eqs. 10-11
        return self.epn(nodes.sum(1)), latent, alpha  # eq. 12, EPN


class FDRLLosses(nn.Module):
    """Cross-entropy + lambda_c L_C + lambda_b L_B + lambda_d L_D, the centres updated by the rule (rate 0.5)
    after each step, as ferzoo's default recipe does."""

    def __init__(self, num_classes=7, num_latent=9, latent_dim=128, lambdas=(1e-4, 1.0, 1e-4), rate=0.5):
        super().__init__()
        self.register_buffer("latent_centres", torch.zeros(num_latent, latent_dim))
        self.register_buffer("class_centres", torch.zeros(num_classes, num_latent))
        self.lambdas, self.rate, self.num_latent = lambdas, rate, num_latent

    def forward(self, outputs, y):
        logits, latent, alpha = outputs
        compact = ((latent - self.latent_centres) ** 2).sum(dim=(1, 2)).mean()
        balance = (alpha.mean(0) - 1.0 / self.num_latent).abs().sum()
        distribution = ((alpha - self.class_centres[y]) ** 2).sum(1).mean()
        lc, lb, ld = self.lambdas
        loss = nn.functional.cross_entropy(logits, y) + lc * compact + lb * balance + ld * distribution
        with torch.no_grad():
            self.latent_centres -= self.rate * (self.latent_centres - latent.float()).sum(0) / (1 + latent.shape[0])
            onehot = nn.functional.one_hot(y, self.class_centres.shape[0]).float()
            counts = onehot.sum(0)
            diff = counts[:, None] * self.class_centres - onehot.T @ alpha.float()
            self.class_centres -= self.rate * diff / (1 + counts[:, None])
        return loss


def copy_heads_from_keras(net: TorchFDRL, model) -> TorchFDRL:
    """Give ``net``'s FDN, Intra-RM, message network and EPN the weights of ferzoo's ``fdrl`` ``model`` (the
    backbone travels separately, through ferzoo's ResNet-18 converter)."""
    with torch.no_grad():
        for name in ("fdn", "intra_fc", "message"):
            kernel, bias = model.get_layer(name).get_weights()
            getattr(net, name).kernel.copy_(torch.from_numpy(np.asarray(kernel)))
            getattr(net, name).bias.copy_(torch.from_numpy(np.asarray(bias)))
        kernel, bias = model.get_layer("epn").get_weights()
        net.epn.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(kernel).T)))
        net.epn.bias.copy_(torch.from_numpy(np.asarray(bias)))
    return net
