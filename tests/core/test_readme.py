"""The README's own commands, verbatim: every ```bash line and every ```python block runs here.

`pip install` and `python -m pytest` segments are what CI itself runs around this test (and reinstalling
inside a test would change the environment under test), so they are skipped; every other segment of a line
(split at `&&`) runs in a fresh shell, in a fresh folder, with a fresh FERZOO_HOME and no network. File
listings shown for a third-party package (```toml, ```py) are built and installed by test_third_party.py.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
SKIP = ("pip install", "python -m pytest")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def bash_commands() -> list[str]:
    out = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in (p.strip() for p in line.split("&&")):
                if part and not part.startswith(SKIP):
                    out.append(part)
    return out


def test_the_readme_has_its_two_setup_commands_first():
    first = blocks("bash")[0].splitlines()
    assert first[0].startswith("pip install -e . && ferzoo predict") and "--demo" in first[0]
    assert first[1].startswith('pip install -e ".[test,torch]" && python -m pytest')
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and '-e ".[test,torch]"' in ci


def test_every_readme_command_runs(tmp_path):
    commands = bash_commands()
    assert len(commands) >= 5
    env = {**os.environ, "FERZOO_HOME": str(tmp_path / "home"), "FERZOO_OFFLINE": "1"}
    env.pop("FERZOO_LOAD_PLUGINS", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quiet TensorFlow by itself
    work = tmp_path / "work"
    work.mkdir()
    outputs = {}
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README command failed: {command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        outputs[command] = proc.stdout + proc.stderr
        assert "oneDNN custom operations" not in proc.stderr  # TensorFlow's log lines stay quiet by default
    main = next(c for c in commands if c == "ferzoo predict --demo")
    assert "astronaut_face.png: happy" in outputs[main]
    quick = next(c for c in commands if c.startswith("ferzoo train deep_emotion --dataset synthetic") and "--epochs" not in c)
    acc = float(re.search(r"^accuracy: ([0-9.]+)", outputs[quick], flags=re.M).group(1))
    assert acc >= 0.8, f"the quick start must visibly learn; val accuracy {acc}"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_every_readme_python_block_runs(index, tmp_path, monkeypatch):
    code = blocks("python")[index]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FERZOO_OFFLINE", "1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ})
    assert proc.returncode == 0, f"README python block {index} failed:\n{code}\n{proc.stderr[-3000:]}"
