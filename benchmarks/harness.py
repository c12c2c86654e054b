"""The timing harness every benchmark in this folder uses (not part of the library).

A benchmark compares *variants* (zero-argument callables).  The harness

* warms every variant up, and can count the first warm-up call's forward and
  backward passes through named base models with module hooks;
* times the variants interleaved round by round (A, B, C, A, B, C, ...), so a
  burst of load from another process hits every variant of a round alike;
* reports a ratio as the median of its per-round values with the spread
  (interquartile range and min-max) of those values;
* gives each ratio a *floor*: the ratio that the counted work alone implies,
  with every pass priced at its model's measured cost per row.

The API, in the order a benchmark uses it::

    setup(threads=1) -> str                       # set torch threads, describe the machine
    rounds = interleave({"a": fa, "b": fb}, rounds=9, count={"g": g, "h": h})
    rounds.ratio("a", "b") -> Spread              # median of t_a / t_b per round, with spread
    rounds.ratio("mix", ["g", "h"])               # denominators (or numerators) may be sums
    rounds.per_round(lambda t: ...) -> Spread     # any per-round statistic of the times t[name]
    rounds.passes["a"] -> Passes                  # rows through each model in a's counted call
    unit_variants({"g": g}, x, repeat=1)          # "g fwd", "g fwd+bwd" (and "g fwd+bwd(params)")
    costs = unit_costs(rounds, ["g"], rows=len(x))  # seconds per row of each kind of pass (x repeat)
    work(passes, costs) -> seconds                # the counted work priced at those costs
    floor(passes_a, passes_b, costs) -> float     # work(a) / work(b)

Pass kinds: ``fwd`` (a forward call of the model), ``input`` (a backward that
reaches the input, as in an attack's step) and ``params`` (a backward that only
reaches parameters, as in a training step).  ``unit_variants`` measures ``fwd``
under ``torch.no_grad`` and prices a backward as ``t(fwd+bwd) - t(fwd)``, so
the cost of recording the graph is charged to the backward.  A floor assumes a
pass costs the same per row at every batch size and leaves out everything that
is not a pass through a counted model (the mixing arithmetic, projections,
optimizer steps, Python): a ratio above its floor measures those.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
import warnings
from collections import Counter
from typing import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["setup", "timeit", "Passes", "PassCounter", "count_passes", "Spread", "Rounds", "interleave",
           "unit_variants", "unit_costs", "work", "floor", "fmt", "BACKWARD_KINDS"]

BACKWARD_KINDS = ("input", "params")


def setup(threads: int = 1) -> str:
    """Set torch's intra-op threads and return a one-line description of the run's machine."""
    torch.set_num_threads(threads)
    return (f"torch {torch.__version__}, {platform.machine()} CPU with {_cores()} cores, "
            f"{threads} thread{'s' if threads != 1 else ''}, {time.strftime('%Y-%m-%d')}")


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def timeit(fn: Callable[[], object], repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls (one variant alone)."""
    return interleave({"fn": fn}, rounds=repeats, warmup=warmup).median("fn")


# ---------------------------------------------------------------------------------------------- pass counting


@dataclasses.dataclass
class Passes:
    """Rows (and calls) that went through each named model: forward, and backward by kind."""

    forward: Counter = dataclasses.field(default_factory=Counter)          # name -> rows
    backward: Counter = dataclasses.field(default_factory=Counter)         # (name, kind) -> rows
    forward_calls: Counter = dataclasses.field(default_factory=Counter)    # name -> calls
    backward_calls: Counter = dataclasses.field(default_factory=Counter)   # (name, kind) -> calls

    def __add__(self, other: "Passes") -> "Passes":
        return Passes(*(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)))

    def __sub__(self, other: "Passes") -> "Passes":
        out = Passes()
        for f in dataclasses.fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            getattr(out, f.name).update({k: a[k] - b[k] for k in set(a) | set(b)})
        return out

    def describe(self) -> str:
        """E.g. ``g: 200 fwd, 100 bwd(input); h: 200 fwd`` (rows)."""
        names = sorted(set(self.forward) | {n for n, _ in self.backward})
        parts = []
        for n in names:
            bits = [f"{self.forward[n]:,} fwd"] if self.forward[n] else []
            bits += [f"{self.backward[n, k]:,} bwd({k})" for k in BACKWARD_KINDS if self.backward[n, k]]
            parts.append(f"{n}: {', '.join(bits) or 'nothing'}")
        return "; ".join(parts)


