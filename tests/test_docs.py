"""Every code block of the documentation site runs in a test or is marked, with the reason.

The site's pages (``docs/**/*.md``) are read the way ``test_readme.py`` reads the README
(``code_blocks.py``): each shell command and each Python block must be classified, here or,
for a command the README shows too, in the README's table (it runs in ``test_readme.py``);
a new block fails here until it is.  Also checked: the generated pages cover every
subcommand, option and public name, so the site's reference cannot silently lose one.
"""

from __future__ import annotations

import argparse
import re
import sys

import pytest
import yaml
from code_blocks import (
    KINDS,
    ROOT,
    Runner,
    Step,
    check_parses,
    command_words,
    extras_in_pyproject,
    fenced_blocks,
    install_extra,
    make_workspace,
    producers,
    python_blocks,
    run_python_block,
)
from test_readme import COMMANDS as README_COMMANDS
from test_readme import RUNNABLE as README_RUNNABLE
from test_readme import readme_commands

DOCS = ROOT / "docs"
HOOKS = DOCS / "hooks"
RESULTS = ROOT / "benchmarks" / "results"
FAST_EXPORT = ("--input-size", "64")
ONE_EPOCH = ("--epochs", "1", "--data", "digits:2")

# docs commands the README does not show (a README command is classified by its table)
DOCS_COMMANDS: dict[str, Step] = {
    "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu": Step(
        "tool", why="installs torch from PyTorch's CPU index; needs network"
    ),
    "pip install -e .[search]": Step("install"),
    "pip install -e .[all]": Step("install"),
    "pip install -e .[docs]": Step("install"),
    "python3 -m pytest -q -n 2": Step("suite"),
    "mkdocs build --strict": Step("tool", why="the site build; .ci/run runs it"),
    "python3 -m pytest -q -n 2 -m not slow": Step("suite"),
    "python3 tests/timm_suite/run.py": Step(
        "parse", why="timm's own model tests, minutes, needs network; run by .ci/run"
    ),
    "fbnetv3 search --out runs/s1": Step(
        "parse", why="a few minutes; tests/test_search_run.py runs small searches end to end"
    ),
    "fbnetv3 models": Step("run"),
    "fbnetv3 info fbnetv3_c": Step("run"),
    "fbnetv3 search-report runs/s1": Step("run"),
    "fbnetv3 recipes": Step("run"),
    "fbnetv3 recipes fbnetv3": Step("run"),
    "fbnetv3 convert <official_c.pth> --model fbnetv3_c --out runs/c/": Step(
        "template", subs=(("<official_c.pth>", "model.pth"),)
    ),
    'python3 -c import timm, fbnetv3_zoo; timm.create_model("local-dir:runs/c", pretrained=True)': Step(
        "run"
    ),
    "fbnetv3 train --model resnet18 --recipe fbnetv3 --data digits --resolution 32 --epochs 30 --out runs/r18": Step(
        "fast", ONE_EPOCH, "1 epoch on 20 images"
    ),
    "fbnetv3 train ... --resume": Step("template"),
    "fbnetv3 train ... --set mixup=0.4 --set ema_decay=null": Step("template"),
    "fbnetv3 validate --model resnet18 --checkpoint runs/r18/model.safetensors --data digits": Step(
        "run"
    ),
    "fbnetv3 validate --model fbnetv3_b --pretrained --data <imagenet_dir>": Step("template"),
    "torchrun --nproc_per_node 4 -m fbnetv3_zoo.cli train --model resnet18 --data digits --out runs/ddp": Step(
        "parse", why="several processes; tests/test_distributed.py trains on 2 gloo processes"
    ),
    "fbnetv3 search --out runs/s2 --space fbnetv3 --data <imagenet100_dir> --budget 400 --batch 32 --constraint macs<=400M --constraint macs<=800M --executor ray --ray-address auto --gpus-per-trial 1": Step(
        "template"
    ),
    "fbnetv3 train --model runs/s1/best/macs_le_0.4M.yaml --epochs 30 --out runs/t1": Step(
        "fast", ONE_EPOCH, "1 epoch on 20 images"
    ),
    "fbnetv3 export runs/s1/best/macs_le_0.4M.yaml --checkpoint runs/t1/model.safetensors --format onnx --out runs/t1.onnx": Step(
        "run"
    ),
    "fbnetv3 search --model resnet18 --data digits:30 --full-epochs 40 --out runs/r": Step(
        "parse", why="minutes; tests/test_recipe_search.py runs recipe searches end to end"
    ),
    "fbnetv3 train --recipe runs/r/best/recipe.yaml --data digits:30 --out runs/r-full": Step(
        "parse", why="reads the search above; tests/test_recipe_search.py trains from its recipe"
    ),
    "fbnetv3 latency build --backend torch": Step(
        "parse", why="minutes of timing; tests/test_latency.py builds a tiny space's table"
    ),
    "fbnetv3 search --out runs/s3 --constraint latency_ms<=3.5@torch --constraint macs<=1M": Step(
        "parse", why="a search; tests/test_latency.py runs a latency-limited one end to end"
    ),
    "fbnetv3 info runs/s3/best/latency_ms_le_3.5_torch.yaml --latency torch": Step(
        "parse", why="reads the search above; tests/test_latency.py runs info --latency"
    ),
    "fbnetv3 export fbnetv3_b --format onnx --out runs/b.onnx": Step("fast", FAST_EXPORT, "64 px"),
    "fbnetv3 export fbnetv3_b --pretrained --out runs/b_in1k.onnx": Step(
        "parse", why="downloads the published weights; tests/test_loading.py loads them offline"
    ),
    "fbnetv3 export runs/s1/best/macs_le_0.4M.yaml --format torchscript --out runs/s1.pt": Step(
        "run"
    ),
    "fbnetv3 export local-dir:runs/c --out runs/c.onnx --fold-bn": Step(
        "fast", FAST_EXPORT, "64 px"
    ),
    "fbnetv3 export fbnetv3_b --checkpoint <weights.pth> --input-size 224 --out runs/b224.onnx": Step(
        "template", ("--input-size", "64"), "64 px", subs=(("<weights.pth>", "my.pth"),)
    ),
    "fbnetv3 export runs/s1/best/macs_le_0.4M.yaml --checkpoint runs/t1/model.safetensors --format executorch --out runs/t1.pte": Step(
        "parse",
        why="lowering takes ~15 s; tests/test_executorch.py exports and verifies a tiny model",
    ),
    "fbnetv3 export runs/s1/best/macs_le_0.4M.yaml --checkpoint runs/t1/model.safetensors --format executorch --quantize int8 --calibration digits --out runs/t1_int8.pte": Step(
        "parse", why="~40 s; tests/test_executorch.py quantises a tiny model and measures it"
    ),
    "fbnetv3 benchmark --models fbnetv3_a,fbnetv3_b --batch 1,32": Step(
        "fast",
        ("--backends", "eager", "--repeats", "1", "--warmup", "0", "--batch", "1"),
        "eager only, one timed run",
    ),
    "fbnetv3 benchmark --models fbnetv3_a --backends torch,onnxruntime,executorch,executorch-int8 --batch 1": Step(
        "parse", why="lowers to ExecuTorch (minutes); tests/test_bench.py times each backend"
    ),
    "fbnetv3 train --task detection --model fasterrcnn_fbnetv3_a_fpn --data digits-det --out runs/det": Step(
        "parse", why="minutes on 2 cores; tests/test_tasks_training.py trains tiny detectors"
    ),
    "fbnetv3 validate --task detection --checkpoint runs/det/model.safetensors --data digits-det": Step(
        "parse", why="reads the run above; tests/test_tasks_training.py validates such a run"
    ),
    "fbnetv3 train --task segmentation --model lraspp_fbnetv3_a --data digits-seg --out runs/seg": Step(
        "parse", why="minutes on 2 cores; tests/test_tasks_training.py trains tiny segmenters"
    ),
    "fbnetv3 train --task detection --model fasterrcnn_fbnetv3_a_fpn --data <coco_dir> --out runs/coco": Step(
        "template"
    ),
    "fbnetv3 train --task segmentation --model lraspp_fbnetv3_a --data <voc_dir> --num-classes 5 --out runs/voc": Step(
        "parse", why="a user's folder; tests/test_tasks_num_classes.py trains a VOC folder this way"
    ),
}

