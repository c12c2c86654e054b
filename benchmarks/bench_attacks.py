"""Cost of one attack step against the passes it makes, on zoo models.

g = fmnist-std-cnn, h = fmnist-at-linf-cnn, mixture at alpha = 0.6; l_inf PGD, eps 0.1, a fixed
step size of 0.025 (so PGD-20's first 10 steps are PGD-10's), the first --n test images.
All variants run interleaved round by round; each ratio is the median of per-round ratios (IQR),
beside its floor from passes counted with hooks on g and h:

  * PGD step = (T(steps=20) - T(steps=10)) / 10, so the setup (input checks, random start) cancels;
    reported against one forward+backward of the target on the same batch (floor: the counted
    passes per step over those of one forward+backward).
  * early_stop=True: the whole PGD-10 run against the full PGD-10 (floor: counted work ratio), and
    the cost per attacked image-step, (T(20) - T(10)) divided by the image-steps counted in steps
    11-20, against one forward+backward per image.
  * robustmix PGD step against one pyautoattack APGD-CE iteration on the mixture, both as
    (T(20) - T(10)) / 10; APGD attacks only the initially correct images, which the floor counts.
Run: python benchmarks/bench_attacks.py [--threads 1] [--n 48] [--rounds 5]
"""

import argparse

import torch

from harness import floor, interleave, setup, unit_costs, unit_variants, work
from robustmix import MixedClassifier
from robustmix.attacks import PGD
from robustmix.data import load_dataset
from robustmix.models import load

EPS, STEP = 0.1, 0.025
REPEAT = 10  # passes per call of a unit variant: as many as the steps between PGD-10 and PGD-20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-apgd", action="store_true", help="skip the pyautoattack comparison")
    args = ap.parse_args()
    print(setup(args.threads) + f", channels_last, {args.n} images")
    x, y = load_dataset("fashion-mnist", "test")
    x, y = x[:args.n], y[:args.n]
    g, h = load("fmnist-std-cnn"), load("fmnist-at-linf-cnn")
    mixed = MixedClassifier(g, h, 0.6)
    targets = {"h": h, "mixture": mixed}

    def pgd(model, steps, early_stop=False):
        attack = PGD(model, EPS, "inf", steps=steps, step_size=STEP, early_stop=early_stop)
        return lambda: attack(x, y)

    variants = unit_variants({"g": g, "h": h, "mixture": mixed}, x, repeat=REPEAT)
    for name, model in targets.items():
        for steps in (10, 20):
            variants[f"{name} pgd{steps}"] = pgd(model, steps)
            variants[f"{name} es{steps}"] = pgd(model, steps, early_stop=True)
    if not args.no_apgd:
        from pyautoattack.autopgd_base import APGDAttack

        for steps in (10, 20):
            apgd = APGDAttack(mixed, n_iter=steps, eps=EPS, norm="Linf", loss="ce", device=x.device, seed=0)
            variants[f"apgd{steps}"] = (lambda a: lambda: a.perturb(x, y))(apgd)
    r = interleave(variants, rounds=args.rounds, warmup=1, count={"g": g, "h": h}, progress=True)
    costs = unit_costs(r, ["g", "h"], rows=len(x) * REPEAT)
    p = r.passes

    print(f"\n{args.rounds} interleaved rounds; ratio = median of per-round ratios (IQR); floor from counted passes\n")
    print("| target | fwd+bwd (ms) | PGD step (ms) | step / fwd+bwd | floor | early-stop PGD-10 / PGD-10 | floor "
          "| early-stop cost per attacked image-step / fwd+bwd per image | floor | image-steps attacked, steps 11-20 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in targets:
        fb, p10, p20, e10, e20 = (f"{name} fwd+bwd", f"{name} pgd10", f"{name} pgd20", f"{name} es10", f"{name} es20")
        step = r.per_round(lambda t: (t[p20] - t[p10]) / 10)
        ratio = r.per_round(lambda t: (t[p20] - t[p10]) / t[fb])  # 10 steps over 10 forward+backward passes
        step_floor = (work(p[p20], costs) - work(p[p10], costs)) / work(p[fb], costs)
        es_whole, es_whole_floor = r.ratio(e10, p10), floor(p[e10], p[p10], costs)
        attacked = p[e20].backward["h", "input"] - p[e10].backward["h", "input"]
        full = len(x) * 10
        if attacked:
            per_row = len(x) * REPEAT
            es_step = r.per_round(lambda t: (t[e20] - t[e10]) / attacked / (t[fb] / per_row))
            es_step_floor = (work(p[e20], costs) - work(p[e10], costs)) / attacked / (work(p[fb], costs) / per_row)
            es_cells = f"{es_step} | {es_step_floor:.2f}"
        else:
            es_cells = "n/a (nothing left to attack) | n/a"
        print(f"| {name} | {r.median(fb) / REPEAT * 1e3:.1f} | {step.median * 1e3:.1f} | {ratio} | {step_floor:.2f} | "
              f"{es_whole} | {es_whole_floor:.2f} | {es_cells} | {attacked} of {full} |")
    print("\ncounted, mixture PGD-10: " + p["mixture pgd10"].describe()
          + "\ncounted, mixture early-stop PGD-10: " + p["mixture es10"].describe())

    if not args.no_apgd:
        ours = r.per_round(lambda t: (t["mixture pgd20"] - t["mixture pgd10"]) / 10)
        theirs = r.per_round(lambda t: (t["apgd20"] - t["apgd10"]) / 10)
        ratio = r.per_round(lambda t: (t["mixture pgd20"] - t["mixture pgd10"]) / (t["apgd20"] - t["apgd10"]))
        ours_work = work(p["mixture pgd20"], costs) - work(p["mixture pgd10"], costs)
        theirs_work = work(p["apgd20"], costs) - work(p["apgd10"], costs)
        print("\n| on the mixture | robustmix PGD step (ms) | APGD-CE iteration (ms) | PGD step / APGD iteration "
              "| floor | counted per iteration, PGD / APGD |")
        print("|---|---|---|---|---|---|")
        it_rows = lambda q: (q.backward["h", "input"]) // 10  # noqa: E731
        print(f"| {len(x)} images | {ours.median * 1e3:.1f} | {theirs.median * 1e3:.1f} | {ratio} | "
              f"{ours_work / theirs_work:.2f} | {it_rows(p['mixture pgd20'] - p['mixture pgd10'])} / "
              f"{it_rows(p['apgd20'] - p['apgd10'])} rows |")


if __name__ == "__main__":
    main()
