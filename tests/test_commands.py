"""One contract for every command: generated help, a typed summary, and a report that holds its numbers."""

import argparse
import contextlib
import io
import json

import pytest

from robustmix.experiments.runner import Records

from robustmix.cli import TABLE, build_parser, main
from robustmix.reports.format import fmt_ci
from robustmix.results import binomial_ci, load_summary


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


@pytest.mark.parametrize("argv", [["--help"], ["-h"]] + [[c, "--help"] for c in TABLE] + [[c, "-h"] for c in TABLE])
def test_every_help_exits_zero(argv):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0 and "usage: robustmix" in buf.getvalue()


def test_every_flag_has_help_and_its_default():
    parser, subs = _subparsers()
    for name, sub in subs.items():
        for action in sub._actions:
            if action.help == argparse.SUPPRESS or action.dest in ("help", "config"):
                continue
            assert action.help and "(default: " in action.help, f"{name} {action.option_strings}: {action.help!r}"
    for action in parser._actions:
        if action.dest not in ("help", "command"):
            assert action.help, action.option_strings


def test_global_options_before_or_after_the_command(tmp_path, capsys):
    assert main(["list", "--device", "cpu", "--threads", "1", "fmnist-std*"]) == 0
    assert main(["--device", "cpu", "list", "fmnist-std*"]) == 0
    assert "fmnist-std-cnn" in capsys.readouterr().out
    assert main(["list", "--device", "tpu"]) == 2
    assert "is not a device" in capsys.readouterr().err


