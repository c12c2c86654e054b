"""Lemma 1, Theorem 1 and guaranteed Lipschitz bounds.

Lipschitz constants of networks are *upper bounds that hold*, never estimates:
dense layers use the exact largest singular value (SVD in float64), and
convolutions the exact spectral norm of the circular convolution on a grid
large enough to contain the zero-padded one (the zero-padded, possibly
strided, convolution is a restriction of it, so its norm is no larger).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_p
from ..errors import ModelError

SOFTMAX_L2_FACTOR = math.sqrt(2.0) / 4.0
"""sup_z ||grad_z softmax_i(z)||_2 (see :func:`probability_lipschitz`)."""

_FLOAT_SLACK = 1.0 + 1e-5  # covers float rounding in the forward pass and the SVDs


def conv2d_spectral_norm(conv: nn.Conv2d, input_hw: tuple[int, int]) -> float:
    """Guaranteed upper bound on the l2 operator norm of ``conv`` (bias excluded).

    The zero-padded convolution on an HxW input equals a restriction of the
    circular convolution on an (H + 2p + k) x (W + 2p + k) grid; that circulant
    operator is block-diagonalised by the 2-D DFT, so its norm is the largest
    singular value over frequencies of the c_out x c_in transfer matrices.
    Striding only subsamples the output (norm 1).
    """
    if conv.groups != 1 or conv.dilation not in ((1, 1), 1):
        raise ModelError("Lipschitz bounds support Conv2d with groups=1 and dilation=1")
    if conv.padding_mode != "zeros":
        raise ModelError("Lipschitz bounds support zero-padded convolutions only")
    kh, kw = conv.kernel_size
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
    n_h, n_w = input_hw[0] + 2 * ph + kh, input_hw[1] + 2 * pw + kw
    weight = conv.weight.detach().to(torch.float64).cpu()
    transfer = torch.fft.fft2(weight, s=(n_h, n_w))  # (cout, cin, n_h, n_w)
    mats = transfer.permute(2, 3, 0, 1).reshape(-1, weight.shape[0], weight.shape[1])
    return float(torch.linalg.svdvals(mats).max())


def linear_spectral_norm(linear: nn.Linear) -> float:
    return float(torch.linalg.matrix_norm(linear.weight.detach().to(torch.float64).cpu(), ord=2))


def network_lipschitz(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Guaranteed l2 Lipschitz bound (input -> logits) for sequential networks of known layers.

    Supported: Conv2d, Linear, ReLU/LeakyReLU, GroupSort/MaxMin (torchlip),
    PixelUnshuffle, Flatten, Identity, Dropout (eval), any module with a
    ``lipschitz_bound()`` method (the protocol: its own guaranteed l2 bound, e.g.
    robustmix's ``Normalize`` gives 1 / min std) and a model's ``logit_scale``.
    Anything else raises :class:`ModelError`.
    """
    from deel import torchlip  # local: optional at this layer

    shape = tuple(input_shape)
    bound = 1.0
    param = next(model.parameters(), None)
    probe = torch.zeros((1,) + shape) if param is None else torch.zeros((1,) + shape, dtype=param.dtype,
                                                                          device=param.device)
    layers = _flatten_modules(model)
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            bound *= conv2d_spectral_norm(layer, probe.shape[-2:])
        elif isinstance(layer, nn.Linear):
            bound *= linear_spectral_norm(layer)
        elif callable(getattr(layer, "lipschitz_bound", None)):
            bound *= float(layer.lipschitz_bound())
        elif isinstance(layer, (nn.ReLU, nn.LeakyReLU, nn.PixelUnshuffle, nn.Flatten, nn.Identity, nn.Dropout,
                                torchlip.GroupSort, torchlip.MaxMin)):
            if isinstance(layer, nn.LeakyReLU) and abs(layer.negative_slope) > 1:
                bound *= abs(layer.negative_slope)
        else:
            raise ModelError(f"no known Lipschitz bound for layer {type(layer).__name__}; "
                             "build h from Conv2d/Linear/ReLU/GroupSort layers (e.g. robustmix's lipschitz-cnn)")
        with torch.no_grad():
            probe = layer(probe)
    scale = getattr(model, "logit_scale", None)
    if scale is not None:
        bound *= float(scale)
    return bound * _FLOAT_SLACK


