"""Commands that certify: certify (Theorems 1 and 2, sound or point-estimate radii) and fig3 (the paper's Fig. 3)."""

from __future__ import annotations

import math
from typing import Literal

from .._config import flat, group, option
from .._validation import check_alpha
from ..errors import ConfigError
from ..experiments.certified import CertifyConfig, Fig3Budget, certified_curve, run_certify, run_fig3, sound_curve
from ..experiments.certified_front import FrontConfig
from ..results import CertifyFrontSummary, CertifySummary, Fig3Summary, Summary
from ..experiments.runner import Records, is_main_process
from ..groups import Smoothing, seed_option
from .common import (Command, Context, Data, Models, Output, command, load_data, load_examples, load_model,
                     records_in)

SMOOTHED_H = "fmnist-noise-0.50-cnn"


ROB_HELP = ("robust model h: a noise-trained base model to smooth (or, with --lipschitz, a network with a known "
            "Lipschitz bound)")


@command("certify", "certified radii and accuracy curves (Theorems 1 and 2, Fig. 3)",
         "robustmix certify --std fmnist-std-cnn --rob fmnist-noise-0.50-cnn --sigma 0.5 --sound -n 500 --out runs/rs\n"
         "robustmix certify --std fmnist-std-cnn --rob fmnist-lipschitz --lipschitz --out runs/lip")
class CertifyCommand(Command):
    models: Models = group(Models, rob=SMOOTHED_H, help={"rob": ROB_HELP})
    inputs: Data = group(Data)
    smoothing: Smoothing = group(Smoothing, help={
        "sigma": "smoothing noise of h (randomized smoothing); give this or --lipschitz",
        "num_samples": "noise samples per image; with --sound, the estimation samples, drawn after the --n0 selection "
                       "samples (n0 + samples in all)",
        "n0": "with --sound: selection samples per image, which pick the class; drawn on top of --samples"})
    lipschitz: bool = option(False, "h has a known Lipschitz bound (e.g. fmnist-lipschitz): Theorem 1")
    alphas: list = option(help="weights of h to certify", factory=lambda: [0.5, 0.6, 0.7, 0.8, 0.9, 1.0], of=float)
    sound: bool = option(False, "sound certificates that hold with probability 1 - delta: selection samples, one "
                                "Clopper-Pearson bound on the selected class (Cohen et al.'s CERTIFY at alpha = 1), "
                                "Theorem 2 for the mixture; abstains when unsure (without it: point estimates)")
    sequential: bool = option(False, "with --sound: sample in rounds and stop each input once its certificate is "
                                     "settled (a confidence sequence keeps 1 - delta under any stopping)")
    sequential_rule: Literal["confidence-sequence", "doubling-looks"] = option(
        CertifyConfig.sequential_rule, "with --sequential: 'confidence-sequence' (stop after any sample) or "
                                       "'doubling-looks' (alpha spending over doubling looks, the earlier rule)")
    tolerance: float | None = option(None, "with --sequential: l2 radius an input may leave on the table (inf: only "
                                           "--radii steer stopping)", shown="inf with --radii, else 0.1")
    radii: list | None = option(None, "with --sequential: the radii you will report, e.g. 0.25 0.5 0.75 1.0", of=float)
    seed: int = seed_option()
    output: Output = group(Output)

    def check(self):
        sigma = self.smoothing.sigma
        if (sigma is None) == (not self.lipschitz):
            raise ConfigError("give exactly one of --sigma SIGMA (smoothed h) or --lipschitz (h with a known bound)")
        check_alpha(self.alphas)
        if (self.sequential or self.radii) and not (self.sound and sigma):
            raise ConfigError("--sequential and --radii apply to the tight sound certificate: add --sound (with "
                              "--sigma)")
        if self.radii and not self.sequential:
            raise ConfigError("--radii steers sequential sampling: add --sequential")
        if self.sequential_rule != CertifyConfig.sequential_rule and not self.sequential:
            raise ConfigError("--sequential-rule applies to sequential sampling: add --sequential")
        if self.tolerance is not None and not self.sequential:
            raise ConfigError("--tolerance applies to sequential sampling: add --sequential")
        if self.smoothing.n0 != Smoothing().n0 and not self.sound:
            raise ConfigError("--n0 sets the selection samples of the sound certificate: add --sound (the point "
                              "estimates use --samples only)")
        self.experiment()   # CertifyConfig's own checks, now

    def experiment(self) -> CertifyConfig:
        sound = bool(self.sound and self.smoothing.sigma)
        return CertifyConfig(self.smoothing, seed=self.seed, sound_alphas=list(self.alphas) if sound else None,
                             sound_only=sound, sequential=self.sequential, tolerance=self.tolerance, radii=self.radii,
                             sequential_rule=self.sequential_rule)

    def run(self, ctx: Context) -> Summary:
        from ..certify import probability_lipschitz

        cfg, sigma = self.experiment(), self.smoothing.sigma
        x, y, g, h = load_examples(self, ctx)
        records = run_certify(g, h, x, y, cfg, records=records_in(self, ctx))
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
            curves = {f"theorem{t}": certified_curve(records, self.alphas, grid, theorem=t, sigma=sigma)
                      for t in (1, 2)}
        settings = {**flat(self), "estimator": cfg.estimator}
        if cfg.sound_only:   # every noise sample an image drew: n0 selection + the estimation samples used
            settings["samples_per_image"] = sum(r["sound"]["samples"] for r in records) / len(records)
            settings["clean_of"] = per_alpha[0]["clean_of"]
        elif sigma:
            settings["samples_per_image"] = cfg.smoothing.num_samples
        return CertifySummary(n=len(records), alphas=list(self.alphas), grid=grid,
                              curves={k: {"clean": c["clean"], "certified": c["certified"]} for k, c in curves.items()},
                              settings=settings)


