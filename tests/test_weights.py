"""Users' networks from local weights: ARCH@PATH state_dicts, RobustBench's and timm's forms, the CIFAR-10 config."""

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from robustmix.cli import main
from robustmix.errors import CheckpointError, ModelError
from robustmix.models import create_model, resolve_model
from tests.test_data import write_cifar

ROOT = Path(__file__).resolve().parents[1]


def _save_state(model, path, wrap=True):
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("normalize.")}
    torch.save({"epoch": 3, "state_dict": state} if wrap else state, path)


def test_a_plain_state_dict_loads_under_its_architecture(tmp_path):
    """A DataParallel checkpoint dict of a preact-resnet18 without normalisation buffers: the same outputs as the
    network it was saved from (taking [0, 1] images as they are), with the class count read from the file."""
    torch.manual_seed(0)
    net = create_model("preact-resnet18", num_classes=7).eval()
    _save_state(net, tmp_path / "g.pth")
    loaded = resolve_model(f"preact-resnet18@{tmp_path / 'g.pth'}")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want = net.linear(torch.nn.functional.adaptive_avg_pool2d(torch.relu(net.bn(net.layer4(net.layer3(
            net.layer2(net.layer1(net.conv1(x))))))), 1).flatten(1))
        torch.testing.assert_close(loaded(x), want)
    normed = resolve_model(f"preact-resnet18,normalize=cifar10@{tmp_path / 'g.pth'}")
    with torch.no_grad():
        torch.testing.assert_close(normed(x), net(x))     # net's own default normalisation is CIFAR-10's


def test_safetensors_and_wide_resnet_settings(tmp_path):
    from safetensors.torch import save_file

    net = create_model("wide-resnet", depth=10, width=2).eval()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "w.safetensors"))
    loaded = resolve_model(f"wide-resnet,depth=10,width=2@{tmp_path / 'w.safetensors'}")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x))   # the file holds normalize.* and they are used


def test_mismatched_weights_name_the_first_bad_key(tmp_path):
    _save_state(create_model("preact-resnet18"), tmp_path / "p.pt", wrap=False)
    with pytest.raises(CheckpointError, match=r"does not fit wide-resnet .*it has no tensor 'conv1.weight'|"
                                              r"does not fit wide-resnet.*'block1.layer.0"):
        resolve_model(f"wide-resnet,depth=10,width=1@{tmp_path / 'p.pt'}")
    state = create_model("preact-resnet18").state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"'layer1.0.conv1.weight' has shape \(64, 64, 5, 5\), preact-resnet18 "
                                              r"wants \(64, 64, 3, 3\)"):
        resolve_model(f"preact-resnet18@{tmp_path / 'bad.pt'}")
    with pytest.raises(ModelError, match="without its architecture: give it as ARCH@"):
        resolve_model(str(tmp_path / "bad.pt"))
    with pytest.raises(ModelError, match="unknown architecture 'resnet-99'"):
        resolve_model(f"resnet-99@{tmp_path / 'bad.pt'}")
    with pytest.raises(CheckpointError, match="not found"):
        resolve_model("preact-resnet18@/nonexistent/w.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read .*junk.pt as weights"):
        resolve_model(f"preact-resnet18@{tmp_path / 'junk.pt'}")


def test_robustbench_and_timm_forms_never_download(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"no checkpoint at .*cifar10/Linf/Carmon2019Unlabeled.pt; robustmix never "
                                         "downloads"):
        resolve_model(f"robustbench:Carmon2019Unlabeled@{tmp_path}", "cifar10")
    (tmp_path / "cifar10" / "L2").mkdir(parents=True)
    (tmp_path / "cifar10" / "L2" / "Rice.pt").write_bytes(b"x")
    calls = {}
    fake_rb = types.ModuleType("robustbench.utils")
    fake_rb.load_model = lambda **kw: calls.update(kw) or torch.nn.Linear(2, 2)
    monkeypatch.setitem(sys.modules, "robustbench", types.ModuleType("robustbench"))
    monkeypatch.setitem(sys.modules, "robustbench.utils", fake_rb)
    resolve_model(f"robustbench:L2/Rice@{tmp_path}", "cifar10")
    assert calls == {"model_name": "Rice", "model_dir": str(tmp_path), "dataset": "cifar10", "threat_model": "L2"}

    with pytest.raises(ModelError, match="never downloads weights; give a local file: timm:resnet50@PATH"):
        resolve_model("timm:resnet50")
    (tmp_path / "rn.safetensors").write_bytes(b"x")
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    net.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    fake_timm = types.ModuleType("timm")
    fake_timm.create_model = lambda name, **kw: calls.update(timm=(name, kw)) or net
    monkeypatch.setitem(sys.modules, "timm", fake_timm)
    model = resolve_model(f"timm:resnet50@{tmp_path / 'rn.safetensors'}")
    assert calls["timm"] == ("resnet50", {"pretrained": True,
                                          "pretrained_cfg_overlay": {"file": str(tmp_path / "rn.safetensors")}})
    x = torch.rand(1, 3, 2, 2)
    torch.testing.assert_close(model(x), net((x - 0.5) / 0.25))


def test_the_cifar10_paper_config_runs_on_fake_cifar_and_random_weights(tmp_path, monkeypatch):
    """configs/cifar10-paper.yaml as shipped (data, both networks, eps 8/255, alphas, PGD-20), on a tiny CIFAR-format
    folder and random weights at the config's paths; only n, steps and alphas made small."""
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", n=6)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    for name in ("cifar10-resnet18-standard.pt", "cifar10-resnet18-pgd20-at.pt"):
        _save_state(create_model("preact-resnet18"), tmp_path / "weights" / name)
    code = main(["sweep", "--config", str(ROOT / "configs" / "cifar10-paper.yaml"), "--data-root",
                 str(tmp_path / "data"), "-n", "4", "--steps", "1", "--alphas", "0", "0.5", "1", "--out", "run"])
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n"] == 4 and summary["settings"]["eps"] == pytest.approx(8 / 255)
    assert summary["settings"]["std"].startswith("preact-resnet18,normalize=cifar10@weights/")
    assert main(["report", "run"]) == 0 and (tmp_path / "run" / "report.html").is_file()


def test_a_typed_normalisation_that_the_file_contradicts_and_a_path_that_is_no_weights_file(tmp_path):
    torch.save(create_model("preact-resnet18").state_dict(), tmp_path / "n.pt")     # holds normalize.mean/std
    with pytest.raises(ModelError, match="holds its own input normalisation"):
        resolve_model(f"preact-resnet18,normalize=none@{tmp_path / 'n.pt'}")
    with pytest.raises(ModelError, match="is a folder; give the state_dict file"):
        resolve_model(f"preact-resnet18@{tmp_path}")
    with pytest.raises(ModelError, match="not a weights file"):
        resolve_model(f"wrn-28-10@{tmp_path / 'notes.txt'}")


def test_a_cifar_network_refuses_grayscale_images():
    """A 3-channel network's normalisation no longer broadcasts 1-channel images into 3 channels."""
    from robustmix.errors import InputError

    with pytest.raises(InputError, match="takes 3-channel images"):
        create_model("preact-resnet18")(torch.rand(2, 1, 32, 32))
