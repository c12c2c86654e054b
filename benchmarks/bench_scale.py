"""Cost at the users' size: a pair of preact-resnet18 networks on 3x32x32 inputs, each figure against its goal.

    python benchmarks/bench_scale.py [--rounds 5] [--threads 2] [--batch 64] [-n 16] [--samples 1000]

The networks are randomly initialised (no CIFAR-10 or pretrained weights can be had offline; batch-norm
statistics set on noise images) and the inputs uniform noise; the labels are the mixture's own clean predictions, so every example is correctly classified
and every attack has to run.  A random network is broken within a few steps, so the attack figures measure
what each pass costs, not how hard the networks are to break.  Ratios are medians over interleaved rounds with
their interquartile range (benchmarks/harness.py).  Figures:

1. mixture forward / (g + h forward), goal <= 1.05;
2. one PGD step / (forward + backward of the mixture), goal <= 1.05;
3. worst-case ``evaluate`` (AutoAttack standard plus the APGD ensemble) / AutoAttack standard alone, goal <= 1.3;
4. ``certify_mixture`` at alpha = 1 / a plain loop of Cohen et al.'s CERTIFY, per image, goal <= 1.10;
5. peak memory (resident set growth, each in a fresh process) of ``evaluate`` / AutoAttack alone on the same
   batch, goal <= 1.3;
6. the mixture's forward + backward in the default contiguous memory format / in channels_last (the
   ``--channels-last`` flag): the speed-up of that flag, no goal.

``--only K`` runs figure K alone.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

from harness import interleave, setup
from robustmix import MixedClassifier, Smoothing, ThreatModel
from robustmix.attacks import PGD, AutoAttackSuite, Ensemble, evaluate, run_autoattack
from robustmix.certify import certify_mixture
from robustmix.certify.stats import clopper_pearson_lower
from robustmix.models import create_model

THREAT = ThreatModel("inf", 8 / 255)   # l_inf, eps 8/255: every attack figure


def pair():
    """Two random preact-resnet18; batch-norm statistics set on 512 noise images (train-mode passes), so the
    outputs depend on the input as a trained network's do."""
    torch.manual_seed(0)
    nets = []
    for _ in range(2):
        net = create_model("preact-resnet18").to(memory_format=torch.channels_last).train()
        with torch.no_grad():
            for _ in range(4):
                net(torch.rand(128, 3, 32, 32))
        nets.append(net.eval())
    return nets


def rss() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS"))


