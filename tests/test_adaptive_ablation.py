"""scripts/adaptive_ablation.py: the front comparison, and the driver end to end at its quick size (seconds)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FRONT = ROOT / "results" / "pareto-linf" / "summary.json"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("adaptive_ablation", ROOT / "scripts" / "adaptive_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_front_is_interpolated_at_the_variants_clean_accuracy(ablation):
    curve = [{"clean": 0.93, "robust": 0.0}, {"clean": 0.93, "robust": 0.05}, {"clean": 0.91, "robust": 0.6},
             {"clean": 0.87, "robust": 0.78}]
    assert ablation.front_robust_at(curve, 0.92) == pytest.approx(0.325)
    assert ablation.front_robust_at(curve, 0.95) == 0.05        # more accurate than the front can be
    assert ablation.front_robust_at(curve, 0.80) == 0.78
    assert ablation.front_robust_at([], 0.9) is None
    rows = [{"name": "a", "kind": "adaptive", "clean": 0.92, "robust": 0.2, "robust_ci95": [0.15, 0.3]},
            {"name": "b", "kind": "adaptive", "clean": 0.92, "robust": 0.1, "robust_ci95": [0.05, 0.2]}]
    verdict = ablation.compare(rows, {"curve": curve})
    assert verdict == {"closest": "a", "reaches_front": False, "above_front": False}   # 0.3 < 0.325: below the front even at its upper end
    rows[0]["robust_ci95"] = [0.2, 0.33]
    assert ablation.compare(rows, {"curve": curve})["reaches_front"] is True
    assert ablation.compare(rows, None) == {"closest": None, "reaches_front": None, "above_front": None}
    rows[0]["robust_ci95"] = [0.33, 0.4]
    assert ablation.compare(rows, {"curve": curve})["above_front"] is True
    # the weaker curve attack overstates the front by attack_gap: the front is lowered by it
    rows[0]["robust_ci95"] = [0.2, 0.3]
    assert ablation.compare(rows, {"curve": curve, "attack_gap": 0.03})["reaches_front"] is True
    assert rows[0]["front_robust_at_clean"] == pytest.approx(0.295)
    # on the front where the front is 0 (at g's clean accuracy) does not count as reaching it
    trivial = [{"name": "t", "kind": "adaptive", "clean": 0.95, "robust": 0.0, "robust_ci95": [0.0, 0.004]}]
    assert ablation.compare(trivial, {"curve": [{"clean": 0.95, "robust": 0.0}, {"clean": 0.9, "robust": 0.5}]}) == \
        {"closest": "t", "reaches_front": False, "above_front": False}
    assert trivial[0]["on_or_above_front"] and trivial[0]["trivial"] and "trivially" in ablation._on_front(trivial[0])


def test_attack_gap_is_what_the_curve_attack_overstates_at_the_calibrated_point(ablation):
    front = ablation.load_front(FRONT)
    if front is None:
        pytest.skip("no stored pareto front")
    head = front["headline"]
    at = ablation.front_robust_at(front["curve"], head["clean"])
    assert front["attack_gap"] == pytest.approx(max(0.0, at - head["robust"]))
    assert 0 <= front["attack_gap"] < 0.05


def test_quick_ablation_end_to_end_and_resumed(ablation, tmp_path):
    from robustmix.data import load_dataset
    from robustmix.errors import DataNotFoundError

    try:
        load_dataset("fashion-mnist", "test", allow_download=False)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST not available offline")
    threads = torch.get_num_threads()
    out = tmp_path / "abl"
    argv = ["--quick", "--out", str(out), "--features", "logits", "h", "--gate-training", "standard", "adversarial",
            "--attacks", "apgd-ce@mix-T1", "apgd-ce@mix-gate-T8", "--threads", "1", "--device", "cpu",
            "--front", str(FRONT)]
    try:
        assert ablation.main(argv) == 0
        result = json.loads((out / "ablation.json").read_text())
        names = [r["name"] for r in result["rows"]]
        assert names == ["logits-standard", "logits-adversarial", "h-standard", "h-adversarial"]
        for r in result["rows"]:
            assert r["n"] == 4 and len(r["robust_ci95"]) == 2 and r["forward_passes"] == 2
            assert r["mixing_network_passes"] == 1 and r["autoattack"] is None   # AutoAttack not among --attacks
            assert (r["alpha_adv"] is None) == (r["gate_training"] == "standard")
            folder = out / r["name"]
            for f in ("summary.json", "report.md", "records.jsonl", "training.json", "adaptive.mixing-net.safetensors"):
                assert (folder / f).is_file(), f
        training = json.loads((out / "h-adversarial" / "training.json").read_text())
        assert training["mixer"]["mixing_net"]["class"] == "ResidualMixingNet"
        assert training["mixer"]["feature_layers"]["rob"] == ["features.8", "features"]
        assert training["train_attack"] == "composite+gate"
        md = (out / "ablation.md").read_text()
        assert "| h-adversarial | h | adversarial (PGD-2) |" in md and "--quick run" in md
        if FRONT.is_file():
            assert result["front"]["headline"]["name"] == "linear" and result["verdict"]["closest"] in names
        # a rerun resumes: nothing is trained or attacked again
        net = out / "h-adversarial" / "adaptive.mixing-net.safetensors"
        stamp = net.stat().st_mtime_ns
        records = (out / "h-adversarial" / "records.jsonl").read_text()
        assert ablation.main(argv) == 0
        assert net.stat().st_mtime_ns == stamp and (out / "h-adversarial" / "records.jsonl").read_text() == records
        # a front that is not robustmix pareto's: one line, exit 2
        assert ablation.main(argv[:-1] + [str(out / "h-adversarial" / "summary.json")]) == 2
    finally:
        torch.set_num_threads(threads)


def test_bad_sizes_are_refused(ablation, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.parse_args(["--epochs", "0"])
    assert exc.value.code == 2 and "--epochs must be >= 1" in capsys.readouterr().err


def test_the_table_gathers_every_variant_evaluated_alike(ablation, tmp_path, caplog):
    def summary(folder, n=10, steps=100, **settings):
        folder.mkdir()
        (folder / "summary.json").write_text(json.dumps({
            "n": n, "accuracy": 0.5, "ci95": [0.2, 0.8], "clean_accuracy": 0.9, "clean_ci95": [0.6, 1.0],
            "per_attack": [{"seconds": 1.5}, {"seconds": 2.0}], "forward_passes_per_prediction": 2,
            "settings": {"norm": "inf", "eps": 0.1, "steps": steps, **settings}}))

    summary(tmp_path / "linear-0.8", mixer="linear", alpha=0.8)
    summary(tmp_path / "both-standard", mixer="adaptive", features="both", gate_training="standard")
    summary(tmp_path / "logits-adversarial", mixer="adaptive", features="logits", gate_training="adversarial")
    summary(tmp_path / "h-standard", n=4, mixer="adaptive", features="h", gate_training="standard")
    summary(tmp_path / "h-adversarial", steps=5, mixer="adaptive", features="h", gate_training="adversarial")
    (tmp_path / "not-a-variant").mkdir()
    rows = ablation.collect_rows(tmp_path, {"n": 10, "norm": "inf", "eps": 0.1, "steps": 100})
    assert [r["name"] for r in rows] == ["logits-adversarial", "both-standard", "linear-0.8"]
    assert rows[0]["eval_seconds"] == 3.5 and rows[2]["alpha"] == 0.8 and rows[0]["training_attack"] is None
    assert "h-standard left out" in caplog.text and "h-adversarial left out" in caplog.text
    # adaptive rows trained otherwise than this run (here: no training state at all) are left out too
    cfg = {"n": 10, "norm": "inf", "eps": 0.1, "steps": 100}
    assert [r["name"] for r in ablation.collect_rows(tmp_path, cfg, {"epochs": 4})] == ["linear-0.8"]
