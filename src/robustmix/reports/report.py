"""The demo / experiment report: Markdown, a self-contained HTML page (plots embedded) and a terminal table."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..results import SweepSummary, TradeoffSummary
from .plots import fmt_pct, plot_certified, plot_pareto, plot_sweep, plot_tradeoff


def _typed(summary: dict, key: str, cls):
    value = summary.get(key)
    return value if value is None or isinstance(value, cls) else cls.from_dict(value)


def at_radius(grid: list, values: list, radius: float) -> float:
    """The value at the largest grid radius <= ``radius`` (certified accuracy is non-increasing in the radius)."""
    j = max(i for i, r in enumerate(grid) if r <= radius + 1e-12)
    return values[j]


def fmt_ci(value, ci) -> str:
    """'66.4 [63.4, 69.3]': a percentage with its 95% interval."""
    if ci is None:
        return fmt_pct(value)
    return f"{fmt_pct(value)} [{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"


def figures(summary: dict, out_dir) -> dict[str, Path]:
    """Draw every figure the summary has data for; returns {name: png path}."""
    fig_dir = Path(out_dir) / "figures"
    figs = {}
    sweep, tradeoff = _typed(summary, "sweep", SweepSummary), _typed(summary, "tradeoff", TradeoffSummary)
    if sweep is not None:
        figs["fig2"] = plot_sweep(sweep, fig_dir / "fig2_alpha_sweep",
                                  f"Fig. 2: mixed classifier on Fashion-MNIST, PGD, n = {sweep.n}")[0]
    if tradeoff is not None:
        figs["fig1"] = plot_tradeoff(tradeoff, fig_dir / "fig1_trust_terms",
                                     f"Fig. 1: options for $R_i$, n = {tradeoff.n}")[0]
    if summary.get("pareto"):
        figs["pareto"] = plot_pareto(summary["pareto"], fig_dir / "pareto")[0]
    cert = summary.get("certified")
    if cert:
        rs = cert["rs"]
        for theorem, name in ((1, "Lipschitz-based (Theorem 1)"), (2, "RS-based (Theorem 2)")):
            data = rs[f"thm{theorem}"]
            curves = {
                f"mixture, alpha={rs['alpha']:.2f}": _one(data["mixture"]),
                "baseline RS (alpha=1)": _one(data["baseline"]),
                "mixture, sound bounds": {**_one(rs[f"thm{theorem}_sound"]["mixture"]), "ls": ":"},
                "baseline, sound bounds": {**_one(rs[f"thm{theorem}_sound"]["baseline"]), "ls": ":"},
            }
            if theorem == 2 and "thm2_tight" in rs:
                curves["mixture, tight sound (CP, one bound)"] = {**_one(rs["thm2_tight"]["mixture"]), "ls": "--"}
                curves["baseline, tight sound (= Cohen)"] = {**_one(rs["thm2_tight"]["baseline"]), "ls": "--"}
            figs[f"fig3_thm{theorem}"] = plot_certified(curves, Path(out_dir) / "figures" / f"fig3_thm{theorem}",
                                                        f"Fig. 3: {name}")[0]
        if "lipschitz" in cert:
            lc = cert["lipschitz"]["curve"]
            curves = {f"alpha={a:.1f}": {"grid": lc["grid"], "certified": lc["certified"][k], "clean": lc["clean"][k]}
                      for k, a in enumerate(lc["alphas"])}
            figs["fig3_lipnet"] = plot_certified(curves, fig_dir / "fig3_lipschitz_net",
                                                 "Theorem 1 with the Lipschitz network as h")[0]
    return figs


def _one(curve: dict) -> dict:
    return {"grid": curve["grid"], "certified": curve["certified"][0], "clean": curve["clean"][0]}


def sweep_table(summary: SweepSummary) -> list[list[str]]:
    """Accuracy (%) with its 95% interval per alpha; the header names n."""
    acc = summary.accuracy
    rows = [[f"alpha (n = {summary.n})"] + [k.upper() if k != "clean" else "Clean" for k in acc]]
    for i, a in enumerate(summary.alphas):
        rows.append([f"{a:.2f}"] + [fmt_ci(acc[k][i], summary.ci95[k][i]) for k in acc])
    return rows


def _gap(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def table1_rows(table: dict) -> list[list[str]]:
    rows = [["model", "clean, correct", "clean, incorrect", "attacked, correct", "attacked, incorrect"]]
    for model in ("g", "h"):
        t = table.get(model, {})
        rows.append([f"{model}(.)"] + [_gap(t.get(k)) for k in
                                        ("clean_correct", "clean_incorrect", "adv_correct", "adv_incorrect")])
    return rows


def headline_rows(hl: dict) -> list[list[str]]:
    return [["quantity", "value"],
            ["chosen alpha (smallest keeping 80% of h's MIX-PGD accuracy)", f"{hl['alpha']:.2f}"],
            ["clean accuracy g / h / mixture", f"{fmt_pct(hl['clean_g'])} / {fmt_pct(hl['clean_h'])} / "
                                               f"{fmt_pct(hl['clean_mix'])} %"],
            [f"PGD (MIX attack) accuracy h / mixture, n = {hl.get('n_pgd')}",
             f"{fmt_ci(hl['pgd_h'], hl.get('pgd_h_ci95'))} / {fmt_ci(hl['pgd_mix'], hl.get('pgd_mix_ci95'))} %"],
            [f"worst-case accuracy (evaluator members) h / mixture, n = {hl.get('n_aa')}",
             f"{fmt_ci(hl['aa_h'], hl.get('aa_h_ci95'))} / {fmt_ci(hl['aa_mix'], hl.get('aa_mix_ci95'))} %"],
            ["h-to-g clean-accuracy gap closed", f"{fmt_pct(hl['gap_closed'])} %"],
            ["h's worst-case accuracy kept", f"{fmt_pct(hl['kept_aa'])} %"]]


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([fmt(rows[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows[1:]])


def _sections(summary: dict) -> list[tuple[str, str, list]]:
    """(title, text, tables) in report order."""
    out = []
    s = summary.get("settings", {})
    if "headline" in summary:
        hl = summary["headline"]
        text = (f"Standard model g = `{summary['models']['g']}`, robust model h = `{summary['models']['h']}`, "
                f"l_inf attacks with eps = {s.get('eps')}. Worst case per example over the evaluator's members "
                f"{s.get('autoattack_attacks')} ({s.get('autoattack_steps')} APGD steps) on {s.get('n_autoattack')} "
                f"test images; brackets: 95% Clopper-Pearson intervals. The full ensemble (AutoAttack standard plus "
                f"surrogates and transfer): robustmix evaluate.")
        out.append(("Headline: the best trade-off alpha", text, [headline_rows(hl)]))
        warns = summary["autoattack"]["mixture"]["warnings"] + summary["autoattack"]["h"]["warnings"]
        if warns:
            out.append(("Attack checks", "The evaluator raised: " + "; ".join(sorted(set(warns))), []))
    sw, t = _typed(summary, "sweep", SweepSummary), _typed(summary, "tradeoff", TradeoffSummary)
    if sw is not None:
        out.append(("Fig. 2: accuracy versus alpha",
                    f"PGD-{s.get('steps')} (l_inf, eps = {s.get('eps')}) aimed at g (STD), at h (ROB) and at the "
                    f"mixture end to end (MIX); {sw.n} test images; brackets: 95% Clopper-Pearson intervals.",
                    [sweep_table(sw)]))
        out.append(("Table I: average gap between the top two probabilities",
                    "Attacked columns: each model under PGD aimed at itself.", [table1_rows(sw.table1)]))
    if t is not None:
        rows = [["R_i, space", "clean (%) over gamma", "attacked (%) over gamma"]]
        for name, c in t.curves.items():
            rows.append([name, " ".join(fmt_pct(v) for v in c["clean"]), " ".join(fmt_pct(v) for v in c["attacked"])])
        out.append(("Fig. 1: trust terms R_i and mixing space",
                    f"gamma in {t.gammas}; PGD-{t.steps} through the whole formulation; n = {t.n}.", [rows]))
    if "certified" in summary:
        c = summary["certified"]
        rs = c["rs"]
        rows = [["curve", "clean", "r=0.25", "r=0.5", "r=1.0"]]
        radii = (0.25, 0.5, 1.0)
        for thm in [k for k in ("thm1", "thm2", "thm1_sound", "thm2_sound", "thm2_tight") if k in rs]:
            for who in ("mixture", "baseline"):
                cur = rs[thm][who]
                rows.append([f"{thm} {who}", fmt_pct(cur["clean"][0])] +
                            [fmt_pct(at_radius(cur["grid"], cur["certified"][0], r)) for r in radii])
        lc = c.get("lipschitz", {}).get("curve", {"alphas": []})
        for k, a in enumerate(lc["alphas"]):
            rows.append([f"Lipschitz net, alpha={a:.1f}", fmt_pct(lc["clean"][k])] +
                        [fmt_pct(at_radius(lc["grid"], lc["certified"][k], r)) for r in radii])
        out.append(("Fig. 3: certified accuracy",
                    f"Smoothed h (sigma = {s.get('smooth_sigma')}) mixed at alpha = {rs['alpha']:.2f}, chosen so the "
                    f"mixture's clean accuracy matches the sigma = {s.get('baseline_sigma')} baseline "
                    f"({fmt_pct(rs['baseline_clean'])} %). {s.get('certify_samples')} noise samples per image; "
                    f"'sound' rows use simultaneous union bounds over all classes, 'tight' rows the default sound certificate "
                    f"(selection samples, one Clopper-Pearson bound on the selected class with all of delta; at "
                    f"alpha = 1 it is Cohen et al.'s CERTIFY); failure probability {s.get('certify_delta')}. "
                    + (f"Lipschitz network: per-class probability Lipschitz bound "
                       f"{c['lipschitz']['lipschitz_per_class']:.3f}." if "lipschitz" in c else ""), [rows]))
    if summary.get("pareto"):
        out.append(_pareto_section(summary["pareto"]))
    if "timings_s" in summary:
        out.append(("Run time", ", ".join(f"{k}: {v} s" for k, v in summary["timings_s"].items()), []))
    return out


def _pareto_section(p: dict) -> tuple[str, str, list]:
    s = p["settings"]
    head = [["model", "clean (%) [95% CI]", "worst-case robust (%) [95% CI]", "n", "settings"]]
    for pt in p["headline"]:
        extra = ", ".join(f"{k}={pt[k]:.3g}" for k in ("alpha", "scale", "power", "bias") if pt.get(k) is not None)
        head.append([pt["name"], fmt_ci(pt["clean"], pt["clean_ci95"]), fmt_ci(pt["robust"], pt["robust_ci95"]),
                     str(pt["n"]), extra])
    matched = [["mixer", "curve robust (%)", "clean (%)", "linear clean at same robust (%)", "gain (points)"]]
    for r in p["matched"]:
        name = r["name"] + (f" (keep {r['percentile']:g}%)" if r.get("percentile") is not None else "")
        gain = "n/a" if r["gain"] is None else f"{100 * r['gain']:+.1f}"
        matched.append([name, fmt_pct(r["robust"]), fmt_pct(r["clean"]), fmt_pct(r["linear_clean"]), gain])
    text = (f"g = `{s['std']}`, h = `{s['rob']}`, l_{'inf' if str(s['norm']) in ('inf', 'linf') else s['norm']} "
            f"eps = {s['eps']}. Headline rows: the worst case over the whole attack ensemble (AutoAttack standard, "
            f"APGD-CE/DLR end to end, through surrogates and by transfer), per example. Curves and the matched table: "
            f"{p['curve_attack']}. Calibration on {s['n_val']} validation images only.")
    return ("Mixers on one front: linear, nonlinear, adaptive", text, [head, matched])


def _normalise(summary: dict) -> dict:
    """A pareto run's own summary.json is reported like a demo summary with a "pareto" part."""
    return {"pareto": summary} if summary.get("kind") == "pareto" else summary