def peak_growth(which: str, n: int, threads: int) -> int:
    """Peak resident-set growth (bytes) of ``evaluate`` or AutoAttack alone on n images, each in a fresh process
    (after the models and inputs are built), so neither reuses memory the other freed."""
    out = subprocess.run([sys.executable, __file__, "--memory-of", which, "-n", str(n), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def _memory_child(which: str, n: int) -> None:
    g, h = pair()
    mix = MixedClassifier(g, h, 0.5)
    x = torch.rand(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = mix(x).argmax(1)
    start = rss()
    if which == "aa":
        run_autoattack(mix, x, y, THREAT, suite=AutoAttackSuite(seed=0), batch_size=n)
    else:
        evaluate(mix, x, y, threat=THREAT, ensemble=Ensemble(seed=0, batch_size=n))
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start)


def cohen_certify(h, x, sigma, n0, n, alpha=0.001, batch=500):
    """Cohen et al.'s CERTIFY for one input, written plainly (the peer loop the figure compares against)."""
    def counts(num):
        c = torch.zeros(10, dtype=torch.long)
        with torch.no_grad():
            for k in range(0, num, batch):
                b = min(batch, num - k)
                noisy = x.expand(b, *x.shape[1:]) + sigma * torch.randn(b, *x.shape[1:])
                c += torch.bincount(h(noisy).argmax(1), minlength=10)
        return c

    top = int(counts(n0).argmax())
    p_a = clopper_pearson_lower(int(counts(n)[top]), n, alpha)
    return top, p_a


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64, help="rows per forward / attack batch")
    ap.add_argument("-n", type=int, default=16, help="images for evaluate / AutoAttack")
    ap.add_argument("--samples", type=int, default=1000, help="noise samples per image for certify")
    ap.add_argument("--memory-of", choices=("aa", "evaluate"), help=argparse.SUPPRESS)
    ap.add_argument("--only", type=int, choices=range(1, 7), help="run one figure only")
    args = ap.parse_args()
    if args.memory_of:
        torch.set_num_threads(args.threads)
        return _memory_child(args.memory_of, args.n)
    print(setup(args.threads))
    g, h = pair()
    mix = MixedClassifier(g, h, 0.5)
    x = torch.rand(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = mix(x).argmax(1)

    def fwd_bwd():
        xi = x.clone().requires_grad_(True)
        F.cross_entropy(mix(xi), y).backward()

    pgd = PGD(mix, 8 / 255, "inf", steps=5)
    xs, ys, xc = x[:args.n], y[:args.n], x[:2]
    want = set(range(1, 7)) if args.only is None else {args.only}
    if 1 in want:
        with torch.no_grad():
            r = interleave({"g": lambda: g(x), "h": lambda: h(x), "mix": lambda: mix(x)}, rounds=args.rounds)
        print(f"1. mixture forward / (g + h), batch {args.batch}: {r.ratio('mix', ['g', 'h']).format(3)}  "
              "(goal <= 1.05)")
    if 2 in want:
        r = interleave({"fwd+bwd": fwd_bwd, "pgd5": lambda: pgd(x, y)}, rounds=args.rounds)
        step = r.per_round(lambda t: t["pgd5"] / 5 / t["fwd+bwd"])
        print(f"2. one PGD step / (mixture forward + backward), batch {args.batch}: {step.format(3)}  (goal <= 1.05)")
    if 3 in want:
        r = interleave({"aa": lambda: run_autoattack(mix, xs, ys, THREAT, suite=AutoAttackSuite(seed=0),
                                                     batch_size=args.n),
                        "evaluate": lambda: evaluate(mix, xs, ys, threat=THREAT,
                                                     ensemble=Ensemble(seed=0, batch_size=args.n))},
                       rounds=max(2, args.rounds // 2))
        print(f"3. evaluate / AutoAttack standard alone, n = {args.n}: {r.ratio('evaluate', 'aa').format(2)}  "
              "(goal <= 1.3)")
    if 4 in want:
        r = interleave({"cohen": lambda: [cohen_certify(h, xc[i:i + 1], 0.25, 100, args.samples)
                                          for i in range(len(xc))],
                        "certify": lambda: certify_mixture(g, h, xc, alphas=[1.0], smoothing=Smoothing(
                            sigma=0.25, num_samples=args.samples, n0=100, batch_size=500))},
                       rounds=max(2, args.rounds // 2))
        print(f"4. certify_mixture (alpha 1) / plain Cohen CERTIFY loop, {args.samples} + 100 samples per image: "
              f"{r.ratio('certify', 'cohen').format(2)}  (goal <= 1.10)")
    if 5 in want:
        aa_mem, ev_mem = (peak_growth(w, args.n, args.threads) for w in ("aa", "evaluate"))
        print(f"5. peak memory growth (fresh process each) evaluate / AutoAttack alone, batch {args.n}: "
              f"{ev_mem / 2**20:.0f} MiB / {aa_mem / 2**20:.0f} MiB = {ev_mem / max(aa_mem, 1):.2f}  (goal <= 1.3)")
    if 6 in want:
        import copy

        plain = MixedClassifier(*(copy.deepcopy(m).to(memory_format=torch.contiguous_format) for m in (g, h)), 0.5)
        xp = x.contiguous()

        def plain_fwd_bwd():
            xi = xp.clone().requires_grad_(True)
            F.cross_entropy(plain(xi), y).backward()

        r = interleave({"contiguous": plain_fwd_bwd, "channels_last": fwd_bwd}, rounds=args.rounds)
        print(f"6. mixture forward + backward, contiguous / channels_last (--channels-last), batch {args.batch}: "
              f"{r.ratio('contiguous', 'channels_last').format(2)}  (above 1: channels_last is faster)")


if __name__ == "__main__":
    main()
