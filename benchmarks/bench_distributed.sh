#!/usr/bin/env bash
# Throughput of a sweep with 1 process (2 threads) versus torchrun with 2 processes (1 thread each)
# on the same machine and data. Run: bash benchmarks/bench_distributed.sh [N]
set -euo pipefail
N=${1:-200}
ARGS="sweep -n $N --alphas 0 0.5 0.6 0.8 1 --steps 10 --batch-size 50 --rob fmnist-at-linf-cnn"
out=$(mktemp -d)
t0=$(date +%s.%N)
OMP_NUM_THREADS=2 python3 -m robustmix $ARGS --out "$out/one" > /dev/null 2>&1
t1=$(date +%s.%N)
OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 -m robustmix $ARGS --out "$out/two" > /dev/null 2>&1
t2=$(date +%s.%N)
same=$(python3 -c "from robustmix.experiments import read_records as r; print(r('$out/one/records.jsonl') == r('$out/two/records.jsonl'))")
python3 - "$t0" "$t1" "$t2" "$N" "$same" <<'PY'
import sys
t0, t1, t2, n = map(float, sys.argv[1:5])
one, two = t1 - t0, t2 - t1
print(f"| processes x threads | wall (s) | examples/s |\n|---|---|---|")
print(f"| 1 x 2 | {one:.1f} | {n / one:.1f} |\n| 2 x 1 (torchrun) | {two:.1f} | {n / two:.1f} |")
print(f"identical records: {sys.argv[5]}; speed-up {one / two:.2f}x (includes process start-up)")
PY
rm -rf "$out"
