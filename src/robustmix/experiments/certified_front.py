"""The certified front: clean accuracy against sound certified accuracy for every way of combining an
accurate g with a certifiable h.

Constructions (each point is one classifier, every certificate sound at level delta):

* ``cohen``: h alone, Gaussian smoothing at each sigma (Cohen et al.'s CERTIFY);
* ``mixture``: the paper's mixture of g and the smoothed h over alpha (Theorem 2 with one
  Clopper-Pearson bound on h's selected class; alpha = 1 is ``cohen``);
* ``aces``: compositional selection (:func:`robustmix.certify.certify_selection`, entropy
  selector) over thresholds at each sigma;
* ``lipschitz-theorem1`` / ``lipschitz-logit-ball``: a network h with a guaranteed
  Lipschitz bound and its mixtures (Theorem 1 with the probability Lipschitz bound, and the
  logit-ball certificate with pairwise logit bounds); deterministic, no sampling.

Per sigma, one sampling pass per image serves all three smoothed constructions: the n0
selection votes, the estimation votes and the entropy selector's hits at every threshold
(the same noise), and g's probabilities, are stored per example (resumable records); the
certificates are computed from those counts.  Clean accuracy is each classifier's output at
x (Monte-Carlo vote frequencies for the smoothed h, the selector's point decision for ACES;
the mixture answers its certified class where it certifies, as certify_mixture's
``clean_prediction``);
certified accuracy at r counts certified radius >= r with the certified class correct.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from .._binomial import binomial_ci
from .._config import accepts_old_keywords, flat, group, option
from .._validation import check_alpha
from ..certify.mixture import mixture_clean_prediction, top_bound_radius
from ..certify.selection import check_selector, selection_counts, selection_from_counts
from ..certify.smoothing import ABSTAIN
from ..certify.stats import clopper_pearson_lower
from ..errors import ConfigError
from ..groups import Smoothing, seed_option
from .runner import Records, run_records

FAMILIES = {"cohen": "smoothed h alone (Cohen et al.)", "mixture": "mixture of g and smoothed h (Theorem 2)",
            "aces": "ACES selection (entropy selector)", "lipschitz-theorem1": "1-Lipschitz h mixture (Theorem 1)",
            "lipschitz-logit-ball": "1-Lipschitz h mixture (logit ball)"}


def _default_alphas():
    return [round(0.5 + 0.05 * i, 2) for i in range(11)]


def _default_thresholds():
    return [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0]


@accepts_old_keywords
@dataclasses.dataclass
class FrontConfig:
    sigmas: list = option(help="smoothing noise of each --noise-models entry", factory=lambda: [0.12, 0.25, 0.5],
                          of=float)
    alphas: list = option(help="mixture weights of h (Theorem 2 and the Lipschitz mixtures)",
                          factory=_default_alphas, of=float)
    thresholds: list = option(help="ACES entropy-selector thresholds (nats, in [0, ln classes]): h answers where its "
                                   "entropy under noise is at most the threshold", factory=_default_thresholds,
                              of=float)
    radii: list = option(help="l2 radii at which certified accuracy is reported", factory=lambda: [0.25, 0.5],
                         of=float)
    smoothing: Smoothing = group(Smoothing, only=("num_samples", "n0", "delta"), help={
        "num_samples": "estimation noise samples per image and sigma",
        "n0": "selection samples per image and sigma (pick h's class)",
        "delta": "failure probability of every certificate"})   # sigma: one per --sigmas
    seed: int = seed_option()
    lipschitz_temperature: float = option(10.0, "logit-ball mixtures use this times the Lipschitz h's logits (a "
                                                "sharper h, certified with scaled bounds)")

    def __post_init__(self):
        if not self.thresholds:
            raise ConfigError("--thresholds is empty: give at least one entropy threshold, e.g. 0.1 0.5 1.0")
        if not self.sigmas or not all(isinstance(s, (int, float)) and s > 0 and math.isfinite(s)
                                      for s in self.sigmas):
            raise ConfigError(f"sigmas must be positive noise levels, e.g. 0.12 0.25 0.5; got {self.sigmas!r}")
        self.alphas = [float(a) for a in check_alpha(self.alphas).reshape(-1).tolist()]
        if not self.radii or not all(r > 0 and math.isfinite(r) for r in self.radii):
            raise ConfigError(f"radii must be positive l2 radii, e.g. 0.25 0.5; got {self.radii!r}")
        if self.smoothing.num_samples < self.smoothing.n0:
            raise ConfigError(f"--samples ({self.smoothing.num_samples}) must be at least --n0 ({self.smoothing.n0})")
        if not (self.lipschitz_temperature > 0 and math.isfinite(self.lipschitz_temperature)):
            raise ConfigError(f"lipschitz_temperature must be a positive number, got {self.lipschitz_temperature!r}")


def _probs(t: torch.Tensor) -> list:
    return [float(v) for v in t.tolist()]


def front_records(g, h_base, sigma: float, x, y, cfg: FrontConfig, *, records: Records | None = None,
                  indices=None) -> list[dict]:
    """One sampling pass per image at ``sigma``: g's probabilities, h's votes and the selector's hits."""
    with torch.no_grad():
        c = h_base(x[:2]).shape[1]
    selector, thr, _ = check_selector("entropy", cfg.thresholds, x, c)
    smoothing = dataclasses.replace(cfg.smoothing, sigma=sigma)

    def compute(xb, yb, idx):
        with torch.no_grad():
            g_probs = g(xb).double().softmax(-1).cpu()
            sel, votes, chosen = selection_counts(h_base, xb, smoothing, selector, thr, seed=cfg.seed,
                                                  indices=idx.tolist())
        return [{"g_probs": _probs(g_probs[j]), "selection_votes": sel[j].tolist(), "votes": votes[j].tolist(),
                 "selector_hits": chosen[j].tolist()} for j in range(len(xb))]

    cfg_settings = {**flat(cfg), "sigma": sigma}
    for key in ("sigmas", "alphas", "radii", "lipschitz_temperature"):   # used afterwards, free to change
        del cfg_settings[key]
    return run_records((records or Records()).for_run(f"front, sigma {sigma:g}", cfg_settings), compute, x, y,
                       kind="certify-front", models={"g": g, "h": h_base}, indices=indices, batch_size=10)


