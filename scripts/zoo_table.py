"""Print the zoo's card numbers as a Markdown table (for RESULTS.md). Run: python scripts/zoo_table.py"""

from robustmix.models import card, list_models


def pct(m):
    return f"{100 * m['accuracy']:.2f} (n={m['n']})"


print("| model | recipe | clean (10k) | PGD-20 | PGD-50 x5 | AutoAttack | train time (s) |")
print("|---|---|---|---|---|---|---|")
for name in list_models(pretrained=True):
    c = card(name)
    m = c.metrics
    cols = {"pgd20": "", "pgd50x5": "", "autoattack": ""}
    for key, val in m.items():
        for prefix in cols:
            if key.startswith(prefix + "-") and isinstance(val, dict):
                cols[prefix] += f"{key[len(prefix) + 1:]}: {pct(val)} "
    print(f"| {name} | {c.recipe} | {100 * m['clean']['accuracy']:.2f} | {cols['pgd20']} | {cols['pgd50x5']} | "
          f"{cols['autoattack']} | {c.train_seconds} |")
