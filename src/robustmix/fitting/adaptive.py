"""Training the mixing network of an :class:`~robustmix.mixing.AdaptiveMixedClassifier`.

The recipe follows Adaptive Smoothing: for each batch, PGD attacks the
*composite* (the adaptive mixture, mixing network included), then the loss is

    bce_weight * (BCE(s(x), 0) + BCE(s(x_adv), 1)) / 2
  + ce_weight  * (CE(mix(x), y) + CE(mix(x_adv), y)) / 2

where s is the mixing network's logit (alpha = lo + (hi - lo) sigmoid(s)): clean
inputs are pushed toward alpha = lo (trust g), attacked ones toward alpha = hi
(trust h), and the mixture's own cross-entropy keeps both accurate.

The training attack (``train_attack``):

* ``"composite+gate"`` (the method's): two PGD runs per batch, one on the
  composite itself and one through the softened gate
  (alpha = lo + (hi - lo) sigmoid(s / 8), the evaluator's ``mix-gate-T8``
  surrogate), keeping per example the point with the higher mixture loss
  (a misclassified one first).  Why the second run: once the network has
  learnt to open the gate on attacked inputs, s there is large and
  sigmoid'(s) ~ e^-|s|, so the composite's gradient no longer says how to
  close the gate; PGD then only sees g's slope, finds nothing that fools the
  (h-dominated) mixture, and training stops seeing the inputs a stronger
  attacker would use: points where g is fooled *and* the gate stays shut.  The
  softened gate keeps a slope of order 1/8 at any s, and each candidate is
  judged on the true composite, so the surrogate can only add harder examples;
* ``"composite"``: PGD on the composite only (the earlier recipe);
* ``"none"``: standard training, clean inputs only (the BCE pushes s(x) toward
  lo and the mixture's cross-entropy is taken on clean inputs): the control
  that shows what the adversarial terms buy.

Each attack run is PGD (``attack_method="pgd"``: random start, fixed step
2.5 eps / steps, :class:`~robustmix.attacks.pgd.PGD`) or APGD-CE (``"apgd"``,
the worst-case evaluator's first member: step size halved where progress
stalls, momentum), both with ``attack_steps`` gradient steps.

Why attack the composite rather than h alone: the deployed model is attacked
end to end, and the inputs it must learn to flag are those that fool *it*; at
low alpha these are attacks on g, which examples aimed at h alone (they barely
move g) would never show the network.  Only the mixing network's parameters
train; g and h stay frozen.  Training is seeded and resumable: the state
(network, optimiser, epoch, history, settings) is written atomically after each
epoch and picked up again when the settings match.  :func:`trained_adaptive_mixer`
builds the mixer, trains its network once and keeps the weights on disk.

The settings travel as option groups, each checked once when it is made: the attack's budget
(:class:`~robustmix.groups.ThreatModel`), the training recipe (:class:`AdaptiveTraining`) and the gate's
architecture (:class:`~robustmix.mixing.MixingArchitecture`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._io import atomic_write_bytes
from .._validation import check_input, check_positive_int
from .._seeding import example_keys
from ..attacks.apgd import APGDSettings, apgd
from ..attacks.pgd import PGD
from ..errors import CheckpointError, ConfigError, ModelError
from .._config import from_keywords, require_group, split_keywords
from ..groups import ThreatModel
from ..mixing import AdaptiveMixedClassifier, MixingArchitecture, build_mixing_net
from ..mixing.adaptive import GATE_SURROGATE_TEMPERATURE
from ..mixing.nonlinear import Surrogate

logger = logging.getLogger(__name__)

TRAIN_ATTACKS = ("composite+gate", "composite", "none")
CHECKPOINT_SECONDS = 60.0   # inside an epoch, the training state is saved at most this often (and after each epoch)
ATTACK_METHODS = ("pgd", "apgd")


def _number(value, name: str, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or \
            not (value > 0 if positive else value >= 0):
        raise ConfigError(f"{name} must be a finite number {'>' if positive else '>='} 0, got {value!r}")


@dataclasses.dataclass(frozen=True)
class AdaptiveTraining:
    """How the mixing network trains (an option group; see the module docstring for the recipe).

    ``epochs`` (the total: a resumed run goes on to it), ``attack_steps`` gradient steps per training attack,
    ``batch_size``, Adam's ``lr``, ``seed`` (batch order and attack starts), ``train_attack`` ("composite+gate",
    "composite" or "none"), ``attack_method`` ("pgd" or "apgd"), the loss weights ``bce_weight`` and
    ``ce_weight``, and ``progress`` (a progress bar; changes nothing else).  Each value is checked once, here;
    numbers are kept as given (they are recorded with the trained weights).  The defaults are
    :func:`train_mixing_net`'s; :data:`FIRST_RECIPE` those of :func:`trained_adaptive_mixer`.
    """

    epochs: int = 1
    attack_steps: int = 5
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    train_attack: str = "composite+gate"
    attack_method: str = "pgd"
    bce_weight: float = 1.0
    ce_weight: float = 1.0
    progress: bool = True

    def __post_init__(self):
        for name in ("epochs", "attack_steps", "batch_size"):
            check_positive_int(getattr(self, name), name=name)
        _number(self.lr, "lr", positive=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if self.train_attack not in TRAIN_ATTACKS:
            raise ConfigError(f"unknown train_attack {self.train_attack!r}: use one of {', '.join(TRAIN_ATTACKS)}")
        if self.attack_method not in ATTACK_METHODS:
            raise ConfigError(f"unknown attack_method {self.attack_method!r}: use one of {', '.join(ATTACK_METHODS)}")
        _number(self.bce_weight, "bce_weight", positive=False)
        _number(self.ce_weight, "ce_weight", positive=False)
        if not isinstance(self.progress, bool):
            raise ConfigError(f"progress must be True or False, got {self.progress!r}")


# trained_adaptive_mixer's defaults: the first recipe (RESULTS.md's pareto adaptive rows)
FIRST_RECIPE = AdaptiveTraining(epochs=4, attack_steps=10, batch_size=256, train_attack="composite")

# the keywords the functions took before the groups (still accepted for one release, deprecated)
THREAT_KEYWORDS = ("eps", "norm")
TRAINING_KEYWORDS = ("epochs", "attack_steps", "batch_size", "lr", "seed", "bce_weight", "ce_weight", "train_attack",
                     "attack_method", "progress")
RECIPE_KEYWORDS = ("epochs", "attack_steps", "batch_size", "seed", "train_attack", "attack_method", "lr", "progress")
ARCH_KEYWORDS = ("features", "net", "alpha_range")


def _needs_eps(threat, old: dict, caller: str) -> None:
    if threat is None and "eps" not in old:
        raise TypeError(f"{caller}() needs the attack's budget: give threat=ThreatModel(norm, eps)")


def _settings(mixer, x, threat: ThreatModel, training: AdaptiveTraining) -> dict:
    t = training
    out = {"eps": threat.eps, "norm": threat.norm, "attack_steps": t.attack_steps, "batch_size": t.batch_size,
           "lr": t.lr, "seed": t.seed, "bce_weight": t.bce_weight, "ce_weight": t.ce_weight, "n": len(x),
           "alpha_range": list(mixer.alpha_bounds()),
           "mixer": json.dumps(mixer.config(), sort_keys=True)}
    if t.train_attack != "composite":   # states written before the option existed resume unchanged
        out["train_attack"] = t.train_attack
    if t.attack_method != "pgd" and t.train_attack != "none":   # standard training attacks nothing
        out["attack_method"] = t.attack_method
    return out


def _attack(source, xb, yb, *, threat: ThreatModel, training: AdaptiveTraining, seed: int) -> torch.Tensor:
    steps = training.attack_steps
    if training.attack_method == "apgd":   # step size adapted per example, random start keyed by (seed, position)
        keys = example_keys(seed, torch.arange(len(xb), device=xb.device), stream=0)
        # apgd's steps count forward-backward passes, the random start's included: steps + 1 of them make
        # ``steps`` updates, as many as PGD's
        return apgd(source, xb, yb, threat, settings=APGDSettings(steps=steps + 1, loss="ce"), keys=keys)
    return PGD(source, threat.eps, threat.p, steps=steps, seed=seed)(xb, yb)


def _attacked(mixer, xb, yb, *, threat: ThreatModel, training: AdaptiveTraining, seed: int) -> torch.Tensor:
    """The training attack's points for the batch (see the module docstring)."""
    x_adv = _attack(mixer, xb, yb, threat=threat, training=training, seed=seed)
    if training.train_attack != "composite+gate":
        return x_adv
    x_gate = _attack(Surrogate(mixer, gate_temperature=GATE_SURROGATE_TEMPERATURE), xb, yb, threat=threat,
                     training=training, seed=seed + 1)
    with torch.no_grad():
        scores = []
        for cand in (x_adv, x_gate):
            out = mixer(cand)
            scores.append((out.argmax(1) != yb, F.nll_loss(out, yb, reduction="none")))
    (fooled_a, loss_a), (fooled_g, loss_g) = scores
    take_gate = (fooled_g & ~fooled_a) | ((fooled_g == fooled_a) & (loss_g > loss_a))
    return torch.where(take_gate.view(-1, *([1] * (xb.ndim - 1))), x_gate, x_adv)


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
    try:
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot resume from {path}: it does not fit this mixing network ("
                              f"{str(exc).strip().splitlines()[-1].strip()}); delete it to start over") from None
    partial = state.get("partial")   # a state written inside an epoch: where to go on (older states have none)
    return int(state["epoch"]), list(state["history"]), partial


