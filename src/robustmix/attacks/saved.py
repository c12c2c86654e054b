"""Saved worst-case inputs (``robustmix evaluate --save-adversarial F.pt``) and their re-check (``robustmix verify``).

A saved evaluation is one ``torch.save`` file of tensors and plain Python values, read back with
``weights_only=True`` (reading it runs no code):

* ``x_adv`` (n, *image) floats: each example's worst-case input (its clean image where no attack found an
  error); ``indices`` (n,) distinct positions in the split; ``labels`` (n,) the split's labels there;
  ``robust`` (n,) booleans, whether the model classified the input correctly; ``accuracy``, their mean;
* ``eps`` and ``norm`` (``"inf"`` or ``"2"``), ``dataset`` and ``split``: the threat model and the data;
* ``model``, how evaluate built the model (``{"model": spec}`` or ``{"std", "rob", "alpha", ...}``), and
  ``weights_sha256``, the SHA-256 of its weights (:func:`robustmix._io.weights_digest`);
* ``format`` (:data:`FORMAT`) and ``evaluation``: what the evaluation reported beside its inputs (clean
  accuracy, AutoAttack standard alone, AutoAttack's flags, forward passes per prediction).  These are claims:
  :func:`verify` checks their types and shows them apart, unchecked.

What :func:`verify` proves, and only this: every saved input lies in the eps-ball around its test image and in
[0, 1], so each one the model misclassifies is an adversarial example; hence on these n test images (these
indices) the model's robust accuracy is at most the fraction of saved inputs it classifies correctly.  It says
nothing about other test images (the index range is reported, so a hand-picked subset shows) and nothing about
how strong the attacks were (a weak attack only gives a larger bound).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import shlex

import torch

from .._binomial import binomial_ci
from .._io import atomic_write_bytes, weights_digest
from .._validation import check_eps, check_p, model_device
from ..errors import ConfigError, VerificationError
from ..results import VerifySummary

logger = logging.getLogger(__name__)

FORMAT = "robustmix-adversarial-1"
KEYS = ("x_adv", "labels", "indices", "robust", "eps", "norm", "dataset", "split", "model", "weights_sha256",
        "accuracy")
REWRITE = "write it again with 'robustmix evaluate ... --save-adversarial FILE.pt'"


def invalid(where: str, what: str) -> ConfigError:
    """The one-line refusal of a file that is no valid evaluation (exit 2 on the command line)."""
    return ConfigError(f"{where} is not a valid evaluation: {what}; {REWRITE}")


@dataclasses.dataclass
class SavedEvaluation:
    """The contents of a saved evaluation, each field checked for type and consistency when it is built.

    What needs the data set (indices inside the split, the split's labels, the eps-ball around its images) is
    checked by :func:`verify`.  ``file`` names where it was read from, for messages; it is not saved.
    """

    x_adv: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    robust: torch.Tensor
    eps: float
    norm: str
    dataset: str
    split: str
    model: dict
    weights_sha256: str
    accuracy: float
    evaluation: dict | None = None
    file: str = ""

    def __post_init__(self):
        where = self.file or "the saved evaluation"

        def refuse(what):
            raise invalid(where, what)

        idx, robust, labels, x_adv = self.indices, self.robust, self.labels, self.x_adv
        if not (_integral(idx) and idx.dtype != torch.bool and idx.ndim == 1 and len(idx)):
            refuse("its indices are not a non-empty 1-d integer tensor")
        if len(idx.unique()) != len(idx):
            refuse(f"it lists {len(idx) - len(idx.unique())} example(s) more than once; each test example may "
                   "count once")
        if idx.min() < 0:
            refuse("its indices include negative numbers")
        if not (_integral(robust) and robust.shape == idx.shape and ((robust == 0) | (robust == 1)).all()):
            refuse(f"its outcomes ('robust') are not {len(idx)} booleans")
        if not (_integral(labels) and labels.dtype != torch.bool and labels.shape == idx.shape):
            refuse(f"its labels are not {len(idx)} integers")
        if not (isinstance(x_adv, torch.Tensor) and x_adv.dtype.is_floating_point):
            refuse("its inputs ('x_adv') are not a floating-point tensor")
        if x_adv.ndim < 2 or len(x_adv) != len(idx):
            refuse(f"its inputs ('x_adv') have shape {tuple(x_adv.shape)}, not one image for each of its {len(idx)} "
                   "indices")
        if not torch.isfinite(x_adv).all():
            refuse("its inputs contain NaN or inf values")
        try:
            p, eps = check_p(self.norm), check_eps(self.eps)
        except ConfigError:
            p, eps = None, 0.0
        if p not in (2.0, math.inf) or not eps > 0:
            refuse(f"its threat model (norm {self.norm!r}, eps {self.eps!r}) is not an l_inf or l_2 ball of finite "
                   "radius > 0")
        for name in ("dataset", "split"):
            if not isinstance(getattr(self, name), str):
                refuse(f"its {name} {getattr(self, name)!r} is not a name")
        record = self.model
        if not (isinstance(record, dict) and ({"model"} <= set(record) or {"std", "rob", "alpha"} <= set(record))
                and all(isinstance(record.get(k), (str, type(None))) for k in ("model", "std", "rob"))
                and _number(record.get("alpha", 0.0))):
            raise ConfigError(f"{where} is not a robustmix adversarial file (its model record is {record!r}); "
                              f"{REWRITE}")
        if not (isinstance(self.weights_sha256, str) and len(self.weights_sha256) == 64
                and all(c in "0123456789abcdef" for c in self.weights_sha256)):
            refuse(f"its weights_sha256 {self.weights_sha256!r} is not a SHA-256 digest")
        if not _number(self.accuracy) or abs(float(self.accuracy) - float(robust.double().mean())) > 1e-9:
            refuse(f"its accuracy {self.accuracy!r} is not the mean of its outcomes")
        self.indices, self.labels, self.robust = idx.long(), labels.long(), robust.bool()
        self.eps, self.norm, self.accuracy = float(self.eps), str(self.norm), float(self.accuracy)
        self.evaluation = _claims(self.evaluation, refuse)

    @property
    def p(self) -> float:
        return check_p(self.norm)

    def to_payload(self) -> dict:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "file"}
        return {**fields, "format": FORMAT}

    def save(self, path) -> None:
        """Write the file atomically (a reader sees the old file or the new one, never a torn one)."""
        buf = io.BytesIO()
        torch.save(self.to_payload(), buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def from_payload(cls, data, file: str = "") -> SavedEvaluation:
        if not isinstance(data, dict) or not set(KEYS) <= set(data):
            missing = sorted(set(KEYS) - set(data)) if isinstance(data, dict) else "everything"
            raise ConfigError(f"{file or 'the saved evaluation'} is not a robustmix adversarial file (missing "
                              f"{missing}); write one with 'robustmix evaluate ... --save-adversarial FILE.pt'")
        return cls(**{k: data[k] for k in KEYS}, evaluation=data.get("evaluation"), file=str(file))


def read_saved(path) -> SavedEvaluation:
    """The saved evaluation at ``path``, read without running pickled code (``weights_only``) and checked."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found; write one with 'robustmix evaluate ... --save-adversarial {path}'") \
            from None
    except Exception as exc:  # noqa: BLE001  (a truncated or foreign file fails in many ways inside torch.load)
        raise ConfigError(f"{path} is not a readable robustmix adversarial file ({type(exc).__name__}); it may be "
                          "truncated: write it again with evaluate --save-adversarial") from None
    return SavedEvaluation.from_payload(data, str(path))


