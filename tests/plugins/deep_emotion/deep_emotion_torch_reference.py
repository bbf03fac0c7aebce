"""A PyTorch statement of Deep-Emotion's default configuration, written from the spec (sections 2-3: the
localisation net, the four 3x3 convolutions, the spatial transformer on the 9x9x10 map, fc1 50 and fc2), used
as the PyTorch side of ``benchmarks/bench_dan_vs_torch.py --model deep_emotion`` and checked against ferzoo's
model on copied weights (``test_deep_emotion_torch_reference.py``).

Inputs are ``(B, 1, 48, 48)`` in [0, 1] (ferzoo's model divides raw pixels by 255 itself); outputs are logits.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class TorchDeepEmotion(nn.Module):
    def __init__(self, num_classes=7):
        super().__init__()
        self.loc_conv1 = nn.Conv2d(1, 8, 3)
        self.loc_conv2 = nn.Conv2d(8, 10, 3)
        self.loc_fc1 = nn.Linear(10 * 10 * 10, 32)
        self.loc_fc2 = nn.Linear(32, 6)
        self.c1 = nn.Conv2d(1, 10, 3)
        self.c2 = nn.Conv2d(10, 10, 3)
        self.c3 = nn.Conv2d(10, 10, 3)
        self.c4 = nn.Conv2d(10, 10, 3)
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(10 * 9 * 9, 50)
        self.fc2 = nn.Linear(50, num_classes)
        with torch.no_grad():  # the identity transform at initialisation, as ferzoo's default
            self.loc_fc2.weight.zero_()
            self.loc_fc2.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def theta(self, x):
        t = F.relu(F.max_pool2d(self.loc_conv1(x), 2))
        t = F.relu(F.max_pool2d(self.loc_conv2(t), 2))
        return self.loc_fc2(F.relu(self.loc_fc1(t.flatten(1)))).view(-1, 2, 3)

    def forward(self, x):
        theta = self.theta(x)
        y = self.c2(F.relu(self.c1(x)))
        y = F.relu(F.max_pool2d(y, 2))
        y = self.c4(F.relu(self.c3(y)))
        y = self.dropout(F.relu(F.max_pool2d(y, 2)))
        grid = F.affine_grid(theta, list(y.shape), align_corners=False)
        y = F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self.fc2(F.relu(self.fc1(y.flatten(1))))


def copy_from_keras(net: TorchDeepEmotion, model) -> TorchDeepEmotion:
    """Give ``net`` the weights of ferzoo's ``deep_emotion`` ``model`` (default configuration): convolution
    kernels from HWIO to OIHW, dense kernels transposed, and the rows of the two dense layers that read a
    flattened map reordered from Keras' (h, w, c) to PyTorch's (c, h, w) flattening."""

    def dense(name, chw=None):
        kernel, bias = (np.asarray(v) for v in model.get_layer(name).get_weights())
        if chw is not None:
            c, h, w = chw
            kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(c * h * w, -1)
        return kernel.T, bias

    def conv(name):
        kernel, bias = (np.asarray(v) for v in model.get_layer(name).get_weights())
        return kernel.transpose(3, 2, 0, 1), bias

    values = {"loc_conv1": conv("loc_conv1"), "loc_conv2": conv("loc_conv2"), "c1": conv("c1"), "c2": conv("c2"),
              "c3": conv("c3"), "c4": conv("c4"), "loc_fc1": dense("loc_fc1", (10, 10, 10)),
              "loc_fc2": dense("loc_fc2"), "fc1": dense("fc1", (10, 9, 9)), "fc2": dense("fc2")}
    with torch.no_grad():
        for name, (weight, bias) in values.items():
            module = getattr(net, name)
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            module.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
    return net
