"""The README's and docs/'s own commands, verbatim: every ```bash line and every ```python block runs here.

`pip install` and `python -m pytest` segments are what CI itself runs around this test (and reinstalling
inside a test would change the environment under test), so they are skipped; every other segment of a line
(split at `&&`) runs in a fresh shell with no network. Each ```bash block stands on its own, as a reader copies it:
its lines run in order, in a fresh folder with a fresh FERZOO_HOME of its own, and two blocks run at a time (CI has
two cores; the commands mostly wait on TensorFlow's import). Each page under docs/ is run the same way as
README.md (```text and ```sh blocks are shown, not run: commands that need real data or take long). File listings shown for a third-party package (```toml, ```py) are what
test_third_party.py builds and installs.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
SKIP = ("pip install", "python -m pytest")


def blocks(language: str, page: Path = README) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.S | re.M)


def block_commands(page: Path = README) -> list[list[str]]:
    """The commands of each ```bash block (comments dropped, lines split at `&&`, the setup segments skipped)."""
    out = []
    for block in blocks("bash", page):
        commands = []
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            for part in (p.strip() for p in line.split("&&")):
                if part and not part.startswith(SKIP):
                    commands.append(part)
        if commands:
            out.append(commands)
    return out


def bash_commands(page: Path = README) -> list[str]:
    return [command for block in block_commands(page) for command in block]


def run_block(commands: list[str], folder: Path, page: Path) -> dict[str, str]:
    """One block's commands in order, in ``folder/work`` with FERZOO_HOME ``folder/home``, offline; each must exit 0."""
    env = {**os.environ, "FERZOO_HOME": str(folder / "home"), "FERZOO_OFFLINE": "1"}
    env.pop("FERZOO_LOAD_PLUGINS", None)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quiet TensorFlow by itself
    work = folder / "work"
    work.mkdir(parents=True)
    outputs = {}
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, (f"{page.relative_to(ROOT)} command failed: {command}\n"
                                      f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        outputs[command] = proc.stdout + proc.stderr
        assert "oneDNN custom operations" not in proc.stderr  # TensorFlow's log lines stay quiet by default
    return outputs


def run_commands(page: Path, tmp_path: Path) -> dict[str, str]:
    """Every ```bash block of ``page``, two at a time, each in a folder of its own; the outputs by command."""
    from concurrent.futures import ThreadPoolExecutor

    todo = sorted(enumerate(block_commands(page)), key=lambda item: -len(item[1]))  # the longest blocks first
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda item: run_block(item[1], tmp_path / f"block{item[0]}", page), todo))
    return {command: output for outputs in done for command, output in outputs.items()}


def test_the_readme_has_its_two_setup_commands_first():
    first = blocks("bash")[0].splitlines()
    assert first[0].startswith("pip install -e . && ferzoo predict") and "--demo" in first[0]
    assert first[1].startswith('pip install -e ".[test,torch]" && python -m pytest')
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest" in ci and '-e ".[test,torch]"' in ci


def test_every_readme_command_runs(tmp_path):
    commands = bash_commands()
    assert len(commands) >= 5
    outputs = run_commands(README, tmp_path)
    main = next(c for c in commands if c == "ferzoo predict --demo")
    assert "astronaut_face.png: happy" in outputs[main]
    quick = next(c for c in commands if c.startswith("ferzoo train deep_emotion --dataset synthetic") and "--epochs" not in c)
    acc = float(re.search(r"^accuracy: ([0-9.]+)", outputs[quick], flags=re.M).group(1))
    assert acc >= 0.8, f"the quick start must visibly learn; val accuracy {acc}"


DOC_PAGES_WITH_COMMANDS = [page for page in DOCS if bash_commands(page)]


@pytest.mark.parametrize("page", DOC_PAGES_WITH_COMMANDS, ids=lambda page: page.name)
def test_every_docs_command_runs(page, tmp_path):
    run_commands(page, tmp_path)


PYTHON_BLOCKS = [(page, index) for page in PAGES for index in range(len(blocks("python", page)))]


@pytest.mark.parametrize("page, index", PYTHON_BLOCKS,
                         ids=[f"{page.name}-{index}" for page, index in PYTHON_BLOCKS])
def test_every_python_block_runs(page, index, tmp_path, monkeypatch):
    code = blocks("python", page)[index]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FERZOO_OFFLINE", "1")
    monkeypatch.setenv("FERZOO_HOME", str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ})
    assert proc.returncode == 0, f"{page.relative_to(ROOT)} python block {index} failed:\n{code}\n{proc.stderr[-3000:]}"


def test_the_readme_links_every_docs_page_and_every_link_resolves():
    """docs/ pages are reached from the README, and no relative link in README.md or docs/ points nowhere."""
    readme = README.read_text()
    assert DOCS, "docs/ has no pages"
    for page in DOCS:
        assert f"(docs/{page.name}" in readme, f"README.md does not link docs/{page.name}"
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links {target}, which does not exist"


def test_the_models_table_quotes_the_recorded_benchmarks():
    """Each shipped weights' figures in the README's models table are its card's `ferzoo benchmark --record` row
    (one pass, then the card's test-time augmentation), to the hundredth of a point."""
    import re

    from ferzoo import weights as W

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Models and weights", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    shipped = [(line, re.search(r"shipped as `([a-z0-9_]+)\.([a-z0-9_-]+)`", line)) for line in rows]
    shipped = [(line, m.groups()) for line, m in shipped if m]
    assert len(shipped) >= 3, "the models table names no shipped weights"
    entries = W.entries()
    for line, (name, tag) in shipped:
        card = entries[(name, tag)]
        recorded = card.get("benchmarks", {}).get(f"{card['dataset']}.val")
        assert recorded, f"{name}.{tag}: no ferzoo benchmark --record row on {card['dataset']}.val in its card"
        single = re.search(r"one pass \*{0,2}([0-9.]+)%", line)
        assert single and float(single.group(1)) == round(100 * recorded["accuracy"], 2), (name, tag, line)
        if recorded.get("tta_accuracy") is not None:
            with_tta = re.search(rf"\*{{0,2}}{recorded['tta']} ([0-9.]+)%", line)
            assert with_tta and float(with_tta.group(1)) == round(100 * recorded["tta_accuracy"], 2), (name, tag)


def test_the_first_paragraph_quotes_the_defaults_recorded_benchmark():
    """The README's opening figures for the embedded default are its card's `ferzoo benchmark --record` row."""
    from ferzoo import weights as W

    intro = README.read_text().split("## ", 1)[0]
    row = W.resolve(W.DEFAULT_MODEL, W.DEFAULT_WEIGHTS)[1]["benchmarks"]["fer2013.val"]
    tta = re.search(r"([0-9.]+)% on its PublicTest split with ten-crop averaging", intro)
    single = re.search(r"([0-9.]+)% in a\s+single pass", intro)
    assert row["tta"] == "tencrop" and tta and single, "the README's first paragraph no longer quotes the default"
    assert float(tta.group(1)) == round(100 * row["tta_accuracy"], 2)
    assert float(single.group(1)) == round(100 * row["accuracy"], 2)


def test_the_readme_says_what_the_shipped_weights_weigh():
    import re

    from ferzoo import weights as W

    total = 0
    for card in W.entries().values():
        for source in card.get("sources", []):
            if "package" in source:
                total += W._package_file(source).stat().st_size
    quoted = re.search(r"The shipped weights weigh ([0-9.]+) MB in all", (ROOT / "README.md").read_text())
    assert quoted and float(quoted.group(1)) == round(total / 1e6, 1), total


@pytest.mark.slow
def test_the_readme_says_what_the_wheel_weighs(tmp_path):
    quoted = re.search(r"The wheel `pip wheel --no-deps \.` builds is about ([0-9.]+) MB", README.read_text())
    assert quoted, "the README no longer says what the wheel weighs"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=600,
    )
    (wheel,) = tmp_path.glob("ferzoo-*.whl")
    size_mb = wheel.stat().st_size / 1e6
    # "about": code and docs change the size by tens of kB, a weights file by megabytes
    assert abs(size_mb - float(quoted.group(1))) <= 1.0, size_mb
