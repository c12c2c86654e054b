"""Worst-case robust accuracy over an attack ensemble, per example, with a Clopper-Pearson interval.

:func:`evaluate` runs an ensemble of attacks on ``model`` and keeps, for every
example, the input with the smallest *true-model* margin (true-class score
minus the best other class of ``model``'s own output) seen anywhere: at any
iterate of any restart of any member.  Each member runs only on the examples
no earlier member has broken, and every candidate is judged on ``model``
itself, never on a surrogate's output.

The ensemble, in run order (names as in ``found_by`` and ``per_attack``):

1. ``aa-apgd-ce``, ``aa-apgd-t``, ``aa-fab-t``: AutoAttack standard's gradient
   attacks (the ``pyautoattack`` package, standard settings) on ``model`` end to end;
2. ``apgd-ce@S``, ``apgd-dlr@S``: this module's APGD (100 steps, 1 restart by
   default) through the gradient of each *source* S, every iterate judged on
   ``model``.  Sources, found by duck typing:

   - ``model``: ``model`` itself, unless one of its surrogates is ``model``;
   - each entry of ``model.attack_surrogates()`` (the surrogate protocol: a
     dict of name -> differentiable ``nn.Module`` mapping inputs to (n, c)
     scores; a mixer with non-differentiable maps, such as a hard one-hot g,
     supplies smooth stand-ins here);
   - ``g`` and ``h``: ``model.std_model`` and ``model.rob_model`` alone
     (transfer attacks), unless already a surrogate.  Since every iterate is
     judged on ``model``, the final transfer point is tried as well;
3. ``aa-square``: AutoAttack standard's black-box Square (5,000 queries), last,
   so every error it finds is one that all gradient attacks missed: its count
   is the ``square_only`` gradient-masking signal.

Together 1 and 3 are exactly AutoAttack standard, so the evaluator's robust
accuracy is never above AutoAttack's on the same images (up to AutoAttack's
own per-batch randomness).  AutoAttack standard's own accuracy is reported
beside it (``aa_robust``): when every AutoAttack member is in the ensemble,
Square is also run, after the ensemble, on the examples that only the APGD
members of 2 broke (Square never saw them), so each example's AutoAttack
outcome is exactly what AutoAttack standard alone would give.  That run
(``autoattack_completion``) changes no worst case.

Determinism: random starts are a fixed function of (the ensemble's ``seed``,
the example's dataset index, the member), computed on the input's device, so
APGD results do not depend on how the data is batched or sharded (up to
floating-point differences of batched kernels).  AutoAttack's members are
seeded with ``seed`` once per call, i.e. per batch of still-unbroken examples.

Settings travel in option groups, each checked once in its own ``__post_init__``:
:class:`~robustmix.groups.ThreatModel` (norm, eps), :class:`Ensemble` (which
members, their budgets, seed, batch size, precision) and
:class:`DiagnosticChecks` (the gradient-masking checks' budget).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import math
import time
import warnings
import zlib

import torch
from torch import nn

from .._validation import (check_input, check_logits, check_positive_int, mixture_parts, model_device,
                           probe_models, runnable)
from .._binomial import binomial_ci
from ..errors import AttackError, ConfigError, InputError
from .._config import refuse_unknown
from ..groups import ThreatModel, from_keywords
from .._seeding import example_keys
from .apgd import APGDSettings, apgd
from .autoattack import AutoAttackSuite, run_autoattack
from .pgd import check_seed, legacy_threat

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_AA_FIRST = ("apgd-ce", "apgd-t", "fab-t")
_NORM_NAMES = {math.inf: "Linf", 2.0: "L2"}
_RANDOM_IN_TRAINING = (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._BatchNorm)
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class Ensemble:
    """The ensemble :func:`evaluate` runs, and its budgets.  Checked once, here (which members ``attacks``
    matches is known only with the model, and is checked then).

    ``attacks``: member names or fnmatch patterns to run (None: all; see :func:`attack_members`).
    ``steps``/``restarts``: per APGD member.  ``square_queries``: Square's budget (AutoAttack standard: 5,000).
    ``seed``: seeds the random starts (with each example's dataset index) and AutoAttack.  ``batch_size``:
    examples per attack batch.  ``precision``: "bf16" or "fp16" runs the attacks' forward and backward passes
    under autocast (faster on recent GPUs, slower on CPUs); every judgement (clean, each candidate, the result)
    is made by the model in its own precision, float32 for float32 models.  ``progress``: log each member's
    result at INFO level (DEBUG otherwise).
    """

    attacks: tuple[str, ...] | None = None
    steps: int = 100
    restarts: int = 1
    square_queries: int = 5000
    seed: int = 0
    batch_size: int = 250
    precision: str = "fp32"
    progress: bool = False

    def __post_init__(self):
        if self.attacks is not None:
            attacks = (self.attacks,) if isinstance(self.attacks, str) else tuple(self.attacks)
            for pat in attacks:
                if not isinstance(pat, str):
                    raise ConfigError(f"attacks entry {pat!r} is not a member name or pattern; use names or "
                                      "patterns such as 'aa-*' or 'apgd-ce@h' (see attack_members())")
            object.__setattr__(self, "attacks", attacks)
        for name in ("steps", "restarts", "square_queries", "batch_size"):
            check_positive_int(getattr(self, name), name=name)
        check_seed(self.seed)
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if not isinstance(self.progress, bool):
            raise ConfigError(f"progress must be True or False, got {self.progress!r}")


@dataclasses.dataclass(frozen=True)
class DiagnosticChecks:
    """The cheap gradient-masking checks of :func:`evaluate` (their result: :class:`Diagnostics`): an
    end-to-end APGD-CE of ``steps`` steps on the first ``n`` clean-correct examples at each radius of
    eps/2, eps, 2 eps and an unbounded one.  Checked once, here."""

    n: int = 64
    steps: int = 20

    def __post_init__(self):
        check_positive_int(self.n, name="diagnostics n")
        check_positive_int(self.steps, name="diagnostics steps")


_ENSEMBLE = tuple(f.name for f in dataclasses.fields(Ensemble))
_DIAGNOSTICS = {"diagnostic_n": "n", "diagnostic_steps": "steps"}   # deprecated keyword -> DiagnosticChecks field


def accuracy_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a proportion k / n at confidence ``level``."""
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    if n < 1:
        return (0.0, 1.0)
    return binomial_ci(k, n, level)


def margins(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """True-class score minus the best other class (negative: misclassified)."""
    true = out.gather(1, y[:, None])[:, 0]
    other = out.masked_fill(nn.functional.one_hot(y, out.shape[1]).bool(), -math.inf).amax(1)
    return true - other


@dataclasses.dataclass
class AttackStats:
    """One ensemble member: examples it was run on, examples it broke first, wall-clock seconds."""

    name: str
    ran_on: int = 0
    broke: int = 0
    seconds: float = 0.0


@dataclasses.dataclass
class Diagnostics:
    """Gradient-masking warning signs (each is a reason to look closer, not a proof).

    ``square_only``: errors the black-box Square found after every gradient
    attack missed them (None if Square was not run).  ``accuracy_by_eps``:
    accuracy of a cheap end-to-end APGD-CE on the first ``subset_n``
    clean-correct examples at each radius in ``eps_grid`` (eps/2, eps, 2 eps and
    an unbounded radius that covers the whole [0, 1] box).  ``eps_not_decreasing``:
    no fewer examples survive 2 eps than eps/2 (while some survive eps/2);
    ``unbounded_not_zero``: some example survives the unbounded radius.
    """

    square_only: int | None
    eps_grid: list[float]
    accuracy_by_eps: list[float]
    subset_n: int
    eps_not_decreasing: bool
    unbounded_not_zero: bool
    seconds: float

    @property
    def suspected(self) -> bool:
        return bool(self.square_only) or self.eps_not_decreasing or self.unbounded_not_zero


@dataclasses.dataclass
class WorstCaseResult:
    """Per-example worst cases of one :func:`evaluate` call (tensors on the CPU).

    ``found_by[i]``: the member that produced example i's worst case, i.e. the
    one that broke it first if it is broken, else the one that found its
    smallest margin; "clean" when the unperturbed input is the worst case
    (always so for examples misclassified clean).
    """

    robust: torch.Tensor          # bool (n,): no attack found an error
    margin: torch.Tensor          # float64 (n,): smallest true-model margin found
    found_by: list[str]
    clean_correct: torch.Tensor   # bool (n,)
    labels: torch.Tensor          # int64 (n,)
    indices: torch.Tensor         # int64 (n,): dataset indices (the seeds of the random starts)
    per_attack: list[AttackStats]
    settings: dict
    diagnostics: Diagnostics | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    x_adv: torch.Tensor | None = None   # worst-case inputs (not stored by to_dict)
    aa_robust: torch.Tensor | None = None   # bool (n,): AutoAttack standard alone finds no error (None: not all run)
    autoattack_completion: AttackStats | None = None   # Square on the examples only the APGD members broke

    @property
    def autoattack_accuracy(self) -> float | None:
        """AutoAttack standard's robust accuracy on these examples (None unless all its members ran)."""
        return None if self.aa_robust is None or not self.n else int(self.aa_robust.sum()) / self.n

    @property
    def n(self) -> int:
        return len(self.robust)

    @property
    def accuracy(self) -> float:
        return float(self.robust.float().mean()) if self.n else float("nan")

    @property
    def clean_accuracy(self) -> float:
        return float(self.clean_correct.float().mean()) if self.n else float("nan")

    @property
    def accuracy_ci(self) -> tuple[float, float]:
        """Two-sided 95% Clopper-Pearson interval of the robust accuracy."""
        return accuracy_interval(int(self.robust.sum()), self.n)

    @classmethod
    def concat(cls, results) -> "WorstCaseResult":
        """Join the results of several batches evaluated with the same settings.

        Per-attack counts and seconds are summed; per-batch diagnostics are not
        merged (the joined result has none).
        """
        results = list(results)
        if not results:
            raise InputError("concat() needs at least one WorstCaseResult")
        if any(r.settings != results[0].settings for r in results):
            raise InputError("concat() got results evaluated with different settings; "
                             "join the batches of one evaluation only")
        table: dict[str, AttackStats] = {}
        for r in results:
            for a in r.per_attack:
                t = table.setdefault(a.name, AttackStats(a.name))
                t.ran_on, t.broke, t.seconds = t.ran_on + a.ran_on, t.broke + a.broke, t.seconds + a.seconds
        adv = [r.x_adv for r in results]
        aa = [r.aa_robust for r in results]
        done = [r.autoattack_completion for r in results]
        completion = None
        if all(d is not None for d in done):
            completion = AttackStats(done[0].name, sum(d.ran_on for d in done), sum(d.broke for d in done),
                                     sum(d.seconds for d in done))

        def cat(field):
            return torch.cat([getattr(r, field) for r in results])

        return cls(robust=cat("robust"), margin=cat("margin"), found_by=[f for r in results for f in r.found_by],
                   clean_correct=cat("clean_correct"), labels=cat("labels"), indices=cat("indices"),
                   per_attack=list(table.values()), settings=dict(results[0].settings),
                   warnings=list(dict.fromkeys(w for r in results for w in r.warnings)),
                   x_adv=torch.cat(adv) if all(a is not None for a in adv) else None,
                   aa_robust=torch.cat(aa) if all(a is not None for a in aa) else None,
                   autoattack_completion=completion)

    def records(self, indices=None) -> list[dict]:
        """One JSON-friendly dict per example (index, label, clean_correct, robust, margin, found_by, and
        aa_robust when AutoAttack standard ran in full)."""
        idx = self.indices.tolist() if indices is None else [int(i) for i in indices]
        if len(idx) != self.n:
            raise InputError(f"records() got {len(idx)} indices for {self.n} examples; pass one per example")
        margin = [m if math.isfinite(m) else None for m in self.margin.tolist()]
        out = [{"index": i, "label": lab, "clean_correct": c, "robust": r, "margin": m, "found_by": f}
               for i, lab, c, r, m, f in zip(idx, self.labels.tolist(), self.clean_correct.tolist(),
                                             self.robust.tolist(), margin, self.found_by)]
        if self.aa_robust is not None:
            for rec, a in zip(out, self.aa_robust.tolist()):
                rec["aa_robust"] = a
        return out

    def to_dict(self) -> dict:
        lo, hi = self.accuracy_ci
        done = self.autoattack_completion
        return {"schema_version": SCHEMA_VERSION, "n": self.n, "accuracy": self.accuracy, "accuracy_ci": [lo, hi],
                "clean_accuracy": self.clean_accuracy, "autoattack_accuracy": self.autoattack_accuracy,
                "settings": dict(self.settings), "per_attack": [dataclasses.asdict(a) for a in self.per_attack],
                "autoattack_completion": None if done is None else dataclasses.asdict(done),
                "diagnostics": None if self.diagnostics is None else dataclasses.asdict(self.diagnostics),
                "warnings": list(self.warnings), "examples": self.records()}

    @classmethod
    def from_dict(cls, data: dict) -> "WorstCaseResult":
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise InputError(f"worst-case result has schema_version {version!r}, this robustmix reads "
                             f"{SCHEMA_VERSION}; re-run the evaluation")
        ex = data["examples"]
        diag = data.get("diagnostics")
        return cls(robust=torch.tensor([e["robust"] for e in ex], dtype=torch.bool),
                   margin=torch.tensor([math.nan if e["margin"] is None else e["margin"] for e in ex],
                                       dtype=torch.float64),
                   found_by=[e["found_by"] for e in ex],
                   clean_correct=torch.tensor([e["clean_correct"] for e in ex], dtype=torch.bool),
                   labels=torch.tensor([e["label"] for e in ex], dtype=torch.int64),
                   indices=torch.tensor([e["index"] for e in ex], dtype=torch.int64),
                   per_attack=[AttackStats(**a) for a in data["per_attack"]], settings=dict(data["settings"]),
                   diagnostics=None if diag is None else Diagnostics(**diag), warnings=list(data.get("warnings", [])),
                   aa_robust=torch.tensor([e["aa_robust"] for e in ex], dtype=torch.bool)
                   if ex and all("aa_robust" in e for e in ex) else None,
                   autoattack_completion=AttackStats(**data["autoattack_completion"])
                   if data.get("autoattack_completion") else None)


@dataclasses.dataclass(frozen=True)
class _Member:
    name: str
    attack: str                      # AutoAttack member, or the APGD loss ("ce" / "dlr")
    source: nn.Module | None = None  # None: an AutoAttack member on the model


def _sources(model: nn.Module) -> dict[str, nn.Module]:
    """The modules whose gradients the APGD members follow (see the module docstring)."""
    surrogates = getattr(model, "attack_surrogates", None)
    surrogates = dict(surrogates()) if callable(surrogates) else {}
    for name, module in surrogates.items():
        if not isinstance(name, str) or not callable(module):
            raise ConfigError(f"attack_surrogates() must map names to modules, got {name!r}: {type(module).__name__}")
    sources = {} if any(s is model for s in surrogates.values()) else {"model": model}
    sources.update(surrogates)
    for name, attr in (("g", "std_model"), ("h", "rob_model")):
        part = getattr(model, attr, None)
        if runnable(part) and not any(s is part for s in sources.values()):
            sources[name if name not in sources else f"{name}-base"] = part
    return sources


def _plan(model: nn.Module, n_classes: int) -> list[_Member]:
    members = [_Member(f"aa-{a}", a) for a in _AA_FIRST if a != "apgd-t" or n_classes >= 4]
    losses = ("ce", "dlr") if n_classes >= 3 else ("ce",)
    members += [_Member(f"apgd-{loss}@{name}", loss, src) for name, src in _sources(model).items() for loss in losses]
    return members + [_Member("aa-square", "square")]


def attack_members(model: nn.Module, n_classes: int = 10) -> list[str]:
    """Names of the ensemble members :func:`evaluate` runs on ``model``, in order."""
    return [m.name for m in _plan(model, n_classes)]


def _select(members: list[_Member], attacks) -> list[_Member]:
    if attacks is None:
        return members
    patterns = [attacks] if isinstance(attacks, str) else list(attacks)
    names = [m.name for m in members]
    for pat in patterns:   # each a str (Ensemble checks); which members it matches is known only here
        if not fnmatch.filter(names, pat):
            raise ConfigError(f"attacks entry {pat!r} matches no ensemble member; use names or patterns "
                              f"(e.g. 'aa-*', 'apgd-*') from: {', '.join(names)}")
    return [m for m in members if any(fnmatch.fnmatchcase(m.name, pat) for pat in patterns)]


class _Worst:
    """Per-example worst case so far: smallest true-model margin, its input and its member (and the clean
    inputs and labels it started from)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor):
        self.y = y
        self.margin = margins(out, y).double()
        self.broken = out.argmax(1) != y
        self.member = torch.zeros(len(x), dtype=torch.int64, device=x.device)   # 0: "clean"
        self.clean = x
        self.x = x.clone()

    def update(self, idx: torch.Tensor, x_cand: torch.Tensor, out: torch.Tensor, member: int) -> torch.Tensor:
        """Record candidates for examples ``idx`` judged by ``out``; return which of them are now broken."""
        y = self.y[idx]
        m, err = margins(out, y).double(), out.argmax(1) != y
        take = ~self.broken[idx] & (err | (m < self.margin[idx]))
        sel = idx[take]
        self.margin[sel] = m[take]
        self.x[sel] = x_cand[take].to(self.x.dtype)
        self.member[sel] = member
        self.broken[sel] = err[take]
        return self.broken[idx]


def _check_args(model, x, y, indices) -> torch.Tensor:
    """The model, inputs and labels checked; the examples' dataset indices as int64 (default 0..n-1)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}; "
                          "wrap functions in an nn.Module")
    check_input(x)
    if len(x) == 0:
        raise InputError("x is empty: pass at least one example")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise InputError(f"x has values in [{lo:.4g}, {hi:.4g}], outside [0, 1]: pass images scaled to [0, 1] "
                         "(divide 8-bit images by 255) and let the model normalise them")
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise InputError(f"y must be an integer tensor of class labels, got "
                         f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}; use y.long()")
    if y.ndim != 1 or len(y) != len(x):
        raise InputError(f"y has shape {tuple(y.shape)} but x has {len(x)} examples; pass one label per example, "
                         f"shape ({len(x)},)")
    if indices is None:
        indices = torch.arange(len(x))
    elif not isinstance(indices, torch.Tensor):
        try:
            indices = torch.as_tensor(indices)
        except (TypeError, ValueError) as exc:
            raise InputError(f"indices must be integers (one dataset index per example), got {indices!r}") from exc
    if indices.is_floating_point() or indices.dtype == torch.bool or indices.shape != (len(x),):
        raise InputError(f"indices must be {len(x)} integers (one dataset index per example), "
                         f"got {indices.dtype} of shape {tuple(indices.shape)}")
    if (indices < 0).any():
        raise InputError("indices must be >= 0 (dataset positions)")
    return indices.to(torch.int64)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, threat: ThreatModel | None = None,
             ensemble: Ensemble | None = None, indices=None, diagnostics: DiagnosticChecks | None = None,
             keep_adv: bool = True, **deprecated) -> WorstCaseResult:
    """Worst-case robust accuracy of ``model`` on ``(x, y)`` within ``threat`` (the l_inf or l_2 ball of radius
    eps; required).

    ``model``: any ``nn.Module`` returning (n, c) logits or log-probabilities
    for inputs in [0, 1]; mixers contribute surrogates and base models by duck
    typing (``attack_surrogates``, ``std_model``, ``rob_model``; module
    docstring).  ``ensemble``: the members to run and their budgets
    (:class:`Ensemble`; default: all members, 100 APGD steps, 1 restart, Square
    5,000 queries, seed 0).  ``indices``: the examples' dataset indices
    (default 0..n-1), which seed their random starts.  ``diagnostics``: also
    run the cheap gradient-masking checks (:class:`DiagnosticChecks`; their
    result: :class:`Diagnostics`); None skips them.  ``keep_adv``: keep the
    worst-case inputs in the result (``x_adv``).

    The result's robust accuracy is the fraction of examples no member broke;
    ``accuracy_ci`` is its two-sided 95% Clopper-Pearson interval.

    Deprecated, for one release (DeprecationWarning): the keywords ``norm`` and
    ``eps`` (ThreatModel's fields), ``attacks``, ``steps``, ``restarts``,
    ``square_queries``, ``seed``, ``batch_size``, ``precision``, ``progress``
    (Ensemble's), and ``diagnostics=True`` with ``diagnostic_n`` /
    ``diagnostic_steps`` (DiagnosticChecks' n and steps).  Giving a group
    together with its own old keywords is a TypeError.
    """
    for name, value, group in (("threat", threat, ThreatModel), ("ensemble", ensemble, Ensemble)):
        if value is not None and not isinstance(value, group):
            raise ConfigError(f"{name} must be a {group.__name__}(...), got {type(value).__name__}")
    threat, old_threat = legacy_threat(threat, deprecated.pop("norm", None), deprecated, "evaluate")
    old_ensemble = {k: deprecated.pop(k) for k in _ENSEMBLE if k in deprecated}
    old_diagnostics = {k: deprecated.pop(k) for k in _DIAGNOSTICS if k in deprecated}
    refuse_unknown(deprecated, "evaluate")
    threat = from_keywords(ThreatModel, threat, old_threat, "evaluate")
    ensemble = from_keywords(Ensemble, ensemble, old_ensemble, "evaluate") or Ensemble()
    diagnostics = _diagnostic_checks(diagnostics, old_diagnostics)
    indices = _check_args(model, x, y, indices)
    p, eps, seed, batch_size = threat.p, threat.eps, ensemble.seed, ensemble.batch_size
    low = PRECISIONS[ensemble.precision]
    if model_device(model) != x.device:
        raise InputError(f"x is on {x.device} but the model is on {model_device(model)}; move x with x.to(device)")
    if any(m.training for m in model.modules() if isinstance(m, _RANDOM_IN_TRAINING)):
        logger.warning("evaluating a model in training mode (dropout / batch statistics make it random); "
                       "call model.eval() first")
    device = x.device
    y = y.to(device)
    keys_idx = indices.to(device)
    with torch.no_grad():
        outs = [model(xb) for xb in x.split(batch_size)]
    if any(o.ndim != 2 for o in outs):
        raise InputError(f"the model must return (n, c) scores, got shape {tuple(outs[0].shape)}; "
                         "for an alpha sweep evaluate one alpha at a time")
    out = torch.cat(outs)
    check_logits(out, "given to evaluate")      # NaN / probabilities: refused, not reported as 0% robust
    probe_models(mixture_parts(model, "given to evaluate"), x)
    n_classes = out.shape[1]
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise InputError(f"labels must lie in [0, {n_classes}) for this {n_classes}-class model, "
                         f"got values in [{int(y.min())}, {int(y.max())}]")
    plan = _plan(model, n_classes)
    members = _select(plan, ensemble.attacks)
    worst = _Worst(x, y, out)
    clean_correct = ~worst.broken.clone()
    aa_broken = worst.broken.clone()     # AutoAttack standard's own outcome (clean errors count)
    stats, messages = [], []
    level = logging.INFO if ensemble.progress else logging.DEBUG
    for number, member in enumerate(members, start=1):
        stat = AttackStats(member.name)
        active = torch.nonzero(~worst.broken).flatten()
        stat.ran_on = len(active)
        start = time.perf_counter()
        if member.source is None:    # an AutoAttack member on the model end to end
            suite = AutoAttackSuite("standard", (member.attack,), seed=seed,
                                    square_queries=ensemble.square_queries if member.attack == "square" else None)
            target = model if low is None else _Autocast(model, low)
        else:
            budget = APGDSettings(steps=ensemble.steps, loss=member.attack)
            source = member.source if low is None else _Autocast(member.source, low)
        for chunk in active.split(batch_size) if len(active) else ():
            if member.source is None:
                res = run_autoattack(target, x[chunk], y[chunk], threat, suite=suite, batch_size=len(chunk))
                messages += [m for m in res.warnings if m not in messages]
                with torch.no_grad():
                    aa_broken[chunk] |= worst.update(chunk, res.x_adv, model(res.x_adv), number)
                continue
            for restart in range(ensemble.restarts):
                chunk = chunk[~worst.broken[chunk]]
                if len(chunk) == 0:
                    break
                _run_apgd(model, source, worst, chunk, threat, budget, number,
                          example_keys(seed, keys_idx[chunk], zlib.crc32(member.name.encode()) + restart))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stat.seconds = time.perf_counter() - start
        stat.broke = int((worst.broken & (worst.member == number)).sum())
        stats.append(stat)
        logger.log(level, "%s: broke %d of %d in %.1f s (robust accuracy now %.2f%%)", member.name, stat.broke,
                   stat.ran_on, stat.seconds, 100 * float((~worst.broken).float().mean()))
    completion = None
    if all(m in members for m in plan if m.source is None):
        completion = _complete_autoattack(model, x, y, worst.broken & ~aa_broken, aa_broken, threat, ensemble,
                                          messages)
        logger.log(level, "AutoAttack standard alone: %.2f%% (Square also run on the %d examples only the APGD "
                   "members broke, %.1f s)", 100 * float((~aa_broken).float().mean()), completion.ran_on,
                   completion.seconds)
    delta = torch.linalg.vector_norm((worst.x - x).flatten(1), ord=p, dim=1)
    if (delta > eps * (1 + 1e-4) + 1e-6).any() or worst.x.min() < 0 or worst.x.max() > 1:
        raise AttackError("a worst-case input left the threat model; please report this")
    names = ["clean"] + [m.name for m in members]
    diag = None
    if diagnostics is not None:
        square = next((s for s in stats if s.name == "aa-square"), None)
        sub = torch.nonzero(clean_correct).flatten()[:diagnostics.n]
        diag = _diagnostics(model, x[sub], y[sub], keys_idx[sub], threat, ensemble, diagnostics,
                            None if square is None else square.broke)
    settings = {"norm": _NORM_NAMES[p], "eps": eps, "seed": seed, "steps": ensemble.steps,
                "restarts": ensemble.restarts, "batch_size": batch_size, "square_queries": ensemble.square_queries,
                "members": names[1:], **({"precision": ensemble.precision} if low is not None else {})}
    return WorstCaseResult(robust=~worst.broken.cpu(), margin=worst.margin.cpu(),
                           found_by=[names[i] for i in worst.member.tolist()], clean_correct=clean_correct.cpu(),
                           labels=y.cpu(), indices=indices.cpu(), per_attack=stats, settings=settings,
                           diagnostics=diag, warnings=messages, x_adv=worst.x.cpu() if keep_adv else None,
                           aa_robust=None if completion is None else ~aa_broken.cpu(),
                           autoattack_completion=completion)


