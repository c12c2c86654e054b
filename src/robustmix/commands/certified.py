"""Commands that certify: certify (Theorems 1 and 2, sound or point-estimate radii) and fig3 (the paper's Fig. 3)."""

from __future__ import annotations

import dataclasses
import math

from .._config import option, subset
from .._validation import check_alpha
from ..errors import ConfigError
from ..experiments.certified import CertifyConfig, certified_curve, run_certify, run_fig3, sound_curve
from ..certify.mixture import SEQUENTIAL_RULES
from ..experiments.certified_front import FrontConfig
from ..results import CertifyFrontSummary, CertifySummary, Fig3Summary, Summary
from ..experiments.runner import is_main_process
from .common import Context, Data, Models, OnPair, Output, command, load_data, load_model

SMOOTHED_H = "fmnist-noise-0.50-cnn"


@dataclasses.dataclass
class Certified(OnPair, Output, Models, Data):
    """Shared by certify and fig3: a smoothed h by default, 10,000 noise samples and delta 0.001."""

    rob: str = option(SMOOTHED_H, "robust model h: a noise-trained base model to smooth (or, with --lipschitz, "
                                  "a network with a known Lipschitz bound)")
    num_samples: int = option(CertifyConfig.num_samples, "noise samples per image", flags=("--samples",))
    delta: float = option(CertifyConfig.delta, "failure probability of the sound bounds")


@command("certify", "certified radii and accuracy curves (Theorems 1 and 2, Fig. 3)",
         "robustmix certify --std fmnist-std-cnn --rob fmnist-noise-0.50-cnn --sigma 0.5 --sound -n 500 --out runs/rs\n"
         "robustmix certify --std fmnist-std-cnn --rob fmnist-lipschitz --lipschitz --out runs/lip")
class CertifyCommand(Certified):
    sigma: float | None = option(None, "smoothing noise of h (randomized smoothing); give this or --lipschitz")
    lipschitz: bool = option(False, "h has a known Lipschitz bound (e.g. fmnist-lipschitz): Theorem 1")
    alphas: list = option(help="weights of h to certify", factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], of=float)
    sound: bool = option(False, "sound certificates that hold with probability 1 - delta: selection samples, one "
                                "Clopper-Pearson bound on the selected class (Cohen et al.'s CERTIFY at alpha = 1), "
                                "Theorem 2 for the mixture; abstains when unsure (without it: point estimates)")
    num_samples: int = option(CertifyConfig.num_samples, "noise samples per image; with --sound, the estimation "
                              "samples, drawn after the --n0 selection samples (n0 + samples in all)",
                              flags=("--samples",))
    n0: int = option(CertifyConfig.n0, "with --sound: selection samples per image, which pick the class; drawn on top "
                                       "of --samples")
    sequential: bool = option(False, "with --sound: sample in rounds and stop each input once its certificate is "
                                     "settled (a confidence sequence keeps 1 - delta under any stopping)")
    sequential_rule: str = option(CertifyConfig.sequential_rule, "with --sequential: 'confidence-sequence' (stop "
                                  "after any sample) or 'doubling-looks' (alpha spending over doubling looks, the "
                                  "earlier rule)", choices=list(SEQUENTIAL_RULES))
    tolerance: float | None = option(None, "with --sequential: l2 radius an input may leave on the table (inf: only "
                                           "--radii steer stopping)", shown="inf with --radii, else 0.1")
    radii: list | None = option(None, "with --sequential: the radii you will report, e.g. 0.25 0.5 0.75 1.0", of=float)

    def check(self):
        if self.sigma is not None and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise ConfigError(f"--sigma must be a positive number (the smoothing noise), got {self.sigma}")
        if (self.sigma is None) == (not self.lipschitz):
            raise ConfigError("give exactly one of --sigma SIGMA (smoothed h) or --lipschitz (h with a known bound)")
        check_alpha(self.alphas)
        if (self.sequential or self.radii) and not (self.sound and self.sigma):
            raise ConfigError("--sequential and --radii apply to the tight sound certificate: add --sound (with "
                              "--sigma)")
        if self.radii and not self.sequential:
            raise ConfigError("--radii steers sequential sampling: add --sequential")
        if self.sequential_rule != CertifyConfig.sequential_rule and not self.sequential:
            raise ConfigError("--sequential-rule applies to sequential sampling: add --sequential")
        if self.tolerance is not None and not self.sequential:
            raise ConfigError("--tolerance applies to sequential sampling: add --sequential")
        if self.sound and self.num_samples < self.n0:
            raise ConfigError(f"--samples ({self.num_samples}) must be at least --n0 ({self.n0}): the estimation "
                              "pass is the larger one (Cohen et al. use 100,000 with n0 = 100); the n0 selection "
                              "samples are drawn on top of it")
        self.experiment()   # CertifyConfig's own checks, now

    def experiment(self) -> CertifyConfig:
        sound = bool(self.sound and self.sigma)
        return subset(self, CertifyConfig, sound_alphas=list(self.alphas) if sound else None, sound_only=sound,
                      tolerance=self.tolerance)

    def run(self, ctx: Context) -> Summary:
        from ..certify import probability_lipschitz

        cfg = self.experiment()
        x, y, g, h = self.load(ctx)
        records = run_certify(g, h, x, y, cfg, **self.records(ctx))
        if not is_main_process():
            return None
        grid = sorted({round(0.05 * i, 3) for i in range(41)} | set(self.radii or []))   # the reported radii exactly
        if self.lipschitz:
            lip = probability_lipschitz(h.cpu(), 2, getattr(h, "input_shape", None) or tuple(x.shape[1:]))
            curves = {"theorem1": certified_curve(records, self.alphas, grid, theorem=1, lipschitz=lip)}
        elif cfg.sound_only:   # the tight sound certificate of Theorem 2 (Cohen-style, one bound with all of delta)
            per_alpha = [sound_curve(records, cfg.sound_alphas, a, grid) for a in cfg.sound_alphas]
            curves = {"theorem2": {"clean": [c["clean"][0] for c in per_alpha],
                                   "certified": [c["certified"][0] for c in per_alpha]}}
        else:
            curves = {f"theorem{t}": certified_curve(records, self.alphas, grid, theorem=t, sigma=self.sigma)
                      for t in (1, 2)}
        settings = {**dataclasses.asdict(self), "estimator": cfg.estimator}
        if cfg.sound_only:   # every noise sample an image drew: n0 selection + the estimation samples used
            settings["samples_per_image"] = sum(r["sound"]["samples"] for r in records) / len(records)
            settings["clean_of"] = per_alpha[0]["clean_of"]
        elif self.sigma:
            settings["samples_per_image"] = cfg.num_samples
        return CertifySummary(n=len(records), alphas=list(self.alphas), grid=grid,
                              curves={k: {"clean": c["clean"], "certified": c["certified"]} for k, c in curves.items()},
                              settings=settings)


