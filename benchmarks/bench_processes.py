"""Whole commands, timed as a user runs them: processes versus threads for a sweep, and the demo.

Sweep (`robustmix sweep`, --n images, alphas 0 0.5 0.6 0.8 1, PGD-10, batches of n / 2 so that
each process gets one, a fresh output folder each time): one process with 2 threads against
torchrun with 2 processes of 1 thread each, interleaved round by round with no warm-up round
(every run is a new process); the speed-up is the median of per-round ratios (IQR).  Its floor is
1.00: both compute the same records (checked), so the counted work is the same; only how the 2
cores are used differs.  Process start-up is included.
Demo (with --demo): `robustmix demo --quick` (and the default demo with --demo-full), wall time
and the peak resident memory of the command.
Run: python benchmarks/bench_processes.py [--n 40] [--rounds 2] [--demo] [--demo-full]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import interleave, setup
from robustmix.experiments import read_records


def command(args, threads, out):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}

    def run():
        subprocess.run(args + ["--out", str(out), "--fresh"], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return run


def predictions(out):
    return [(x["index"], x["clean"], x["std"], x["rob"], x["mix"]) for x in read_records(out / "records.jsonl")[1]]


def sweep(n, rounds):
    base = ["sweep", "-n", str(n), "--alphas", "0", "0.5", "0.6", "0.8", "1", "--steps", "10",
            "--batch-size", str(n // 2), "--rob", "fmnist-at-linf-cnn"]
    with tempfile.TemporaryDirectory() as tmp:
        one, two = Path(tmp, "one"), Path(tmp, "two")
        variants = {"1 x 2": command([sys.executable, "-m", "robustmix"] + base, 2, one),
                    "2 x 1": command(["torchrun", "--standalone", "--nproc_per_node=2", "-m", "robustmix"] + base, 1,
                                     two)}
        r = interleave(variants, rounds=rounds, warmup=0, progress=True)
        same = predictions(one) == predictions(two)
    print(f"\nsweep, {n} images in batches of {n // 2}, 5 alphas, PGD-10; {rounds} interleaved rounds; "
          "ratio = median of per-round ratios (IQR)\n")
    print("| processes x threads | wall (s) | examples/s | speed-up over 1 x 2 | floor |\n|---|---|---|---|---|")
    print(f"| 1 x 2 | {r.median('1 x 2'):.1f} | {n / r.median('1 x 2'):.1f} | 1.00 | 1.00 |")
    print(f"| 2 x 1 (torchrun) | {r.median('2 x 1'):.1f} | {n / r.median('2 x 1'):.1f} | {r.ratio('1 x 2', '2 x 1')} "
          f"| 1.00 |")
    print(f"\nsame predictions in both runs: {same}")


PEAK = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def demo(quick):
    with tempfile.TemporaryDirectory() as tmp:
        args = [sys.executable, "-m", "robustmix", "demo"] + (["--quick"] if quick else [])
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK] + args + ["--out", tmp + "/demo"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.exit(f"{' '.join(args[1:])} failed:\n{done.stderr[-2000:]}")
        wall = time.perf_counter() - t0
        peak = int(done.stdout.split()[-1])  # KiB, of the demo process alone
    shown = "`python3 -m robustmix demo" + (" --quick`" if quick else "` (default settings)")
    print(f"| {shown} | {int(wall // 60)} min {wall % 60:.0f} s | "
          f"{peak / 2**20:.2f} GB |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--demo", action="store_true", help="time `robustmix demo --quick` (once)")
    ap.add_argument("--demo-full", action="store_true", help="also time the default demo (once)")
    args = ap.parse_args()
    print(setup(2) + " (the commands set their own threads)")
    if not args.no_sweep:
        if args.n < 2:
            ap.error("--n must be at least 2 (two batches of n / 2, one per process)")
        sweep(args.n, args.rounds)
    if args.demo or args.demo_full:
        print("\n| command | wall time | peak memory |\n|---|---|---|")
        if args.demo:
            demo(True)
        if args.demo_full:
            demo(False)


if __name__ == "__main__":
    main()