def write_report(summary: dict, out_dir) -> dict[str, Path]:
    out_dir = Path(out_dir)
    summary = _normalise(summary)
    figs = figures(summary, out_dir)
    sections = _sections(summary)
    md = ["# robustmix report", ""]
    body = ["<h1>robustmix report</h1>"]
    fig_for = {"Mixers on one front": ["pareto"], "Fig. 2": ["fig2"], "Fig. 1": ["fig1"], "Fig. 3": ["fig3_thm1", "fig3_thm2", "fig3_lipnet"]}
    for title, text, tables in sections:
        md += [f"## {title}", "", text, ""]
        body += [f"<h2>{html.escape(title)}</h2>", f"<p>{html.escape(text)}</p>"]
        for rows in tables:
            md += [markdown_table(rows), ""]
            body.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c)}</{'th' if i == 0 else 'td'}>"
                                 for c in r) + "</tr>" for i, r in enumerate(rows)) + "</table>")
        for key, names in fig_for.items():
            if title.startswith(key):
                for name in names:
                    if name in figs:
                        rel = figs[name].relative_to(out_dir)
                        md += [f"![{name}]({rel.as_posix()})", ""]
                        data = base64.b64encode(figs[name].read_bytes()).decode()
                        body.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}th{background:#f0f0f0}img{max-width:100%;margin:0.5em 0}")
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>robustmix report</title><style>{style}</style>" \
           f"</head><body>{''.join(body)}</body></html>"
    (out_dir / "report.md").write_text("\n".join(md))
    (out_dir / "report.html").write_text(page)
    return {"html": out_dir / "report.html", "markdown": out_dir / "report.md", **figs}


def terminal_summary(summary: dict) -> str:
    summary = _normalise(summary)
    parts = []
    if "pareto" in summary:
        parts += [text_table(t) for t in _pareto_section(summary["pareto"])[2]]
    if "headline" in summary:
        parts.append(text_table(headline_rows(summary["headline"])))
    if "sweep" in summary:
        parts.append(text_table(sweep_table(_typed(summary, "sweep", SweepSummary))))
    return "\n\n".join(parts)