@command("fig3", "Fig. 3: certified accuracy of the mixture vs a smaller-sigma smoothed baseline of equal clean "
                 "accuracy",
         "robustmix fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.25-cnn --baseline-sigma "
         "0.25 --lipschitz-model fmnist-lipschitz -n 500 --out results/fig3")
class Fig3Command(Certified):
    rob: str = option(SMOOTHED_H, "robust model h: a noise-trained base model to smooth with --sigma")
    sigma: float = option(0.5, "smoothing noise of --rob")
    baseline: str = option("fmnist-noise-0.25-cnn", "base model of the smoothed baseline")
    baseline_sigma: float = option(0.25, "smoothing noise of the baseline (smaller than --sigma)")
    lipschitz_model: str | None = option(None, "optional h with a known Lipschitz bound, certified with Theorem 1")
    share_samples: bool = option(False, "one noise pass per image instead of two: the point-estimate curves and "
                                        "union bounds reuse the tight certificate's samples (about half the time)")

    def check(self):
        CertifyConfig(sigma=self.sigma, num_samples=self.num_samples, delta=self.delta)
        CertifyConfig(sigma=self.baseline_sigma)
        if self.baseline_sigma >= self.sigma:
            raise ConfigError("--baseline-sigma should be smaller than --sigma (the paper's matched-accuracy "
                              "baseline)")

    def run(self, ctx: Context) -> Summary:
        x, y, g, h = self.load(ctx)
        base = load_model(self.baseline, self, ctx, x)
        lip = load_model(self.lipschitz_model, self, ctx, x) if self.lipschitz_model else None
        result = run_fig3(g, h, self.sigma, base, self.baseline_sigma, lip, x, y, samples=self.num_samples,
                          delta=self.delta, seed=self.seed, records_dir=self.out_path, fresh=self.fresh,
                          share_samples=self.share_samples,
                          progress=ctx.progress,
                          settings={"std": self.std, "smooth": self.rob, "baseline": self.baseline,
                                    "lip": self.lipschitz_model, "dataset": self.dataset, "split": self.split,
                                    **self.data_id()})
        return Fig3Summary(settings={"smooth_sigma": self.sigma, "baseline_sigma": self.baseline_sigma,
                                     "certify_samples": self.num_samples, "certify_delta": self.delta,
                                     **dataclasses.asdict(self)},
                           certified=result, n=len(x))