def _point(family: str, sigma, param, clean_ok, radius, correct_cert, radii, estimator: str) -> dict:
    n = len(clean_ok)
    k = int(clean_ok.sum())
    out = {"family": family, "sigma": sigma, "param": param, "n": n, "clean": k / n, "clean_ci95": list(binomial_ci(k, n)),
           "certified": {}, "certified_ci95": {}, "estimator": estimator}
    for r in radii:
        hits = int(((radius >= r) & correct_cert).sum())
        out["certified"][str(r)] = hits / n
        out["certified_ci95"][str(r)] = list(binomial_ci(hits, n))
    return out


def smoothed_points(records: list[dict], sigma: float, cfg: FrontConfig) -> list[dict]:
    """Cohen, mixture and ACES points at one sigma, from the stored counts."""
    y = torch.tensor([r["label"] for r in records])
    g_probs = torch.tensor([r["g_probs"] for r in records], dtype=torch.float64)
    sel = torch.tensor([r["selection_votes"] for r in records], dtype=torch.float64)
    votes = torch.tensor([r["votes"] for r in records], dtype=torch.float64)
    hits = torch.tensor([r["selector_hits"] for r in records], dtype=torch.float64)
    c = votes.shape[1]
    top = sel.argmax(1)
    p_lower = clopper_pearson_lower(votes.gather(1, top[:, None])[:, 0].numpy(), cfg.smoothing.num_samples, cfg.smoothing.delta)
    alphas = torch.tensor(cfg.alphas, dtype=torch.float64)
    radius = top_bound_radius(p_lower, top, c, sigma, alphas)                     # (k, n), Theorem 2 (alpha 1: Cohen)
    h_freq = (votes + sel) / (cfg.smoothing.num_samples + cfg.smoothing.n0)
    certified = torch.where(radius > 0, top[None].expand_as(radius), torch.full_like(top[None], ABSTAIN))
    clean_pred = mixture_clean_prediction(g_probs, h_freq, certified, alphas)   # as certify_mixture's clean_prediction
    cp = f"Clopper-Pearson, delta {cfg.smoothing.delta:g}, {cfg.smoothing.num_samples:,} samples"
    points = []
    for k, a in enumerate(cfg.alphas):
        clean = clean_pred[k] == y
        pt = _point("mixture", sigma, a, clean, radius[k], top == y, cfg.radii, cp)
        points.append(pt)
        if a == 1.0:
            points.append({**pt, "family": "cohen"})
    cert = selection_from_counts(sel, votes, hits, g_probs.argmax(1), cfg.thresholds,
                                 smoothing=dataclasses.replace(cfg.smoothing, sigma=sigma), selector="entropy")
    for k, t in enumerate(cfg.thresholds):
        points.append(_point("aces", sigma, t, cert.clean_prediction[k] == y, cert.radius[k], cert.prediction[k] == y,
                             cfg.radii, f"{cp} (union: delta/2 for h, delta/{2 * len(cfg.thresholds)} per selector "
                                        "threshold)"))
    return points


