"""Training recipes: standard, PGD-AT (Madry et al.), fast FGSM-RS (Wong et al.),
TRADES (Zhang et al.), Gaussian noise augmentation (for randomized smoothing)
and Lipschitz-network training.

Training is seeded (shuffling, random starts and noise come from generators
seeded by (seed, epoch, batch)), and resumable: after every epoch the full
state is written atomically to ``state_path`` (tensors and numbers only, read
back with ``torch.load(weights_only=True)``), so a restarted run continues at
the next epoch and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .._config import accepts_old_keywords, flat, group, option, refuse_unknown
from .._validation import check_eps, check_p, check_positive_int
from ..attacks.pgd import PGD, PGDBudget, legacy_threat
from ..errors import CheckpointError, ConfigError
from ..groups import ThreatModel, from_keywords
from .._io import atomic_write_bytes

logger = logging.getLogger(__name__)

RECIPES = ("standard", "pgd", "fgsm", "trades", "noise", "lipschitz")


@accepts_old_keywords
@dataclasses.dataclass
class TrainConfig:
    recipe: str = option("standard", "training recipe: standard, pgd, fgsm, trades, noise or lipschitz")
    epochs: int = option(5, "passes over the training split")
    batch_size: int = 128
    lr: float = option(0.05, "peak learning rate of the one-cycle schedule")
    optimizer: str = "sgd"           # "sgd" (momentum 0.9, nesterov) or "adam"
    weight_decay: float = 5e-4
    threat: ThreatModel = group(ThreatModel, help={"eps": "attack radius of the pgd, fgsm and trades recipes",
                                                   "norm": "attack norm of the adversarial recipes: inf or 2"})
    attack_steps: int = 5
    step_size: float | None = None   # default 2.5 * eps / steps (fgsm: 1.25 * eps)
    trades_beta: float = 6.0
    sigma: float = option(0.25, "Gaussian noise of the noise recipe (a base model for randomized smoothing)")
    temperature: float = 1.0         # lipschitz recipe: the loss sees temperature * logits (the model does not)
    margin: float = 0.0              # lipschitz recipe: added to every wrong logit before the loss
    seed: int = option(0, "seed of the initialisation, data order and attacks")
    channels_last: bool = True

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {self.recipe!r}: use one of {', '.join(RECIPES)}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError("optimizer must be 'sgd' or 'adam'")
        check_positive_int(self.epochs, name="--epochs")
        check_positive_int(self.batch_size, name="--batch-size")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < float("inf")):
            raise ConfigError(f"lr must be a positive learning rate, got {self.lr!r}")
        check_eps(self.sigma, name="--sigma")
        if self.recipe == "noise" and not self.sigma > 0:
            raise ConfigError(f"the noise recipe needs --sigma > 0 (the Gaussian noise it trains under), got {self.sigma}")
        if not (isinstance(self.temperature, (int, float)) and 0 < self.temperature < float("inf")):
            raise ConfigError(f"temperature must be a positive number, got {self.temperature!r}")
        if not (isinstance(self.margin, (int, float)) and 0 <= self.margin < float("inf")):
            raise ConfigError(f"margin must be a number >= 0, got {self.margin!r}")

    def to_dict(self) -> dict:
        """The flat settings a checkpoint's card keeps (eps and norm beside the others)."""
        return flat(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """A config from flat settings (a card's, or the zoo table's recipe), eps and norm into the threat model."""
        values = dict(values)
        threat = {k: values.pop(k) for k in ("norm", "eps") if k in values}
        return cls(**values, threat=ThreatModel(**threat))


def _lr_at(step: int, total: int, peak: float) -> float:
    warm = max(1, int(0.3 * total))
    if step < warm:
        return peak * (step + 1) / warm
    return peak * max(0.0, (total - step) / max(1, total - warm))


def _batch_loss(model: nn.Module, x, y, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    recipe = cfg.recipe
    if recipe == "standard":
        return F.cross_entropy(model(x), y)
    if recipe == "lipschitz":
        # Lipschitz-margin cross-entropy (Tsuzuku et al. 2018): every wrong logit is raised by ``margin``
        # (sqrt(2) * r for a 1-Lipschitz logit map certifies radius r) and the temperature sharpens the
        # softmax of small 1-Lipschitz logits; both live in the loss only, never in the certified network.
        logits = model(x)
        shifted = logits + cfg.margin * (1 - F.one_hot(y, logits.shape[1]).to(logits.dtype))
        return F.cross_entropy(cfg.temperature * shifted, y) / cfg.temperature
    if recipe == "noise":
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype) * cfg.sigma
        return F.cross_entropy(model(x + noise.to(x.device)), y)
    if recipe == "pgd":
        attack = PGD(model, cfg.threat.eps, cfg.threat.norm, steps=cfg.attack_steps, step_size=cfg.step_size,
                     seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        return F.cross_entropy(model(attack(x, y)), y)
    if recipe == "fgsm":
        p = check_p(cfg.threat.norm)
        step = cfg.step_size or 1.25 * cfg.threat.eps
        attack = PGD(model, cfg.threat.eps, p, steps=1, step_size=step, random_init=True,
                     seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        return F.cross_entropy(model(attack(x, y)), y)
    if recipe == "trades":
        logits = model(x)
        p_clean = F.softmax(logits.detach(), 1)

        def kl(out, _y):
            return F.kl_div(F.log_softmax(out, 1), p_clean, reduction="none").sum(1)

        attack = PGD(model, cfg.threat.eps, cfg.threat.norm, steps=cfg.attack_steps, step_size=cfg.step_size, loss=kl,
                     seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        x_adv = attack(x, y)
        robust = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(logits, 1), reduction="batchmean")
        return F.cross_entropy(logits, y) + cfg.trades_beta * robust
    raise ConfigError(recipe)


def _save_state(path: Path, model, optimizer, epoch: int, history: list) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "history": history}, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, *, state_path=None,
          progress: bool = True) -> tuple[nn.Module, list[dict]]:
    """Train ``model`` in place on (x, y) with recipe ``cfg``; returns (model, per-epoch history)."""
    device = next(model.parameters()).device
    memory_format = torch.channels_last if cfg.channels_last and x.ndim == 4 else torch.contiguous_format
    model.to(memory_format=memory_format)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, history = 0, []
    state_path = Path(state_path) if state_path is not None else None
    if state_path is not None and state_path.is_file():
        try:
            state = torch.load(state_path, weights_only=True)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            start_epoch, history = int(state["epoch"]), list(state["history"])
        except (RuntimeError, KeyError, EOFError) as exc:
            raise CheckpointError(f"cannot resume from {state_path}: {exc}; delete it to start over") from exc
        logger.info("resuming %s from epoch %d", state_path, start_epoch)
    n = len(x)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        t0, seen, loss_sum = time.perf_counter(), 0, 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"{cfg.recipe} epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False)
        for b in bar:
            idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            xb = x[idx].to(device).contiguous(memory_format=memory_format)
            yb = y[idx].to(device)
            for param_group in opt.param_groups:
                param_group["lr"] = _lr_at(epoch * steps_per_epoch + b, total, cfg.lr)
            loss = _batch_loss(model, xb, yb, cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen, "seconds": seconds, "images_per_s": seen / seconds})
        logger.info("%s epoch %d/%d: loss %.4f, %.0f img/s", cfg.recipe, epoch + 1, cfg.epochs, loss_sum / seen,
                    seen / seconds)
        if state_path is not None:
            _save_state(state_path, model, opt, epoch + 1, history)
    model.eval()
    return model.to(memory_format=torch.contiguous_format), history


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Clean accuracy of ``model`` on (x, y)."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)


