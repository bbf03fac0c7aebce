"""A small PyTorch statement of DAN written from the spec's facts (section 2 and the key layout of section 10),
used only to produce state dicts in the official layout and reference logits for the converter tests."""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + skip)


def resnet18_modules():
    """(name, module) of torchvision's ResNet-18 children without avgpool and fc."""
    mods = [("conv1", nn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("bn1", nn.BatchNorm2d(64)), ("relu", nn.ReLU()),
            ("maxpool", nn.MaxPool2d(3, 2, 1))]
    cin = 64
    for i, (cout, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        mods.append((f"layer{i}", nn.Sequential(Block(cin, cout, stride), Block(cout, cout, 1))))
        cin = cout
    return mods


class ResNet18(nn.Module):
    """torchvision layout (conv1, bn1, layer1..4, fc), as in resnet18_msceleb.pth."""

    def __init__(self, num_outputs=1000):
        super().__init__()
        self.stages = []
        for name, mod in resnet18_modules():
            setattr(self, name, mod)
            self.stages.append(name)
        self.fc = nn.Linear(512, num_outputs)

    def features(self, x):
        for name in self.stages:  # names kept once: resnet18_modules() builds (and initialises) new modules
            x = getattr(self, name)(x)
        return x


def conv_bn(cin, cout, kernel, padding):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding), nn.BatchNorm2d(cout))


class SpatialUnit(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1x1 = conv_bn(512, 256, 1, 0)
        self.conv_3x3 = conv_bn(256, 512, (3, 3), (1, 1))
        self.conv_1x3 = conv_bn(256, 512, (1, 3), (0, 1))
        self.conv_3x1 = conv_bn(256, 512, (3, 1), (1, 0))

    def forward(self, x):
        y = self.conv1x1(x)
        z = torch.relu(self.conv_3x3(y) + self.conv_1x3(y) + self.conv_3x1(y))
        return x * z.sum(dim=1, keepdim=True)


class ChannelUnit(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = nn.Sequential(nn.Linear(512, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True),
                                       nn.Linear(32, 512), nn.Sigmoid())

    def forward(self, s):
        g = s.mean(dim=(2, 3))
        return g * self.attention(g)


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.sa = SpatialUnit()
        self.ca = ChannelUnit()

    def forward(self, x):
        return self.ca(self.sa(x))


class TorchDAN(nn.Module):
    def __init__(self, num_classes=7, num_heads=4):
        super().__init__()
        self.features = nn.Sequential(*[m for _, m in resnet18_modules()])
        self.num_heads = num_heads
        for j in range(num_heads):
            setattr(self, f"cat_head{j}", Head())
        self.fc = nn.Linear(512, num_classes)
        self.bn = nn.BatchNorm1d(num_classes)

    def forward(self, x):
        x = self.features(x)
        heads = torch.stack([getattr(self, f"cat_head{j}")(x) for j in range(self.num_heads)], dim=1)
        if self.num_heads > 1:
            heads = torch.log_softmax(heads, dim=1)
        return self.bn(self.fc(heads.sum(dim=1))), x, heads


def randomise_batchnorm(module, seed=0):
    """Give every BatchNorm non-trivial statistics and affine parameters, so a mis-mapped key shows."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return module