@command("fig3", "Fig. 3: certified accuracy of the mixture vs a smaller-sigma smoothed baseline of equal clean "
                 "accuracy",
         "robustmix fig3 --rob fmnist-noise-0.50-cnn --sigma 0.5 --baseline fmnist-noise-0.25-cnn --baseline-sigma "
         "0.25 --lipschitz-model fmnist-lipschitz -n 500 --out results/fig3")
class Fig3Command(Command):
    models: Models = group(Models, rob=SMOOTHED_H,
                           help={"rob": "robust model h: a noise-trained base model to smooth with --sigma"})
    inputs: Data = group(Data)
    smoothing: Smoothing = group(Smoothing, only=("sigma", "num_samples", "delta"), sigma=0.5,
                                 help={"sigma": "smoothing noise of --rob"})
    baseline: str = option("fmnist-noise-0.25-cnn", "base model of the smoothed baseline")
    baseline_sigma: float = option(0.25, "smoothing noise of the baseline (smaller than --sigma)")
    lipschitz_model: str | None = option(None, "optional h with a known Lipschitz bound, certified with Theorem 1")
    share_samples: bool = option(False, "one noise pass per image instead of two: the point-estimate curves and "
                                        "union bounds reuse the tight certificate's samples (about half the time)")
    seed: int = seed_option()
    output: Output = group(Output)

    def check(self):
        if self.smoothing.sigma is None:
            raise ConfigError("fig3 smooths --rob: give --sigma")
        Smoothing(sigma=self.baseline_sigma)   # the baseline's noise, checked as any sigma
        if self.baseline_sigma >= self.smoothing.sigma:
            raise ConfigError("--baseline-sigma should be smaller than --sigma (the paper's matched-accuracy "
                              "baseline)")

    def run(self, ctx: Context) -> Summary:
        s, data = self.smoothing, self.inputs
        x, y, g, h = load_examples(self, ctx)
        base = load_model(self.baseline, data, ctx, x)
        lip = load_model(self.lipschitz_model, data, ctx, x) if self.lipschitz_model else None
        budget = Fig3Budget(s.num_samples, s.delta, self.seed, self.share_samples)
        result = run_fig3(g, (h, s.sigma), (base, self.baseline_sigma), lip, x, y, budget, records=Records(
            self.output.out_path, {"std": self.models.std, "smooth": self.models.rob, "baseline": self.baseline,
                                   "lip": self.lipschitz_model, "dataset": data.dataset, "split": data.split,
                                   **data.data_id()}, self.output.fresh, ctx.progress))
        return Fig3Summary(settings={"smooth_sigma": s.sigma, "baseline_sigma": self.baseline_sigma,
                                     "certify_samples": s.num_samples, "certify_delta": s.delta, **flat(self)},
                           certified=result, n=len(x))


