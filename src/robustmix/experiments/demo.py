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
import logging
import time
from pathlib import Path

from .._validation import alpha_grid
from ..results import DemoSummary, rate_ci
from ..data import load_dataset
from ..mixing import MixedClassifier
from ..models import load
from .evaluate_run import EvaluateConfig, run_evaluate
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
    alphas: list = dataclasses.field(default_factory=alpha_grid)
    steps: int = 20
    n_tradeoff: int = 200
    tradeoff_steps: int = 3
    tradeoff_trusts: list = dataclasses.field(default_factory=lambda: ["one", "grad_max_std"])
    tradeoff_gammas: list = dataclasses.field(default_factory=lambda: [0.0, 0.3, 1.0, 3.0, float("inf")])
    n_autoattack: int = 100
    autoattack_batch: int = 100          # whole batches run faster on CPU (the same per-example results)
    # the worst-case evaluator's members run in the demo (the full ensemble: robustmix evaluate / pareto)
    autoattack_attacks: list = dataclasses.field(default_factory=lambda: ["aa-apgd-ce", "aa-apgd-t", "apgd-*"])
    autoattack_steps: int = 50
    n_certify: int = 200
    certify_samples: int = 1000
    certify_delta: float = 0.001
    # one noise pass per image: the Monte-Carlo curves and union bounds reuse the tight certificate's samples
    certify_share_samples: bool = True
    seed: int = 0

    @classmethod
    def quick(cls) -> "DemoSettings":
        return cls(n_sweep=100, alphas=[0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 1.0], steps=10, n_tradeoff=20, tradeoff_steps=5,
                   tradeoff_trusts=["one", "grad_max_std"], tradeoff_gammas=[0.0, 0.3, 1.0, 3.0, float("inf")],
                   n_autoattack=50, autoattack_attacks=["aa-apgd-ce", "apgd-ce@*"], autoattack_steps=20,
                   n_certify=100, certify_samples=500)


def run_demo(out_dir, settings: DemoSettings | None = None, progress: bool = True, fresh: bool = False) -> DemoSummary:
    """Run (or resume) every step; each step's records live in ``out_dir/records`` and resume independently."""
    s = settings or DemoSettings()
    out = Path(out_dir)
    rec = out / "records"
    t_start = time.perf_counter()
    timings = {}
    x, y = load_dataset("fashion-mnist", "test")
    g, h = load(s.std, expected_dataset="fashion-mnist"), load(s.rob, expected_dataset="fashion-mnist")
    summary = {"settings": dataclasses.asdict(s), "models": {"g": s.std, "h": s.rob}}

    t0 = time.perf_counter()
    sweep_cfg = SweepConfig(alphas=s.alphas, eps=s.eps, steps=s.steps, seed=s.seed, batch_size=250)
    names = {"std": s.std, "rob": s.rob, "dataset": "fashion-mnist", "split": "test"}
    sweep = run_sweep(g, h, x[:s.n_sweep], y[:s.n_sweep], sweep_cfg, records_path=rec / "sweep.jsonl",
                      settings=names, fresh=fresh, progress=progress)
    summary["sweep"] = sweep.to_dict()
    timings["sweep"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    tcfg = TradeoffConfig(trusts=s.tradeoff_trusts, spaces=["probs", "logits"], gammas=s.tradeoff_gammas, eps=s.eps,
                          steps=s.tradeoff_steps, seed=s.seed, batch_size=s.n_tradeoff)
    summary["tradeoff"] = run_tradeoff(g, h, x[:s.n_tradeoff], y[:s.n_tradeoff], tcfg,
                                       records_path=rec / "tradeoff.jsonl", settings=names, fresh=fresh,
                                       progress=progress).to_dict()
    timings["tradeoff"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    alpha = best_tradeoff_alpha(sweep)
    summary["autoattack"] = _autoattack_step(g, h, alpha, x[:s.n_autoattack], y[:s.n_autoattack], s, rec, names,
                                             fresh, progress)
    aa = summary["autoattack"]
    summary["headline"] = {
        "alpha": alpha,
        "clean_g": sweep.at("clean", 0.0), "clean_h": sweep.at("clean", 1.0), "clean_mix": sweep.at("clean", alpha),
        "pgd_mix": sweep.at("mix", alpha), "pgd_h": sweep.at("mix", 1.0), "n_pgd": sweep.n,
        "pgd_mix_ci95": rate_ci(sweep.at("mix", alpha), sweep.n), "pgd_h_ci95": rate_ci(sweep.at("mix", 1.0), sweep.n),
        "aa_mix": aa["mixture"]["accuracy"], "aa_h": aa["h"]["accuracy"],
        "aa_mix_ci95": aa["mixture"]["ci95"], "aa_h_ci95": aa["h"]["ci95"], "n_aa": aa["h"]["n"],
    }
    hl = summary["headline"]
    hl["gap_closed"] = gap_closed(hl["clean_mix"], hl["clean_g"], hl["clean_h"])
    hl["kept_aa"] = kept(hl["aa_mix"], hl["aa_h"])
    timings["autoattack"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    summary["certified"] = _certify_step(x[:s.n_certify], y[:s.n_certify], s, g, rec, progress, fresh)
    timings["certify"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    summary["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    return DemoSummary(**summary)


def _autoattack_step(g, h, alpha, x, y, s: DemoSettings, rec: Path, names: dict, fresh: bool, progress) -> dict:
    """Worst case over the evaluator's members (AutoAttack's APGD-CE/APGD-T plus the APGD ensemble) on h and
    on the mixture, per example through the runner (resumable like every step)."""
    result = {}
    for name, model, a in (("h", h, 1.0), ("mixture", MixedClassifier(g, h, alpha), alpha)):
        cfg = EvaluateConfig(norm="inf", eps=s.eps, seed=s.seed, attacks=list(s.autoattack_attacks),
                             steps=s.autoattack_steps, batch_size=s.autoattack_batch, diagnostics=False)
        summary = run_evaluate(model, x, y, cfg, records_path=rec / f"evaluate-{name}.jsonl",
                               settings={**names, "alpha": a}, fresh=fresh, progress=progress)
        result[name] = {**summary.to_dict(), "alpha": a}
    return result


def _certify_step(x, y, s: DemoSettings, g, rec: Path, progress, fresh) -> dict:
    return run_fig3(g, load(s.smooth_base), s.smooth_sigma, load(s.baseline_base), s.baseline_sigma,
                    load(s.lipschitz), x, y, samples=s.certify_samples, delta=s.certify_delta, seed=s.seed,
                    records_dir=rec, progress=progress, fresh=fresh, share_samples=s.certify_share_samples,
                    settings={"std": s.std, "smooth": s.smooth_base, "baseline": s.baseline_base, "lip": s.lipschitz})