def _flatten_modules(model: nn.Module) -> list[nn.Module]:
    if isinstance(model, nn.Sequential):
        out = []
        for m in model:
            out += _flatten_modules(m)
        return out
    if callable(getattr(model, "lipschitz_bound", None)) or not list(model.children()):
        return [model]
    order = getattr(model, "lipschitz_layers", None)
    if order is None and hasattr(model, "normalize") and hasattr(model, "body"):
        order = [model.normalize, model.body]
    if order is None:
        raise ModelError(f"cannot derive a Lipschitz bound for {type(model).__name__}: it is not a plain sequence "
                         "of layers; give the model a 'lipschitz_layers' list of its layers in order")
    out = []
    for m in order:
        out += _flatten_modules(m)
    return out


def probability_lipschitz(model: nn.Module, p=2, input_shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """Sound per-class upper bounds (c,) on the l_p Lipschitz constants of ``softmax(model(x))_i``.

    Derivation.  For z in R^c and s = softmax(z), grad_z s_i = s_i (e_i - s), so
    ||grad_z s_i||_2^2 = s_i^2 ((1 - s_i)^2 + sum_{j != i} s_j^2)
                      <= s_i^2 (2 (1 - s_i)^2)            (sum_{j!=i} s_j^2 <= (1 - s_i)^2)
    and s_i (1 - s_i) <= 1/4 gives ||grad_z s_i||_2 <= sqrt(2)/4 (attained at
    s = (1/2, 1/2, 0, ...)).  By the chain rule,
    Lip_2(x -> s_i) <= sqrt(2)/4 * Lip_2(x -> z), the logits' l2 operator bound.
    Other norms: ||d||_2 <= ||d||_1 and ||d||_2 <= sqrt(dim) ||d||_inf, so
    Lip_1 <= Lip_2 and Lip_inf <= sqrt(dim) Lip_2.
    """
    p = check_p(p)
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ModelError("pass input_shape=(C, H, W) to bound this model's Lipschitz constant")
    logit_bound = network_lipschitz(model, input_shape)
    factor = {1.0: 1.0, 2.0: 1.0, math.inf: math.sqrt(math.prod(input_shape))}[p]
    c = getattr(model, "num_classes", None)
    if c is None:
        with torch.no_grad():
            c = model(torch.zeros((1,) + tuple(input_shape))).shape[-1]
    return torch.full((c,), SOFTMAX_L2_FACTOR * logit_bound * factor, dtype=torch.float64)


def pairwise_logit_lipschitz(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Sound (c, c) bounds K[j, k] >= Lip_2(x -> z_j(x) - z_k(x)) for :func:`network_lipschitz`'s networks.

    Two bounds, the smaller kept: sqrt(2) times the logit map's bound (``<e_j - e_k, dz>``
    with ||e_j - e_k||_2 = sqrt(2)), and, when the last layer is ``nn.Linear`` (weights W),
    ||w_j - w_k||_2 times the bound of everything before it (times ``logit_scale``).
    The diagonal is 0.
    """
    whole = math.sqrt(2.0) * network_lipschitz(model, input_shape)
    layers = _flatten_modules(model)
    last = layers[-1]
    if isinstance(last, nn.Linear) and len(layers) > 1:
        body = network_lipschitz(nn.Sequential(*layers[:-1]), input_shape)
        body *= float(getattr(model, "logit_scale", 1.0))
        w = last.weight.detach().to(torch.float64).cpu()
        pairs = torch.cdist(w, w) * body * _FLOAT_SLACK
        pairs = pairs.clamp(max=whole)
    else:
        c = getattr(model, "num_classes", None)
        if c is None:
            with torch.no_grad():
                c = model(torch.zeros((1,) + tuple(input_shape))).shape[-1]
        pairs = torch.full((c, c), whole, dtype=torch.float64)
    return pairs.fill_diagonal_(0.0)
