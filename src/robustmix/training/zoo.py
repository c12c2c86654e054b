"""The recipes that produced the shipped Fashion-MNIST zoo; rerun with ``robustmix train --zoo NAME``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

from ..attacks.pgd import PGDBudget
from ..errors import ModelError
from ..models import ModelCard, create_model, save_checkpoint
from ..models.registry import ZOO_DIR
from ..zoo_table import ZOO, threat_tag
from .recipes import TrainConfig, accuracy, robust_accuracy, train

logger = logging.getLogger(__name__)

ZOO_RECIPES = {name: (e.arch, e.arch_kwargs, TrainConfig.from_dict(e.recipe)) for name, e in ZOO.items()}


def train_zoo_model(name: str, out_dir=None, *, progress: bool = True, eval_subset: int = 1000) -> Path:
    """Train zoo model ``name`` from scratch (resumable) and write its checkpoint and card."""
    from ..certify.lipschitz import network_lipschitz
    from ..data import load_dataset

    if name not in ZOO_RECIPES:
        raise ModelError(f"no recipe for {name!r}; zoo names: {', '.join(ZOO_RECIPES)}")
    arch, kwargs, cfg = ZOO_RECIPES[name]
    out_dir = Path(out_dir) if out_dir is not None else ZOO_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    train_kwargs = dict(kwargs)
    if arch == "lipschitz-cnn":
        train_kwargs["constrained"] = True
    model = create_model(arch, **train_kwargs)
    x, y = load_dataset("fashion-mnist", "train")
    t0 = time.perf_counter()
    model, history = train(model, x, y, cfg, state_path=out_dir / f"{name}.train-state.pt", progress=progress)
    seconds = sum(h["seconds"] for h in history)
    lip = None
    if arch == "lipschitz-cnn":
        model = model.export()
        kwargs = {**kwargs, "constrained": False}
        lip = network_lipschitz(model, (1, 28, 28))
    xt, yt = load_dataset("fashion-mnist", "test")
    metrics = {"clean": {"accuracy": accuracy(model, xt, yt), "n": len(xt), "split": "test"}}
    if cfg.recipe in ("pgd", "fgsm", "trades"):
        metrics[f"pgd20-{threat_tag(cfg.threat.norm, cfg.threat.eps)}"] = {
            "accuracy": robust_accuracy(model, xt[:eval_subset], yt[:eval_subset], cfg.threat,
                                        pgd=PGDBudget(steps=20)),
            "eps": cfg.threat.eps, "norm": cfg.threat.norm, "n": eval_subset, "split": "test[:%d]" % eval_subset,
            "attack": "PGD-20, random start, step 2.5*eps/20, aimed at the model"}
    card = ModelCard(name=name, arch=arch, arch_kwargs=kwargs, dataset="fashion-mnist", recipe=cfg.recipe,
                     hyperparameters=cfg.to_dict(), seed=cfg.seed, metrics=metrics, lipschitz_l2=lip,
                     train_seconds=round(seconds, 1),
                     notes=f"trained on {torch.get_num_threads()} CPU threads; {history[-1]['images_per_s']:.0f} img/s")
    path = save_checkpoint(model, card, out_dir / f"{name}.safetensors")
    (out_dir / f"{name}.train-state.pt").unlink(missing_ok=True)
    logger.info("wrote %s (clean %.4f) in %.0f s", path, metrics["clean"]["accuracy"], time.perf_counter() - t0)
    return path


def train_checkpoint(arch: str, cfg, dataset: str, out) -> tuple[Path, "ModelCard"]:
    """Train ``arch`` with recipe settings ``cfg`` on ``dataset``'s training split (resumable) and save it."""
    from ..data import load_dataset

    model = create_model(arch, **({"constrained": True} if arch == "lipschitz-cnn" else {}))
    x, y = load_dataset(dataset, "train")
    out = Path(out).with_suffix(".safetensors")
    state = out.with_suffix(".train-state.pt")
    model, history = train(model, x, y, cfg, state_path=state)
    kwargs = {}
    if arch == "lipschitz-cnn":
        model, kwargs = model.export(), {"constrained": False}
    xv, yv = load_dataset(dataset, "val")
    card = ModelCard(name=out.stem, arch=arch, arch_kwargs=kwargs, dataset=dataset, recipe=cfg.recipe,
                     hyperparameters=cfg.to_dict(), seed=cfg.seed,
                     metrics={"clean": {"accuracy": accuracy(model, xv, yv), "split": "val", "n": len(xv)}},
                     train_seconds=round(sum(h["seconds"] for h in history), 1))
    save_checkpoint(model, card, out)
    state.unlink(missing_ok=True)
    return out, card
