"""Fitting the nonlinear (MixedNUTS) mixer on a held-out validation split.

The attacks are the only expensive part and run once: :func:`collect_logits`
computes g's clean logits, h's clean logits and h's logits on inputs attacked
*against h alone* (as MixedNUTS does); :func:`cached_validation_logits` keeps
them on disk so a rerun does not attack again.  :func:`calibrate_nonlinear`
then takes those logits, never models, and searches the map (scale, power,
bias) and alpha on them; each grid point costs a few tensor operations on
(n, c) logits.

The worst-case condition behind alpha
-------------------------------------
Let p = P_g(x) and q = softmax(M(z_h(x))).  The mixture's probabilities are
m = (1 - alpha) p + alpha q.  For any j != y,
``m_y - m_j = (1 - alpha)(p_y - p_j) + alpha (q_y - q_j) >= -(1 - alpha) + alpha (q_y - q_j)``,
with equality when g puts all its mass on j.  So the mixture predicts y for
*every* output of g (g adversarially wrong) iff

    alpha * margin > 1 - alpha,   margin = q_y - max_{j != y} q_j,
    i.e.  margin > (1 - alpha) / alpha  <=>  alpha > 1 / (1 + margin).

Given h's attacked validation examples, let c be the mapped margin that a
share ``percentile`` % of those *h classifies correctly* reaches (the 'lower'
order statistic, so at least that share is kept on validation; a map that
breaks more than the rest, margin <= 0, is infeasible at that percentile).
alpha = 1 / (1 + c) keeps all of them (the example at c itself is a tie,
counted as kept).  This is MixedNUTS's cutoff, with (1 - alpha) / alpha = c,
capped at 1 - 1e-6 (see :data:`MAX_CUTOFF`).  The *robust proxy* is the share
of all attacked validation examples with margin >= (1 - alpha) / alpha: the
mixture's worst-case accuracy on inputs attacked against h, a proxy for (not a
bound on) its accuracy under attacks aimed at the mixture; confirm with the
worst-case evaluator on the test split.

Choosing the map
----------------
Every (scale, power, bias) on the grid gets its own alpha by the rule above,
so all candidates keep the same examples of h's (at least ``percentile`` %);
they differ in clean accuracy.  ``objective="clean_accuracy"`` (default) picks the map whose mixture
has the highest clean accuracy on validation (g's logits are at hand, so the
quantity itself is used); ties go to the lower MixedNUTS objective, then the
lower alpha.  ``objective="mixednuts"`` uses MixedNUTS's own criterion: the
smallest share of h's clean mistakes whose mapped top-1 minus top-2 margin is
>= c (the mistakes h would impose on the mixture even against a confident,
correct g); ties go to higher clean accuracy, then lower alpha.  A local
refinement then searches a finer grid around the best point (``refine``
rounds, each halving the spacing).

The settings travel as option groups, each checked once when it is made: the attack's budget
(:class:`~robustmix.groups.ThreatModel`), the attack on h (:class:`ValidationAttack`) and the search
(:class:`MapSearch`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._io import read_json, write_json
from .._seeding import example_seed
from .._validation import check_input, check_positive_int
from ..attacks.pgd import PGD
from ..errors import ConfigError
from .._config import from_keywords, require_group, split_keywords
from ..groups import ThreatModel
from ..mixing.nonlinear import NonlinearMap, NonlinearMixedClassifier, map_checked

logger = logging.getLogger(__name__)

OBJECTIVES = ("clean_accuracy", "mixednuts")
DEFAULT_GRID = {"scale": np.geomspace(0.05, 20.0, 8).tolist(), "power": np.linspace(0.5, 4.0, 8).tolist(),
                "bias": np.linspace(-3.0, 1.0, 8).tolist()}
# c is capped below 1 (alpha >= 1 / (2 - 1e-6)): margins of a near one-hot map round to 1, and a smaller
# c only raises alpha, so every example the uncapped cutoff keeps stays kept (MixedNUTS caps it likewise).
MAX_CUTOFF = 1.0 - 1e-6
PATH_PERCENTILES = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 100.0)


@dataclasses.dataclass
class ValidationLogits:
    """The logits calibration needs, computed once (float32, on the CPU)."""

    std_clean: torch.Tensor   # g on clean validation inputs (n, c)
    rob_clean: torch.Tensor   # h on clean validation inputs (n, c)
    rob_adv: torch.Tensor     # h on inputs attacked against h (n, c)
    y: torch.Tensor           # labels (n,)
    attack: str               # what produced rob_adv
    seconds: float            # wall time of the forward passes and the attack


ATTACK_LOSSES = ("ce", "margin")


@dataclasses.dataclass(frozen=True)
class ValidationAttack:
    """The attack on h whose logits calibration reads (an option group): PGD with ``steps`` gradient steps
    (0: h's logits on the random start) and ``restarts`` runs per input, the ``loss`` it ascends ("ce",
    "margin" or a callable ``(outputs, y) -> per-sample loss``), per-example random starts from ``seed``, and
    ``batch_size`` inputs per forward pass (the results do not depend on it).  Each value is checked once, here.
    """

    steps: int = 20
    restarts: int = 1
    seed: int = 0
    batch_size: int = 500
    loss: str | Callable = "ce"

    def __post_init__(self):
        check_positive_int(self.steps, name="steps", minimum=0)
        check_positive_int(self.restarts, name="restarts")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        check_positive_int(self.batch_size, name="batch_size")
        if not callable(self.loss) and self.loss not in ATTACK_LOSSES:
            raise ConfigError(f"unknown loss {self.loss!r}: use 'ce', 'margin' or a callable (outputs, y) -> "
                              "per-sample loss")


# the keywords the functions took before the groups (still accepted for one release, deprecated)
THREAT_KEYWORDS = ("eps", "norm")
COLLECT_KEYWORDS = ("steps", "seed", "batch_size", "restarts", "loss")
CACHED_KEYWORDS = ("steps", "seed", "batch_size")
SEARCH_KEYWORDS = ("grid", "refine", "std_map", "top_k", "objective")


def _threat_and_attack(threat, attack, deprecated: dict, caller: str, attack_keywords: tuple):
    old_threat, old_attack = split_keywords(deprecated, caller, THREAT_KEYWORDS, attack_keywords)
    if threat is None and "eps" not in old_threat:
        raise TypeError(f"{caller}() needs the attack's budget: give threat=ThreatModel(norm, eps)")
    return old_threat, old_attack


def collect_logits(std_model, rob_model, x: torch.Tensor, y: torch.Tensor, threat: ThreatModel | None = None,
                   attack: ValidationAttack | None = None, **deprecated) -> ValidationLogits:
    """g's and h's clean logits and h's logits on PGD-attacked-h inputs, batch by batch (device from h).

    ``threat``: the attack's budget (:class:`~robustmix.groups.ThreatModel`, required); ``attack``: the PGD run
    (:class:`ValidationAttack`, default ``ValidationAttack()``).  The keywords ``eps``, ``norm``, ``steps``,
    ``seed``, ``batch_size``, ``restarts`` and ``loss`` still work for one release (deprecated).
    """
    caller = "collect_logits"
    old_threat, old_attack = _threat_and_attack(threat, attack, deprecated, caller, COLLECT_KEYWORDS)
    threat = require_group(from_keywords(ThreatModel, threat, old_threat, caller), ThreatModel, caller, "threat")
    attack = require_group(from_keywords(ValidationAttack, attack, old_attack, caller) or ValidationAttack(),
                    ValidationAttack, caller, "attack")
    check_input(x)
    if y.shape != (len(x),) or y.is_floating_point():
        raise ConfigError(f"y must be an integer tensor of shape ({len(x)},), got {tuple(y.shape)} {y.dtype}")
    batch_size, seed = attack.batch_size, attack.seed
    param = next(iter(rob_model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    pgd = PGD(rob_model, threat.eps, threat.p, steps=attack.steps, restarts=attack.restarts, loss=attack.loss,
              seed=None)
    t0 = time.perf_counter()
    parts: dict[str, list] = {"g": [], "h": [], "adv": []}
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
        seeds = [example_seed(seed, j, stream=2) for j in range(i, i + len(xb))]
        xa = pgd(xb, yb, seeds=seeds)
        with torch.no_grad():
            parts["g"].append(std_model(xb).float().cpu())
            parts["h"].append(rob_model(xb).float().cpu())
            parts["adv"].append(rob_model(xa).float().cpu())
    seconds = time.perf_counter() - t0
    desc = (f"PGD-{attack.steps} ({attack.loss}, {attack.restarts} restart(s)) on h, eps={threat.eps:g}, "
            f"norm={threat.norm}, seed={seed}")
    logger.info("collected validation logits of %d examples in %.1f s (%s)", len(x), seconds, desc)
    return ValidationLogits(torch.cat(parts["g"]), torch.cat(parts["h"]), torch.cat(parts["adv"]), y.cpu(), desc,
                            seconds)


def cached_validation_logits(path, g, h, x, y, threat: ThreatModel | None = None,
                             attack: ValidationAttack | None = None, **deprecated) -> ValidationLogits:
    """:func:`collect_logits` computed once and kept at ``path`` (safetensors, settings in ``path``'s ``.json``).

    A file written with the same eps, norm, steps (restarts and loss, where not 1 and "ce") and number of inputs
    is read back instead of attacking again (``robustmix pareto`` and ``robustmix calibrate`` keep it beside their
    records).  The keywords ``eps``, ``norm``, ``steps``, ``seed`` and ``batch_size`` still work for one release
    (deprecated).
    """
    from safetensors.torch import load_file, save_file

    caller = "cached_validation_logits"
    old_threat, old_attack = _threat_and_attack(threat, attack, deprecated, caller, CACHED_KEYWORDS)
    threat = require_group(from_keywords(ThreatModel, threat, old_threat, caller), ThreatModel, caller, "threat")
    attack = require_group(from_keywords(ValidationAttack, attack, old_attack, caller) or ValidationAttack(),
                    ValidationAttack, caller, "attack")
    if callable(attack.loss):
        raise ConfigError("cached_validation_logits cannot record a callable loss with its file; use collect_logits "
                          "for a loss of your own")
    settings = {"eps": threat.eps, "norm": threat.norm, "steps": attack.steps, "n": len(x)}
    # files written before restarts and loss could be chosen hold 1 and "ce": recorded only where they differ
    settings.update({k: v for k, v, default in (("restarts", attack.restarts, 1), ("loss", attack.loss, "ce"))
                     if v != default})
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = read_json(meta_path)
        if meta.get("settings") == settings:
            t = load_file(str(path))
            return ValidationLogits(t["std_clean"], t["rob_clean"], t["rob_adv"], t["y"], meta["attack"],
                                    meta["seconds"])
    v = collect_logits(g, h, x, y, threat, attack)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"std_clean": v.std_clean, "rob_clean": v.rob_clean, "rob_adv": v.rob_adv, "y": v.y}, str(path))
    write_json(meta_path, {"settings": settings, "attack": v.attack, "seconds": v.seconds})
    return v


@dataclasses.dataclass
class NonlinearCalibration:
    """The calibrated map and alpha, the objective values and the searched points (JSON via to_dict)."""

    scale: float
    power: float
    bias: float
    alpha: float
    cutoff: float             # c = (1 - alpha) / alpha, the kept margin
    percentile: float
    top_k: int | None
    std_map: str
    objective: str
    clean_acc: float          # mixture's clean accuracy on validation
    robust_proxy: float       # share of attacked validation examples kept in the worst case
    mistakes_kept: float      # MixedNUTS's objective: share of h's clean mistakes with margin >= c
    n_val: int
    seconds: float            # search time (logits given)
    searched: list = dataclasses.field(default_factory=list)   # every evaluated map at this percentile
    path: list = dataclasses.field(default_factory=list)       # best map per percentile: a Pareto curve
    schema: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NonlinearCalibration":
        if data.get("schema", 1) != 1:
            raise ConfigError(f"calibration schema {data.get('schema')!r} is not supported (expected 1)")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def logit_map(self) -> NonlinearMap:
        """The calibrated map as a :class:`~robustmix.mixing.NonlinearMap`."""
        return NonlinearMap(self.scale, self.power, self.bias, self.top_k, self.std_map)

    def mixer(self, std_model, rob_model) -> NonlinearMixedClassifier:
        """The calibrated :class:`NonlinearMixedClassifier` for (g, h)."""
        return NonlinearMixedClassifier(std_model, rob_model, self.alpha, self.logit_map)


def _probs(logits, scale, power, bias, top_k):
    """softmax(M(logits)) for settings checked beforehand (the search's grid, a checked top_k)."""
    return F.softmax(map_checked(logits, scale, power, bias, top_k), dim=-1)


def _true_margin(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    true = q.gather(1, y[:, None])[:, 0]
    other = q.scatter(1, y[:, None], -math.inf).amax(1)
    return true - other


def _evaluate(data, scale, power, bias, top_k, std_map, percentiles) -> list[dict]:
    """The worst-case alpha and its validation numbers for one map, at each feasible percentile.

    The cutoff is taken over the examples *h itself* classifies correctly after
    the attack, with their mapped margins (negative where the map broke them: a
    large negative bias can reverse GELU's order).  A percentile whose cutoff is
    <= 0 cannot be met by this map at any alpha and yields no row.
    """
    p_std, h_clean, h_adv, y = data
    q_clean, q_adv = _probs(h_clean, scale, power, bias, top_k), _probs(h_adv, scale, power, bias, top_k)
    adv_margin = _true_margin(q_adv, y)
    ok = adv_margin[h_adv.argmax(1) == y].numpy()
    if ok.size == 0:
        raise ConfigError("h is correct on none of the attacked validation examples, so no alpha keeps any of "
                          "them; use a smaller eps or more validation examples")
    cut_all = np.quantile(ok, 1.0 - np.asarray(percentiles, dtype=float) / 100.0, method="lower")
    feasible = cut_all > 0
    if not feasible.any():
        return []
    percentiles = [pc for pc, f in zip(percentiles, feasible) if f]
    cut = torch.as_tensor(np.minimum(cut_all[feasible], MAX_CUTOFF), dtype=torch.float64)
    alpha = 1.0 / (1.0 + cut)
    ratio = (1 - alpha) / alpha
    mixed = (1 - alpha)[:, None, None] * p_std + alpha[:, None, None] * q_clean
    clean_acc = (mixed.argmax(-1) == y).double().mean(1)
    robust = (adv_margin[None, :] >= ratio[:, None] - 1e-12).double().mean(1)
    wrong = q_clean.argmax(1) != y
    top2 = q_clean[wrong].topk(2, dim=1).values if wrong.any() else q_clean[:0, :2]
    gap = top2[:, 0] - top2[:, 1]
    kept = (gap[None, :] >= ratio[:, None] - 1e-12).double().mean(1) if wrong.any() else torch.zeros_like(alpha)
    return [{"scale": float(scale), "power": float(power), "bias": float(bias), "percentile": float(pc),
             "alpha": float(alpha[i]), "cutoff": float(cut[i]), "clean_acc": float(clean_acc[i]),
             "robust_proxy": float(robust[i]), "mistakes_kept": float(kept[i])} for i, pc in enumerate(percentiles)]


def _key(objective: str):
    if objective == "clean_accuracy":
        return lambda r: (-r["clean_acc"], r["mistakes_kept"], r["alpha"])
    return lambda r: (r["mistakes_kept"], -r["clean_acc"], r["alpha"])


def _check_grid(grid) -> dict[str, tuple[float, ...]]:
    grid = dict(DEFAULT_GRID if grid is None else grid)
    if set(grid) != {"scale", "power", "bias"}:
        raise ConfigError(f"grid must have exactly the keys 'scale', 'power', 'bias', got {sorted(grid)}")
    out = {}
    for name, values in grid.items():
        try:
            vals = sorted(float(v) for v in np.atleast_1d(np.asarray(values, dtype=float)))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"grid[{name!r}] must be numbers, got {values!r}") from exc
        if not vals:
            raise ConfigError(f"grid[{name!r}] is empty: give at least one value")
        for v in vals:   # NonlinearMap checks each value (scale and power > 0, bias finite)
            NonlinearMap(**{name: v})
        out[name] = tuple(vals)
    return {k: out[k] for k in ("scale", "power", "bias")}


@dataclasses.dataclass(frozen=True)
class MapSearch:
    """How :func:`calibrate_nonlinear` searches the map (an option group).

    ``grid``: ``{"scale": [...], "power": [...], "bias": [...]}`` (default :data:`DEFAULT_GRID`, 512 maps; kept
    sorted, as tuples of floats); ``refine``: True (2 rounds), False or a number of rounds of local refinement;
    ``objective``: "clean_accuracy" or "mixednuts" (see the module notes); ``top_k`` and ``std_map``: the map's
    fixed settings, as in :class:`~robustmix.mixing.NonlinearMap`.  Each value is checked once, here.
    """

    grid: dict | None = None
    refine: bool | int = True
    objective: str = "clean_accuracy"
    top_k: int | None = None
    std_map: str = "softmax"

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}: use one of {', '.join(OBJECTIVES)}")
        fixed = NonlinearMap(top_k=self.top_k, std_map=self.std_map)
        object.__setattr__(self, "top_k", fixed.top_k)
        object.__setattr__(self, "std_map", fixed.std_map)
        object.__setattr__(self, "_fixed", fixed)
        object.__setattr__(self, "grid", _check_grid(self.grid))
        if not isinstance(self.refine, bool):
            check_positive_int(self.refine, name="refine", minimum=0)

    def __hash__(self):
        return hash((tuple(self.grid.items()), self.refine, self.objective, self.top_k, self.std_map))

    def check_classes(self, num_classes: int) -> "MapSearch":
        """This search, refused in one line when ``top_k`` exceeds the logits' number of classes."""
        self._fixed.check_classes(num_classes)
        return self

    @property
    def rounds(self) -> int:
        """The number of refinement rounds."""
        return (2 if self.refine else 0) if isinstance(self.refine, bool) else self.refine


def _neighbours(values: list[float], best: float, log: bool, points: int = 5) -> list[float]:
    """A finer grid spanning the neighbours of ``best`` in ``values`` (the interval halves each round)."""
    i = values.index(best)
    lo, hi = values[max(i - 1, 0)], values[min(i + 1, len(values) - 1)]
    if lo == hi:
        return [best]
    grid = np.geomspace(lo, hi, points) if log else np.linspace(lo, hi, points)
    return sorted(set(float(v) for v in grid) | {best})


def calibrate_nonlinear(g_logits_val: torch.Tensor, h_logits_clean_val: torch.Tensor,
                        h_logits_adv_val: torch.Tensor, y_val: torch.Tensor, *, percentile: float = 95.0,
                        search: MapSearch | None = None, **deprecated) -> NonlinearCalibration:
    """Choose (scale, power, bias, alpha) of the nonlinear mixer from validation logits (see the module notes).

    ``percentile``: the share (%) of h's attacked-correct validation examples the
    mixture must keep correct in the worst case (MixedNUTS's beta), in (0, 100].
    ``search``: how to search (:class:`MapSearch`: the grid, refinement rounds, objective and the map's fixed
    ``top_k`` and ``std_map``; default ``MapSearch()``).  The returned ``path`` lists, for each
    of :data:`PATH_PERCENTILES` and ``percentile`` (ascending) where some grid map
    is feasible, the best grid map's alpha, clean accuracy and robust proxy: the
    calibration's accuracy-robustness curve.  The keywords ``grid``, ``refine``, ``std_map``, ``top_k`` and
    ``objective`` still work for one release (deprecated).
    """
    t0 = time.perf_counter()
    caller = "calibrate_nonlinear"
    (old_search,) = split_keywords(deprecated, caller, SEARCH_KEYWORDS)
    search = require_group(from_keywords(MapSearch, search, old_search, caller) or MapSearch(), MapSearch, caller, "search")
    try:
        percentile = float(percentile)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"percentile must be a number in (0, 100], got {percentile!r}") from exc
    if not 0 < percentile <= 100:
        raise ConfigError(f"percentile must be in (0, 100] (the share of h's attacked-correct examples to keep), "
                          f"got {percentile!r}")
    shapes = {tuple(t.shape) for t in (g_logits_val, h_logits_clean_val)}
    if len(shapes) != 1 or g_logits_val.ndim != 2 or y_val.shape != (len(g_logits_val),):
        raise ConfigError("g_logits_val and h_logits_clean_val must be (n, c) and y_val (n,) for the same n "
                          "clean validation examples")
    if h_logits_adv_val.ndim != 2 or h_logits_adv_val.shape[1] != g_logits_val.shape[1] or \
            len(h_logits_adv_val) != len(y_val):
        raise ConfigError("h_logits_adv_val must be (n, c): h's logits on the attacked versions of the same n "
                          "validation examples")
    search.check_classes(g_logits_val.shape[1])
    top_k, std_map, objective, grid, rounds = search.top_k, search.std_map, search.objective, search.grid, search.rounds
    y = y_val.cpu().long()
    g = g_logits_val.detach().cpu().double()
    p_std = F.one_hot(g.argmax(1), g.shape[1]).double() if std_map == "onehot" else F.softmax(g, dim=1)
    data = (p_std, h_logits_clean_val.detach().cpu().double(), h_logits_adv_val.detach().cpu().double(), y)
    percentiles = sorted(set(PATH_PERCENTILES) | {percentile})
    key = _key(objective)

    searched, per_pc = [], {pc: [] for pc in percentiles}
    for s in grid["scale"]:
        for p in grid["power"]:
            for b in grid["bias"]:
                for row in _evaluate(data, s, p, b, top_k, std_map, percentiles):
                    per_pc[row["percentile"]].append(row)
                    if row["percentile"] == percentile:
                        searched.append({**row, "round": 0})
    if not searched:
        raise ConfigError(f"no map on the grid keeps {percentile}% of h's attacked-correct validation examples "
                          "(every map breaks too many of them); widen the grid (e.g. a bias closer to 0) or lower "
                          "the percentile")
    best = min(searched, key=key)
    axes = dict(grid)
    for r in range(1, rounds + 1):
        axes = {"scale": _neighbours(axes["scale"], best["scale"], log=True),
                "power": _neighbours(axes["power"], best["power"], log=False),
                "bias": _neighbours(axes["bias"], best["bias"], log=False)}
        for s in axes["scale"]:
            for p in axes["power"]:
                for b in axes["bias"]:
                    searched += [{**row, "round": r} for row in _evaluate(data, s, p, b, top_k, std_map, [percentile])]
        best = min(searched, key=key)
    path = [min(rows, key=key) for _, rows in sorted(per_pc.items()) if rows]
    seconds = time.perf_counter() - t0
    logger.info("nonlinear calibration: %d maps in %.2f s; scale %.4g power %.4g bias %.4g alpha %.4f, clean %.4f, "
                "robust proxy %.4f", len(searched), seconds, best["scale"], best["power"], best["bias"], best["alpha"],
                best["clean_acc"], best["robust_proxy"])
    return NonlinearCalibration(scale=best["scale"], power=best["power"], bias=best["bias"], alpha=best["alpha"],
                                cutoff=best["cutoff"], percentile=percentile, top_k=top_k, std_map=std_map,
                                objective=objective, clean_acc=best["clean_acc"], robust_proxy=best["robust_proxy"],
                                mistakes_kept=best["mistakes_kept"], n_val=len(y), seconds=seconds,
                                searched=searched, path=path)
