"""ImageNet-size networks, defined here so they load without torchvision (which does not install beside the pinned
CPU torch).  The module names follow torchvision's, so a torchvision ``state_dict`` (e.g. the ResNet-50 of a robust
ImageNet checkpoint) loads as it is; normalisation is a buffer inside the model, so inputs stay in [0, 1]."""

from __future__ import annotations

from torch import nn

from .architectures import Normalize

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck block, stride on the 3x3 conv (torchvision's ResNet v1.5)."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
    """ResNet with bottleneck blocks for 224x224 (any size >= 32) images; ``layers`` (3, 4, 6, 3) is ResNet-50."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, in_channels: int = 3, width: int = 64,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.num_classes = num_classes
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes = width
        for i, (blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2)), start=1):
            planes = width * 2 ** (i - 1)
            stage = []
            for b in range(blocks):
                stage.append(Bottleneck(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes * Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50 (25.6M parameters at 1,000 classes), torchvision's module names."""
    return ResNet((3, 4, 6, 3), num_classes=num_classes, **kwargs)