def train_mixing_net(mixer, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel | None = None,
                     training: AdaptiveTraining | None = None, *, state_path=None, **deprecated) -> list[dict]:
    """Train ``mixer.mixing_net`` in place on (x, y) against ``threat``; returns the per-epoch history.

    ``threat``: the training attack's budget (:class:`~robustmix.groups.ThreatModel`, required); ``training``:
    the recipe (:class:`AdaptiveTraining`, default ``AdaptiveTraining()``).  Each history entry has the epoch's
    mean ``loss``, ``bce``, ``ce``, the mean alpha on clean and on attacked inputs (``alpha_clean``,
    ``alpha_adv``), the mixture's accuracy on both (``acc_clean``, ``acc_adv``, attacked with the network as it
    was at that batch; None with ``train_attack="none"``), and ``seconds``.  ``training.epochs`` is the total:
    resuming a finished run with a larger ``epochs`` continues it.  ``training.train_attack``: see the module
    docstring; ``training.attack_method``: "pgd" (fixed step) or "apgd" (APGD-CE's adaptive step size and
    momentum), each making ``attack_steps`` gradient steps.  ``state_path``: where the training state is kept
    (resumed when its settings match).  The keywords ``eps``, ``norm``, ``epochs``, ``attack_steps``,
    ``batch_size``, ``lr``, ``seed``, ``bce_weight``, ``ce_weight``, ``train_attack``, ``attack_method`` and
    ``progress`` still work for one release (deprecated).
    """
    caller = "train_mixing_net"
    old_threat, old_training = split_keywords(deprecated, caller, THREAT_KEYWORDS, TRAINING_KEYWORDS)
    _needs_eps(threat, old_threat, caller)
    threat = require_group(from_keywords(ThreatModel, threat, old_threat, caller), ThreatModel, caller, "threat")
    training = require_group(from_keywords(AdaptiveTraining, training, old_training, caller) or AdaptiveTraining(),
                      AdaptiveTraining, caller, "training")
    if not hasattr(mixer, "mixing_net") or not hasattr(mixer, "forward_with_alpha"):
        raise ModelError("train_mixing_net needs an AdaptiveMixedClassifier (with a mixing_net)")
    check_input(x)
    if y.shape != (len(x),) or y.is_floating_point():
        raise ConfigError(f"y must be an integer tensor of shape ({len(x)},), got {tuple(y.shape)} {y.dtype}")
    epochs, batch_size, seed = training.epochs, training.batch_size, training.seed
    train_attack, bce_weight, ce_weight = training.train_attack, training.bce_weight, training.ce_weight
    net = mixer.mixing_net
    params = [q for q in net.parameters() if q.requires_grad]
    if not params:
        raise ModelError("the mixing network has no trainable parameters")
    opt = torch.optim.Adam(params, lr=training.lr)
    settings = _settings(mixer, x, threat, training)
    state_path = Path(state_path) if state_path is not None else None
    start, history, partial = 0, [], None
    if state_path is not None and state_path.is_file():
        start, history, partial = _load_state(state_path, net, opt, settings)
        if start + (partial is not None) > epochs:
            raise CheckpointError(f"{state_path} holds a training {'inside epoch ' + str(start + 1) if partial else ''}"
                                  f"{'' if partial else 'of ' + str(start) + ' epochs'}, more than the {epochs} "
                                  "asked for; ask for at least that many epochs, or use another state_path")
        logger.info("resuming mixing-network training from %s at epoch %d%s", state_path, start + 1,
                    f", batch {partial['batch'] + 1}" if partial else "")

    def save_state(epoch_done: int, partial_state=None) -> None:
        buf = io.BytesIO()
        torch.save({"net": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch_done,
                    "history": history, "settings": settings,
                    **({"partial": partial_state} if partial_state else {})}, buf)
        atomic_write_bytes(state_path, buf.getvalue())

    device = next(iter(params)).device
    n = len(x)
    steps = (n + batch_size - 1) // batch_size
    for epoch in range(start, epochs):
        gen = torch.Generator().manual_seed(seed * 100_003 + epoch)
        perm = torch.randperm(n, generator=gen)
        sums = dict.fromkeys(("loss", "bce", "ce", "alpha_clean", "alpha_adv", "acc_clean", "acc_adv"), 0.0)
        first, before = 0, 0.0
        if partial and epoch == start:   # go on inside the epoch: the same order and attack seeds as a straight run
            first, sums, before = int(partial["batch"]), dict(partial["sums"]), float(partial["seconds"])
            for _ in range(first):
                torch.randint(0, 2**31 - 1, (1,), generator=gen)
        t0 = last_save = time.perf_counter()
        bar = tqdm(range(first, steps), desc=f"mixing net epoch {epoch + 1}/{epochs}",
                   disable=not training.progress, leave=False, initial=first, total=steps)
        for b in bar:
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb, yb = x[idx].to(device), y[idx].to(device)
            mixer.eval()
            attack_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            x_adv = None if train_attack == "none" else _attacked(mixer, xb, yb, threat=threat, training=training,
                                                                  seed=attack_seed)
            mixer.mixing_net.train()   # g and h stay in eval mode: their BatchNorm statistics are not touched
            clean = mixer.forward_with_alpha(xb)
            bce = F.binary_cross_entropy_with_logits(clean.alpha_logit, torch.zeros_like(clean.alpha_logit))
            ce = F.nll_loss(clean.log_probs, yb)
            stats = [("alpha_clean", clean.alpha.mean()),
                     ("acc_clean", (clean.log_probs.argmax(1) == yb).double().mean())]
            if x_adv is not None:
                adv = mixer.forward_with_alpha(x_adv)
                bce = (bce + F.binary_cross_entropy_with_logits(adv.alpha_logit, torch.ones_like(adv.alpha_logit))) / 2
                ce = (ce + F.nll_loss(adv.log_probs, yb)) / 2
                stats += [("alpha_adv", adv.alpha.mean()),
                          ("acc_adv", (adv.log_probs.argmax(1) == yb).double().mean())]
            loss = bce_weight * bce + ce_weight * ce
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            k = len(idx)
            for key, value in [("loss", loss), ("bce", bce), ("ce", ce)] + stats:
                sums[key] += float(value.detach()) * k
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}", a_clean=f"{float(clean.alpha.detach().mean()):.2f}",
                            **({"a_adv": f"{float(adv.alpha.detach().mean()):.2f}"} if x_adv is not None else {}))
            if state_path is not None and b + 1 < steps and time.perf_counter() - last_save >= CHECKPOINT_SECONDS:
                save_state(epoch, {"batch": b + 1, "sums": dict(sums), "seconds": before + time.perf_counter() - t0})
                last_save = time.perf_counter()
        mixer.eval()
        attacked = train_attack != "none"
        entry = {"epoch": epoch + 1, **{k: v / n if attacked or not k.endswith("_adv") else None
                                        for k, v in sums.items()}, "seconds": before + time.perf_counter() - t0}
        history.append(entry)
        logger.info("mixing net epoch %d/%d: loss %.4f, alpha clean %.3f, acc clean %.3f%s", epoch + 1, epochs,
                    entry["loss"], entry["alpha_clean"], entry["acc_clean"],
                    f"; attacked: alpha {entry['alpha_adv']:.3f}, acc {entry['acc_adv']:.3f}" if attacked else "")
        if state_path is not None:
            save_state(epoch + 1)
    mixer.eval()
    return history