def model_options(record: dict) -> str:
    """The options of ``robustmix evaluate`` / ``verify`` that rebuild a model record: ``--model M`` or
    ``--std G --rob H --alpha A`` (alpha exactly, since it is part of the weights)."""
    if "model" in record:
        return f"--model {shlex.quote(str(record['model']))}"
    return (f"--std {shlex.quote(str(record['std']))} --rob {shlex.quote(str(record['rob']))} "
            f"--alpha {record['alpha']!r}")


def verify(model, x: torch.Tensor, y: torch.Tensor, saved: SavedEvaluation, *, tolerance: float = 0.01,
           batch_size: int = 256) -> VerifySummary:
    """Re-check ``saved`` on ``model``; ``x``, ``y`` are the clean split its indices point into.

    Checks, without trusting the attacks that found the inputs: the model's weights are the file's (SHA-256),
    the indices and labels are the split's, every input lies in the eps-ball around its test image and in
    [0, 1], and the model's own predictions give the file's outcomes.  An outcome may differ where the model's
    margin (true class minus the best other output) is within +-``tolerance``: rounding on another device or
    library; such examples are counted and logged.  The clean accuracy on the same test images is recomputed.

    Raises :class:`ConfigError` for a wrong model or a file that is no valid evaluation (exit 2 on the command
    line) and :class:`VerificationError` when an outcome differs beyond the tolerance (exit 3).
    """
    where = saved.file or "the saved evaluation"
    if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < math.inf):
        raise ConfigError(f"tolerance must be a number >= 0, got {tolerance!r}")
    digest = weights_digest(model)
    if digest != saved.weights_sha256:
        raise ConfigError(f"{where} was written for other weights (SHA-256 {saved.weights_sha256[:12]}..., this model "
                          f"{digest[:12]}...); verify it with the model it was made for, recorded as "
                          f"{model_options(saved.model)}")
    idx, x_adv, labels = saved.indices, saved.x_adv, saved.labels
    if idx.max() >= len(x) or tuple(x_adv.shape[1:]) != tuple(x.shape[1:]):
        raise invalid(where, f"it does not fit {saved.dataset} {saved.split} (indices above {len(x) - 1}, or inputs "
                             f"of shape {tuple(x_adv.shape)} where {(len(idx), *x.shape[1:])} is needed)")
    if not torch.equal(labels, y.cpu()[idx].long()):
        raise invalid(where, f"its labels differ from {saved.dataset} {saved.split} at its indices")
    clean = x.cpu()[idx]
    delta = (x_adv.double() - clean.double()).flatten(1)
    size = delta.abs().amax(1) if saved.p == math.inf else delta.norm(p=2, dim=1)
    bad_ball = int((size > saved.eps * (1 + 1e-5) + 1e-6).sum())
    bad_box = int(((x_adv < -1e-6) | (x_adv > 1 + 1e-6)).flatten(1).any(1).sum())
    if bad_ball or bad_box:
        raise invalid(where, f"{bad_ball} input(s) outside the l_{'inf' if saved.p == math.inf else '2'} ball of "
                             f"radius {saved.eps}, {bad_box} outside [0, 1]")
    correct, margin = _predict(model, x_adv, labels, batch_size)
    clean_correct, _ = _predict(model, clean, labels, batch_size)
    differ = correct != saved.robust
    boundary = differ & (margin.abs() <= tolerance) & (tolerance > 0)
    n, firm = len(idx), int((differ & ~boundary).sum())
    if firm:
        raise VerificationError(f"verification failed: {firm} example(s) differ from the file's outcomes with the "
                                f"model's margin beyond +-{tolerance:g}; accuracy on its inputs "
                                f"{100 * float(correct.double().mean()):.1f}% vs reported {100 * saved.accuracy:.1f}% "
                                f"(n = {n}): the file's outcomes do not hold on this model")
    if int(boundary.sum()):
        logger.warning("%d example(s) differ from the file's outcomes on the decision boundary (|margin| <= %g): "
                       "rounding, not a different model; the accuracy below is this machine's", int(boundary.sum()),
                       tolerance)
    k, k_clean = int(correct.sum()), int(clean_correct.sum())
    return VerifySummary(n=n, accuracy=k / n, ci95=list(binomial_ci(k, n)), claimed_accuracy=saved.accuracy,
                         disagreements=int(differ.sum()), eps=saved.eps, norm=saved.norm,
                         largest_perturbation=float(size.max()), file=where, weights_sha256=saved.weights_sha256,
                         model=dict(saved.model), tolerance=float(tolerance), smallest_margin=float(margin.abs().min()),
                         evaluation=saved.evaluation, clean_accuracy=k_clean / n,
                         clean_ci95=list(binomial_ci(k_clean, n)), index_range=[int(idx.min()), int(idx.max())],
                         contiguous=int(idx.max()) - int(idx.min()) + 1 == n)


