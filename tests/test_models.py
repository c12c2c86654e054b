import time

import pytest
import torch

from robustmix.errors import CheckpointError, ModelError
from robustmix.models import (ZOO_NAMES, ModelCard, card, create_model, list_models, load, load_checkpoint,
                              resolve_model, save_checkpoint)


@pytest.mark.parametrize("arch,shape", [("cnn-small", (1, 28, 28)), ("preact-resnet18", (3, 32, 32)),
                                        ("lipschitz-cnn", (1, 28, 28))])
def test_architectures_take_unit_inputs(arch, shape):
    model = create_model(arch).eval()
    assert model(torch.rand(2, *shape)).shape == (2, 10)
    assert any("mean" in n for n, _ in model.named_buffers())


def test_wide_resnet_configurable():
    model = create_model("wide-resnet", depth=10, width=1).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(Exception, match="6n"):
        create_model("wide-resnet", depth=11)


def test_registry_and_errors():
    assert "cnn-small" in list_models("cnn*")
    assert set(list_models("fmnist-*")) <= set(ZOO_NAMES)
    with pytest.raises(ModelError, match="Did you mean"):
        create_model("cnn-smal")
    with pytest.raises(ModelError):
        load("no-such-model")


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    model = create_model("cnn-small", width=8, hidden=16).eval()
    c = ModelCard(name="tiny", arch="cnn-small", arch_kwargs={"width": 8, "hidden": 16}, dataset="fashion-mnist",
                  recipe="standard", seed=1, metrics={"clean": {"accuracy": 0.5}})
    path = save_checkpoint(model, c, tmp_path / "tiny")
    loaded, card_back = load_checkpoint(path)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert card_back.sha256 and card_back.metrics["clean"]["accuracy"] == 0.5
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(CheckpointError, match="trained on"):
        load_checkpoint(path, expected_dataset="cifar10")
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    corrupted = bytearray(blob)
    corrupted[-10] ^= 0xFF
    path.write_bytes(bytes(corrupted))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)


def test_checkpoint_for_wrong_architecture(tmp_path):
    model = create_model("cnn-small", width=8, hidden=16)
    c = ModelCard(name="x", arch="cnn-small", arch_kwargs={"width": 16}, dataset="fashion-mnist")
    path = save_checkpoint(model, c, tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)


def test_factory_spec(tmp_path, monkeypatch):
    (tmp_path / "userzoo.py").write_text("import torch\n\ndef make():\n    return torch.nn.Linear(4, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(resolve_model("userzoo:make"), torch.nn.Linear)
    with pytest.raises(ModelError, match="cannot import"):
        resolve_model("nosuchmodule:make")
    (tmp_path / "rn18.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="pip install timm"):      # timm is not installed here
        resolve_model(f"timm:resnet18@{tmp_path / 'rn18.safetensors'}")


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_zoo_models_load_fast_offline(name):
    if name not in list_models(pretrained=True):
        pytest.skip(f"{name} not shipped in this checkout")
    t0 = time.perf_counter()
    model = load(name)
    assert time.perf_counter() - t0 < 1.0
    assert not model.training
    c = card(name)
    assert c.dataset == "fashion-mnist" and c.sha256 and c.metrics["clean"]["accuracy"] > 0.5
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_shipped_lipschitz_network_never_exceeds_its_card_bound():
    """The card's l2 bound (input -> logits) holds on random pairs, on close pairs pushed apart by
    gradient ascent on the ratio, and for the spectral norm of the Jacobian."""
    if "fmnist-lipschitz" not in list_models(pretrained=True):
        pytest.skip("fmnist-lipschitz is not in this checkout")
    from robustmix.certify import network_lipschitz

    model, bound = load("fmnist-lipschitz"), card("fmnist-lipschitz").lipschitz_l2
    assert bound == pytest.approx(network_lipschitz(model, (1, 28, 28)), rel=1e-6)
    assert bound <= 1.0 and float(model.logit_scale) == 1.0          # a 1-Lipschitz logit map, no output scaling
    torch.manual_seed(0)
    x1 = torch.rand(64, 1, 28, 28)
    x2 = (x1 + 0.05 * torch.randn_like(x1)).requires_grad_(True)
    opt = torch.optim.Adam([x2], lr=1e-2)
    ratios = []
    for _ in range(20):  # push the pairs towards the worst ratio
        ratio = (model(x1) - model(x2)).norm(dim=1) / (x1 - x2).flatten(1).norm(dim=1)
        ratios.append(ratio.detach().max())
        opt.zero_grad()
        (-ratio.sum()).backward()
        opt.step()
    assert max(ratios) <= bound
    with torch.no_grad():
        far = (model(x1) - model(x1.flip(0))).norm(dim=1) / (x1 - x1.flip(0)).flatten(1).norm(dim=1)
    assert far.max() <= bound
    for x in x1[:4]:
        jac = torch.autograd.functional.jacobian(model, x[None]).reshape(10, -1)
        assert torch.linalg.matrix_norm(jac, ord=2) <= bound


def test_worst_case_card_metric_from_stored_records():
    from pathlib import Path

    from robustmix.errors import ModelError
    from robustmix.experiments.zoo_card import record_worst_case

    src = Path(__file__).resolve().parent.parent / "results/pareto-linf/records/headline-h.jsonl"
    if not src.exists():
        pytest.skip("stored results not present")
    m = record_worst_case("fmnist-at-linf-cnn", src, write=False)["worst-case-linf-0.1"]
    assert m["n"] == 1000 and m["ci95"][0] <= m["accuracy"] <= m["ci95"][1]
    assert m["accuracy"] == card("fmnist-at-linf-cnn").metrics["worst-case-linf-0.1"]["accuracy"]
    with pytest.raises(ModelError, match="not 'fmnist-trades-linf-cnn'"):
        record_worst_case("fmnist-trades-linf-cnn", src, write=False)
