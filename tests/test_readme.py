"""The README's 'Bring your own models' section, run as written."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    return text[start:text.index("\n## ", start + 1)]


def test_bring_your_own_models_section_runs_verbatim(tmp_path, monkeypatch):
    import json

    section = _section("Bring your own models")
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    python = [code for lang, code in blocks if lang == "python"]
    shell = [line for lang, code in blocks if lang == "bash" for line in code.splitlines() if line.strip()]
    assert len(python) == 2 and len(shell) >= 4
    (tmp_path / "mymodels.py").write_text(python[0])
    (tmp_path / "build.py").write_text(python[1])
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "build.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert "torch.Size([2, 10])" in res.stdout
    for line in shell:
        argv = shlex.split(line)
        assert argv[0] == "robustmix"
        res = subprocess.run([sys.executable, "-m", "robustmix", *argv[1:]], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, (line, res.stderr[-2000:])
    assert (tmp_path / "my-mixed.safetensors").exists() and (tmp_path / "plain-mixed.pt2").exists()
    summary = json.loads((tmp_path / "runs" / "plain-eval" / "summary.json").read_text())
    assert summary["kind"] == "evaluate" and summary["n"] == 20
