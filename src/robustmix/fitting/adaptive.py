"""Training the mixing network of an :class:`~robustmix.mixing.AdaptiveMixedClassifier`.

The recipe follows Adaptive Smoothing: for each batch, PGD attacks the
*composite* (the adaptive mixture, mixing network included), then the loss is

    bce_weight * (BCE(s(x), 0) + BCE(s(x_adv), 1)) / 2
  + ce_weight  * (CE(mix(x), y) + CE(mix(x_adv), y)) / 2

where s is the mixing network's logit (alpha = lo + (hi - lo) sigmoid(s)): clean
inputs are pushed toward alpha = lo (trust g), attacked ones toward alpha = hi
(trust h), and the mixture's own cross-entropy keeps both accurate.

Why attack the composite rather than h alone: the deployed model is attacked
end to end, and the inputs it must learn to flag are those that fool *it*; at
low alpha these are attacks on g, which examples aimed at h alone (they barely
move g) would never show the network.  Only the mixing network's parameters
train; g and h stay frozen.  Training is seeded and resumable: the state
(network, optimiser, epoch, history, settings) is written atomically after each
epoch and picked up again when the settings match.  :func:`trained_adaptive_mixer`
builds the mixer, trains its network once and keeps the weights on disk.
"""

from __future__ import annotations

import io
import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._io import atomic_write_bytes
from .._validation import check_eps, check_input, check_p, check_positive_int
from ..attacks.pgd import PGD
from ..errors import CheckpointError, ConfigError, ModelError
from ..mixing import AdaptiveMixedClassifier, default_mixing_net

logger = logging.getLogger(__name__)


def _settings(mixer, x, *, eps, norm, attack_steps, batch_size, lr, seed, bce_weight, ce_weight) -> dict:
    return {"eps": eps, "norm": str(norm), "attack_steps": attack_steps, "batch_size": batch_size, "lr": lr,
            "seed": seed, "bce_weight": bce_weight, "ce_weight": ce_weight, "n": len(x),
            "alpha_range": [float(mixer.alpha_lo), float(mixer.alpha_hi)]}


def _load_state(path: Path, net, opt, settings: dict):
    try:
        state = torch.load(path, weights_only=True)
        saved = dict(state["settings"])
    except (RuntimeError, KeyError, EOFError, OSError) as exc:
        raise CheckpointError(f"cannot resume from {path}: {exc}; delete it to start over") from exc
    if saved != settings:
        diff = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        raise CheckpointError(f"{path} was written with other settings (saved, now): {diff}; "
                              "use the same settings to resume, or another state_path to start over")
    net.load_state_dict(state["net"])
    opt.load_state_dict(state["optimizer"])
    return int(state["epoch"]), list(state["history"])