def lipschitz_points(g, h, x, y, alphas, radii, temperature: float = 1.0) -> list[dict]:
    """Theorem 1 and logit-ball points of a network h with a guaranteed Lipschitz bound and its mixtures.

    The logit-ball mixtures use ``temperature * h``'s logits (a temperature-times-Lipschitz map, certified with
    the bounds scaled alike): a sharper h lets the mixture lean on it where it is sure.  Theorem 1 uses h."""
    from ..certify import (lipschitz_radius, logit_ball_radius, pairwise_logit_lipschitz,
                           probability_lipschitz)
    from ..mixing.functional import mix_log_probs

    shape = getattr(h, "input_shape", None) or tuple(x.shape[1:])
    with torch.no_grad():
        zh, zg = h(x).double(), g(x).double()
    a = torch.tensor(alphas, dtype=torch.float64)
    y = y.to(zh.device)
    t = float(temperature)
    radii_by = {"lipschitz-theorem1": (1.0, lipschitz_radius(zh.softmax(1), probability_lipschitz(h, 2, shape), a,
                                                             labels=y)),
                "lipschitz-logit-ball": (t, logit_ball_radius(t * zh, t * pairwise_logit_lipschitz(h, shape), a,
                                                              labels=y))}
    points = []
    for family, (scale, rad) in radii_by.items():
        for k, alpha in enumerate(alphas):
            clean = mix_log_probs(zg, scale * zh, alpha).argmax(1) == y
            points.append(_point(family, None, alpha, clean.cpu(), rad[k].cpu(), torch.ones(len(y), dtype=torch.bool),
                                 radii, "deterministic (guaranteed Lipschitz bound)"))
    return points


def best_by_clean(points: list[dict], levels, radius) -> list[dict]:
    """For each clean-accuracy level, each family's best certified accuracy at ``radius`` among its points whose
    clean accuracy reaches the level (None where no point does): the front, read off at fixed clean accuracy."""
    out = []
    for level in levels:
        row = {"clean_at_least": level}
        for fam in FAMILIES:
            cands = [p for p in points if p["family"] == fam and p["clean"] >= level - 1e-12]
            best = max(cands, key=lambda p: p["certified"][str(radius)], default=None)
            row[fam] = None if best is None else {"certified": best["certified"][str(radius)],
                                                  "ci95": best["certified_ci95"][str(radius)],
                                                  "sigma": best["sigma"], "param": best["param"],
                                                  "clean": best["clean"]}
        out.append(row)
    return out


def run_front(g, smoothed: list, lipschitz, x, y, cfg: FrontConfig, *, records: Records | None = None) -> dict:
    """Every point of the front; ``smoothed`` is [(sigma, base model)], ``lipschitz`` a model or None."""
    records = records or Records()
    folder = Path(records.records_path) if records.records_path else None
    points = []
    for sigma, base in smoothed:
        one = front_records(g, base, sigma, x, y, cfg,
                            records=records.at(folder / f"front-sigma-{sigma:g}.jsonl" if folder else None))
        points += smoothed_points(one, sigma, cfg)
    if lipschitz is not None:
        points += lipschitz_points(g, lipschitz, x, y, cfg.alphas, cfg.radii, cfg.lipschitz_temperature)
    return {"points": points}
