"""``robustmix verify``: re-check a saved evaluation (``evaluate --save-adversarial``) without trusting robustmix's
attack code: every input inside the eps-ball and [0, 1], the model's predictions on them, accuracy with interval."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from .._config import option, option_of
from .._io import weights_digest
from .._validation import check_eps, check_p
from ..errors import ConfigError
from ..results import VerifySummary, binomial_ci
from .common import Context, Data, Output, command, load_model

logger = logging.getLogger(__name__)

KEYS = {"x_adv", "labels", "indices", "eps", "norm", "dataset", "split", "model", "weights_sha256", "accuracy",
        "robust"}
SAFE_MODEL_FORMS = (".safetensors", ".pt2")   # what a file may name without --model: nothing that imports code


@command("verify", "re-check a file of adversarial inputs written by 'evaluate --save-adversarial'",
         "robustmix evaluate --alpha 0.7 -n 1000 --save-adversarial adv.pt --out runs/eval\n"
         "robustmix verify adv.pt --out runs/verify      # the model recorded in the file\n"
         "robustmix verify adv.pt --model mixed.pt2      # another copy of the same weights")
class VerifyCommand(Output):
    file: str = option("adversarial.pt", "the .pt file written by evaluate --save-adversarial", positional=True)
    model: str | None = option(None, "model to check (any model form); its weights must match the file's SHA-256",
                               shown="the model recorded in the file")
    norm: str | None = option(None, "threat model to hold the file to: inf (l_inf) or 2 (l_2); a file made for "
                              "another norm is refused", shown="the file's own")
    eps: float | None = option(None, "radius to hold the file to; a file made for another radius is refused",
                               shown="the file's own")
    tolerance: float = option(0.01, "outcomes that differ from the file's only where the model's margin (true "
                                    "class minus the best other output) is within +-tolerance are boundary cases "
                                    "(rounding on another device or library), counted and reported, not refused; 0: "
                                    "every difference is refused")
    data_root: str | None = option_of(Data, "data_root")

    def check(self):
        super().check()
        if not (isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < math.inf):
            raise ConfigError(f"--tolerance must be a number >= 0, got {self.tolerance!r}")

    def run(self, ctx: Context) -> VerifySummary:
        from ..data import load_dataset
        from ..mixing import MixedClassifier

        saved = read_adversarial(self.file)
        p, eps = self.check_threat_model(saved)
        x, y = load_dataset(saved["dataset"], saved["split"], self.data_root)
        spec = saved["model"]
        if self.model:
            model = load_model(self.model, saved["dataset"], ctx)
        else:
            check_named_models(spec, self.file)
            spec = {k: (find_beside(v, self.file) if k in ("model", "std", "rob") else v) for k, v in spec.items()}
            model = load_model(spec["model"], saved["dataset"], ctx) if "model" in spec else MixedClassifier(
                load_model(spec["std"], saved["dataset"], ctx), load_model(spec["rob"], saved["dataset"], ctx),
                spec["alpha"])
        if weights_digest(model) != saved["weights_sha256"]:
            raise ConfigError(f"{self.file} was written for other weights (SHA-256 {saved['weights_sha256'][:12]}..., "
                              f"this model {weights_digest(model)[:12]}...); verify it with the model it was made for")
        idx, x_adv, labels, robust = check_contents(saved, self.file, len(x), tuple(x.shape[1:]))
        if not torch.equal(labels, y[idx]):
            raise ConfigError(f"{self.file} is not a valid evaluation: its labels differ from {saved['dataset']} "
                              f"{saved['split']} at its indices")
        delta = (x_adv.double() - x[idx].double()).flatten(1)
        size = delta.abs().amax(1) if p == math.inf else delta.norm(p=p, dim=1)
        bad_ball = int((size > eps * (1 + 1e-5) + 1e-6).sum())
        bad_box = int(((x_adv < -1e-6) | (x_adv > 1 + 1e-6)).flatten(1).any(1).sum())
        if bad_ball or bad_box:
            name = "inf" if p == math.inf else "2"
            raise ConfigError(f"{self.file} is not a valid evaluation: {bad_ball} input(s) outside the l_{name} ball "
                              f"of radius {eps}, {bad_box} outside [0, 1]")
        param = next(iter(model.parameters()), None)
        device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)
        with torch.no_grad():
            out = torch.cat([model(b.to(device, dtype)).double().cpu() for b in x_adv.split(256)])
        correct = out.argmax(1) == labels
        others = out.scatter(1, labels[:, None], -math.inf).amax(1)
        margin = out.gather(1, labels[:, None])[:, 0] - others
        differ = correct != robust
        boundary = differ & (margin.abs() <= self.tolerance) & (self.tolerance > 0)
        firm = int((differ & ~boundary).sum())
        if firm:
            raise ConfigError(f"verification failed: {firm} example(s) differ from the file's outcomes with the model's "
                              f"margin beyond +-{self.tolerance:g}; accuracy on its inputs "
                              f"{100 * float(correct.double().mean()):.1f}% vs reported "
                              f"{100 * float(saved['accuracy']):.1f}% (n = {len(idx)})")
        if int(boundary.sum()):
            logger.warning("%d example(s) differ from the file's outcomes on the decision boundary (|margin| <= %g): "
                           "rounding, not a different model; the accuracy below is this machine's", int(boundary.sum()),
                           self.tolerance)
        return VerifySummary(n=len(idx), accuracy=float(correct.double().mean()),
                             ci95=list(binomial_ci(int(correct.sum()), len(idx))), claimed_accuracy=saved["accuracy"],
                             disagreements=int(differ.sum()), eps=saved["eps"],
                             norm=str(saved["norm"]), largest_perturbation=float(size.max()), file=str(self.file),
                             weights_sha256=saved["weights_sha256"], model=spec if not self.model else
                             {"model": self.model}, tolerance=float(self.tolerance),
                             smallest_margin=float(margin.abs().min()),
                             evaluation=reported_evaluation(saved.get("evaluation")))

    def check_threat_model(self, saved: dict) -> tuple[float, float]:
        """The file's (p, eps), refused before any model is loaded when it is no l_inf / l_2 ball of radius > 0, or
        not the one asked for with --norm / --eps."""
        try:
            p, eps = check_p(saved["norm"]), check_eps(saved["eps"])
        except ConfigError:
            p, eps = None, 0.0
        if p not in (2.0, math.inf) or not eps > 0:
            raise ConfigError(f"{self.file} is not a valid evaluation: its threat model (norm {saved['norm']!r}, eps "
                              f"{saved['eps']!r}) is not an l_inf or l_2 ball of finite radius > 0")
        want_p = p if self.norm is None else check_p(self.norm)
        want_eps = eps if self.eps is None else check_eps(self.eps, name="--eps")
        if want_p != p or abs(want_eps - eps) > 1e-9 * max(1.0, want_eps):
            name = {2.0: "2", math.inf: "inf"}
            raise ConfigError(f"{self.file} was made for the l_{name[p]} ball of radius {eps}, not the "
                              f"l_{name.get(want_p, want_p)} ball of radius {want_eps} asked for; verify it without "
                              "--norm/--eps to check its own threat model, or evaluate again at yours")
        return p, eps


def check_contents(saved: dict, path, size: int, shape: tuple):
    """(indices, inputs, labels, outcomes) of a saved evaluation, each checked for type, shape and consistency."""
    idx, x_adv, labels, robust = saved["indices"], saved["x_adv"], saved["labels"], saved["robust"]

    def integral(t):
        return isinstance(t, torch.Tensor) and not t.dtype.is_floating_point and not t.dtype.is_complex

    if not (integral(idx) and idx.dtype != torch.bool and idx.ndim == 1 and len(idx)):
        raise ConfigError(f"{path} is not a valid evaluation: its indices are not a non-empty 1-d integer tensor")
    if len(idx.unique()) != len(idx):
        raise ConfigError(f"{path} is not a valid evaluation: it lists {len(idx) - len(idx.unique())} example(s) more "
                          "than once; each test example may count once")
    if not (integral(robust) and robust.shape == idx.shape):
        raise ConfigError(f"{path} is not a valid evaluation: its outcomes ('robust') are not {len(idx)} booleans")
    if not (integral(labels) and labels.dtype != torch.bool and labels.shape == idx.shape):
        raise ConfigError(f"{path} is not a valid evaluation: its labels are not {len(idx)} integers")
    if not (isinstance(x_adv, torch.Tensor) and x_adv.dtype.is_floating_point):
        raise ConfigError(f"{path} is not a valid evaluation: its inputs ('x_adv') are not a floating-point tensor")
    if idx.min() < 0 or idx.max() >= size or tuple(x_adv.shape) != (len(idx), *shape):
        raise ConfigError(f"{path} does not fit the data set's split (indices below 0 or above {size - 1}, or inputs "
                          f"of shape {tuple(x_adv.shape)} where {(len(idx), *shape)} is needed)")
    if not torch.isfinite(x_adv).all():
        raise ConfigError(f"{path} is not a valid evaluation: its inputs contain NaN or inf values")
    claimed = saved["accuracy"]
    if not isinstance(claimed, (int, float)) or abs(float(claimed) - float(robust.bool().double().mean())) > 1e-9:
        raise ConfigError(f"{path} is not a valid evaluation: its accuracy {claimed!r} is not the mean of its "
                          "outcomes")
    return idx.long(), x_adv, labels.long(), robust.bool()


def reported_evaluation(e) -> dict | None:
    """What the evaluation recorded beside its inputs, kept only where every field has its type (it is shown, not
    checked: verify recomputes the accuracy itself)."""
    if not isinstance(e, dict):
        return None
    aa = e.get("autoattack")
    fields = {"clean_accuracy": isinstance(e.get("clean_accuracy"), (int, float)),
              "forward_passes": isinstance(e.get("forward_passes"), int),
              "autoattack_flags": isinstance(e.get("autoattack_flags"), list)
              and all(isinstance(w, str) for w in e["autoattack_flags"]),
              "autoattack": isinstance(aa, dict) and isinstance(aa.get("accuracy"), (int, float))
              and isinstance(aa.get("ci95"), (list, tuple)) and len(aa["ci95"]) == 2}
    return {k: e[k] for k, ok in fields.items() if ok} or None


def find_beside(name, path):
    """A model file named relative to where evaluate ran: as given, else relative to the folders above ``path``."""
    if not isinstance(name, str) or not name.endswith(SAFE_MODEL_FORMS) or Path(name).is_absolute() \
            or Path(name).exists():
        return name
    for folder in Path(path).resolve().parents:
        if (folder / name).is_file():
            return str(folder / name)
    return name


def check_named_models(spec, path) -> None:
    """Without --model, load only what cannot run code: zoo names, .safetensors and .pt2 files."""
    if not isinstance(spec, dict) or not ({"model"} <= set(spec) or {"std", "rob", "alpha"} <= set(spec)):
        raise ConfigError(f"{path} is not a robustmix adversarial file (its model record is {spec!r})")
    for key in ("model", "std", "rob"):
        name = spec.get(key)
        if name is not None and ":" in str(name) and not str(name).endswith(SAFE_MODEL_FORMS):
            raise ConfigError(f"{path} names its model as {name!r}, which would import code or fetch weights; "
                              f"verify it with --model {name} if you trust that source")


def read_adversarial(path: str) -> dict:
    """The saved evaluation, read without running pickled code (``weights_only``); refused if incomplete."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; write one with 'robustmix evaluate ... --save-adversarial {path}'") \
            from None
    except Exception as exc:  # noqa: BLE001  (a truncated or foreign file fails in many ways inside torch.load)
        raise ConfigError(f"{path} is not a readable robustmix adversarial file ({type(exc).__name__}); it may be "
                          "truncated: write it again with evaluate --save-adversarial") from None
    if not isinstance(data, dict) or not KEYS <= set(data):
        raise ConfigError(f"{path} is not a robustmix adversarial file (missing "
                          f"{sorted(KEYS - set(data)) if isinstance(data, dict) else 'everything'})")
    return data

