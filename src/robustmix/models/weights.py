"""Networks from the users' local weights: a plain ``state_dict`` file under a registered architecture
(``ARCH[,key=value...]@PATH``), a RobustBench checkpoint through the robustbench package's model definitions
(``robustbench:[THREAT/]NAME@DIR``) and a timm model with a local weights file (``timm:NAME@PATH``).  Nothing is
ever downloaded, and no file is unpickled beyond tensors (``torch.load(weights_only=True)`` or safetensors)."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, ModelError
from .architectures import Normalize

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")
NORMALIZATIONS = {"none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
                  "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
                  "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
                  "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
# RobustBench's names for WideResNets, as registry settings
ALIASES = {f"wrn-{d}-{w}": ("wide-resnet", {"depth": d, "width": w})
           for d, w in ((28, 10), (34, 10), (34, 20), (70, 16), (106, 16))}
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "net", "ema")


def is_weights_spec(spec: str) -> bool:
    """``ARCH[,k=v...]@PATH`` (a path alone has no architecture); a PATH that is no weights file is refused."""
    from .registry import ARCHITECTURES

    head, at, path = spec.rpartition("@")
    if not at or not head or head.startswith(("robustbench:", "timm:")):
        return False
    if not path.lower().endswith(WEIGHT_SUFFIXES) and head.partition(",")[0] in {*ARCHITECTURES, *ALIASES}:
        what = "a folder" if Path(path).is_dir() else f"not a weights file ({', '.join(WEIGHT_SUFFIXES)})"
        raise ModelError(f"{spec!r}: {path} is {what}; give the state_dict file: {head}@FILE.pt")
    return path.lower().endswith(WEIGHT_SUFFIXES)


def read_state_dict(path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors, or ``torch.load(weights_only=True)`` of a state_dict (also inside
    a checkpoint dict under state_dict / model_state_dict / model / net / ema), without a DataParallel ``module.``
    prefix."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (a truncated, foreign or pickled-code file fails in the loader)
        raise CheckpointError(f"cannot read {path} as weights ({type(exc).__name__}: {' '.join(str(exc).split())[:160]});"
                              " give a state_dict saved with torch.save(model.state_dict(), ...) or safetensors") from None
    while isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        inner = next((state[k] for k in CONTAINER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state_dict (a mapping of parameter names to tensors); save one with "
                              "torch.save(model.state_dict(), PATH)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _settings(text: str, spec: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ModelError(f"{spec!r}: settings after the architecture are key=value (e.g. depth=34), got {item!r}")
        try:
            out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key.strip()] = value.strip()
    return out


def load_weights_spec(spec: str, num_classes: int | None = None) -> nn.Module:
    """``ARCH[,key=value...]@PATH``: the registered architecture ARCH (or a WideResNet alias such as wrn-28-10) with
    the tensors of PATH.  ``normalize=none|cifar10|cifar100|imagenet`` sets the input normalisation the network
    was trained with when the file does not hold it (default none: the network takes [0, 1] images as they are, as
    RobustBench's do); other settings go to the architecture (depth=34, width=10, ...).  The class count is read
    from the file.  Missing, unexpected or misshapen tensors are refused in one line naming the first."""
    from .registry import ARCHITECTURES, create_model

    head, _, path = spec.rpartition("@")
    arch, _, rest = head.partition(",")
    kwargs = _settings(rest, spec)
    norm = kwargs.pop("normalize", None)
    if norm is not None and norm not in NORMALIZATIONS:
        raise ModelError(f"{spec!r}: normalize must be one of {', '.join(NORMALIZATIONS)}, got {norm!r}")
    arch, kwargs = (ALIASES[arch][0], {**ALIASES[arch][1], **kwargs}) if arch in ALIASES else (arch, kwargs)
    if arch not in ARCHITECTURES:
        raise ModelError(f"{spec!r}: unknown architecture {arch!r}; use one of {', '.join(ARCHITECTURES)} or "
                         f"{', '.join(ALIASES)} ('robustmix list' shows them), or register yours")
    state = read_state_dict(path)
    takes = inspect.signature(ARCHITECTURES[arch].factory).parameters
    head_weight = [v for k, v in state.items() if v.ndim == 2 and not k.startswith("normalize.")]
    if "num_classes" in takes and "num_classes" not in kwargs and head_weight:
        kwargs["num_classes"] = int(head_weight[-1].shape[0])
    model = create_model(arch, **kwargs)
    wanted = model.state_dict()
    has_norm = any(k.startswith("normalize.") for k in state)
    missing = [k for k in wanted if k not in state and not (k.startswith("normalize.") and not has_norm)]
    unexpected = [k for k in state if k not in wanted]
    shape = next((k for k in wanted if k in state and state[k].shape != wanted[k].shape), None)
    if missing or unexpected or shape:
        what = (f"has no tensor {missing[0]!r}" if missing else f"has a tensor {unexpected[0]!r} that {arch} lacks"
                if unexpected else f"{shape!r} has shape {tuple(state[shape].shape)}, {arch} wants "
                f"{tuple(wanted[shape].shape)}")
        extra = sum(map(bool, (missing, unexpected))) and f" ({len(missing)} missing, {len(unexpected)} unexpected)"
        raise CheckpointError(f"{path} does not fit {arch}{' ' + str(kwargs) if kwargs else ''}: it {what}{extra or ''};"
                              " give the architecture and settings it was saved from")
    if has_norm and norm is not None:
        raise ModelError(f"{spec!r}: {path} holds its own input normalisation (normalize.mean/std); leave out "
                         f"normalize={norm} (or save the file without those two tensors)")
    model.load_state_dict(state, strict=False)
    if not has_norm and isinstance(getattr(model, "normalize", None), Normalize):
        mean, std = NORMALIZATIONS[norm or "none"]
        channels = model.normalize.mean.shape[1]
        model.normalize = Normalize(mean[:channels] if channels <= 3 else mean[:1] * channels,
                                    std[:channels] if channels <= 3 else std[:1] * channels)
    logger.info("loaded %s from %s (%d tensors, input normalisation %s)", arch, path, len(state),
                "from the file" if has_norm else norm or "none")
    return model.eval()


def load_robustbench(spec: str, dataset: str | None) -> nn.Module:
    """``robustbench:[THREAT/]NAME@DIR``: RobustBench's own definition of NAME with its checkpoint read from DIR (the
    package's layout DIR/DATASET/THREAT/NAME.pt), never downloaded."""
    body = spec.split(":", 1)[1]
    name, at, folder = body.partition("@")
    threat, _, name = name.rpartition("/")
    threat = threat or "Linf"
    if dataset not in ("cifar10", "cifar100", "imagenet"):
        raise ModelError(f"{spec!r}: RobustBench models are for cifar10, cifar100 or imagenet; pass --dataset")
    folder = Path(folder or "models")
    ckpt = folder / dataset / threat / f"{name}.pt"
    if not ckpt.is_file():
        raise ModelError(f"{spec!r}: no checkpoint at {ckpt}; robustmix never downloads: put RobustBench's file for "
                         f"{name} there (or give robustbench:{threat}/{name}@FOLDER where FOLDER/{dataset}/{threat}/"
                         f"{name}.pt is)")
    try:
        from robustbench.utils import load_model  # type: ignore
    except ImportError as exc:
        raise ModelError(f"{spec!r} needs the optional package robustbench (pip install robustbench; it needs a "
                         f"working torchvision) for {name}'s definition ({exc})") from None
    return load_model(model_name=name, model_dir=str(folder), dataset=dataset, threat_model=threat).eval()


class _TimmNormalized(nn.Module):
    """A timm network behind the normalisation of its pretrained config, so it takes [0, 1] images."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.normalize, self.net = Normalize(mean, std), net
        self.num_classes = getattr(net, "num_classes", None)

    def forward(self, x):
        return self.net(self.normalize(x))


def load_timm(spec: str) -> nn.Module:
    """``timm:NAME@PATH``: timm's NAME with the weights of the local file PATH (timm's pretrained_cfg_overlay), behind
    the normalisation of its pretrained config; without @PATH it is refused (it would download)."""
    body = spec.split(":", 1)[1]
    name, at, path = body.partition("@")
    if not at:
        raise ModelError(f"{spec!r}: robustmix never downloads weights; give a local file: timm:{name}@PATH "
                         "(the .safetensors / .bin / .pth of the model)")
    if not Path(path).is_file():
        raise ModelError(f"{spec!r}: weights file {path} not found")
    try:
        import timm  # type: ignore
    except ImportError as exc:
        raise ModelError(f"{spec!r} needs the optional package timm (pip install timm; it needs a working torchvision) "
                         f"({exc})") from None
    net = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    cfg = getattr(net, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean", NORMALIZATIONS["imagenet"][0]), cfg.get("std", NORMALIZATIONS["imagenet"][1])
    return _TimmNormalized(net, mean, std).eval()