NOISE_MODELS = ["fmnist-noise-0.12-cnn", "fmnist-noise-0.25-cnn", "fmnist-noise-0.50-cnn"]


@command("certify-front", "clean against sound certified accuracy for the mixture, ACES selection, smaller sigma "
                          "and a Lipschitz h, on one front",
         "robustmix certify-front -n 500 --out results/certified-front\n"
         "robustmix certify-front --sigmas 0.25 0.5 --noise-models fmnist-noise-0.25-cnn fmnist-noise-0.50-cnn "
         "--lipschitz-model none --samples 2000 -n 100")
class CertifyFrontCommand(Output, Data):
    std: str = option("fmnist-std-cnn", "accurate model g (a zoo name, .safetensors with a card, .pt2, ARCH@WEIGHTS.pt or module:function)")
    noise_models: list = option(help="noise-trained base models of the smoothed h, one per --sigmas",
                                factory=lambda: list(NOISE_MODELS), of=str)
    sigmas: list = option(help="smoothing noise of each --noise-models entry",
                          factory=lambda: list(FrontConfig().sigmas), of=float)
    lipschitz_model: str = option("fmnist-lipschitz", "h with a guaranteed Lipschitz bound (Theorem 1 and the logit "
                                                      "ball), or 'none'")
    lipschitz_temperature: float = option(FrontConfig.lipschitz_temperature, "logit-ball mixtures use this times "
                                          "the Lipschitz h's logits (a sharper h, certified with scaled bounds)")
    alphas: list = option(help="mixture weights of h (Theorem 2 and the Lipschitz mixtures)",
                          factory=lambda: list(FrontConfig().alphas), of=float)
    thresholds: list = option(help="ACES entropy-selector thresholds (nats, in [0, ln classes]): h answers where "
                                   "its entropy under noise is at most the threshold",
                              factory=lambda: list(FrontConfig().thresholds), of=float)
    radii: list = option(help="l2 radii at which certified accuracy is reported",
                         factory=lambda: list(FrontConfig().radii), of=float)
    num_samples: int = option(FrontConfig.num_samples, "estimation noise samples per image and sigma",
                              flags=("--samples",))
    n0: int = option(FrontConfig.n0, "selection samples per image and sigma (pick h's class)")
    delta: float = option(FrontConfig.delta, "failure probability of every certificate")
    n: int = option(500, "number of examples, from the start of the split", flags=("-n", "--num-examples"))

    def check(self):
        from ..data import dataset_info

        if len(self.noise_models) != len(self.sigmas):
            raise ConfigError(f"{len(self.noise_models)} --noise-models for {len(self.sigmas)} --sigmas: give one "
                              "noise-trained model per sigma, in the same order")
        self.experiment()
        c = dataset_info(self.dataset).num_classes
        if not self.thresholds:
            raise ConfigError("--thresholds is empty: give at least one entropy threshold, e.g. 0.1 0.5 1.0")
        bad = [t for t in self.thresholds if not 0 <= t <= math.log(c)]
        if bad:
            raise ConfigError(f"--thresholds {bad} lie outside the entropy selector's range [0, {math.log(c):.4g}] "
                              f"(entropy of {c} classes is at most ln {c})")

    def experiment(self) -> FrontConfig:
        return subset(self, FrontConfig)

    def run(self, ctx: Context) -> Summary:
        from ..experiments.certified_front import best_by_clean, run_front

        cfg = self.experiment()
        x, y = load_data(self)
        g = load_model(self.std, self, ctx, x)
        smoothed = [(s, load_model(m, self, ctx, x)) for s, m in zip(self.sigmas, self.noise_models)]
        lip = None if self.lipschitz_model == "none" else load_model(self.lipschitz_model, self, ctx, x)
        result = run_front(g, smoothed, lip, x, y, cfg, records_dir=self.out_path, fresh=self.fresh,
                           progress=ctx.progress, settings=self.data_settings() | {"std": self.std})
        points = result["points"]
        # read the front every half point, from the least accurate smoothed h alone to the most accurate classifier
        low = min((p["clean"] for p in points if p["family"] == "cohen"), default=min(p["clean"] for p in points))
        top = max(p["clean"] for p in points)
        levels = [round(v / 200, 3) for v in range(math.floor(low * 200), math.floor(top * 200 + 1e-9) + 1)]
        verdict = {str(r): best_by_clean(points, levels, r) for r in self.radii}
        return CertifyFrontSummary(n=len(x), radii=list(self.radii), points=points, verdict=verdict,
                                   settings=dataclasses.asdict(self))
