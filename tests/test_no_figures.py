"""No measured figures in docstrings or CLI help outside the search (issue 37): a measurement
lives in benchmarks/results/, and the prose points there, so it cannot go stale in the code."""

from __future__ import annotations

import argparse
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# a speed-up, a timing, a machine anecdote: the kinds of figure that go stale
FIGURE = re.compile(
    r"\d+(\.\d+)?\s*x\s+(faster|slower)|\d+(\.\d+)?-\d+(\.\d+)?x\b|times (faster|slower)"
    r"|CPU-s\b|\d+(\.\d+)?\s*(s|min|ms) (on|per|for)\b|\d-core|on \d+ (busy )?cores|load average"
)
SEARCH_COMMANDS = {"search", "search-report", "latency"}  # the search change owns their help


def _docstrings(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node)
            if text:
                found.append((getattr(node, "lineno", 1), text))
    return found


def test_no_figures_in_core_and_recipes_docstrings():
    files = [*(REPO / "fbnetv3_zoo").rglob("*.py"), *(REPO / "recipes").rglob("*.py")]
    hits = [
        f"{path.relative_to(REPO)}:{line}: {FIGURE.search(text).group(0)}"
        for path in files
        for line, text in _docstrings(path)
        if FIGURE.search(text)
    ]
    assert hits == []


def test_no_figures_in_cli_help():
    from fbnetv3_zoo.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    hits = [
        f"{name}: {FIGURE.search(text).group(0)}"
        for name, sub in commands.choices.items()
        if name not in SEARCH_COMMANDS
        for text in [sub.format_help()]
        if FIGURE.search(" ".join(text.split()))
    ]
    assert hits == []


def test_the_pattern_catches_the_figures_it_is_for():
    for text in ("3-18x faster", "11x faster", "takes 3.5 s on a", "7.9 CPU-s", "a 2-core box"):
        assert FIGURE.search(text), text
    for text in ("crop 0.875", "8 GiB", "top-1 and top-5", "batch 1"):
        assert not FIGURE.search(text), text
