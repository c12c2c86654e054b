"""Print the zoo's card numbers as a Markdown table (for RESULTS.md). Run: python scripts/zoo_table.py"""

from robustmix.models import card, list_models
from robustmix.training import THREATS, threat_tag


def pct(m):
    return "-" if m is None else f"{100 * m['accuracy']:.1f}" + ("" if m["n"] == 1000 else f" (n={m['n']})")


print("| model | recipe | clean (10k) | threat | PGD-20 (1k) | PGD-50 x5 (1k) | AutoAttack | train time (s) |")
print("|---|---|---|---|---|---|---|---|")
for name in list_models(pretrained=True):
    c = card(name)
    m = c.metrics
    for norm, eps in THREATS.get(name, [(None, None)]):
        tag = threat_tag(norm, eps) if norm else None
        threat = f"l_{norm} {eps}" if norm else "-"
        cells = [pct(m.get(f"{kind}-{tag}")) if tag else "-" for kind in ("pgd20", "pgd50x5", "autoattack")]
        print(f"| {name} | {c.recipe} | {100 * m['clean']['accuracy']:.2f} | {threat} | {' | '.join(cells)} | "
              f"{c.train_seconds:.0f} |")