class PassCounter:
    """Context manager counting forward and backward rows through named models with module hooks.

    A forward hook adds the batch's rows at every call of a model; a full backward
    hook adds them at every backward through it, as kind ``input`` when the
    gradient reaches the model's input and ``params`` when it only reaches the
    parameters.  Hooks are removed on exit, so time a variant without them.
    """

    def __init__(self, models: Mapping[str, nn.Module]):
        seen = {}
        for name, model in models.items():
            if id(model) in seen:
                raise ValueError(f"models {seen[id(model)]!r} and {name!r} are the same object: it would be "
                                 "counted twice; pass it once")
            seen[id(model)] = name
        self.models = dict(models)
        self.passes = Passes()
        self._handles = []

    def __enter__(self) -> "PassCounter":
        for name, model in self.models.items():
            self._handles.append(model.register_forward_hook(self._forward_hook(name)))
            self._handles.append(model.register_full_backward_hook(self._backward_hook(name)))
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        # a backward that only reaches parameters makes torch warn once per module; that case is counted as "params"
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with "
                                "respect to module outputs")
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._warnings.__exit__(*exc)

    def _forward_hook(self, name):
        def hook(module, inputs, output):
            self.passes.forward[name] += _rows(inputs, output)
            self.passes.forward_calls[name] += 1
        return hook

    def _backward_hook(self, name):
        def hook(module, grad_input, grad_output):
            kind = "input" if grad_input and grad_input[0] is not None else "params"
            self.passes.backward[name, kind] += _rows(grad_output, None)
            self.passes.backward_calls[name, kind] += 1
        return hook


def _rows(tensors, fallback) -> int:
    for t in (*tensors, fallback):
        if isinstance(t, torch.Tensor) and t.ndim:
            return int(t.shape[0])
    return 0


def count_passes(fn: Callable[[], object], models: Mapping[str, nn.Module]) -> Passes:
    """Call ``fn()`` once with the models hooked; return the passes it made."""
    with PassCounter(models) as counter:
        fn()
    return counter.passes


# ---------------------------------------------------------------------------------------------- interleaved timing


@dataclasses.dataclass(frozen=True)
class Spread:
    """The median of per-round values with their quartiles and extremes."""

    median: float
    q1: float
    q3: float
    lo: float
    hi: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> "Spread":
        v = sorted(float(x) for x in values)
        if not v:
            raise ValueError("no values: time at least one round")
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else (v[0],) * 3
        return cls(statistics.median(v), q1, q3, v[0], v[-1], len(v))

    def __str__(self) -> str:
        return self.format()

    def format(self, digits: int = 2) -> str:
        """``median (IQR q1-q3)``, e.g. ``1.04 (1.02-1.05)``."""
        return f"{self.median:.{digits}f} ({self.q1:.{digits}f}-{self.q3:.{digits}f})"


class Rounds:
    """Per-round times of interleaved variants (``times[name][i]``: seconds in round i)."""

    def __init__(self, names: Sequence[str]):
        self.times: dict[str, list[float]] = {n: [] for n in names}
        self.passes: dict[str, Passes] = {}

    def __len__(self) -> int:
        return min((len(t) for t in self.times.values()), default=0)

    def round(self, i: int) -> dict[str, float]:
        return {n: t[i] for n, t in self.times.items()}

    def median(self, name: str) -> float:
        """Median seconds of one variant (for absolute numbers; prefer ratios for comparisons)."""
        return statistics.median(self.times[name])

    def per_round(self, stat: Callable[[dict[str, float]], float]) -> Spread:
        """``stat`` of each round's times (a dict name -> seconds), summarised over the rounds."""
        return Spread.of(stat(self.round(i)) for i in range(len(self)))

    def ratio(self, num: str | Sequence[str], den: str | Sequence[str]) -> Spread:
        """Median over rounds of ``sum(t[num]) / sum(t[den])`` (a name or a list of names on either side)."""
        num, den = ([x] if isinstance(x, str) else list(x) for x in (num, den))
        return self.per_round(lambda t: sum(t[n] for n in num) / sum(t[d] for d in den))