# Python blocks, keyed by "page: first line"
DOCS_PYTHON: dict[str, Step] = {
    "guide/models.md: import timm": Step(
        "run",
        subs=(('create_model("fbnetv3_b", pretrained=True)', 'create_model("fbnetv3_b")'),),
        why="offline: random weights instead of the download",
    ),
    "guide/models.md: import fbnetv3_zoo": Step("run"),
    "guide/models.md: import torch": Step(
        "run", subs=(('torch.hub.load(".",', f"torch.hub.load({str(ROOT)!r},"),), why="the clone"
    ),
    "guide/recipes.md: from fbnetv3_zoo.recipes import Recipe, build, create_model": Step("run"),
    "guide/detection.md: import torch": Step("run"),
    "guide/custom-search.md: from fbnetv3_zoo.search import SearchConfig, Trial, run_search": Step(
        "run"
    ),
    "guide/custom-search.md: from fbnetv3_zoo.search import SearchConfig, Strategy, register_strategy, run_search": Step(
        "run"
    ),
}


# ------------------------------------------------------------------ the site's blocks
def _nav_order(nav: object) -> list[str]:
    """The pages of mkdocs.yml's nav, flattened in reading order."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in _nav_order(value)]
    return [page for item in nav for page in _nav_order(item)] if isinstance(nav, list) else []


def pages() -> list[tuple[str, str]]:
    """(site path, text) of every page of the site: docs/ in the nav's order (a command that
    reads another's output comes after it, as for a reader), then any page the nav lacks,
    then the pages served from the repository (the changelog, the benchmark results)."""
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    found = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if HOOKS not in p.parents}
    order = [p for p in _nav_order(nav) if p in found] + sorted(found - set(_nav_order(nav)))
    own = [(page, (DOCS / page).read_text(encoding="utf-8")) for page in order]
    served = [  # pages the hook serves from the repository (docs/hooks/generated.py)
        ("changelog.md", ROOT / "CHANGELOG.md"),
        *((f"benchmarks/results/{p.name}", p) for p in sorted(RESULTS.glob("*.md"))),
    ]
    return own + [(page, path.read_text(encoding="utf-8")) for page, path in served]


def docs_command_words() -> list[tuple[str, list[str]]]:
    return [item for _page, text in pages() for item in command_words(text)]


def docs_python_blocks() -> dict[str, str]:
    return {
        f"{page}: {first}": body
        for page, text in pages()
        for first, body in python_blocks(text).items()
    }


def classify(command: str) -> Step:
    """The docs table's entry, else the README's (a command both show runs in its test)."""
    if command in DOCS_COMMANDS:
        return DOCS_COMMANDS[command]
    return README_COMMANDS.get(command, Step("unclassified"))  # fails the test below


def test_every_block_is_bash_or_python():
    for page, text in pages():
        blocks = fenced_blocks(text)
        assert text.count("```") == 2 * len(blocks), f"{page}: an indented or unclosed fence"
        for lang, body in blocks:
            assert lang in ("bash", "python"), f"{page}: a ```{lang} block:\n{body}"


def test_every_docs_command_and_block_is_classified():
    commands = {key for key, _ in docs_command_words()}
    unclassified = sorted(
        c for c in commands if c not in DOCS_COMMANDS and c not in README_COMMANDS
    )
    assert unclassified == [], "classify these docs commands in DOCS_COMMANDS"
    assert sorted(set(DOCS_COMMANDS) - commands) == [], "no longer on the site"
    assert sorted(set(docs_python_blocks()) ^ set(DOCS_PYTHON)) == []


def test_a_readme_command_is_classified_once_and_runs_there():
    readme = set(readme_commands())
    for command, _ in docs_command_words():
        if command not in DOCS_COMMANDS:
            assert command in readme, f"{command}: README's table classifies it, README lacks it"


def test_steps_say_why_and_templates_show_what_to_fill_in():
    for command, step in DOCS_COMMANDS.items():
        assert step.kind in KINDS, command
        if step.kind == "template":
            assert re.search(r"<[^>]+>|\.\.\.", command), command
        if step.kind in ("fast", "parse", "tool") or step.extra:
            assert step.why, command
    for key, step in DOCS_PYTHON.items():
        assert step.kind == "run" and (step.why or not step.subs), key


def test_install_lines_name_existing_extras():
    extras = extras_in_pyproject()
    for command, step in DOCS_COMMANDS.items():
        if step.kind == "install":
            assert install_extra(command) in extras


def test_docs_commands_write_only_under_runs():
    """A user following the docs leaves nothing in the repository but the ignored runs/."""
    for command, words in docs_command_words():
        if "--out" in words:
            assert words[words.index("--out") + 1].startswith("runs/"), command
        assert "local-dir:" not in command or "local-dir:runs/" in command, command
    assert 'folder_path="runs/c"' in (DOCS / "guide" / "models.md").read_text()


def test_docs_commands_find_what_they_read():
    """The producer lookup the runs rely on: a folder another command writes, not a file
    whose name starts like it."""
    words = dict(RUNNABLE)
    local = next(k for k in words if "local-dir:runs/c" in k and k.startswith("python3"))
    assert [k.split(" --out ")[-1] for k in producers(local, words[local], RUNNABLE)] == ["runs/c/"]
    onnx = next(k for k in words if k.startswith("fbnetv3 export local-dir:runs/c"))
    assert producers(onnx, words[onnx], RUNNABLE) == producers(local, words[local], RUNNABLE)


# ------------------------------------------------------------------ running them
RUNNABLE = [
    (key, words)
    for key, words in docs_command_words()
    if classify(key).kind in ("run", "fast") or classify(key).subs
]
RUNNER = Runner(classify, list(dict(RUNNABLE).items()))
# a command the README shows too runs in test_readme.py; here only as another's producer
README_RUNS = {key for key, _ in README_RUNNABLE}
OWN = [(key, words) for key, words in dict(RUNNABLE).items() if key not in README_RUNS]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("docs"))


@pytest.mark.parametrize(
    "command", [c for c, s in DOCS_COMMANDS.items() if s.kind in ("parse", "template")]
)
def test_slow_docs_commands_and_templates_parse(command):
    check_parses(command)


@pytest.mark.slow
@pytest.mark.parametrize("command, words", OWN, ids=[key for key, _ in OWN])
def test_docs_command_runs(command, words, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    RUNNER.run(command, words, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("key", list(DOCS_PYTHON))
def test_docs_python_block_runs(key, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    run_python_block(docs_python_blocks()[key], DOCS_PYTHON[key])


# ------------------------------------------------------------------ generated pages
@pytest.fixture(scope="module")
def hooks():
    """The hooks' renderers, importable as MkDocs imports them (from their folder)."""
    sys.path.insert(0, str(HOOKS))
    try:
        import api_markdown
        import cli_markdown

        yield cli_markdown, api_markdown
    finally:
        sys.path.remove(str(HOOKS))


def _walk(parser: argparse.ArgumentParser, path: str):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


def test_cli_reference_lists_every_command_and_option(hooks):
    from fbnetv3_zoo.cli import build_parser

    text = hooks[0].cli_markdown()
    for path, parser in _walk(build_parser(), "fbnetv3"):
        if path != "fbnetv3":
            assert f"`{path}`" in text, path
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings:
                continue
            assert action.option_strings[-1] in text, f"{path} {action.option_strings}"


def test_api_reference_documents_every_public_name(hooks):
    packages = ("search", "recipes", "detection", "segmentation")
    for package in ("fbnetv3_zoo", *(f"fbnetv3_zoo.{name}" for name in packages)):
        module = __import__(package, fromlist=["__all__"])
        text = hooks[1].api_markdown(package)
        directives = re.findall(r"^::: (\S+)$", text, re.M)
        assert [d.rsplit(".", 1)[-1] for d in directives] == list(module.__all__), package