def _diagnostic_checks(given, old: dict) -> DiagnosticChecks | None:
    """evaluate()'s ``diagnostics``: the group or None, or (deprecated) a bool with the old budget keywords."""
    if isinstance(given, DiagnosticChecks) or given is None:
        if not old:
            return given
        if given is not None:
            raise TypeError(f"evaluate(): give DiagnosticChecks(...) or its old keywords ({', '.join(sorted(old))}), "
                            "not both")
    elif not isinstance(given, bool):
        raise ConfigError(f"diagnostics must be a DiagnosticChecks(n, steps) or None, got {given!r}")
    used = ([] if given is None else ["diagnostics"]) + sorted(old)
    warnings.warn(f"evaluate({', '.join(f'{k}=' for k in used)}...) is deprecated and will be removed in the next "
                  f"release; pass diagnostics=DiagnosticChecks(n=..., steps=...), or None to skip them, instead",
                  DeprecationWarning, stacklevel=3)
    if not given:   # as before: the budget keywords alone ran no checks
        return None
    return DiagnosticChecks(**{_DIAGNOSTICS[k]: v for k, v in old.items()})


def _complete_autoattack(model, x, y, pending, aa_broken, threat: ThreatModel, ensemble: Ensemble,
                         messages) -> AttackStats:
    """Square on the examples AutoAttack's members never saw broken (``pending``): marks ``aa_broken`` in place."""
    stat = AttackStats("aa-square (AutoAttack completion)")
    todo = torch.nonzero(pending).flatten()
    stat.ran_on = len(todo)
    start = time.perf_counter()
    suite = AutoAttackSuite("standard", ("square",), square_queries=ensemble.square_queries, seed=ensemble.seed)
    for chunk in todo.split(ensemble.batch_size) if len(todo) else ():
        res = run_autoattack(model, x[chunk], y[chunk], threat, suite=suite, batch_size=len(chunk))
        messages += [m for m in res.warnings if m not in messages]
        with torch.no_grad():
            broke = model(res.x_adv).argmax(1) != y[chunk]
        aa_broken[chunk] |= broke
        stat.broke += int(broke.sum())
    stat.seconds = time.perf_counter() - start
    return stat


