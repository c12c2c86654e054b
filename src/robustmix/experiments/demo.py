"""The offline end-to-end job behind ``robustmix demo``: the paper on the shipped Fashion-MNIST zoo.

Steps (each resumable from its records in ``out/records``; step 2, the worst case on h and step 4 run in a
second process beside the others, see :func:`run_demo`):
  1. alpha sweep with STD / ROB / MIX PGD attacks and Table I (Fig. 2);
  2. R_i comparison of eq. (3) in logits and probabilities (Fig. 1);
  3. AutoAttack on h and on the mixture at the chosen alpha (the headline numbers);
  4. certified-accuracy curves: Theorem 1 and 2 with a smoothed h versus a smaller-sigma
     baseline of matched clean accuracy, and Theorem 1 with the Lipschitz network (Fig. 3).
"""

from __future__ import annotations

import dataclasses
import logging
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from .._validation import alpha_grid
from ..groups import ThreatModel
from ..results import DemoSummary, rate_ci
from ..data import load_dataset
from ..mixing import MixedClassifier
from ..models import load
from .evaluate_run import EvaluateConfig, run_evaluate
from .certified import Fig3Budget, run_fig3
from .runner import Records
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


def run_demo(out_dir, settings: DemoSettings | None = None, progress: bool = True, fresh: bool = False,
             overlap: bool | None = None) -> DemoSummary:
    """Run (or resume) every step; each step's records live in ``out_dir/records`` and resume independently.

    ``overlap`` (default: when torch has two or more threads) runs the trade-off curves, the worst case on h and
    the certificates in a second process while this one runs the sweep and the worst case on the mixture (it
    needs the sweep's alpha), each with half the threads: small networks use two threads poorly, so the
    demo finishes sooner.  The records, and so every number, are the same either way (seeded per example).
    """
    s = settings or DemoSettings()
    out = Path(out_dir)
    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    overlap = threads >= 2 if overlap is None else overlap
    helper = None
    if overlap:
        job = json.dumps({"out": str(out), "settings": dataclasses.asdict(s), "fresh": fresh, "threads": threads // 2})
        helper = subprocess.Popen([sys.executable, "-c", "import sys; from robustmix.experiments.demo import "
                                   "_independent_steps; _independent_steps(sys.argv[1])", job])
        torch.set_num_threads(threads - threads // 2)
    try:
        steps = _Steps(out, s, progress)
        timings = {}
        t0 = time.perf_counter()
        sweep = steps.sweep(fresh)
        timings["sweep"] = time.perf_counter() - t0
        alpha = best_tradeoff_alpha(sweep)
        t0 = time.perf_counter()
        aa_mix = steps.worst_case("mixture", alpha, fresh)
        timings["worst case (mixture)"] = time.perf_counter() - t0
        if helper is not None and helper.wait() != 0:
            logger.warning("the second process of the demo stopped (exit code %s); running its steps here, "
                           "resuming from its records", helper.returncode)
        torch.set_num_threads(threads)
        # with overlap these resume from the second process's finished records (no work is redone)
        fresh_b = fresh and helper is None
        t0 = time.perf_counter()
        tradeoff = steps.tradeoff(fresh_b)
        aa_h = steps.worst_case("h", 1.0, fresh_b)
        certified = steps.certify(fresh_b)
        timings["tradeoff, worst case (h), certify" + (" (second process)" if helper is not None else "")] = (
            time.perf_counter() - t0 if helper is None else helper_seconds(out))
    finally:
        torch.set_num_threads(threads)
        if helper is not None and helper.poll() is None:
            helper.terminate()
            helper.wait()
    aa = {"h": aa_h, "mixture": aa_mix}
    headline = {
        "alpha": alpha,
        "clean_g": sweep.at("clean", 0.0), "clean_h": sweep.at("clean", 1.0), "clean_mix": sweep.at("clean", alpha),
        "pgd_mix": sweep.at("mix", alpha), "pgd_h": sweep.at("mix", 1.0), "n_pgd": sweep.n,
        "pgd_mix_ci95": rate_ci(sweep.at("mix", alpha), sweep.n), "pgd_h_ci95": rate_ci(sweep.at("mix", 1.0), sweep.n),
        "aa_mix": aa["mixture"]["accuracy"], "aa_h": aa["h"]["accuracy"],
        "aa_mix_ci95": aa["mixture"]["ci95"], "aa_h_ci95": aa["h"]["ci95"], "n_aa": aa["h"]["n"],
    }
    headline["gap_closed"] = gap_closed(headline["clean_mix"], headline["clean_g"], headline["clean_h"])
    headline["kept_aa"] = kept(headline["aa_mix"], headline["aa_h"])
    timings["total"] = time.perf_counter() - t_start
    return DemoSummary(settings=dataclasses.asdict(s), models={"g": s.std, "h": s.rob}, sweep=sweep.to_dict(),
                       tradeoff=tradeoff.to_dict(), autoattack=aa, headline=headline, certified=certified,
                       timings_s={k: round(v, 1) for k, v in timings.items()})


class _Steps:
    """The demo's steps on the test split, each through the runner (its own records in ``out/records``)."""

    def __init__(self, out: Path, s: DemoSettings, progress: bool):
        self.s, self.rec, self.progress = s, out / "records", progress
        self.x, self.y = load_dataset("fashion-mnist", "test")
        self.g = load(s.std, expected_dataset="fashion-mnist")
        self.h = load(s.rob, expected_dataset="fashion-mnist")
        self.names = {"std": s.std, "rob": s.rob, "dataset": "fashion-mnist", "split": "test"}

    def sweep(self, fresh: bool):
        s = self.s
        cfg = SweepConfig(alphas=s.alphas, threat=ThreatModel("inf", s.eps), steps=s.steps, seed=s.seed, batch_size=250)
        return run_sweep(self.g, self.h, self.x[:s.n_sweep], self.y[:s.n_sweep], cfg,
                         records=Records(self.rec / "sweep.jsonl", self.names, fresh, self.progress))

    def tradeoff(self, fresh: bool):
        s = self.s
        cfg = TradeoffConfig(trusts=s.tradeoff_trusts, spaces=["probs", "logits"], gammas=s.tradeoff_gammas,
                             threat=ThreatModel("inf", s.eps), steps=s.tradeoff_steps, seed=s.seed, batch_size=s.n_tradeoff)
        return run_tradeoff(self.g, self.h, self.x[:s.n_tradeoff], self.y[:s.n_tradeoff], cfg,
                            records=Records(self.rec / "tradeoff.jsonl", self.names, fresh, self.progress))

    def worst_case(self, name: str, alpha: float, fresh: bool) -> dict:
        """Worst case over the evaluator's members (AutoAttack's APGD-CE/APGD-T plus the APGD ensemble) on h
        (alpha = 1) or on the mixture at ``alpha``, per example through the runner."""
        s = self.s
        model = self.h if name == "h" else MixedClassifier(self.g, self.h, alpha)
        cfg = EvaluateConfig(threat=ThreatModel("inf", s.eps), seed=s.seed, attacks=list(s.autoattack_attacks),
                             steps=s.autoattack_steps, batch_size=s.autoattack_batch, diagnostics=False)
        summary = run_evaluate(model, self.x[:s.n_autoattack], self.y[:s.n_autoattack], cfg,
                               records=Records(self.rec / f"evaluate-{name}.jsonl", {**self.names, "alpha": alpha},
                                               fresh, self.progress))
        return {**summary.to_dict(), "alpha": alpha}

    def certify(self, fresh: bool) -> dict:
        s = self.s
        budget = Fig3Budget(s.certify_samples, s.certify_delta, s.seed, s.certify_share_samples)
        return run_fig3(self.g, (load(s.smooth_base), s.smooth_sigma), (load(s.baseline_base), s.baseline_sigma),
                        load(s.lipschitz), self.x[:s.n_certify], self.y[:s.n_certify], budget,
                        records=Records(self.rec, {"std": s.std, "smooth": s.smooth_base, "baseline": s.baseline_base,
                                                   "lip": s.lipschitz}, fresh, self.progress))


def _independent_steps(job: str) -> None:
    """The second process of an overlapped demo: the trade-off curves, the worst case on h and the certificates,
    quietly."""
    job = json.loads(job)
    out, s, fresh = job["out"], DemoSettings(**job["settings"]), job["fresh"]
    torch.set_num_threads(job["threads"])
    parent = os.getppid()

    def stop_with_parent():    # a killed demo must not leave this process holding its records' locks
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=stop_with_parent, daemon=True).start()
    t0 = time.perf_counter()
    steps = _Steps(Path(out), s, progress=False)
    steps.tradeoff(fresh)
    steps.worst_case("h", 1.0, fresh)
    steps.certify(fresh)
    (Path(out) / "records" / "second-process-seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")


def helper_seconds(out: Path) -> float:
    """Wall time of the overlapped demo's second process (0 when it recorded none)."""
    try:
        return float((out / "records" / "second-process-seconds.txt").read_text())
    except (OSError, ValueError):
        return 0.0


