"""Certified-accuracy experiments (the paper's Fig. 3) with per-example, resumable records.

Two kinds of robust base model h:

* a randomized-smoothing classifier (a noise-trained base model and sigma):
  one Monte-Carlo pass per example stores h's mean scores and simultaneous
  bounds; radii for every alpha then come from Theorem 1 (with the smoothed
  classifier's Lipschitz constant sqrt(2/(pi sigma^2))) or Theorem 2;
* a network with a guaranteed Lipschitz bound: h's probabilities are stored
  and Theorem 1 uses :func:`~robustmix.certify.probability_lipschitz`.

g's probabilities are stored too, so the mixture's clean prediction at any
alpha is known without another pass.

Clean and certified accuracy describe one classifier.  The point-estimate and
union-bound curves certify the mixture with h's stored point estimate (mean
softmax scores, or vote frequencies with ``estimator="hard"``) and take the clean
prediction from the same mixture.  The tight sound certificate
(:func:`~robustmix.certify.certify_mixture`, hard votes) certifies the mixture
with the vote-smoothed h; its records keep that classifier's own clean
prediction per alpha (``sound["clean"]``: the certified class where it
certifies, else the hard-vote mixture's point estimate), and
:func:`sound_curve` reports clean accuracy from it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .._config import accepts_old_keywords, flat, group
from .._validation import check_alpha
from ..certify.radii import (certified_accuracy, lipschitz_radius_from_bounds, smoothed_lipschitz,
                             smoothing_radius_from_bounds)
from ..certify.mixture import SEQUENTIAL_RULES, Sequential, certify_mixture, check_sequential, default_tolerance
from ..certify.smoothing import Inputs, SmoothedClassifier, SmoothingEstimate
from ..errors import ConfigError
from ..groups import Smoothing
from .runner import Records, records_of, run_records


@accepts_old_keywords
@dataclasses.dataclass
class CertifyConfig:
    smoothing: Smoothing = group(Smoothing)   # sigma None: a Lipschitz network h
    estimator: str = "soft"        # "soft" (Hoeffding on softmax scores) or "hard" (Clopper-Pearson on votes)
    seed: int = 0
    examples_per_record_batch: int = 10
    sound_alphas: list | None = None   # also store certify_mixture's tight sound radii at these alphas (smoothed h)
    sound_only: bool = False           # only the tight sound certificate: no separate Monte-Carlo pass (half the cost)
    share_samples: bool = False        # the point estimate and simultaneous bounds reuse the tight certificate's
    #                                    noise samples (soft estimator, fixed budget): one sampling pass, not two
    sequential: bool = False           # tight sound certificate with sequential sampling (certify_mixture)
    tolerance: float | None = None     # sequential: radius an input may leave on the table (None: inf with radii,
    #                                    0.1 without)
    radii: list | None = None          # sequential: the reported radii that steer stopping
    sequential_rule: str = "confidence-sequence"   # sequential: or "doubling-looks" (the earlier rule)

    def __post_init__(self):
        s = self.smoothing
        if self.estimator not in ("soft", "hard"):
            raise ConfigError("estimator must be 'soft' or 'hard'")
        if self.sound_alphas is not None:
            if s.sigma is None:
                raise ConfigError("tight sound radii (sound_alphas) need a smoothed h: give sigma")
            self.sound_alphas = [float(a) for a in check_alpha(self.sound_alphas).reshape(-1).tolist()]
            if s.num_samples < s.n0:
                raise ConfigError(f"--samples ({s.num_samples}) must be at least --n0 ({s.n0}): the estimation "
                                  "pass is the larger one (Cohen et al. use 100,000 with n0 = 100); the n0 selection "
                                  "samples are drawn on top of it")
        elif self.sound_only or self.sequential:
            raise ConfigError("sound_only and sequential concern the tight sound certificate: give sound_alphas too")
        if self.tolerance is None:
            self.tolerance = default_tolerance(self.radii)
        if not (isinstance(self.tolerance, (int, float)) and self.tolerance >= 0):
            raise ConfigError(f"tolerance must be an l2 radius >= 0 (inf: only the radii steer stopping), "
                              f"got {self.tolerance!r}")
        self.radii = check_sequential(self.sequential, self.tolerance, self.radii)
        if self.sequential_rule not in SEQUENTIAL_RULES:
            raise ConfigError(f"unknown sequential rule {self.sequential_rule!r}: use one of "
                              f"{', '.join(SEQUENTIAL_RULES)}")
        if self.share_samples and not (self.sound_alphas and self.estimator == "soft" and not self.sequential
                                       and not self.sound_only):
            raise ConfigError("share_samples reuses the tight certificate's fixed-budget samples for the soft point "
                              "estimate: it needs sound_alphas, estimator 'soft', no sequential, no sound_only")

    def to_dict(self):
        d = flat(self)
        if not d["share_samples"]:   # records written before the option existed resume unchanged
            del d["share_samples"]
        if not d["sequential"]:      # the rule matters only to sequential runs
            del d["sequential_rule"]
        return d


def _probs_list(t: torch.Tensor) -> list:
    return [float(v) for v in t.tolist()]


def certify_batch(std_model, rob_model, smoother, xb, idx, cfg: CertifyConfig) -> list[dict]:
    """Records for one batch: g's probabilities, and h's (point estimate and sound bounds when smoothed)."""
    with torch.no_grad():
        g_probs = std_model(xb).double().softmax(-1).cpu()
        if smoother is None:
            h_probs = rob_model(xb).double().softmax(-1).cpu()
            return [{"g_probs": _probs_list(g_probs[j]), "h_probs": _probs_list(h_probs[j])} for j in range(len(xb))]
    if cfg.sound_only or cfg.share_samples:
        recs = [{"g_probs": _probs_list(g_probs[j])} for j in range(len(xb))]
    else:
        est = smoother.sample(xb, idx.tolist())
        lower, upper = est.bounds(cfg.smoothing.delta, cfg.estimator)
        point = est.point(cfg.estimator)
        recs = [{"g_probs": _probs_list(g_probs[j]), "h_probs": _probs_list(point[j]),
                 "h_lower": _probs_list(lower[j]), "h_upper": _probs_list(upper[j])} for j in range(len(xb))]
    if cfg.sound_alphas:
        sequential = Sequential(cfg.sequential_rule, cfg.tolerance, cfg.radii) if cfg.sequential else None
        cert = certify_mixture(std_model, rob_model, xb, alphas=cfg.sound_alphas, smoothing=cfg.smoothing,
                               sequential=sequential, inputs=Inputs(idx.tolist(), cfg.seed))
        for j, r in enumerate(recs):
            r["sound"] = {"radius": cert.radius[:, j].tolist(), "prediction": cert.prediction[:, j].tolist(),
                          "clean": cert.clean_prediction[:, j].tolist(),   # the certified classifier at x
                          "estimator": cert.estimator, "samples": int(cert.samples_used[j]) + cfg.smoothing.n0}
            if cfg.sound_only:   # the mixture's clean prediction uses h's mean over the certificate's own samples
                r["h_probs"] = _probs_list(cert.h_mean[j])
        if cfg.share_samples:    # every sample of the certificate (selection and estimation) is an i.i.d. draw
            est = SmoothingEstimate(mean=cert.h_mean, counts=torch.zeros_like(cert.h_mean),
                                    num_samples=cfg.smoothing.n0 + cfg.smoothing.num_samples)
            lower, upper = est.bounds(cfg.smoothing.delta, "soft")
            for j, r in enumerate(recs):
                r.update(h_probs=_probs_list(cert.h_mean[j]), h_lower=_probs_list(lower[j]),
                         h_upper=_probs_list(upper[j]))
    return recs


def sound_curve(records: list[dict], sound_alphas, alpha: float, grid) -> dict:
    """Certified accuracy over ``grid`` from the tight sound certificates, at the swept alpha nearest ``alpha``.

    The certificates come from :func:`robustmix.certify.certify_mixture` (Cohen-style selection samples, one
    Clopper-Pearson bound with all of delta, Theorem 2); an abstention counts as not certified.  Returns the
    same fields as :func:`certified_curve` for one alpha, and ``clean_of``: "certified" when the clean accuracy
    is the certified classifier's (the hard-vote mixture, from ``sound["clean"]``), "mean-softmax" for records
    written before they kept it (the clean accuracy is then that of the mixture with h's mean softmax, another
    classifier; rerun with --fresh for the certified one's).
    """
    if not records or "sound" not in records[0]:
        raise ConfigError("these records hold no tight sound certificates; rerun certify with --sound")
    k = min(range(len(sound_alphas)), key=lambda i: abs(sound_alphas[i] - alpha))
    labels = torch.tensor([r["label"] for r in records])
    radius = torch.tensor([r["sound"]["radius"][k] for r in records], dtype=torch.float64)
    pred = torch.tensor([r["sound"]["prediction"][k] for r in records])
    curve = certified_accuracy(radius[None], (pred == labels)[None], grid)
    a = float(sound_alphas[k])
    if all("clean" in r["sound"] for r in records):
        clean_of, clean_pred = "certified", torch.tensor([r["sound"]["clean"][k] for r in records])
    else:
        g, h = _stack(records, "g_probs"), _stack(records, "h_probs")
        clean_of, clean_pred = "mean-softmax", ((1 - a) * g + a * h).argmax(-1)
    clean = (clean_pred == labels).double().mean()
    return {"alphas": [a], "grid": [float(v) for v in grid], "certified": curve.tolist(), "clean": [float(clean)],
            "estimator": records[0]["sound"]["estimator"], "clean_of": clean_of}


def run_certify(std_model, rob_model, x, y, cfg: CertifyConfig, *, indices=None, records: Records | None = None,
                **deprecated) -> list[dict]:
    """Compute (or resume) the per-example records needed for certified curves."""
    smoother = SmoothedClassifier(rob_model, cfg.smoothing.sigma, num_samples=cfg.smoothing.num_samples, batch_size=cfg.smoothing.batch_size,
                                  seed=cfg.seed) if cfg.smoothing.sigma else None
    records = records_of(records, deprecated, "run_certify").for_run("certify", cfg.to_dict())
    return run_records(records, lambda xb, yb, idx: certify_batch(std_model, rob_model, smoother, xb, idx, cfg),
                       x, y, kind="certify", models={"std": std_model, "rob": rob_model}, indices=indices,
                       batch_size=cfg.examples_per_record_batch)


def _stack(records, key):
    return torch.tensor([r[key] for r in records], dtype=torch.float64)


def radii_from_records(records: list[dict], alpha, *, theorem: int, sigma: float | None = None, lipschitz=None,
                       sound: bool = False) -> dict:
    """Radii (k, n), the certified class, the mixture's clean predictions and the labels.

    ``theorem=1`` needs ``lipschitz`` (or ``sigma``, using the smoothed constant);
    ``theorem=2`` needs ``sigma``.  ``sound=True`` uses the stored confidence
    bounds (smoothing records only) and abstains where they do not separate.
    """
    a = check_alpha(alpha).reshape(-1)
    labels = torch.tensor([r["label"] for r in records])
    g, h = _stack(records, "g_probs"), _stack(records, "h_probs")
    pred = h.argmax(1)
    if sound:
        if "h_lower" not in records[0]:
            raise ConfigError("sound radii need smoothing records with confidence bounds")
        lower_top = _stack(records, "h_lower").gather(1, pred[:, None])[:, 0]
        upper = _stack(records, "h_upper")
    else:
        lower_top, upper = h.gather(1, pred[:, None])[:, 0], h
    if theorem == 1:
        lip = lipschitz if lipschitz is not None else (smoothed_lipschitz(sigma) if sigma else None)
        if lip is None:
            raise ConfigError("Theorem 1 needs the Lipschitz constant of h (or sigma for a smoothed h)")
        r = lipschitz_radius_from_bounds(lower_top, upper, pred, lip, a)
    elif theorem == 2:
        if not sigma:
            raise ConfigError("Theorem 2 needs sigma")
        r = smoothing_radius_from_bounds(lower_top, upper, pred, sigma, a)
    else:
        raise ConfigError("theorem must be 1 or 2")
    mixed = (1 - a[:, None, None]) * g[None] + a[:, None, None] * h[None]
    return {"alphas": a, "radii": r, "certified_class": pred, "mixture_pred": mixed.argmax(-1), "labels": labels}


def certified_curve(records, alpha, grid, **kwargs) -> dict:
    """Certified accuracy at each radius of ``grid`` (k, m) plus the mixture's clean accuracy (k,)."""
    res = radii_from_records(records, alpha, **kwargs)
    correct = res["certified_class"] == res["labels"]
    curves = certified_accuracy(res["radii"], correct, grid)
    clean = (res["mixture_pred"] == res["labels"][None]).double().mean(1)
    return {"alphas": res["alphas"].tolist(), "grid": [float(v) for v in grid], "certified": curves.tolist(),
            "clean": clean.tolist()}


def match_clean_accuracy(records, target: float, alphas=None) -> float:
    """The alpha in [1/2, 1] whose mixture clean accuracy is closest to ``target`` (largest alpha on ties)."""
    grid = torch.linspace(0.5, 1.0, 51, dtype=torch.float64) if alphas is None else check_alpha(alphas).reshape(-1)
    labels = torch.tensor([r["label"] for r in records])
    g, h = _stack(records, "g_probs"), _stack(records, "h_probs")
    mixed = (1 - grid[:, None, None]) * g[None] + grid[:, None, None] * h[None]
    acc = (mixed.argmax(-1) == labels[None]).double().mean(1)
    diff = (acc - target).abs()
    best = torch.nonzero(diff == diff.min())[:, 0].max()
    return float(grid[best])


FIG3_GRID = [round(0.05 * i, 3) for i in range(41)]   # the l2 radii of the curves


@dataclasses.dataclass(frozen=True)
class Fig3Budget:
    """The budget of every certificate of :func:`run_fig3`: noise samples and failure probability (checked as a
    :class:`~robustmix.groups.Smoothing`), the seed, and ``share_samples`` (one noise pass per image: the point
    estimates reuse the tight certificate's samples)."""

    num_samples: int = 10_000
    delta: float = 0.001
    seed: int = 0
    share_samples: bool = False

    def __post_init__(self):
        Smoothing(num_samples=self.num_samples, delta=self.delta)


def run_fig3(std_model, smoothed: tuple, baseline: tuple, lipschitz_model, x, y, budget: Fig3Budget | None = None,
             *, records: Records | None = None) -> dict:
    """The paper's Fig. 3 setting, plus Theorem 1 with a Lipschitz network.

    A smoothed h (``smoothed`` = (base model, sigma)) is mixed at the alpha whose clean accuracy matches a smoothed
    ``baseline`` = (base model, smaller sigma) certified at alpha = 1; both are certified with
    Theorem 1 (Lipschitz constant of smoothed classifiers) and Theorem 2, from the Monte-Carlo
    mean (as in the paper) and from sound simultaneous bounds.  ``lipschitz_model`` (optional) is
    certified with Theorem 1 and its guaranteed probability Lipschitz bound at several alphas.  ``budget``: the
    noise samples, delta, seed and ``share_samples`` of every certificate; ``records``: the folder of the records
    files (``records_path``) and the header's settings.
    """
    from ..certify.lipschitz import probability_lipschitz

    budget, records = budget or Fig3Budget(), records or Records()
    grid, samples = FIG3_GRID, budget.num_samples
    rec = Path(records.records_path) if records.records_path else None
    out = {"grid": grid}
    runs = {}
    sound_alphas = [round(0.5 + 0.05 * i, 2) for i in range(11)]
    for tag, (base, sig) in (("smooth", smoothed), ("baseline", baseline)):
        smoothing = Smoothing(sig, samples, min(100, samples), budget.delta, batch_size=min(samples, 2000))
        cfg = CertifyConfig(smoothing, seed=budget.seed, sound_alphas=sound_alphas, share_samples=budget.share_samples)
        runs[tag] = run_certify(std_model, base, x, y, cfg, records=records.at(
            rec / f"certify-{tag}.jsonl" if rec else None, role=tag))
    sigma, baseline_sigma = smoothed[1], baseline[1]
    base_clean = certified_curve(runs["baseline"], 1.0, grid, theorem=2, sigma=baseline_sigma)["clean"][0]
    alpha = match_clean_accuracy(runs["smooth"], base_clean, alphas=sound_alphas)
    out["rs"] = {"alpha": alpha, "baseline_clean": base_clean}
    for theorem in (1, 2):
        for sound in (False, True):
            mix = certified_curve(runs["smooth"], alpha, grid, theorem=theorem, sigma=sigma, sound=sound)
            base = certified_curve(runs["baseline"], 1.0, grid, theorem=theorem, sigma=baseline_sigma, sound=sound)
            out["rs"][f"thm{theorem}{'_sound' if sound else ''}"] = {"mixture": mix, "baseline": base}
    # Theorem 2 with the tight sound certificate (one Clopper-Pearson bound on the selected class, all of delta)
    out["rs"]["thm2_tight"] = {"mixture": sound_curve(runs["smooth"], sound_alphas, alpha, grid),
                               "baseline": sound_curve(runs["baseline"], sound_alphas, 1.0, grid)}
    if lipschitz_model is not None:
        lip = probability_lipschitz(lipschitz_model, 2)
        lip_records = run_certify(std_model, lipschitz_model, x, y, CertifyConfig(), records=records.at(
            rec / "certify-lipschitz.jsonl" if rec else None, role="lipschitz"))
        alphas = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
        out["lipschitz"] = {"lipschitz_per_class": float(lip[0]),
                            "curve": certified_curve(lip_records, alphas, grid, theorem=1, lipschitz=lip)}
    return out
