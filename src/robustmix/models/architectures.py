"""Architectures.  Every model takes inputs in [0, 1]; normalisation is a buffer inside it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, with mean and std stored as buffers."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:   # shapes only: no host sync, compiles
            raise InputError(f"this network takes {self.mean.shape[1]}-channel images (N, C, H, W), got shape "
                             f"{tuple(x.shape)}; give it data of its own kind")
        return (x - self.mean) / self.std

    def lipschitz_bound(self) -> float:
        """Its l2 Lipschitz constant: 1 / the smallest std (the protocol ``network_lipschitz`` reads)."""
        return float(1.0 / self.std.min())


class SmallCNN(nn.Module):
    """A small VGG-style CNN for 28x28 inputs (two conv blocks and two dense layers)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 32, hidden: int = 128,
                 mean=(0.2860,), std=(0.3530,)):
        super().__init__()
        self.num_classes = num_classes
        w = width
        self.normalize = Normalize(mean, std)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w, w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 7 * 7, hidden), nn.ReLU(inplace=True),
                                        nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(self.normalize(x)))


class PreActBlock(nn.Module):
    """Pre-activation residual block (BN-ReLU-conv twice); the module names of the widely shared CIFAR
    PreActResNet code (``bn1 conv1 bn2 conv2 shortcut.0``), so its checkpoints load as they are."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv2(F.relu(self.bn2(self.conv1(out))))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Pre-activation ResNet-18 (He et al. 2016) for 32x32 inputs, with the final BN-ReLU of the robust-training
    code RobustBench ships (``conv1 layer1-4 bn linear``: its state_dict keys)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3,
                 mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616)):
        super().__init__()
        self.num_classes = num_classes
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        in_planes = 64
        for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(PreActBlock(in_planes, planes, stride),
                                                     PreActBlock(planes, planes, 1)))
            in_planes = planes
        self.bn = nn.BatchNorm2d(512)
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1).flatten(1)
        return self.linear(out)


class WideBlock(nn.Module):
    """WideResNet's pre-activation block with RobustBench's module names (``bn1 conv1 bn2 conv2 convShortcut``)."""

    def __init__(self, in_planes, planes, stride=1, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.convShortcut = None
        if stride != 1 or in_planes != planes:
            self.convShortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.convShortcut(out) if self.convShortcut is not None else x
        out = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(out)))))
        return out + shortcut


class _Stage(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.layer = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layer(x)


class WideResNet(nn.Module):
    """WideResNet-depth-width (Zagoruyko & Komodakis) for 32x32 inputs; depth = 6n + 4.  Module names as in
    RobustBench's definition (``conv1 block1-3.layer.i bn1 fc``), so its checkpoints load as they are."""

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10, in_channels: int = 3,
                 dropout: float = 0.0, mean=(0.4914, 0.4822, 0.4465), std=(0.2471, 0.2435, 0.2616)):
        super().__init__()
        if (depth - 4) % 6:
            from ..errors import ConfigError
            raise ConfigError(f"WideResNet depth must be 6n + 4 (16, 22, 28, 34, ...), got {depth}")
        n = (depth - 4) // 6
        self.num_classes = num_classes
        self.normalize = Normalize(mean, std)
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        in_planes = widths[0]
        for k, (planes, stride) in enumerate(zip(widths[1:], (1, 2, 2)), start=1):
            setattr(self, f"block{k}", _Stage([WideBlock(in_planes if i == 0 else planes, planes,
                                                         stride if i == 0 else 1, dropout) for i in range(n)]))
            in_planes = planes
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(self.normalize(x)))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn1(out)), 1).flatten(1)
        return self.fc(out)