class _Autocast(nn.Module):
    """Runs a module under autocast (the attack's gradient steps in bf16 / fp16) and returns float32 outputs."""

    def __init__(self, module: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=self.dtype):
            out = self.module(x)
        return out.float()


def _run_apgd(model, source, worst, chunk, threat: ThreatModel, settings: APGDSettings, number: int, keys):
    """APGD (``settings``) along ``source``'s gradients (``model`` itself, a surrogate or a base model, possibly
    under autocast) from the clean inputs of examples ``chunk`` of ``worst``; every iterate is judged on
    ``model`` in its own precision and recorded as member ``number``."""
    source_is_model = source is model

    def observe(idx, x_iter, source_out):
        if source_is_model:
            judged = source_out
        else:
            with torch.no_grad():
                judged = model(x_iter)
        return worst.update(chunk[idx], x_iter, judged, number)

    apgd(source, worst.clean[chunk], worst.y[chunk], threat, settings=settings, keys=keys, observe=observe)


def _diagnostics(model, x, y, keys_idx, threat: ThreatModel, ensemble: Ensemble, checks: DiagnosticChecks,
                 square_only) -> Diagnostics:
    """Accuracy of a cheap end-to-end APGD-CE (``checks.steps`` steps) at eps/2, eps, 2 eps and an unbounded
    radius, on the examples given (the first ``checks.n`` clean-correct ones), in full precision."""
    start = time.perf_counter()
    eps = threat.eps
    unbounded = 1.0 if threat.p == math.inf else math.sqrt(math.prod(x.shape[1:]))
    grid = [eps / 2, eps, 2 * eps, unbounded]
    settings = APGDSettings(steps=checks.steps, loss="ce")
    accuracy = []
    for radius in grid:
        if len(x) == 0:
            accuracy.append(float("nan"))
            continue
        with torch.no_grad():
            worst = _Worst(x, y, model(x))
        ball = ThreatModel(threat.norm, radius)
        for chunk in torch.arange(len(x), device=x.device).split(ensemble.batch_size):
            _run_apgd(model, model, worst, chunk, ball, settings, 1,
                      example_keys(ensemble.seed, keys_idx[chunk], 0x0D1A6))
        accuracy.append(float((~worst.broken).float().mean()))
    a_half, _, a_two, a_unb = accuracy
    diag = Diagnostics(square_only=square_only, eps_grid=grid, accuracy_by_eps=accuracy, subset_n=len(x),
                       eps_not_decreasing=bool(len(x) and a_half > 0 and a_two >= a_half),
                       unbounded_not_zero=bool(len(x) and a_unb > 0), seconds=time.perf_counter() - start)
    if diag.suspected:
        logger.warning("gradient masking suspected: Square-only errors %s, accuracy %s at radii %s",
                       square_only, [round(a, 4) for a in accuracy], [round(r, 4) for r in grid])
    return diag
