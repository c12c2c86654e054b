#!/usr/bin/env bash
# Every experiment behind RESULTS.md, on the shipped Fashion-MNIST zoo, with the subset sizes used
# there (chosen to fit a 2-core CPU session; raise the -n values for tighter numbers). Outputs go to
# results/. Two independent queues run side by side, one thread each. Every step resumes from its
# records if interrupted. About 1 hour on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
RM="python3 -m robustmix"

queue_a() {
  # Fig. 2 and Table I: alpha sweep, PGD-20 l_inf eps = 0.1, attacks aimed at g, h and the mixture
  $RM sweep --rob fmnist-at-linf-cnn -n 1000 --steps 20 --out results/fig2-at-linf
  # Headline: AutoAttack (standard) on h (alpha = 1) and on the mixture at the chosen alpha
  ALPHA=$(python3 -c "import json; from robustmix.experiments.tradeoff_choice import best_tradeoff_alpha as b; \
print(b(json.load(open('results/fig2-at-linf/summary.json'))))")
  $RM attack --rob fmnist-at-linf-cnn --alpha 1.0 -n 300 --steps 50 --autoattack standard --out results/aa-at-linf-h
  $RM attack --rob fmnist-at-linf-cnn --alpha "$ALPHA" -n 300 --steps 50 --autoattack standard \
      --out results/aa-at-linf-mix
  # zoo cards: clean (10,000), PGD-20 and PGD-50 x 5 restarts (1,000), AutoAttack (first N_AUTOATTACK)
  N_AUTOATTACK=${N_AUTOATTACK:-100} python3 scripts/evaluate_zoo.py fmnist-std-cnn fmnist-at-linf-cnn
}

queue_b() {
  # Fig. 3: certified accuracy, smoothed h (sigma 0.5) mixed vs a sigma 0.25 baseline; Lipschitz h
  $RM fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.25-cnn --baseline-sigma 0.25 \
      --lipschitz-model fmnist-lipschitz -n 200 --samples 1000 --out results/fig3
  # Fig. 1 / Fig. 4: trust terms R_i, logits vs probabilities
  $RM tradeoff --rob fmnist-at-linf-cnn --steps 10 -n 40 --gammas 0 0.1 0.3 1 3 10 inf \
      --out results/fig1-at-linf-pgd10
  $RM tradeoff --rob fmnist-trades-linf-cnn --steps 20 -n 30 --gammas 0 0.3 1 3 inf --out results/fig4a-trades-pgd20
  $RM tradeoff --rob fmnist-at-l2-cnn --norm 2 --eps 1.5 --steps 20 -n 30 --gammas 0 0.3 1 3 inf \
      --out results/fig4b-at-l2-pgd20
  N_AUTOATTACK=${N_AUTOATTACK:-100} python3 scripts/evaluate_zoo.py fmnist-trades-linf-cnn fmnist-at-l2-cnn
}

mkdir -p results
queue_a > results/queue_a.log 2>&1 & a=$!
queue_b > results/queue_b.log 2>&1 & b=$!
wait $a
wait $b
