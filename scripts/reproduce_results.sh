#!/usr/bin/env bash
# Every experiment behind RESULTS.md, on the shipped Fashion-MNIST zoo.
#
#   bash scripts/reproduce_results.sh [OUTROOT]          full mode (OUTROOT defaults to results)
#   bash scripts/reproduce_results.sh --small OUTROOT    small mode (or: SMALL=1 bash ... OUTROOT)
#
# Environment: WORST_CASE=1 adds robustmix evaluate and pareto; DEVICE (default auto: a GPU if there
# is one); FRESH=1 passes --fresh (old records in each --out are moved aside, not resumed); DRY_RUN=1
# prints the commands instead of running them.
#
# Full mode: the commands that produced the shipped results/ folders, with the subset sizes used there
# (chosen for a 2-core CPU; raise the -n values for tighter numbers). The figures take about 1 hour
# on 2 cores; the zoo-card step (clean on 10,000; PGD-20, PGD-50 x 5 on 1,000; AutoAttack on the first
# 1,000 / 500 / 200 images, 3-5 s per image) takes several more hours and rewrites the cards in
# src/robustmix/zoo/*.json, as it did for the shipped ones. WORST_CASE=1 (worst-case evaluation of
# the alpha = 0.7 mixture, mixer fronts) was run on an H100 with DEVICE=cuda; it takes hours on a CPU.
# Outputs go to OUTROOT/<experiment>/; two independent queues run side by side, one thread each,
# logging to OUTROOT/queue_{a,b}.log; every step resumes from its records if interrupted. The records
# shipped in results/fig1-*, fig2-*, fig4*-* and aa-* predate the current record header, so resuming
# into results/ is refused there: use another OUTROOT (then compare or copy) or FRESH=1.
#
# Small mode: every step with tiny sizes (4-16 images, 2-5 attack steps, 100 noise samples, no
# AutoAttack in the zoo-card step: it costs about 50 s per model whatever n, and the attack steps run
# it anyway), the zoo cards left alone (each model's numbers go to OUTROOT/zoo-eval/NAME/summary.json),
# OUTROOT=results refused so the shipped folders are never overwritten. It checks that the pipeline
# runs and writes every summary.json (tests/test_reproduce_slow.py), not the numbers.
# Measured (robustmix 8c5a2a7 plus the working tree of 2026-12-01, on 2 CPU cores shared with other
# jobs): 142 s wall at load average ~2, 232 s at ~3, 302-314 s at ~4.5; the two AutoAttack steps take
# 55-120 s each and set the pace, every other step 8-46 s (each step logs its time). With
# WORST_CASE=1: 758 s wall at load ~5 (evaluate 64 s, each pareto about 210 s).
set -euo pipefail
export OMP_NUM_THREADS=1

SMALL=${SMALL:-0}
OUT=""
for arg in "$@"; do
  case "$arg" in
    --small) SMALL=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    -*) echo "unknown option $arg (see --help)" >&2; exit 2 ;;
    *) [[ -z "$OUT" ]] || { echo "one OUTROOT only (see --help)" >&2; exit 2; }; OUT=$(realpath -m "$arg") ;;
  esac
