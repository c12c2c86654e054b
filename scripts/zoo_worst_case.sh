#!/usr/bin/env bash
# Worst-case evaluation (robustmix evaluate) of every attacked zoo model on the first N test images,
# written into the model cards as worst-case-<threat>. Resumable: rerun to continue.
# Usage: [N=1000] [DEVICE=auto] bash scripts/zoo_worst_case.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
DEVICE=${DEVICE:-auto}
python3 - "$N" "$DEVICE" <<'PY'
import subprocess, sys
from robustmix.experiments.zoo_card import record_worst_case
from robustmix.training import THREATS
from robustmix.zoo_table import threat_tag
n, device = sys.argv[1], sys.argv[2]
for name, threats in THREATS.items():
    for norm, eps in threats:
        out = f"results/zoo-worst-case/{name}-{threat_tag(norm, eps)}"
        subprocess.run([sys.executable, "-m", "robustmix", "--device", device, "evaluate", "--model", name,
                        "--norm", norm, "--eps", str(eps), "-n", n, "--batch-size", "500", "--out", out], check=True)
        print(record_worst_case(name, f"{out}/summary.json"))
PY