def robust_accuracy(model: nn.Module, x, y, threat: ThreatModel | None = None, norm: str | float | None = None, *,
                    pgd: PGDBudget | None = None, batch_size: int = 500, **deprecated) -> float:
    """Accuracy under PGD aimed at ``model`` itself within ``threat``, ``batch_size`` examples at a time.

    ``pgd``: the attack's :class:`~robustmix.attacks.pgd.PGDBudget` (default: 20 steps, 1 random start, seed 0).

    Deprecated, for one release (DeprecationWarning): eps and ``norm`` in ``threat``'s place
    (``robust_accuracy(model, x, y, eps, norm, ...)``) and the keywords ``steps``, ``restarts``, ``seed``.  The
    deprecated eps may still be 0 (the accuracy without attack, as before), which ThreatModel refuses.
    """
    threat, old = legacy_threat(threat, norm, deprecated, "robust_accuracy")
    old_pgd = {k: deprecated.pop(k) for k in ("steps", "restarts", "seed") if k in deprecated}
    refuse_unknown(deprecated, "robust_accuracy")
    if threat is None and isinstance(old["eps"], (int, float)) and old["eps"] == 0:   # the old eps=0: no attack
        warnings.warn("robust_accuracy(model, x, y, 0, ...) is deprecated and will be removed in the next release; "
                      "use accuracy(model, x, y) for the accuracy without attack", DeprecationWarning, stacklevel=2)
        eps, p = 0.0, check_p(old.get("norm", "inf"))
    else:
        threat = from_keywords(ThreatModel, threat, old, "robust_accuracy")
        eps, p = threat.eps, threat.norm
    pgd = from_keywords(PGDBudget, pgd, old_pgd, "robust_accuracy") or PGDBudget()
    check_positive_int(batch_size, name="batch_size")
    attack = PGD(model, eps, p, steps=pgd.steps, restarts=pgd.restarts, seed=pgd.seed)
    correct = 0
    for i in range(0, len(x), batch_size):
        xa = attack(x[i:i + batch_size], y[i:i + batch_size])
        with torch.no_grad():
            correct += int((model(xa).argmax(1) == y[i:i + batch_size]).sum())
    return correct / len(x)
