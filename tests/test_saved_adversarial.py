"""robustmix.attacks.saved: the saved-adversarial file and verify(), on a tiny hand-checkable model."""

import pytest
import torch

from robustmix.attacks import SavedEvaluation, read_saved, verify
from robustmix.errors import ConfigError, VerificationError
from robustmix._io import weights_digest


def _setup(tmp_path, indices=(1, 3, 4, 8)):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.rand(10, 1, 2, 2)
    y = torch.randint(0, 3, (10,))
    idx = torch.tensor(indices)
    x_adv = (x[idx] + 0.05 * torch.randn(len(idx), 1, 2, 2).sign()).clamp(0, 1)
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y[idx]
    saved = SavedEvaluation(x_adv=x_adv, labels=y[idx], indices=idx, robust=robust, eps=0.05, norm="inf",
                            dataset="toy", split="test", model={"std": "a:g", "rob": "b.safetensors", "alpha": 0.25},
                            weights_sha256=weights_digest(model), accuracy=float(robust.double().mean()),
                            evaluation={"clean_accuracy": 0.5, "forward_passes": 2, "autoattack_flags": [],
                                        "autoattack": {"accuracy": 0.5, "ci95": [0.1, 0.9], "n": 4}})
    saved.save(tmp_path / "adv.pt")
    return model, x, y, saved


def test_a_saved_file_reads_back_and_verifies(tmp_path):
    model, x, y, saved = _setup(tmp_path)
    back = read_saved(tmp_path / "adv.pt")
    assert torch.equal(back.x_adv, saved.x_adv) and back.model == saved.model and back.file == str(tmp_path / "adv.pt")
    assert torch.load(tmp_path / "adv.pt", weights_only=True)["format"] == "robustmix-adversarial-1"
    s = verify(model, x, y, back, tolerance=0)
    with torch.no_grad():
        clean = float((model(x[saved.indices]).argmax(1) == y[saved.indices]).double().mean())
    assert s.accuracy == saved.accuracy and s.disagreements == 0 and s.clean_accuracy == clean
    assert s.index_range == [1, 8] and s.contiguous is False and s.largest_perturbation <= 0.05 + 1e-7
    assert s.evaluation["autoattack"]["accuracy"] == 0.5       # the claims travel, apart from the checked numbers
    assert "1..8, not contiguous (4 of 8)" in s.summary_line()


def test_verify_refuses_flipped_outcomes_with_verification_error(tmp_path):
    model, x, y, saved = _setup(tmp_path)
    saved.robust[0] = ~saved.robust[0]
    saved.accuracy = float(saved.robust.double().mean())
    with pytest.raises(VerificationError, match="1 example\\(s\\) differ"):
        verify(model, x, y, saved, tolerance=0)


@pytest.mark.parametrize("edit, words", [
    (lambda d: d["evaluation"]["autoattack"].update(accuracy=0.95), "outside its own 95% interval [10.0, 90.0]"),
    (lambda d: d["evaluation"].update(clean_accuracy="0.9"), "clean_accuracy '0.9' is not of its type"),
    (lambda d: d["evaluation"].update(autoattack_flags="none"), "autoattack_flags"),
    (lambda d: d.update(weights_sha256="abc"), "is not a SHA-256 digest"),
    (lambda d: d.update(dataset=3), "its dataset 3 is not a name"),
    (lambda d: d.update(robust=torch.tensor([0, 2, 1, 1])), "are not 4 booleans"),
])
def test_a_malformed_file_is_refused_with_config_error(tmp_path, edit, words):
    _setup(tmp_path)
    data = torch.load(tmp_path / "adv.pt", weights_only=True)
    edit(data)
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=words.replace("(", "\\(").replace(")", "\\)").replace("[", "\\[")):
        read_saved(tmp_path / "bad.pt")


def test_other_weights_name_the_options_that_rebuild_the_model(tmp_path):
    model, x, y, saved = _setup(tmp_path)
    with pytest.raises(ConfigError, match="recorded as --std a:g --rob b.safetensors --alpha 0.25"):
        verify(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)), x, y, saved)
    far = SavedEvaluation(**{**{k: getattr(saved, k) for k in saved.__dataclass_fields__}, "x_adv": saved.x_adv + 0.2})
    with pytest.raises(ConfigError, match="outside the l_inf ball of radius 0.05"):
        verify(model, x, y, far)
