"""A Lipschitz-constrained CNN built from deel-torchlip layers.

Training uses torchlip's spectrally normalised (Bjorck-orthonormalised)
convolutions and dense layers with GroupSort activations and pixel-unshuffle
downsampling (a permutation), so each layer is 1-Lipschitz in l2 by
construction and the logits are ``logit_scale``-Lipschitz (default 1: a
1-Lipschitz logit map; training sharpens the softmax with a temperature in the
loss, see the "lipschitz" recipe, never inside the network).  For deployment and
certification the constrained layers are exported to plain ``nn.Conv2d`` /
``nn.Linear`` with fixed weights; :func:`robustmix.certify.lipschitz.network_lipschitz`
then computes a guaranteed bound from those weights (exact per-frequency
spectral norms), which is what the model card records.
"""

from __future__ import annotations

import torch
from deel import torchlip
from torch import nn

from .architectures import Normalize


def _conv(constrained, cin, cout):
    if constrained:
        return torchlip.SpectralConv2d(cin, cout, 3, padding=1)
    return nn.Conv2d(cin, cout, 3, padding=1)


def _linear(constrained, fin, fout):
    return torchlip.SpectralLinear(fin, fout) if constrained else nn.Linear(fin, fout)


class LipschitzCNN(nn.Module):
    """l2-Lipschitz CNN for 28x28 inputs: logits are at most ``logit_scale``-Lipschitz (input -> logits).

    ``constrained=True`` builds the trainable torchlip version; ``False`` the plain
    layers of the same shapes that :meth:`export` produces and checkpoints hold.
    Normalisation subtracts a mean only (std 1), so it does not change the constant.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, hidden: int = 128,
                 logit_scale: float = 1.0, constrained: bool = True, mean=(0.2860,)):
        super().__init__()
        self.num_classes = num_classes
        self.constrained = constrained
        w = width
        self.normalize = Normalize(mean, [1.0] * len(mean))
        self.body = nn.Sequential(
            _conv(constrained, in_channels, w), torchlip.GroupSort2(), nn.PixelUnshuffle(2),
            _conv(constrained, 4 * w, 2 * w), torchlip.GroupSort2(), nn.PixelUnshuffle(2),
            nn.Flatten(), _linear(constrained, 8 * w * 7 * 7, hidden), torchlip.GroupSort2(),
            _linear(constrained, hidden, num_classes),
        )
        self.register_buffer("logit_scale", torch.tensor(float(logit_scale)))

    def forward(self, x):
        return self.body(self.normalize(x)) * self.logit_scale

    def export(self) -> "LipschitzCNN":
        """A plain-layer copy with the constrained weights frozen in."""
        if not self.constrained:
            return self
        first = self.body[0]
        plain = LipschitzCNN(self.num_classes, first.in_channels, first.out_channels, self.body[7].out_features,
                             float(self.logit_scale), constrained=False, mean=self.normalize.mean.flatten().tolist())
        for i, layer in enumerate(self.body):
            if isinstance(layer, (torchlip.SpectralConv2d, torchlip.SpectralLinear)):
                ref = layer.vanilla_export()
                plain.body[i].weight.data.copy_(ref.weight.data)
                plain.body[i].bias.data.copy_(ref.bias.data)
        return plain.eval()