NOISE_MODELS = ["fmnist-noise-0.12-cnn", "fmnist-noise-0.25-cnn", "fmnist-noise-0.50-cnn"]


@command("certify-front", "clean against sound certified accuracy for the mixture, ACES selection, smaller sigma "
                          "and a Lipschitz h, on one front",
         "robustmix certify-front -n 500 --out results/certified-front\n"
         "robustmix certify-front --sigmas 0.25 0.5 --noise-models fmnist-noise-0.25-cnn fmnist-noise-0.50-cnn "
         "--lipschitz-model none --samples 2000 -n 100")
class CertifyFrontCommand(Command):
    std: str = option("fmnist-std-cnn", "accurate model g (a zoo name, .safetensors with a card, .pt2, ARCH@WEIGHTS.pt or module:function)")
    inputs: Data = group(Data, n=500)
    noise_models: list = option(help="noise-trained base models of the smoothed h, one per --sigmas",
                                factory=lambda: list(NOISE_MODELS), of=str)
    front: FrontConfig = group(FrontConfig)
    lipschitz_model: str = option("fmnist-lipschitz", "h with a guaranteed Lipschitz bound (Theorem 1 and the logit "
                                                      "ball), or 'none'")
    output: Output = group(Output)

    def check(self):
        from ..data import dataset_info

        if len(self.noise_models) != len(self.front.sigmas):
            raise ConfigError(f"{len(self.noise_models)} --noise-models for {len(self.front.sigmas)} --sigmas: give "
                              "one noise-trained model per sigma, in the same order")
        c = dataset_info(self.inputs.dataset).num_classes
        bad = [t for t in self.front.thresholds if not 0 <= t <= math.log(c)]
        if bad:
            raise ConfigError(f"--thresholds {bad} lie outside the entropy selector's range [0, {math.log(c):.4g}] "
                              f"(entropy of {c} classes is at most ln {c})")

    def run(self, ctx: Context) -> Summary:
        from ..experiments.certified_front import best_by_clean, run_front

        data = self.inputs
        x, y = load_data(data)
        g = load_model(self.std, data, ctx, x)
        smoothed = [(s, load_model(m, data, ctx, x)) for s, m in zip(self.front.sigmas, self.noise_models)]
        lip = None if self.lipschitz_model == "none" else load_model(self.lipschitz_model, data, ctx, x)
        result = run_front(g, smoothed, lip, x, y, self.front,
                           records=records_in(self, ctx, self.output.out_path, std=self.std))
        points = result["points"]
        # read the front every half point, from the least accurate smoothed h alone to the most accurate classifier
        low = min((p["clean"] for p in points if p["family"] == "cohen"), default=min(p["clean"] for p in points))
        top = max(p["clean"] for p in points)
        levels = [round(v / 200, 3) for v in range(math.floor(low * 200), math.floor(top * 200 + 1e-9) + 1)]
        verdict = {str(r): best_by_clean(points, levels, r) for r in self.front.radii}
        return CertifyFrontSummary(n=len(x), radii=list(self.front.radii), points=points, verdict=verdict,
                                   settings=flat(self))