def train_mixing_net(mixer, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm="inf", epochs: int = 1,
                     attack_steps: int = 5, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                     bce_weight: float = 1.0, ce_weight: float = 1.0, state_path=None,
                     progress: bool = True) -> list[dict]:
    """Train ``mixer.mixing_net`` in place on (x, y); returns the per-epoch history.

    Each history entry has the epoch's mean ``loss``, ``bce``, ``ce``, the mean
    alpha on clean and on attacked inputs (``alpha_clean``, ``alpha_adv``), the
    mixture's accuracy on both (``acc_clean``, ``acc_adv``, attacked with the
    network as it was at that batch), and ``seconds``.  ``epochs`` is the total:
    resuming a finished run with a larger ``epochs`` continues it.
    """
    if not hasattr(mixer, "mixing_net") or not hasattr(mixer, "forward_with_alpha"):
        raise ModelError("train_mixing_net needs an AdaptiveMixedClassifier (with a mixing_net)")
    check_input(x)
    if y.shape != (len(x),) or y.is_floating_point():
        raise ConfigError(f"y must be an integer tensor of shape ({len(x)},), got {tuple(y.shape)} {y.dtype}")
    eps, p = check_eps(eps), check_p(norm)
    epochs = check_positive_int(epochs, name="epochs")
    attack_steps = check_positive_int(attack_steps, name="attack_steps")
    batch_size = check_positive_int(batch_size, name="batch_size")
    if not lr > 0:
        raise ConfigError(f"lr must be > 0, got {lr!r}")
    net = mixer.mixing_net
    params = [q for q in net.parameters() if q.requires_grad]
    if not params:
        raise ModelError("the mixing network has no trainable parameters")
    opt = torch.optim.Adam(params, lr=lr)
    settings = _settings(mixer, x, eps=eps, norm=norm, attack_steps=attack_steps, batch_size=batch_size, lr=lr,
                         seed=seed, bce_weight=bce_weight, ce_weight=ce_weight)
    state_path = Path(state_path) if state_path is not None else None
    start, history = 0, []
    if state_path is not None and state_path.is_file():
        start, history = _load_state(state_path, net, opt, settings)
        logger.info("resuming mixing-network training from %s at epoch %d", state_path, start)
    device = next(iter(params)).device
    n = len(x)
    steps = (n + batch_size - 1) // batch_size
    for epoch in range(start, epochs):
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        sums = dict.fromkeys(("loss", "bce", "ce", "alpha_clean", "alpha_adv", "acc_clean", "acc_adv"), 0.0)
        t0 = time.perf_counter()
        bar = tqdm(range(steps), desc=f"mixing net epoch {epoch + 1}/{epochs}", disable=not progress, leave=False)
        for b in bar:
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            mixer.eval()
            attack = PGD(mixer, eps, p, steps=attack_steps, seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            x_adv = attack(xb, yb)
            mixer.train()
            clean, adv = mixer.forward_with_alpha(xb), mixer.forward_with_alpha(x_adv)
            bce = (F.binary_cross_entropy_with_logits(clean.alpha_logit, torch.zeros_like(clean.alpha_logit))
                   + F.binary_cross_entropy_with_logits(adv.alpha_logit, torch.ones_like(adv.alpha_logit))) / 2
            ce = (F.nll_loss(clean.log_probs, yb) + F.nll_loss(adv.log_probs, yb)) / 2
            loss = bce_weight * bce + ce_weight * ce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k = len(idx)
            for key, value in (("loss", loss), ("bce", bce), ("ce", ce), ("alpha_clean", clean.alpha.mean()),
                               ("alpha_adv", adv.alpha.mean()),
                               ("acc_clean", (clean.log_probs.argmax(1) == yb).double().mean()),
                               ("acc_adv", (adv.log_probs.argmax(1) == yb).double().mean())):
                sums[key] += float(value.detach()) * k
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", a_clean=f"{float(clean.alpha.detach().mean()):.2f}",
                            a_adv=f"{float(adv.alpha.detach().mean()):.2f}")
        mixer.eval()
        entry = {"epoch": epoch + 1, **{k: v / n for k, v in sums.items()}, "seconds": time.perf_counter() - t0}
        history.append(entry)
        logger.info("mixing net epoch %d/%d: loss %.4f, alpha clean %.3f / attacked %.3f, acc clean %.3f / "
                    "attacked %.3f", epoch + 1, epochs, entry["loss"], entry["alpha_clean"], entry["alpha_adv"],
                    entry["acc_clean"], entry["acc_adv"])
        if state_path is not None:
            buf = io.BytesIO()
            torch.save({"net": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1,
                        "history": history, "settings": settings}, buf)
            atomic_write_bytes(state_path, buf.getvalue())
    mixer.eval()
    return history


def trained_adaptive_mixer(path, g, h, x, y, *, eps: float, norm="inf", epochs: int = 4, attack_steps: int = 10,
                           batch_size: int = 256, seed: int = 0, alpha_range: tuple = (0.0, 1.0),
                           progress: bool = True) -> AdaptiveMixedClassifier:
    """An :class:`AdaptiveMixedClassifier` of (g, h) with its mixing network trained once on (x, y).

    The trained weights are kept at ``path`` + ``.mixing-net.safetensors`` and read back when present;
    training itself resumes from ``path`` + ``.train-state.pt`` (see :func:`train_mixing_net`, which gets
    the other arguments).  ``robustmix pareto`` and ``robustmix calibrate --mixer adaptive`` use it.
    """
    path = Path(path)
    example = x[:2].to(next(g.parameters()).device)
    mixer = AdaptiveMixedClassifier(g, h, default_mixing_net(g, h, example), alpha_range=alpha_range)
    mixer.to(example.device)
    net_path = path.with_suffix(".mixing-net.safetensors")
    if net_path.is_file():
        from safetensors.torch import load_file

        mixer.mixing_net.load_state_dict(load_file(str(net_path)))
        return mixer
    train_mixing_net(mixer, x, y, eps=eps, norm=norm, epochs=epochs, attack_steps=attack_steps,
                     batch_size=batch_size, seed=seed, state_path=path.with_suffix(".train-state.pt"),
                     progress=progress)
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in mixer.mixing_net.state_dict().items()}, str(net_path))
    return mixer