def interleave(variants: Mapping[str, Callable[[], object]], rounds: int = 9, warmup: int = 1,
               count: Mapping[str, nn.Module] | None = None, progress: bool = False) -> Rounds:
    """Time ``variants`` round by round: every round calls each variant once, in order.

    ``warmup`` untimed rounds come first; with ``count`` (name -> model) the first
    of them runs under a :class:`PassCounter` and ``Rounds.passes[variant]`` holds
    what each variant did.  ``progress`` prints a line per round to stderr.
    """
    if rounds < 1 or warmup < (1 if count else 0):
        raise ValueError("need rounds >= 1 (and warmup >= 1 to count passes)")
    out = Rounds(list(variants))
    for w in range(warmup):
        for name, fn in variants.items():
            if w == 0 and count:
                out.passes[name] = count_passes(fn, count)
            else:
                fn()
    for r in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            out.times[name].append(time.perf_counter() - t0)
        if progress:
            import sys

            print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {t[-1]:.3f}s" for n, t in out.times.items()),
                  file=sys.stderr, flush=True)
    return out


# ---------------------------------------------------------------------------------------------- floors


def unit_variants(models: Mapping[str, nn.Module], x: torch.Tensor, params: bool = False, repeat: int = 1) -> dict:
    """Variants that price one pass of each model on the batch ``x``.

    ``"<name> fwd"``: a forward under no_grad; ``"<name> fwd+bwd"``: a forward and
    the gradient of the summed cross-entropy with respect to the input (an attack's
    step); with ``params``, ``"<name> fwd+bwd(params)"``: a forward and
    ``backward()`` into the parameters (a training step without the optimizer).
    Each call makes ``repeat`` such passes (so that a short pass is timed over a
    span like its benchmark's other variants); give :func:`unit_costs`
    ``rows=len(x) * repeat``.
    """
    out = {}
    for name, model in models.items():
        y = torch.zeros(len(x), dtype=torch.long)
        out[f"{name} fwd"] = _repeated(_fwd(model, x), repeat)
        out[f"{name} fwd+bwd"] = _repeated(_fwd_bwd_input(model, x, y), repeat)
        if params:
            out[f"{name} fwd+bwd(params)"] = _repeated(_fwd_bwd_params(model, x, y), repeat)
    return out


def _repeated(fn, times):
    if times == 1:
        return fn

    def run():
        for _ in range(times):
            fn()
    return run


def _fwd(model, x):
    def run():
        with torch.no_grad():
            model(x)
    return run


def _fwd_bwd_input(model, x, y):
    def run():
        xa = x.detach().clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(model(xa), y, reduction="sum"), xa)
    return run


def _fwd_bwd_params(model, x, y):
    def run():
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
    return run


def unit_costs(rounds: Rounds, names: Iterable[str], rows: int) -> dict:
    """Seconds per row of each pass kind, from the medians of :func:`unit_variants`' per-round times.

    ``rows``: rows per call of a unit variant (``len(x) * repeat``).
    Returns ``{(name, "fwd"): s, (name, "input"): s, (name, "params"): s}`` (the last
    only where ``unit_variants(..., params=True)`` was timed).
    """
    costs = {}
    for name in names:
        fwd = rounds.median(f"{name} fwd")
        costs[name, "fwd"] = fwd / rows
        costs[name, "input"] = rounds.per_round(lambda t: t[f"{name} fwd+bwd"] - t[f"{name} fwd"]).median / rows
        if f"{name} fwd+bwd(params)" in rounds.times:
            costs[name, "params"] = rounds.per_round(
                lambda t: t[f"{name} fwd+bwd(params)"] - t[f"{name} fwd"]).median / rows
    return costs


def work(passes: Passes, costs: Mapping) -> float:
    """Seconds the counted passes cost at ``costs`` (see :func:`unit_costs`)."""
    total = 0.0
    for name, rows in passes.forward.items():
        total += rows * _cost(costs, name, "fwd")
    for (name, kind), rows in passes.backward.items():
        total += rows * _cost(costs, name, kind)
    return total


def _cost(costs, name, kind):
    if (name, kind) in costs:
        return costs[name, kind]
    raise KeyError(f"no unit cost for {kind!r} passes of {name!r}: time unit_variants for it"
                   + (" with params=True" if kind == "params" else ""))


def floor(num: Passes, den: Passes, costs: Mapping) -> float:
    """The ratio ``work(num) / work(den)``: what a time ratio would be if only the counted passes cost time."""
    return work(num, costs) / work(den, costs)


def fmt(spread: Spread, floor_value: float | None = None, digits: int = 2) -> str:
    """A table cell: ``median (IQR) | floor``."""
    cell = spread.format(digits)
    return cell if floor_value is None else f"{cell} | {floor_value:.{digits}f}"