done
cd "$(dirname "$0")/.."
OUT=$(realpath -m --relative-base=. "${OUT:-results}")
if [[ "$SMALL" == 1 ]]; then
  case "$(realpath -m "$OUT")" in
    "$(realpath -m results)"|"$(realpath -m results)"/*)
      echo "small mode would overwrite the shipped results/: give another OUTROOT" >&2; exit 2 ;;
  esac
fi
WORST_CASE=${WORST_CASE:-0}
RM=(python3 -m robustmix --device "${DEVICE:-auto}")
FRESH_FLAG=()
if [[ "${FRESH:-0}" == 1 ]]; then FRESH_FLAG=(--fresh); fi

# Sizes: small mode, then full mode (those of the shipped results).
if [[ "$SMALL" == 1 ]]; then
  SWEEP=(-n 16 --steps 2)
  AA=(-n 4 --steps 2)
  FIG3=(-n 6 --samples 100)
  FIG1=(--steps 2 -n 4)
  FIG4=(--steps 2 -n 4)
  LIP=(--n 50)
  EVAL=(-n 4 --steps 5 --batch-size 100)
  PARETO=(--n-curve 8 --n-headline 2 --n-val 32 --n-train 32 --batch-size 100)
  PARETO_L2=("${PARETO[@]}")
  ZOO=(N_ATTACK=8 WRITE_CARDS=0)
  AA_STD=0 AA_LINF=0 AA_L2=0   # AutoAttack costs ~50 s per model whatever n; the attack steps run it
else
  SWEEP=(-n 1000 --steps 20)
  AA=(-n 100 --steps 50)
  FIG3=(-n 200 --samples 1000)
  FIG1=(--steps 10 -n 40)
  FIG4=(--steps 20 -n 30)
  LIP=(--n 1000)
  EVAL=(-n 1000 --batch-size 1000)
  PARETO=(--batch-size 1000 --mixing-net mlp --train-attack composite)   # the committed adaptive rows' recipe
  PARETO_L2=(--n-headline 500 "${PARETO[@]}")
  ZOO=(N_ATTACK=1000 WRITE_CARDS=1)
  AA_STD=1000 AA_LINF=500 AA_L2=200
fi

step() {  # step LABEL COMMAND...: run COMMAND, then log how long it took (DRY_RUN=1: print it)
  local label=$1 t=$SECONDS
  shift
  if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "$*"; return; fi
  "$@"
  echo "[reproduce_results: $label took $((SECONDS - t)) s]"
}
rm_() { step "robustmix $1 -> ${*: -1}" "${RM[@]}" "$@" "${FRESH_FLAG[@]}"; }
zoo() {  # zoo N_AUTOATTACK NAME...: the card numbers of each NAME (clean on all 10,000 test images)
  local n=$1; shift
  step "zoo cards $*" env "${ZOO[@]}" N_AUTOATTACK="$n" ZOO_OUT="$OUT/zoo-eval" python3 scripts/evaluate_zoo.py "$@"
}

queue_a() {
  # Fig. 2 and Table I: alpha sweep, PGD-20 l_inf eps = 0.1, attacks aimed at g, h and the mixture
  rm_ sweep --rob fmnist-at-linf-cnn "${SWEEP[@]}" --out "$OUT/fig2-at-linf"
  # the smallest swept alpha whose MIX accuracy keeps >= 80% of h's (0.7 on the shipped sweep)
  ALPHA='$ALPHA'
  [[ "${DRY_RUN:-0}" == 1 ]] || ALPHA=$(python3 -c "import sys
from robustmix.results import SweepSummary
from robustmix.experiments.tradeoff_choice import best_tradeoff_alpha
print(best_tradeoff_alpha(SweepSummary.load(sys.argv[1])))" "$OUT/fig2-at-linf/summary.json")
  echo "best trade-off alpha: $ALPHA"
  # Headline (first 100 images): AutoAttack (standard) on h (alpha = 1) and on the mixture at ALPHA
  rm_ attack --rob fmnist-at-linf-cnn --alpha 1.0 "${AA[@]}" --autoattack standard --out "$OUT/aa-at-linf-h"
  rm_ attack --rob fmnist-at-linf-cnn --alpha "$ALPHA" "${AA[@]}" --autoattack standard --out "$OUT/aa-at-linf-mix"
  # Zoo cards: clean (10,000), PGD-20 and PGD-50 x 5 restarts (1,000), AutoAttack (first 1,000 / 500)
  zoo "$AA_STD" fmnist-std-cnn
  zoo "$AA_LINF" fmnist-at-linf-cnn
  if [[ "$WORST_CASE" == 1 ]]; then
    # the worst case over robustmix evaluate's ensemble of the mixture at ALPHA (H100: --device cuda)
    rm_ evaluate --std fmnist-std-cnn --rob fmnist-at-linf-cnn --alpha "$ALPHA" --eps 0.1 "${EVAL[@]}" \
        --out "$OUT/evaluate-linf-a0.7"
  fi
}

queue_b() {
  # Fig. 3: certified accuracy, smoothed h (sigma 0.5) mixed vs a sigma 0.12 (RESULTS.md) and a
  # sigma 0.25 baseline; the Lipschitz network as h (Theorem 1)
  rm_ fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.12-cnn --baseline-sigma 0.12 \
      --lipschitz-model fmnist-lipschitz "${FIG3[@]}" --out "$OUT/fig3-baseline-0.12"
  rm_ fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.25-cnn --baseline-sigma 0.25 \
      --lipschitz-model fmnist-lipschitz "${FIG3[@]}" --out "$OUT/fig3"
  # The 1-Lipschitz h: Theorem 1 against the logit-ball certificate, h alone and mixed
  step "lipschitz_certified.py" python3 scripts/lipschitz_certified.py "${LIP[@]}" --out "$OUT/lipschitz-certified"
  # Fig. 1 / Fig. 4: trust terms R_i, logits vs probabilities
  rm_ tradeoff --rob fmnist-at-linf-cnn "${FIG1[@]}" --gammas 0 0.1 0.3 1 3 10 inf \
      --out "$OUT/fig1-at-linf-pgd10"
  rm_ tradeoff --rob fmnist-trades-linf-cnn "${FIG4[@]}" --gammas 0 0.3 1 3 inf --out "$OUT/fig4a-trades-pgd20"
  rm_ tradeoff --rob fmnist-at-l2-cnn --norm 2 --eps 1.5 "${FIG4[@]}" --gammas 0 0.3 1 3 inf \
      --out "$OUT/fig4b-at-l2-pgd20"
  # Zoo cards: the TRADES and l_2 models (AutoAttack on the first 500 / 200), clean accuracy of the rest
  zoo "$AA_LINF" fmnist-trades-linf-cnn
  zoo "$AA_L2" fmnist-at-l2-cnn
  zoo 0 fmnist-noise-0.12-cnn fmnist-noise-0.25-cnn fmnist-noise-0.50-cnn fmnist-lipschitz
  if [[ "$WORST_CASE" == 1 ]]; then
    # linear, nonlinear (MixedNUTS) and adaptive mixers on one front (H100: --device cuda)
    rm_ pareto --std fmnist-std-cnn --rob fmnist-at-linf-cnn --eps 0.1 "${PARETO[@]}" --out "$OUT/pareto-linf"
    rm_ pareto --rob fmnist-at-l2-cnn --norm 2 --eps 1.5 "${PARETO_L2[@]}" --out "$OUT/pareto-l2"
  fi
}

if [[ "${DRY_RUN:-0}" == 1 ]]; then queue_a; queue_b; exit 0; fi
mkdir -p "$OUT"
start=$SECONDS
(set -x; queue_a) > "$OUT/queue_a.log" 2>&1 & a=$!
(set -x; queue_b) > "$OUT/queue_b.log" 2>&1 & b=$!
rc=0
wait $a || { rc=1; echo "queue a failed; the end of $OUT/queue_a.log:" >&2; tail -n 30 "$OUT/queue_a.log" >&2; }
wait $b || { rc=1; echo "queue b failed; the end of $OUT/queue_b.log:" >&2; tail -n 30 "$OUT/queue_b.log" >&2; }
echo "reproduce_results ($([[ "$SMALL" == 1 ]] && echo small || echo full) mode) into $OUT: exit $rc after $((SECONDS - start)) s"
exit $rc