def test_indices_with_n_is_refused(tmp_path, capsys):
    f = tmp_path / "idx.txt"
    f.write_text("1\n2\n")
    assert main(["evaluate", "--indices", str(f), "-n", "5", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--indices and -n do not go together" in err and len(err.strip().splitlines()) == 1


def _pct(v, ci):
    return fmt_ci(v, ci)


def _expected(s) -> list[str]:
    """Headline strings the report must show for a summary: values with their intervals, and n."""
    kind = s.KIND
    if kind == "sweep":
        return [f"n = {s.n}"] + [_pct(s.accuracy[k][i], s.ci95[k][i]) for k in s.accuracy for i in range(len(s.alphas))]
    if kind == "tradeoff":
        return [f"n = {s.n}"] + [_pct(v, binomial_ci(round(v * s.n), s.n)) for c in s.curves.values() for v in c["clean"]]
    if kind == "attack":
        return [str(s.n)] + [_pct(v, s.ci95[k]) for k, v in s.accuracy.items()]
    if kind == "evaluate":
        return [f"n = {s.n}", _pct(s.accuracy, s.ci95), _pct(s.clean_accuracy, s.clean_ci95)]
    if kind == "certify":
        out = [f"n = {s.n}"]
        for key, c in s.curves.items():
            out += [_pct(v, binomial_ci(round(v * s.n), s.n)) for v in c["clean"]]
            out += [_pct(s.certified_at(key, a, 0.5), binomial_ci(round(s.certified_at(key, a, 0.5) * s.n), s.n))
                    for a in s.alphas]
        return out
    if kind == "calibration":
        t = s.test
        return [str(t["n"]), _pct(t["clean"], t["clean_ci95"]), _pct(t["robust"], t["robust_ci95"])]
    if kind == "fig3":
        rs = s.certified["rs"]
        v = rs["thm2_tight"]["mixture"]["clean"][0]
        return [f"n = {s.n}", _pct(v, binomial_ci(round(v * s.n), s.n)), "point estimate", "sound"]
    if kind == "certify-front":
        pts = [p for p in s.points if p["family"] != "cohen"]
        return [f"n = {s.n}", "ACES"] + [_pct(p["clean"], p["clean_ci95"]) for p in pts] + \
            [_pct(p["certified"][str(r)], p["certified_ci95"][str(r)]) for p in pts for r in s.radii]
    raise AssertionError(kind)


TINY = {
    "sweep": ["sweep", "-n", "4", "--alphas", "0", "1", "--steps", "1"],
    "tradeoff": ["tradeoff", "-n", "4", "--steps", "1", "--gammas", "0", "inf", "--trusts", "one"],
    "attack": ["attack", "-n", "4", "--steps", "1", "--autoattack", "none", "--alpha", "0.7"],
    "evaluate": ["evaluate", "-n", "4", "--attacks", "aa-apgd-ce", "--steps", "2", "--no-diagnostics"],
    "certify-sound": ["certify", "-n", "3", "--sigma", "0.5", "--samples", "200", "--alphas", "0.8", "1.0", "--sound"],
    "certify-estimate": ["certify", "-n", "3", "--sigma", "0.5", "--samples", "100", "--alphas", "1.0"],
    "certify-lipschitz": ["certify", "-n", "3", "--rob", "fmnist-lipschitz", "--lipschitz", "--alphas", "0.7", "1.0"],
    "fig3": ["fig3", "-n", "3", "--samples", "100"],
    "certify-front": ["certify-front", "-n", "3", "--samples", "60", "--n0", "10", "--sigmas", "0.25", "0.5",
                      "--noise-models", "fmnist-noise-0.25-cnn", "fmnist-noise-0.50-cnn", "--alphas", "0.8", "1.0",
                      "--thresholds", "0.1", "1.0"],
    "calibrate": ["calibrate", "-n", "8", "--target", "0.8", "--steps", "2", "--confirm-steps", "2", "--alphas", "0.5",
                  "1.0"],
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_each_command_then_report(name, tmp_path, capsys):
    out = tmp_path / "run"
    argv = TINY[name] + ["--out", str(out)]
    assert main(argv) == 0
    summary = load_summary(out / "summary.json")
    assert summary.command == "robustmix " + " ".join(argv)
    for f in ("report.html", "report.md"):
        (out / f).unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "report:" in capsys.readouterr().out
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    for needle in _expected(summary):
        assert needle in md, (needle, md)
    assert summary.command.split(" --out")[0] in md and "95%" in md and len(page) > 800
    if name.startswith("certify-estimate"):
        assert "not sound" in md.lower() or "point estimate" in md


def test_report_on_a_folder_without_a_summary(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "summary.json" in err and "demo" not in err


@pytest.mark.parametrize("payload,needle", [
    ({"kind": "bogus", "schema_version": 1}, "unknown summary kind 'bogus'"),
    ({"kind": "sweep", "schema_version": 99, "alphas": [], "n": 0, "accuracy": {}, "ci95": {}, "table1": {}},
     "newer than this robustmix"),
])
def test_report_refuses_unknown_or_newer_summaries(payload, needle, tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps(payload))
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_saved_adversarial_inputs_verify_and_tampering_is_refused(tmp_path, capsys, caplog):
    import torch

    adv = tmp_path / "adv.pt"
    assert main(["evaluate", "-n", "4", "--attacks", "aa-apgd-ce", "--steps", "2", "--no-diagnostics", "--alpha", "0.7",
                 "--save-adversarial", str(adv), "--out", str(tmp_path / "eval")]) == 0
    claimed = load_summary(tmp_path / "eval" / "summary.json")
    assert main(["verify", str(adv), "--out", str(tmp_path / "v")]) == 0
    v = load_summary(tmp_path / "v" / "summary.json")
    assert v.n == 4 and v.accuracy == claimed.accuracy and v.disagreements == 0
    assert v.evaluation["forward_passes"] == 2 and v.evaluation["clean_accuracy"] == claimed.clean_accuracy
    assert "forward passes per prediction | 2" in (tmp_path / "v" / "report.md").read_text()
    saved = torch.load(adv, weights_only=True)
    capsys.readouterr()

    def refused(data, needle, *flags, code=2):
        bad = tmp_path / "bad.pt"
        if isinstance(data, bytes):
            bad.write_bytes(data)
        else:
            torch.save(data, bad)
        assert main(["verify", str(bad), *flags, "--out", str(tmp_path / "v2")]) == code
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1, err

    over = dict(saved, x_adv=(saved["x_adv"] + 0.3).clamp(0, 1))
    refused(over, "outside the l_inf ball")
    refused(dict(saved, model={**saved["model"], "alpha": 0.2}), "other weights")
    refused(dict(saved, model={"model": "fmnist-at-l2-cnn"}), "other weights")
    refused(adv.read_bytes()[:200], "truncated")
    refused(dict(saved, eps=float("nan")), "not an l_inf or l_2 ball of finite radius")
    refused(dict(saved, norm="-inf"), "not an l_inf or l_2 ball of finite radius")
    refused(dict(saved, model={"model": "os:getcwd"}), "would import code")       # a file never picks code to run
    twice = saved["indices"].clone()
    twice[1] = twice[0]
    refused(dict(saved, indices=twice, x_adv=saved["x_adv"][[0, 0, 2, 3]], labels=saved["labels"][[0, 0, 2, 3]]),
            "more than once")
    refused(dict(saved, indices=saved["indices"].float()), "1-d integer tensor")
    refused({k: v for k, v in saved.items() if k != "robust"}, "missing ['robust']")
    for flags in (["--eps", "0.05"], ["--norm", "2"]):                   # another threat model than the file's
        assert main(["verify", str(adv), *flags, "--out", str(tmp_path / "v3")]) == 2
        err = capsys.readouterr().err
        assert "was made for the l_inf ball of radius" in err and len(err.strip().splitlines()) == 1, err
    assert main(["verify", str(adv), "--norm", "inf", "--eps", str(saved["eps"]), "--out", str(tmp_path / "v4")]) == 0
    refused({"x_adv": saved["x_adv"]}, "not a robustmix adversarial file")
    nan = saved["x_adv"].clone()
    nan[0, 0, 0, 0] = float("nan")
    refused(dict(saved, x_adv=nan), "NaN")
    refused(dict(saved, accuracy=1.0), "not the mean of its outcomes")
    refused(dict(saved, accuracy="0.5"), "not the mean of its outcomes")
    flipped = saved["robust"].clone()
    flipped[0] = ~flipped[0]
    lie = dict(saved, robust=flipped, accuracy=float(flipped.double().mean()))
    refused(lie, "verification failed: 1 example(s) differ", "--tolerance", "0", code=3)   # outcomes that do not hold
    refused(dict(saved, labels=(saved["labels"] + 1) % 10), "labels differ")
    refused(dict(saved, labels=saved["labels"].float()), "labels are not 4 integers")
    refused(dict(saved, x_adv=saved["x_adv"].tolist()), "not a floating-point tensor")
    refused(dict(saved, x_adv=saved["x_adv"][:, :, :-1]), "does not fit")
    # an outcome that flips only within the tolerance of the boundary (another device's rounding) is reported
    torch.save(lie, tmp_path / "lie.pt")
    assert main(["verify", str(tmp_path / "lie.pt"), "--tolerance", "1e9", "--out", str(tmp_path / "v5")]) == 0
    v5 = load_summary(tmp_path / "v5" / "summary.json")
    assert v5.disagreements == 1 and v5.accuracy == claimed.accuracy and v5.smallest_margin >= 0
    assert "1 example(s) differ from the file's outcomes on the decision boundary" in caplog.text
    torch.save(dict(saved, x_adv=saved["x_adv"].double()), tmp_path / "f64.pt")   # any float dtype is checked
    assert main(["verify", str(tmp_path / "f64.pt"), "--out", str(tmp_path / "v6")]) == 0
    assert load_summary(tmp_path / "v6" / "summary.json").accuracy == claimed.accuracy
    # the evaluation's own folder is not overwritten by verify's summary
    assert main(["verify", str(adv), "--out", str(tmp_path / "eval")]) == 2
    assert "holds the results of 'robustmix evaluate'" in capsys.readouterr().err
    assert load_summary(tmp_path / "eval" / "summary.json").KIND == "evaluate"
    assert main(["verify", str(adv), "--tolerance", "-1", "--out", str(tmp_path / "v7")]) == 2
    assert main(["evaluate", "--model", "fmnist-at-linf-cnn", "--alpha", "0.3", "-n", "2"]) == 2
    assert "--model and --alpha do not go together" in capsys.readouterr().err


def test_verify_finds_a_model_named_relative_to_where_evaluate_ran(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    assert main(["mix", "--alpha", "0.6", "--out", "mixed.safetensors"]) == 0
    assert main(["evaluate", "--model", "mixed.safetensors", "-n", "3", "--attacks", "aa-apgd-ce", "--steps", "1",
                 "--no-diagnostics", "--save-adversarial", "runs/e/adv.pt", "--out", "runs/e"]) == 0
    monkeypatch.chdir(tmp_path)                     # elsewhere: the recorded path is found beside the file
    assert main(["verify", "project/runs/e/adv.pt", "--out", "v"]) == 0
    assert load_summary(tmp_path / "v" / "summary.json").model["model"] == str(project / "mixed.safetensors")
    text = (tmp_path / "v" / "report.md").read_text()
    assert "model `" in text and "{" not in text.split("re-checked against")[1].split("\n")[0]


def test_verify_shows_only_what_it_checked_and_the_file_claims_apart(tmp_path, capsys):
    import torch

    adv = tmp_path / "adv.pt"
    assert main(["evaluate", "-n", "4", "--attacks", "aa-apgd-ce", "--steps", "1", "--no-diagnostics",
                 "--save-adversarial", str(adv), "--out", str(tmp_path / "eval")]) == 0
    claimed = load_summary(tmp_path / "eval" / "summary.json")
    saved = torch.load(adv, weights_only=True)
    # a claimed value outside its own claimed interval: a malformed file, one line, exit 2
    aa = {"accuracy": 0.95, "ci95": [0.704, 0.760], "n": 4}
    torch.save(dict(saved, evaluation={**saved["evaluation"], "clean_accuracy": 0.99, "autoattack": aa}), adv)
    capsys.readouterr()
    assert main(["verify", str(adv), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "AutoAttack accuracy 95.0% lies outside its own 95% interval [70.4, 76.0]" in err[0]
    # edited claims that agree with themselves are shown, apart and unchecked; the clean accuracy is recomputed
    aa = {"accuracy": 0.95, "ci95": [0.9, 0.99], "n": 4}
    torch.save(dict(saved, evaluation={**saved["evaluation"], "clean_accuracy": 0.99, "autoattack": aa}), adv)
    assert main(["verify", str(adv), "--out", str(tmp_path / "v")]) == 0
    v = load_summary(tmp_path / "v" / "summary.json")
    assert v.clean_accuracy == claimed.clean_accuracy != 0.99 and v.index_range == [0, 3] and v.contiguous
    checked, claims = (tmp_path / "v" / "report.md").read_text().split("## Unchecked claims of the evaluation")
    assert "99.0" not in checked and "95.0" not in checked and fmt_ci(claimed.clean_accuracy, v.clean_ci95) in checked
    assert f"robust accuracy of this model in the l_inf ball of radius 0.1 is at most {100 * v.accuracy:.1f}%" \
        in checked and "| 4 | 0..3, contiguous |" in checked
    assert "| clean accuracy (%) | 99.0 |" in claims and "95.0 [90.0, 99.0]" in claims
    assert "The claimed clean accuracy (99.0%) differs from this model's" in claims
    # a hand-picked subset shows: its index range is not contiguous
    (tmp_path / "picked.txt").write_text("30\n2\n7\n")
    assert main(["evaluate", "--indices", str(tmp_path / "picked.txt"), "--attacks", "aa-apgd-ce", "--steps", "1",
                 "--no-diagnostics", "--save-adversarial", str(tmp_path / "picked.pt"), "--out",
                 str(tmp_path / "eval2")]) == 0
    assert main(["verify", str(tmp_path / "picked.pt"), "--out", str(tmp_path / "v2")]) == 0
    assert "2..30, not contiguous (3 of 29)" in capsys.readouterr().out
    assert "| 3 | 2..30, not contiguous (3 of 29) |" in (tmp_path / "v2" / "report.md").read_text()


def test_verify_rebuilds_the_users_own_mixture_and_names_the_options(tmp_path, monkeypatch, capsys):
    import sys

    (tmp_path / "mymodels.py").write_text("from robustmix.models import load\n\n\ndef make_std():\n"
                                          "    return load('fmnist-std-cnn')\n\n\ndef make_rob():\n"
                                          "    return load('fmnist-at-linf-cnn')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    adv, mine = tmp_path / "adv.pt", ["--std", "mymodels:make_std", "--rob", "mymodels:make_rob"]
    assert main(["evaluate", *mine, "--alpha", "0.7", "-n", "3", "--attacks", "aa-apgd-ce", "--steps", "1",
                 "--no-diagnostics", "--save-adversarial", str(adv), "--out", str(tmp_path / "eval")]) == 0
    monkeypatch.delitem(sys.modules, "mymodels")
    options = "--std mymodels:make_std --rob mymodels:make_rob --alpha 0.7"
    capsys.readouterr()
    for argv, words in ([[], f"would import code or fetch weights; verify it with {options}"],
                        [mine[:2], f"verify it with {options}"],                # h would come from the file: refused
                        [["--model", "fmnist-std-cnn"], f"other weights (SHA-256 "],
                        [[*mine, "--alpha", "0.5"], f"verify it with the model it was made for, recorded as {options}"]):
        assert main(["verify", str(adv), *argv, "--out", str(tmp_path / "v")]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
        if not argv:
            assert "mymodels" not in sys.modules                # the file alone imports no code
    assert main(["verify", str(adv), *mine, "--alpha", "0.7", "--out", str(tmp_path / "v")]) == 0
    v = load_summary(tmp_path / "v" / "summary.json")
    assert v.model == {"std": "mymodels:make_std", "rob": "mymodels:make_rob", "alpha": 0.7} and v.disagreements == 0
    # a file made for one model is refused a partial mixture, naming the options that work
    assert main(["evaluate", "--model", "fmnist-std-cnn", "-n", "2", "--attacks", "aa-apgd-ce", "--steps", "1",
                 "--no-diagnostics", "--save-adversarial", str(tmp_path / "g.pt"), "--out", str(tmp_path / "e2")]) == 0
    capsys.readouterr()
    assert main(["verify", str(tmp_path / "g.pt"), "--alpha", "0.5", "--out", str(tmp_path / "v2")]) == 2
    assert "was made for one model (--model fmnist-std-cnn), not a mixture; give that --model, or all of --std, " \
           "--rob and --alpha" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "g.pt"), "--model", "fmnist-std-cnn", "--std", "fmnist-std-cnn",
                 "--out", str(tmp_path / "v2")]) == 2
    assert "--model and --std do not go together" in capsys.readouterr().err


def test_save_adversarial_is_checked_first_and_says_where_it_wrote(tmp_path, caplog, capsys):
    import logging

    caplog.set_level(logging.INFO, logger="robustmix")
    (tmp_path / "afile").write_text("x")
    assert main(["evaluate", "-n", "2", "--save-adversarial", str(tmp_path / "afile" / "adv.pt"),
                 "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--save-adversarial" in err[0] and "cannot be written" in err[0]
    assert not (tmp_path / "eval").exists()                      # refused before any work
    assert main(["evaluate", "-n", "2", "--save-adversarial", str(tmp_path), "--out", str(tmp_path / "eval")]) == 2
    assert f"is a folder; give a file name such as {tmp_path / 'adversarial.pt'}" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()
    adv = tmp_path / "sub" / "adv.pt"
    argv = ["evaluate", "-n", "2", "--attacks", "aa-apgd-ce", "--steps", "1", "--no-diagnostics",
            "--save-adversarial", str(adv), "--out", str(tmp_path / "eval")]
    assert main(argv) == 0
    assert f"wrote the 2 worst-case inputs to {adv}; re-check them with 'robustmix verify {adv}'" in caplog.text
    first = adv.read_bytes()
    assert main(argv) == 0 and adv.read_bytes() == first      # the same command again resumes and rewrites it


def test_the_architecture_docs_new_command_works_as_written(tmp_path, monkeypatch, capsys):
    import dataclasses
    import re
    from pathlib import Path
    from typing import ClassVar

    import torch

    from robustmix import cli, results
    from robustmix._config import group, option
    from robustmix.commands.common import Command, Context, Data, Output, command, load_data, load_model
    from robustmix.reports.format import fmt_ci

    doc = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    code = "\n".join(re.findall(r"```python\n(.*?)```", doc, re.S))
    assert len([line for line in code.splitlines() if line.strip() and not line.startswith("#")]) <= 30
    namespace = {"dataclasses": dataclasses, "ClassVar": ClassVar, "torch": torch, "option": option,
                 "Summary": results.Summary, "Section": results.Section, "_with_command": results._with_command,
                 "binomial_ci": results.binomial_ci, "fmt_ci": fmt_ci, "Output": Output, "Data": Data,
                 "Command": Command, "group": group,
                 "Context": Context, "load_data": load_data, "load_model": load_model, "command": command}
    try:
        exec(compile(code, "architecture.md", "exec"), namespace)
        monkeypatch.setitem(cli.TABLE, "clean", namespace["CleanCommand"])
        out = tmp_path / "clean"
        assert main(["clean", "-n", "50", "--out", str(out)]) == 0
        summary = load_summary(out / "summary.json")
        assert summary.KIND == "clean" and summary.n == 50 and 0.7 < summary.accuracy <= 1
        assert fmt_ci(summary.accuracy, summary.ci95) in (out / "report.md").read_text()
    finally:
        results.KINDS.pop("clean", None)


def test_fresh_moves_aside_everything_the_old_run_wrote(tmp_path):
    out = tmp_path / "o"
    assert main(TINY["sweep"] + ["--out", str(out)]) == 0
    assert (out / "figures" / "fig2_alpha_sweep.png").exists()
    assert main(TINY["tradeoff"] + ["--out", str(out), "--fresh"]) == 0
    assert load_summary(out / "summary.json").KIND == "tradeoff"
    assert not (out / "figures" / "fig2_alpha_sweep.png").exists()       # nothing old mixed with the new run
    previous = list(out.glob("previous-*"))
    assert len(previous) == 1 and (previous[0] / "summary.json").exists()
    assert (previous[0] / "figures" / "fig2_alpha_sweep.png").exists()
    assert list(out.glob("records.jsonl.*.old"))                          # the runner kept the old records


@pytest.mark.parametrize("factory,needle", [
    ("nan_outputs", "returns NaN or infinite outputs"),
    ("probabilities", "returns probabilities (rows sum to 1); robustmix needs logits"),
    ("float64_weights", "has torch.float64 weights but the data are torch.float32"),
])
def test_models_are_probed_once_at_load(factory, needle, tmp_path, capsys):
    argv = ["sweep", "-n", "4", "--std", f"tests.bad_models:{factory}", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and f"tests.bad_models:{factory}" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "records.jsonl").exists()


def test_log_probabilities_are_valid_logits(tmp_path):
    assert main(["sweep", "-n", "2", "--alphas", "0", "1", "--steps", "1", "--std", "tests.bad_models:log_probabilities",
                 "--out", str(tmp_path / "o")]) == 0


@pytest.mark.parametrize("argv,needle", [
    (["certify", "-n", "2", "--sigma", "0"], "--sigma must be a positive number"),
    (["certify", "-n", "2", "--sigma", "0.5", "--sound", "--samples", "50"], "--samples (50) must be at least --n0"),
    (["mix", "--alpha", "0.5"], "give at least one of --out"),
    (["mix", "--alpha", "0.5", "--std", "tests.bad_models:log_probabilities", "--out", "OUT/m.safetensors"],
     "--out needs base models with robustmix cards"),
    (["train", "--out", "FILE/m.safetensors"], "is a file, not a folder"),
    (["calibrate", "--target", "0.9", "--export", "OUT"], "is a folder"),
])
def test_flags_refused_before_any_work(argv, needle, tmp_path, capsys):
    (tmp_path / "FILE").write_text("x")
    argv = [a.replace("OUT", str(tmp_path)).replace("FILE", str(tmp_path / "FILE")) for a in argv]
    if argv[0] in ("certify", "calibrate"):
        argv += ["--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_yaml_keys_may_be_the_long_option_names(tmp_path):
    from robustmix.cli import parse_args

    cfg = tmp_path / "c.yaml"
    cfg.write_text("samples: 200\nnum-examples: 2\nsigma: 0.5\nsound: true\n")
    args = parse_args(["certify", "--config", str(cfg), "--samples", "300"])
    assert args.num_samples == 300 and args.n == 2 and args.sigma == 0.5 and args.sound   # typed flags win


def test_results_owner_and_the_calibrate_confirmation_of_an_older_folder(tmp_path, pair):
    import torch

    from robustmix.commands.common import results_owner
    from robustmix.experiments.calibrate import _diagnostics_of
    from robustmix.experiments.evaluate_run import EvaluateConfig, run_evaluate

    (tmp_path / "summary.json").write_text(json.dumps({"command": "python scripts/x.py --split train"}))
    assert results_owner(tmp_path) is None                       # a script's summary belongs to no command
    (tmp_path / "summary.json").write_text(json.dumps({"command": "robustmix --device cuda pareto --out r"}))
    assert results_owner(tmp_path) == "pareto"
    records = tmp_path / "test-evaluate.jsonl"
    assert _diagnostics_of(records, fresh=False) is True         # a new folder runs the gradient-masking checks
    x = torch.rand(4, 12, generator=torch.Generator().manual_seed(0))
    run_evaluate(pair[0], x, pair[0](x).argmax(1), EvaluateConfig(attacks=["apgd-ce@model"], steps=1, diagnostics=False),
                 records=Records(records, progress=False))
    assert _diagnostics_of(records, fresh=False) is False        # records written without them resume as they are
    assert _diagnostics_of(records, fresh=True) is True
