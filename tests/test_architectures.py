"""Networks of the users' size: shapes, parameter counts against the published ones, torchvision key layout."""

import torch

from robustmix.models.architectures import PreActResNet18, WideResNet
from robustmix.models.imagenet import resnet50


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet50_matches_torchvision_layout_and_size():
    m = resnet50().eval()
    assert n_params(m) == 25_557_032           # torchvision.models.resnet50(): 25,557,032 parameters
    keys = set(m.state_dict())
    for k in ("conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.bias",
              "layer3.5.conv3.weight", "layer4.2.bn3.num_batches_tracked", "fc.weight", "fc.bias"):
        assert k in keys, k
    assert len(keys - {"normalize.mean", "normalize.std"}) == 320          # torchvision's state_dict has 320 entries
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


def test_cifar_networks_have_the_shared_checkpoint_layouts():
    """PreActResNet-18 with the final BN of robust-training code (11,172,170 parameters: the 11,171,146 of the
    plain CIFAR version plus that BN's 1,024) and WRN-28-10 (36,479,194), under the checkpoint key names."""
    pre, wrn = PreActResNet18(), WideResNet(28, 10)
    assert n_params(pre) == 11_172_170 and n_params(wrn) == 36_479_194
    assert {"conv1.weight", "layer2.0.shortcut.0.weight", "layer4.1.bn2.running_mean", "bn.weight",
            "linear.bias"} <= set(pre.state_dict())
    assert {"conv1.weight", "block1.layer.0.convShortcut.weight", "block3.layer.3.conv2.weight", "bn1.running_var",
            "fc.weight"} <= set(wrn.state_dict())
    assert "block1.layer.1.convShortcut.weight" not in wrn.state_dict()
    with torch.no_grad():
        assert pre(torch.rand(2, 3, 32, 32)).shape == wrn.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
