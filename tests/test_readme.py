"""Every README command and snippet runs as written, runs as a stated fast variant, or is a
marked template.

Each shell command of the README (``&&`` chains split, ``\\`` continuations joined) and
each Python block must appear in the tables below, and every table entry must still be in
the README, so nothing is skipped silently: a new README line fails here until it is
classified.  The kinds (run, fast, parse, template, install, suite) and the runner are
``code_blocks.py``'s, shared with ``test_docs.py``.

Files a user brings (an official checkpoint, trained weights) are written by the fixture
as stand-ins for the placeholders, and ``runs/s1`` is a run folder written by the search's
own store and writers (``tests/search_result.py``), so the commands that read the demo's
results run here without a minutes-long search.
"""

from __future__ import annotations

import re

import pytest
from code_blocks import (
    ROOT,
    Runner,
    Step,
    check_parses,
    command_words,
    extras_in_pyproject,
    install_extra,
    make_workspace,
    producers,
    python_blocks,
    run_python_block,
)

from fbnetv3_zoo.cli.zoo import zoo_table

README = ROOT / "README.md"


COMMANDS: dict[str, Step] = {
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": Step(
        "tool", why="installs torch from PyTorch's CPU index; needs network"
    ),
    "pip install -e .[search]": Step("install"),
    "pip install -e .[all]": Step("install"),
    "python3 -m pytest -q -n 2": Step("suite"),
    "fbnetv3 search --out runs/s1": Step(
        "parse", why="a few minutes; tests/test_search_run.py runs small searches end to end"
    ),
    "fbnetv3 recipes": Step("run"),
    "fbnetv3 train --model resnet18 --recipe fbnetv3 --data digits --resolution 32 --epochs 30 --out runs/r18": Step(
        "fast", ("--epochs", "1", "--data", "digits:2"), "1 epoch on 20 images"
    ),
    "fbnetv3 validate --model resnet18 --checkpoint runs/r18/model.safetensors --data digits": Step(
        "run"
    ),
    "fbnetv3 search-report runs/s1": Step("run"),
    "fbnetv3 search --model resnet18 --data digits:30 --full-epochs 40 --out runs/r": Step(
        "parse", why="minutes; tests/test_recipe_search.py runs recipe searches end to end"
    ),
    "fbnetv3 train --model runs/s1/best/macs_le_0.4M.yaml --epochs 30 --out runs/t1": Step(
        "fast", ("--epochs", "1", "--data", "digits:2"), "1 epoch on 20 images"
    ),
    "fbnetv3 export runs/s1/best/macs_le_0.4M.yaml --checkpoint runs/t1/model.safetensors --format onnx --out runs/t1.onnx": Step(
        "run"
    ),
    "fbnetv3 export runs/s1/best/macs_le_0.4M.yaml --checkpoint runs/t1/model.safetensors --format executorch --quantize int8 --calibration digits --out runs/t1_int8.pte": Step(
        "parse", why="~40 s; tests/test_executorch.py quantises a tiny model and measures it"
    ),
    "fbnetv3 train --task detection --model fasterrcnn_fbnetv3_a_fpn --data digits-det --out runs/det": Step(
        "parse", why="minutes on 2 cores; tests/test_tasks_training.py trains tiny detectors"
    ),
}

# Python blocks, keyed by their first line
PYTHON_BLOCKS: dict[str, Step] = {
    "import timm": Step(
        "run",
        subs=(
            ('create_model("fbnetv3_b", pretrained=True)', 'create_model("fbnetv3_b")'),
            ('torch.hub.load(".",', f"torch.hub.load({str(ROOT)!r},"),
        ),
        why="offline: no weight download; the hub line loads this checkout",
    ),
    "from fbnetv3_zoo.search import SearchConfig, Trial, run_search": Step("run"),
}


# ------------------------------------------------------------------ README parsing
def readme_command_words() -> list[tuple[str, list[str]]]:
    """Shell commands in README order: (words joined by single spaces, the words)."""
    return command_words(README.read_text())


def readme_commands() -> list[str]:
    return [key for key, _ in readme_command_words()]


def readme_python_blocks() -> dict[str, str]:
    return python_blocks(README.read_text())


def test_readme_zoo_table_is_the_generated_one():
    text = README.read_text()
    table = re.search(r"<!-- zoo-table -->\n(.*?)\n<!-- /zoo-table -->", text, re.S).group(1)
    assert table == zoo_table()


