"""Option groups: functions take groups, not long keyword lists; each command-line value is checked in one place;
YAML is merged as data; booleans that default on have --x/--no-x."""

import ast
import json
import warnings
from pathlib import Path

import pytest

from robustmix import Smoothing, ThreatModel, groups
from robustmix.cli import build_parser, main, parse_args

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_PARAMETERS = 8


def test_no_function_takes_more_than_eight_parameters():
    """Named parameters (positional and keyword-only, not self/cls; a ``**deprecated`` catch-all is the old
    keywords' one-release path) of every function in src/; more go through a group."""
    wide = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [p.arg for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                if len(names) > MAX_PARAMETERS:
                    wide.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({len(names)})")
    assert not wide, f"functions with more than {MAX_PARAMETERS} parameters (put them in a group): {wide}"


@pytest.mark.parametrize("argv, check, words", [
    (["sweep", "--eps", "-1"], (ThreatModel, "eps"), "--eps must be a finite number > 0"),
    (["evaluate", "--eps", "0"], (ThreatModel, "eps"), "--eps must be a finite number > 0"),
    (["attack", "--norm", "7"], (ThreatModel, "norm"), "unknown norm"),
    (["certify", "--sigma", "-0.5"], (Smoothing, "sigma"), "--sigma must be a positive number"),
    (["certify-front", "--delta", "2"], (Smoothing, "delta"), "--delta must be a failure probability"),
])
def test_a_bad_value_is_checked_in_one_place(argv, check, words, tmp_path, capsys, monkeypatch):
    """The message comes from the group's own check, which ran exactly once (not again per config or batch)."""
    cls, _ = check
    calls = []
    original = cls.__post_init__

    def counted(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(cls, "__post_init__", counted)
    assert main([*argv, "-n", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert len(calls) == 1, f"{cls.__name__} was checked {len(calls)} times"


def test_a_good_run_checks_each_group_once(monkeypatch):
    from robustmix.cli import make_config

    calls = []
    original = ThreatModel.__post_init__
    monkeypatch.setattr(ThreatModel, "__post_init__", lambda self: (calls.append(self), original(self))[1])
    cfg, _ = make_config(parse_args(["sweep", "--eps", "0.05", "--norm", "linf", "--out", "/tmp/rm-groups-test"]))
    checked = list(calls)
    assert len(checked) == 1 and checked[0] == cfg.sweep.threat == ThreatModel("inf", 0.05)


def test_yaml_is_merged_as_data_and_typed_flags_win(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sigma: 0.25\nsamples: 200\n")
    args = parse_args(["certify", "--config", str(cfg), "--samples", "300"])
    assert (args.sigma, args.num_samples) == (0.25, 300)
    cfg.write_text("eps: 0.3\nnorm: 2\n")
    args = parse_args(["sweep", "--config", str(cfg), "--eps", "0.05"])
    assert (args.eps, args.norm) == (0.05, "2")


def test_typed_flags_win_over_the_yaml_file_also_for_booleans_and_exclusive_options(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("early_stop: true\ndata: null\n")           # null: an option whose default is none
    args = parse_args(["sweep", "--config", str(cfg), "--no-early-stop"])
    assert args.early_stop is False and not hasattr(args, "data")   # null: as if not given
    cfg.write_text("n: 100\nalpha: 0.7\n")
    args = parse_args(["evaluate", "--config", str(cfg), "--indices", "picked.txt", "--model", "fmnist-std-cnn"])
    assert args.indices == "picked.txt" and not hasattr(args, "n") and not hasattr(args, "alpha")


def test_booleans_that_default_on_have_a_no_flag():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["evaluate"]
    flags = {o for a in sub._actions for o in a.option_strings}
    assert {"--diagnostics", "--no-diagnostics"} <= flags
    assert parse_args(["evaluate", "--no-diagnostics"]).diagnostics is False


def test_literal_choices_come_from_the_type():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["calibrate"]
    action = next(a for a in sub._actions if "--mixing-net" in a.option_strings)
    assert list(action.choices) == ["mlp", "residual"]


def test_old_keywords_of_a_config_still_work_for_one_release():
    from robustmix.experiments import SweepConfig

    with pytest.deprecated_call():
        old = SweepConfig(eps=0.2, norm="2")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = SweepConfig(threat=ThreatModel("2", 0.2))
    assert old == new and old.to_dict() == new.to_dict()
    with pytest.raises(TypeError, match="not both"):
        SweepConfig(threat=ThreatModel(), eps=0.2)


def test_old_keywords_of_a_run_function_still_work_for_one_release(tmp_path):
    import torch
    from torch import nn

    from robustmix.experiments import Records, SweepConfig, run_sweep

    torch.manual_seed(0)
    g, h = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    cfg = SweepConfig(alphas=[0.0, 1.0], steps=2)
    new = run_sweep(g, h, x, y, cfg, records=Records(tmp_path / "a.jsonl", progress=False))
    with pytest.deprecated_call():
        old = run_sweep(g, h, x, y, cfg, records_path=tmp_path / "b.jsonl", progress=False)
    assert old.accuracy == new.accuracy and old.settings == new.settings


def test_groups_module_names_its_groups():
    assert set(groups.__all__) >= {"ThreatModel", "Smoothing"}
    assert ThreatModel("L2", 1).norm == "2" and ThreatModel(2.0, 1).p == 2.0


@pytest.mark.parametrize("argv", [
    ["sweep", "-n", "4", "--steps", "1", "--alphas", "0", "1", "--eps", "0.05", "--norm", "linf"],
    ["certify", "--sigma", "0.5", "--samples", "20", "-n", "2", "--alphas", "1"],
])
def test_a_summarys_settings_read_back_as_the_commands_typed_config(argv, tmp_path):
    from robustmix._config import flat
    from robustmix.cli import TABLE
    from robustmix.commands.common import config_from_settings
    from robustmix.results import Settings, load_summary

    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 0
    summary = load_summary(out / "summary.json")
    assert isinstance(summary.settings, Settings)
    report = (out / "report.md").read_text()   # the report names the models and settings, defaults included
    assert "## Settings" in report and f"| rob | {summary.settings['rob']} |" in report
    written = json.loads((out / "settings.json").read_text())          # the command's config, as written
    cfg = config_from_settings(TABLE[argv[0]], written, out)
    assert {k: v for k, v in json.loads(json.dumps(flat(cfg))).items() if k not in ("out", "fresh")} == \
        {k: v for k, v in written.items() if k != "out"}
    shared = {k: v for k, v in flat(cfg).items() if k in summary.settings and k != "out"}
    as_json = json.loads(json.dumps(shared))   # tuples are lists in JSON
    assert shared and all(summary.settings[k] == v for k, v in as_json.items()), shared
    if argv[0] == "sweep":
        assert cfg.sweep.threat == ThreatModel("inf", 0.05) and cfg.inputs.n == 4
    else:
        assert cfg.smoothing == Smoothing(0.5, 20) and cfg.alphas == [1.0]


def test_a_runs_settings_json_reruns_it_as_a_config_file(tmp_path, capsys):
    """settings.json lists every option (nulls and robustmix's internal knobs included): as --config it reruns
    the same run."""
    from robustmix.results import load_summary

    first, again = tmp_path / "a", tmp_path / "b"
    assert main(["sweep", "-n", "6", "--steps", "1", "--alphas", "0", "1", "--eps", "0.05", "--out", str(first)]) == 0
    assert main(["sweep", "--config", str(first / "settings.json"), "--out", str(again)]) == 0
    one, two = (load_summary(p / "summary.json") for p in (first, again))
    assert one.accuracy == two.accuracy and one.settings["eps"] == two.settings["eps"] == 0.05
    written = json.loads((first / "settings.json").read_text())
    assert "step_size" in written                                    # an internal knob, passed over at its default
    (tmp_path / "changed.json").write_text(json.dumps({**written, "step_size": 0.5}))
    assert main(["sweep", "--config", str(tmp_path / "changed.json"), "--out", str(tmp_path / "c")]) == 2
    assert "robustmix's own (not an option of sweep)" in capsys.readouterr().err