def _predict(model, x: torch.Tensor, labels: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, margin) of the model on ``x``: margin is the true class's output minus the best other one."""
    param = next(iter(model.parameters()), None) if isinstance(model, torch.nn.Module) else None
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
    with torch.no_grad():
        out = torch.cat([model(b.to(model_device(model), dtype)).double().cpu() for b in x.split(batch_size)])
    others = out.scatter(1, labels[:, None], -math.inf).amax(1)
    return out.argmax(1) == labels, out.gather(1, labels[:, None])[:, 0] - others


def _integral(t) -> bool:
    return isinstance(t, torch.Tensor) and not t.dtype.is_floating_point and not t.dtype.is_complex


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fraction(v) -> bool:
    return _number(v) and 0 <= v <= 1


def _interval_claim(v) -> bool:
    ci = v.get("ci95") if isinstance(v, dict) else None
    return (isinstance(v, dict) and _fraction(v.get("accuracy")) and isinstance(ci, (list, tuple)) and len(ci) == 2
            and all(_fraction(c) for c in ci) and ci[0] <= ci[1] and isinstance(v.get("n"), int)
            and isinstance(v.get("completion"), (dict, type(None))))


CLAIMS = {"clean_accuracy": _fraction,
          "forward_passes": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
          "autoattack_flags": lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v),
          "autoattack": lambda v: v is None or _interval_claim(v)}


def _claims(e, refuse) -> dict | None:
    """What the evaluation reported beside its inputs (the keys of :data:`CLAIMS`), each of its type; a claimed
    value outside its own claimed interval is refused.  Other keys are dropped (a newer file's extra claims)."""
    if e is None:
        return None
    if not isinstance(e, dict):
        refuse(f"its evaluation record is {type(e).__name__}, not a dict")
    for key, ok in CLAIMS.items():
        if key in e and not ok(e[key]):
            refuse(f"its evaluation record's {key} {e[key]!r} is not of its type")
    aa = e.get("autoattack")
    if aa and not aa["ci95"][0] <= aa["accuracy"] <= aa["ci95"][1]:
        refuse(f"its AutoAttack accuracy {100 * aa['accuracy']:.1f}% lies outside its own 95% interval "
               f"[{100 * aa['ci95'][0]:.1f}, {100 * aa['ci95'][1]:.1f}]")
    return {k: e[k] for k in CLAIMS if k in e} or None