def test_readme_quotes_only_numbers_its_results_files_hold():
    """Every decimal in the README's quoted-results section is in a results file it links,
    so a rerun that changes a table makes this fail until the prose is updated."""
    text = README.read_text()
    section = re.search(r"<!-- quoted-results -->\n(.*?)<!-- /quoted-results -->", text, re.S)
    cited = re.findall(r"\]\((benchmarks/results/[\w.]+\.md)\)", section.group(1))
    sources = " ".join((ROOT / path).read_text() for path in cited)
    prose = re.sub(r"`[^`]*`", "", section.group(1))  # commands are not quotes
    numbers = re.findall(r"[+-]?\d+\.\d+", prose)
    assert len(cited) >= 2 and len(numbers) >= 20
    assert [n for n in numbers if n not in sources] == []


def test_readme_names_the_ci_test_command():
    ci = (README.parent / ".ci" / "run").read_text()
    command = "python3 -m pytest -q -n 2"
    assert command in README.read_text() and command in ci


def test_every_readme_command_and_block_is_classified():
    commands = readme_commands()
    assert sorted(set(commands) - set(COMMANDS)) == [], "classify these README commands"
    assert sorted(set(COMMANDS) - set(commands)) == [], "no longer in the README"
    blocks = readme_python_blocks()
    assert sorted(set(blocks) ^ set(PYTHON_BLOCKS)) == []


def test_readme_commands_write_only_under_runs_which_git_ignores():
    """A user following the README leaves nothing in the repository but the ignored runs/."""
    for command, words in readme_command_words():
        for flag in ("--out",):
            if flag in words:
                target = words[words.index(flag) + 1]
                assert target.startswith("runs/"), command
        assert "local-dir:" not in command or "local-dir:runs/" in command, command
    assert "runs/" in (ROOT / ".gitignore").read_text().splitlines()


def test_templates_show_what_to_fill_in():
    for command, step in COMMANDS.items():
        if step.kind == "template":
            assert re.search(r"<[^>]+>|\.\.\.", command), command
        if step.kind in ("fast", "parse", "tool") or step.extra:
            assert step.why, command


def test_install_lines_name_existing_extras():
    extras = extras_in_pyproject()
    for command, step in COMMANDS.items():
        if step.kind == "install":
            assert install_extra(command) in extras


# ------------------------------------------------------------------ running them
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A scratch folder holding what the README assumes: the user's files, a search result."""
    return make_workspace(tmp_path_factory.mktemp("readme"))


RUNNABLE = [
    (key, words)
    for key, words in readme_command_words()
    if COMMANDS.get(key, Step("?")).kind in ("run", "fast") or COMMANDS.get(key, Step("?")).subs
]
WORDS = dict(RUNNABLE)  # a runnable command's words, by its text
# README commands this worker has run in its workspace; with -n 2 a command and the one that
# writes what it reads can land on different workers, so each run first runs its producers
RUNNER = Runner(COMMANDS.__getitem__, RUNNABLE)


def _producers(command: str, words: list[str]) -> list[str]:
    return producers(command, words, RUNNABLE)


def test_readme_commands_find_what_they_read():
    """The producer lookup the runs rely on: a checkpoint or folder another command writes."""
    validate = next(k for k in WORDS if k.startswith("fbnetv3 validate --model resnet18"))
    assert [k.split(" --out ")[-1] for k in _producers(validate, WORDS[validate])] == ["runs/r18"]
    onnx = next(k for k in WORDS if k.startswith("fbnetv3 export runs/s1"))
    assert [k.split(" --out ")[-1] for k in _producers(onnx, WORDS[onnx])] == ["runs/t1"]


@pytest.mark.slow
@pytest.mark.parametrize("command, words", RUNNABLE, ids=[key for key, _ in RUNNABLE])
def test_readme_command_runs(command, words, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    RUNNER.run(command, words, capsys)


@pytest.mark.parametrize(
    "command", [c for c, s in COMMANDS.items() if s.kind == "parse" or s.kind == "template"]
)
def test_slow_readme_commands_and_templates_parse(command):
    check_parses(command)


@pytest.mark.slow
@pytest.mark.parametrize("first_line", list(PYTHON_BLOCKS))
def test_readme_python_block_runs(first_line, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    run_python_block(readme_python_blocks()[first_line], PYTHON_BLOCKS[first_line])
