#!/usr/bin/env bash
# Every experiment behind RESULTS.md, on the shipped Fashion-MNIST zoo. Outputs go to results/.
# Each step resumes from its records if interrupted. Total: roughly 2-3 hours on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RM="python3 -m robustmix"

N_AUTOATTACK=${N_AUTOATTACK:-1000} python3 scripts/evaluate_zoo.py                                            # zoo cards (PGD-50 x5, AutoAttack)

# Fig. 2 and Table I: alpha sweep, PGD-20 l_inf eps = 0.1, attacks aimed at g, h and the mixture
$RM sweep --rob fmnist-at-linf-cnn -n 1000 --steps 20 --out results/fig2-at-linf
$RM sweep --rob fmnist-trades-linf-cnn -n 1000 --steps 20 --out results/fig2-trades

# Headline: AutoAttack (standard) on h and on the mixture at the chosen alpha (see RESULTS.md)
$RM attack --rob fmnist-at-linf-cnn --alpha 1.0 -n 1000 --steps 50 --autoattack standard --out results/aa-at-linf-h
$RM attack --rob fmnist-at-linf-cnn --alpha "${ALPHA:-0.6}" -n 1000 --steps 50 --autoattack standard \
    --out results/aa-at-linf-mix

# Fig. 1 / Fig. 4: trust terms R_i, logits vs probabilities
GAMMAS="0 0.03 0.1 0.3 1 3 10 30 inf"
$RM tradeoff --rob fmnist-at-linf-cnn --steps 10 -n 100 --gammas $GAMMAS --out results/fig1-at-linf-pgd10
$RM tradeoff --rob fmnist-trades-linf-cnn --steps 20 -n 100 --gammas $GAMMAS --out results/fig4a-trades-pgd20
$RM tradeoff --rob fmnist-at-l2-cnn --norm 2 --eps 1.5 --steps 20 -n 100 --gammas $GAMMAS \
    --out results/fig4b-at-l2-pgd20

# Fig. 3: certified accuracy, smoothed h (sigma 0.5) mixed vs a sigma 0.25 baseline; Lipschitz h
$RM fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.25-cnn --baseline-sigma 0.25 \
    --lipschitz-model fmnist-lipschitz -n 500 --samples 10000 --out results/fig3