def trained_adaptive_mixer(path, g, h, x, y, threat: ThreatModel | None = None,
                           training: AdaptiveTraining | None = None, arch: MixingArchitecture | None = None,
                           **deprecated) -> AdaptiveMixedClassifier:
    """An :class:`AdaptiveMixedClassifier` of (g, h) with its mixing network trained once on (x, y).

    ``threat``: the training attack's budget (:class:`~robustmix.groups.ThreatModel`, required).  ``arch``
    (:class:`~robustmix.mixing.MixingArchitecture`: features "logits", "h", "both"; net "mlp", "residual"; sizes;
    alpha_range) chooses the mixing network (:func:`robustmix.mixing.build_mixing_net`) and the range of alpha;
    ``training`` (:class:`AdaptiveTraining`, default :data:`FIRST_RECIPE`) the training (:func:`train_mixing_net`).
    The defaults are the first recipe (logits only, an MLP, PGD-10 on the composite, 4 epochs of batches of 256:
    RESULTS.md's pareto adaptive rows); ``robustmix calibrate`` and ``robustmix pareto`` pass their own flags (by
    default the residual head, PGD through the gate too).  The keywords ``eps``, ``norm``, ``epochs``,
    ``attack_steps``, ``batch_size``, ``seed``, ``alpha_range``, ``features``, ``net``, ``train_attack``,
    ``attack_method``, ``lr`` and ``progress`` still work for one release (deprecated; the recipe's fields they
    leave out keep :data:`FIRST_RECIPE`'s values).

    The trained weights are kept at ``path`` + ``.mixing-net.safetensors`` with the network's config and
    the training settings in its metadata, and read back when they match (a file of other settings is
    refused; one written before the metadata existed is read when its tensors fit); training itself
    resumes from ``path`` + ``.train-state.pt`` (written after each epoch and, inside one, at most every
    ``CHECKPOINT_SECONDS``, so a stop loses about a minute).  ``robustmix pareto``, ``robustmix calibrate --mixer
    adaptive`` and ``scripts/adaptive_ablation.py`` use it.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file, save

    caller = "trained_adaptive_mixer"
    old_threat, old_training, old_arch = split_keywords(deprecated, caller, THREAT_KEYWORDS, RECIPE_KEYWORDS,
                                                       ARCH_KEYWORDS)
    _needs_eps(threat, old_threat, caller)
    threat = require_group(from_keywords(ThreatModel, threat, old_threat, caller), ThreatModel, caller, "threat")
    if old_training and training is None:   # the first recipe's values stay, and the warning names them
        defaults = AdaptiveTraining()
        old_training = {**{f.name: getattr(FIRST_RECIPE, f.name) for f in dataclasses.fields(AdaptiveTraining)
                           if getattr(FIRST_RECIPE, f.name) != getattr(defaults, f.name)}, **old_training}
    training = require_group(from_keywords(AdaptiveTraining, training, old_training, caller) or FIRST_RECIPE,
                      AdaptiveTraining, caller, "training")
    arch = require_group(from_keywords(MixingArchitecture, arch, old_arch, caller) or MixingArchitecture(),
                  MixingArchitecture, caller, "arch")
    path = Path(path)
    example = x[:2].to(next(g.parameters()).device)
    mixing_net, layers = build_mixing_net(g, h, example, arch)
    mixer = AdaptiveMixedClassifier(g, h, mixing_net, alpha_range=arch.alpha_range, feature_layers=layers)
    mixer.to(example.device)
    t = training
    recorded = {"epochs": t.epochs, "attack_steps": t.attack_steps, "batch_size": t.batch_size, "seed": t.seed,
                "lr": t.lr, "train_attack": t.train_attack, "eps": threat.eps, "norm": threat.norm, "n": len(x)}
    # files written before these options existed read unchanged: recorded only where they differ from then
    if t.attack_method != "pgd" and t.train_attack != "none":
        recorded["attack_method"] = t.attack_method
    for name in ("bce_weight", "ce_weight"):
        if getattr(t, name) != 1.0:
            recorded[name] = getattr(t, name)
    wanted = {"mixer": json.dumps(mixer.config(), sort_keys=True), "training": json.dumps(recorded, sort_keys=True)}
    net_path = path.with_suffix(".mixing-net.safetensors")
    if net_path.is_file():
        try:
            with safe_open(str(net_path), "pt") as f:
                meta = f.metadata() or {}
            state = load_file(str(net_path))
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"cannot read {net_path}: {exc}; delete it to train again") from exc
        first = (arch.features, arch.net, t.train_attack, t.attack_method, t.bce_weight, t.ce_weight) == (
            "logits", "mlp", "composite", "pgd", 1.0, 1.0)
        if not set(wanted) & set(meta) and not first:
            raise CheckpointError(f"{net_path} was written before mixing-network files recorded their recipe: it holds "
                                  "the first recipe (features logits, an MLP, PGD on the composite); rerun with "
                                  "--adaptive-features logits --mixing-net mlp --train-attack composite to use it, or "
                                  "give another output folder to train this recipe")
        for key in wanted:
            if key in meta and meta[key] != wanted[key]:
                saved, now = json.loads(meta[key]), json.loads(wanted[key])
                diff = {k: (saved.get(k), now.get(k)) for k in sorted(set(saved) | set(now))
                        if saved.get(k) != now.get(k)}
                raise CheckpointError(f"{net_path} holds a mixing network of other {key} settings (saved, now): "
                                      f"{diff}; rerun with the settings it was trained with (the saved values) or "
                                      "use another output folder")
        try:
            mixer.mixing_net.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1].strip()
            raise CheckpointError(f"{net_path} does not fit this mixing network ({first}); delete it or use "
                                  "another output folder") from exc
        return mixer
    train_mixing_net(mixer, x, y, threat, training, state_path=path.with_suffix(".train-state.pt"))
    tensors = {k: v.detach().cpu().contiguous() for k, v in mixer.mixing_net.state_dict().items()}
    atomic_write_bytes(net_path, save(tensors, metadata=wanted))
    return mixer
