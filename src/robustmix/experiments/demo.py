"""The offline end-to-end job behind ``robustmix demo``: the paper on the shipped Fashion-MNIST zoo.

Steps (each resumable from its records in ``out/records``):
  1. alpha sweep with STD / ROB / MIX PGD attacks and Table I (Fig. 2);
  2. R_i comparison of eq. (3) in logits and probabilities (Fig. 1);
  3. AutoAttack on h and on the mixture at the chosen alpha (the headline numbers);
  4. certified-accuracy curves: Theorem 1 and 2 with a smoothed h versus a smaller-sigma
     baseline of matched clean accuracy, and Theorem 1 with the Lipschitz network (Fig. 3).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import torch

from ..attacks.autoattack import run_autoattack
from ..data import load_dataset
from ..mixing import MixedClassifier
from ..models import load
from .certified import run_fig3
from .sweep import SweepConfig, run_sweep
from .tradeoff import TradeoffConfig, run_tradeoff
from .tradeoff_choice import best_tradeoff_alpha, gap_closed, kept

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class DemoSettings:
    std: str = "fmnist-std-cnn"
    rob: str = "fmnist-at-linf-cnn"
    smooth_base: str = "fmnist-noise-0.50-cnn"
    smooth_sigma: float = 0.5
    baseline_base: str = "fmnist-noise-0.25-cnn"
    baseline_sigma: float = 0.25
    lipschitz: str = "fmnist-lipschitz"
    eps: float = 0.1
    n_sweep: int = 500
    alphas: list = dataclasses.field(default_factory=lambda: [round(0.1 * i, 2) for i in range(11)])
    steps: int = 20
    n_tradeoff: int = 20
    tradeoff_steps: int = 5
    tradeoff_trusts: list = dataclasses.field(default_factory=lambda: ["one", "grad_std", "grad_max_std", "grad_ratio"])
    tradeoff_gammas: list = dataclasses.field(default_factory=lambda: [0.0, 0.3, 1.0, 3.0, float("inf")])
    n_autoattack: int = 100
    autoattack_version: str = "custom"
    autoattack_attacks: list = dataclasses.field(default_factory=lambda: ["apgd-ce", "apgd-t"])
    n_certify: int = 200
    certify_samples: int = 1000
    certify_delta: float = 0.001
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(n_sweep=100, alphas=[0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 1.0], steps=10, n_tradeoff=20, tradeoff_steps=5,
                   tradeoff_trusts=["one", "grad_max_std"], tradeoff_gammas=[0.0, 0.3, 1.0, 3.0, float("inf")],
                   n_autoattack=50, autoattack_attacks=["apgd-ce"], n_certify=100, certify_samples=500)


def _plain(obj):
    """A strict-JSON copy: tensors as lists, NaN/inf as null (every reader accepts it)."""
    if isinstance(obj, torch.Tensor):
        return _plain(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    """Write ``obj`` as strict JSON (NaN/inf as null, other objects as their str), atomically."""
    from ..models.checkpoint import atomic_write_bytes

    text = json.dumps(_plain(obj), indent=2, allow_nan=False, default=str)
    atomic_write_bytes(path, (text + "\n").encode())


def run_demo(out_dir, settings: DemoSettings | None = None, progress: bool = True) -> dict:
    s = settings or DemoSettings()
    out = Path(out_dir)
    rec = out / "records"
    rec.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", dataclasses.asdict(s))
    t_start = time.perf_counter()
    timings = {}
    x, y = load_dataset("fashion-mnist", "test")
    g, h = load(s.std, expected_dataset="fashion-mnist"), load(s.rob, expected_dataset="fashion-mnist")
    summary = {"settings": dataclasses.asdict(s), "models": {"g": s.std, "h": s.rob}}

    t0 = time.perf_counter()
    sweep_cfg = SweepConfig(alphas=s.alphas, eps=s.eps, steps=s.steps, seed=s.seed, batch_size=100)
    sweep = run_sweep(g, h, x[:s.n_sweep], y[:s.n_sweep], sweep_cfg, records_path=rec / "sweep.jsonl",
                      header={"std": s.std, "rob": s.rob}, progress=progress)
    summary["sweep"] = sweep
    timings["sweep"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tcfg = TradeoffConfig(trusts=s.tradeoff_trusts, spaces=["probs", "logits"], gammas=s.tradeoff_gammas, eps=s.eps,
                          steps=s.tradeoff_steps, seed=s.seed, batch_size=s.n_tradeoff)
    summary["tradeoff"] = run_tradeoff(g, h, x[:s.n_tradeoff], y[:s.n_tradeoff], tcfg,
                                       records_path=rec / "tradeoff.jsonl", header={"std": s.std, "rob": s.rob},
                                       progress=progress)
    timings["tradeoff"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    alpha = best_tradeoff_alpha(sweep)
    summary["autoattack"] = _autoattack_step(g, h, alpha, x[:s.n_autoattack], y[:s.n_autoattack], s, out)
    acc = sweep["accuracy"]
    aa = summary["autoattack"]
    summary["headline"] = {
        "alpha": alpha,
        "clean_g": acc["clean"][0], "clean_h": acc["clean"][-1], "clean_mix": acc["clean"][s.alphas.index(alpha)],
        "pgd_mix": acc["mix"][s.alphas.index(alpha)], "pgd_h": acc["mix"][-1],
        "aa_mix": aa["mixture"]["robust_accuracy"], "aa_h": aa["h"]["robust_accuracy"],
    }
    hl = summary["headline"]
    hl["gap_closed"] = gap_closed(hl["clean_mix"], hl["clean_g"], hl["clean_h"])
    hl["kept_aa"] = kept(hl["aa_mix"], hl["aa_h"])
    timings["autoattack"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    summary["certified"] = _certify_step(x[:s.n_certify], y[:s.n_certify], s, g, rec, progress)
    timings["certify"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    write_json(out / "summary.json", summary)
    return summary


def _autoattack_step(g, h, alpha, x, y, s: DemoSettings, out: Path) -> dict:
    path = out / "records" / "autoattack.json"
    key = {"alpha": alpha, "n": len(x), "eps": s.eps, "version": s.autoattack_version,
           "attacks": s.autoattack_attacks, "std": s.std, "rob": s.rob, "seed": s.seed}
    if path.exists():
        done = json.loads(path.read_text())
        if done.get("key") == key:
            return done["result"]
    result = {}
    for name, model in (("h", h), ("mixture", MixedClassifier(g, h, alpha))):
        res = run_autoattack(model, x, y, s.eps, "inf", version=s.autoattack_version,
                             attacks=s.autoattack_attacks if s.autoattack_version == "custom" else None, seed=s.seed,
                             batch_size=len(x), state_path=out / "records" / f"autoattack-{name}.state")
        result[name] = {"robust_accuracy": res.robust_accuracy, "by_attack": res.accuracy_by_attack,
                        "warnings": res.warnings, "alpha": 1.0 if name == "h" else alpha}
    write_json(path, {"key": key, "result": result})
    return result


def _certify_step(x, y, s: DemoSettings, g, rec: Path, progress) -> dict:
    return run_fig3(g, load(s.smooth_base), s.smooth_sigma, load(s.baseline_base), s.baseline_sigma,
                    load(s.lipschitz), x, y, samples=s.certify_samples, delta=s.certify_delta, seed=s.seed,
                    records_dir=rec, progress=progress, header={"std": s.std, "smooth": s.smooth_base,
                                                                 "baseline": s.baseline_base, "lip": s.lipschitz})
