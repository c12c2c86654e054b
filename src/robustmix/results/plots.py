"""Plots of the paper's figures, drawn from summaries' data (never from models); a leaf that imports no robustmix
module, so summaries may draw their own figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

TRUST_LABELS = {"one": "$R_i=1$", "grad_std": r"$R_i=\|\nabla g_i\|_{p*}$",
                "grad_max_std": r"$R_i=\|\nabla \max_j g_j\|_{p*}$",
                "grad_ratio": r"$R_i=\|\nabla g_i\|_{p*}/\|\nabla h_i\|_{p*}$"}


def _save(fig, path) -> list[Path]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outs = []
    for suffix in (".png", ".svg"):
        p = path.with_suffix(suffix)
        fig.savefig(p, dpi=130, bbox_inches="tight")
        outs.append(p)
    plt.close(fig)
    return outs


def plot_sweep(summary, path, title: str = "") -> list[Path]:
    """Fig. 2: clean / STD / ROB / MIX accuracy versus alpha, shaded by 95% Clopper-Pearson intervals."""
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = {"clean": ("Clean", "k", "o"), "std": ("STD attack", "tab:blue", "s"),
              "rob": ("ROB attack", "tab:orange", "^"), "mix": ("MIX attack", "tab:red", "D")}
    for key, (label, color, marker) in styles.items():
        if key in summary.accuracy:
            ax.plot(summary.alphas, [100 * v for v in summary.accuracy[key]], label=label, color=color,
                    marker=marker, ms=4)
            lo, hi = zip(*summary.ci95[key])
            ax.fill_between(summary.alphas, [100 * v for v in lo], [100 * v for v in hi], color=color, alpha=0.12,
                            lw=0)
    ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(r"$\alpha$ (weight of the robust model $h$)")
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title or f"Mixed classifier, n = {summary.n}")
    return _save(fig, path)


def plot_tradeoff(summary, path, title: str = "") -> list[Path]:
    """Fig. 1 / Fig. 4: attacked accuracy versus clean accuracy over gamma, per R_i and mixing space."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    colors = {"one": "tab:red", "grad_std": "tab:blue", "grad_max_std": "tab:green", "grad_ratio": "tab:purple"}
    for name, curve in summary.curves.items():
        trust, space = name.split("|")
        ax.plot([100 * v for v in curve["clean"]], [100 * v for v in curve["attacked"]],
                color=colors.get(trust, None), ls="-" if space == "probs" else "--", marker="o", ms=3,
                label=f"{TRUST_LABELS.get(trust, trust)}, {'Softmax' if space == 'probs' else 'logits'}")
    ax.set_xlabel("Clean accuracy (%)")
    norm = "\\infty" if str(summary.norm) in ("inf", "linf") else "2"
    ax.set_ylabel(f"PGD$_{{{summary.steps}}}$ accuracy (%), $\\ell_{norm}$, $\\epsilon$={summary.eps}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), handlelength=3.5)
    ax.set_title(title or f"Trade-off over $\\gamma$, n = {summary.n}")
    return _save(fig, path)


def plot_certified(curves: dict, path, title: str = "") -> list[Path]:
    """Fig. 3: certified accuracy versus l2 radius; ``curves`` maps labels to {grid, certified, clean}.

    A curve at 0 everywhere (e.g. alpha <= 1/2, where Theorem 2 certifies nothing) is drawn with markers just
    above the x-axis, and its label says so."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, c in curves.items():
        grid = c["grid"]
        zero = not any(c["certified"])
        line, = ax.plot(grid, [100 * v for v in c["certified"]], ls=c.get("ls", "-"), clip_on=False,
                        label=label + (" (0 at every radius)" if zero else ""), marker="x" if zero else None,
                        ms=4, markevery=max(1, len(grid) // 10), zorder=3 if zero else 2)
        ax.plot([0], [100 * c["clean"]], marker="o", mfc="none", color=line.get_color(), clip_on=False)
    ax.set_xlabel(r"$\ell_2$ radius")
    ax.set_ylabel("Certified accuracy (%)")
    ax.set_ylim(-2, 101)   # a curve at 0 (or 100) stays visible, off the axis line
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title or "Certified accuracy (open circles: clean accuracy)")
    return _save(fig, path)


def plot_pareto(summary: dict, path, title: str = "") -> list[Path]:
    """Clean versus robust accuracy of every mixer: curves (a cheaper attack) and headline points (worst case)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    styles = {"linear": ("tab:blue", "o", "linear (alpha sweep)"),
              "nonlinear": ("tab:red", "s", "nonlinear (calibration path)"),
              "adaptive": ("tab:green", "^", "adaptive")}
    for name, points in summary["curves"].items():
        color, marker, label = styles.get(name, ("grey", "x", name))
        pts = sorted(points, key=lambda p: p["clean"])
        ax.plot([100 * p["clean"] for p in pts], [100 * p["robust"] for p in pts], color=color, marker=marker, ms=4,
                lw=1, alpha=0.6, label=label)
    for p in summary["headline"]:
        color = styles.get(p["name"], ("black",))[0] if p["name"] in styles else "black"
        lo, hi = p["robust_ci95"]
        ax.errorbar(100 * p["clean"], 100 * p["robust"], yerr=[[100 * (p["robust"] - lo)], [100 * (hi - p["robust"])]],
                    fmt="*", ms=11, color=color, mec="black", capsize=3)
        ax.annotate(p["name"], (100 * p["clean"], 100 * p["robust"]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8)
    ax.set_xlabel("Clean accuracy (%)")
    steps = summary["settings"].get("curve_steps")
    ax.set_ylabel(f"Robust accuracy (%)\nlines: APGD-CE/DLR ensemble, {steps} steps; stars: worst case", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    n = summary["headline"][0]["n"] if summary["headline"] else 0
    ax.set_title(title or f"Mixers on one front (stars: worst-case ensemble, 95% CI, n = {n})", fontsize=9)
    return _save(fig, path)


def plot_lipschitz_certified(summary: dict, path, title: str = "") -> list[Path]:
    """Certified accuracy versus l2 radius of a Lipschitz h and its mixtures, one line per (certificate, alpha).

    ``summary["curves"][method][alpha]`` holds {grid, certified, clean}; Theorem 1 is drawn dashed.
    """
    curves = {}
    for method, by_alpha in summary["curves"].items():
        for alpha, c in by_alpha.items():
            label = f"{method}, " + ("h alone" if float(alpha) == 1.0 else f"alpha={float(alpha):g}")
            curves[label] = {**c, "ls": "--" if method.lower().startswith("theorem") else "-"}
    return plot_certified(curves, path, title or "Certified accuracy of the Lipschitz h and the mixture "
                                              "(open circles: clean accuracy)")


FRONT_COLORS = {"cohen": "black", "mixture": "tab:blue", "aces": "tab:orange", "lipschitz-theorem1": "tab:green",
                "lipschitz-logit-ball": "tab:red"}
SIGMA_MARKERS = ["o", "s", "^", "v", "D"]


def _envelope(xs, ys):
    """Indices of the points no other point beats on both axes, by increasing x."""
    order = sorted(range(len(xs)), key=lambda i: (-xs[i], -ys[i]))
    keep, best = [], -1.0
    for i in order:
        if ys[i] > best:
            keep.append(i)
            best = ys[i]
    return keep[::-1]


def plot_front(points: list[dict], radii, labels: dict, path, title: str = "") -> list[Path]:
    """Clean against certified accuracy, one panel per radius: each construction's classifiers as faint marks, its
    front (the classifiers no other of its kind beats on both axes) as a line with 95% intervals."""
    fig, axes = plt.subplots(1, len(radii), figsize=(5.2 * len(radii), 4.4), squeeze=False)
    groups: dict = {}
    for p in points:
        groups.setdefault((p["family"], p["sigma"]), []).append(p)
    sigmas = sorted({p["sigma"] for p in points if p["sigma"] is not None})
    for ax, r in zip(axes[0], radii):
        key = str(r)
        for (family, sigma), pts in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
            xs = [100 * p["clean"] for p in pts]
            ys = [100 * p["certified"][key] for p in pts]
            color = FRONT_COLORS.get(family, "gray")
            marker = "P" if sigma is None else SIGMA_MARKERS[sigmas.index(sigma) % len(SIGMA_MARKERS)]
            label = labels.get(family, family) + ("" if sigma is None else f", $\\sigma$={sigma:g}")
            if family == "cohen":
                ax.plot(xs, ys, marker=marker, ls="none", ms=9, mfc="none", mec=color, mew=1.5, label=label)
                continue
            ax.plot(xs, ys, marker=marker, ls="none", ms=3, color=color, alpha=0.3)
            env = [pts[i] for i in _envelope(xs, ys)]
            ex = [100 * p["clean"] for p in env]
            ey = [100 * p["certified"][key] for p in env]
            xerr = [[e - 100 * p["clean_ci95"][0] for e, p in zip(ex, env)],
                    [100 * p["clean_ci95"][1] - e for e, p in zip(ex, env)]]
            yerr = [[e - 100 * p["certified_ci95"][key][0] for e, p in zip(ey, env)],
                    [100 * p["certified_ci95"][key][1] - e for e, p in zip(ey, env)]]
            ax.errorbar(ex, ey, xerr=xerr, yerr=yerr, marker=marker, ms=4, lw=1.2, elinewidth=0.4, capsize=0,
                        color=color, ls="--" if family == "aces" else "-", label=label)
        ax.set_xlabel("Clean accuracy (%)")
        ax.set_ylabel(f"Certified accuracy (%) at $\\ell_2$ radius {r:g}")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or "Certified front (95% Clopper-Pearson intervals)", fontsize=10)
    return _save(fig, path)
