"""Running the code blocks of a Markdown document (the README, the docs site) as tests.

Shared by ``test_readme.py`` and ``test_docs.py``: each classifies every shell command
(``&&`` chains split, ``\\`` continuations joined) and every Python block of its documents
in a table of :class:`Step` entries, so nothing is skipped silently.  Kinds:

* ``run``: run exactly as written (``fbnetv3 ...`` through ``main`` in-process, in a
  scratch folder; ``python3 -c`` code executed in-process);
* ``fast``: the same command with the stated extra arguments that keep it short on 2 cores;
* ``parse``: too slow or needs what a test machine lacks (network, a GPU, minutes); its
  arguments must parse, and ``why`` names what covers the real thing;
* ``template``: contains a ``<placeholder>`` or ``...``; with ``subs`` it runs with the
  stand-ins, otherwise its arguments must parse;
* ``install`` / ``suite`` / ``tool``: ``pip install`` lines (their extras must exist), the
  test command itself, and other tools' commands (``mkdocs``) that CI runs.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reference import write_reference_checkpoint
from search_result import write_search_run

from fbnetv3_zoo.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("run", "fast", "parse", "template", "install", "suite", "tool")


@dataclass(frozen=True)
class Step:
    kind: str  # one of KINDS
    extra: tuple[str, ...] = ()  # fast: arguments appended to the documented command
    why: str = ""  # fast/parse/tool: what the shortcut is and what covers the real thing
    subs: tuple[tuple[str, str], ...] = field(default=())  # (documented text, stand-in)


# ------------------------------------------------------------------ parsing
def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in document order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)


def command_words(text: str) -> list[tuple[str, list[str]]]:
    """Shell commands in document order: (words joined by single spaces, the words)."""
    out = []
    for lang, block in fenced_blocks(text):
        if lang != "bash":
            continue
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words:
                    out.append((" ".join(words), words))
    return out


def python_blocks(text: str) -> dict[str, str]:
    """Python blocks keyed by their first line."""
    return {body.splitlines()[0]: body for lang, body in fenced_blocks(text) if lang == "python"}


def extras_in_pyproject() -> list[str]:
    text = (ROOT / "pyproject.toml").read_text()
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    return re.findall(r"^(\w+) = ", section, re.M)


def install_extra(command: str) -> str:
    """The extra a ``pip install -e .[EXTRA]`` line names (an error for any other shape)."""
    match = re.fullmatch(r"pip install -e \.\[(\w+)\]", command)
    assert match, f"an install line of another shape: {command}"
    return match.group(1)


# ------------------------------------------------------------------ running
def make_workspace(root: Path) -> Path:
    """A scratch folder holding what the documents assume: the user's files, a search result."""
    write_reference_checkpoint("fbnetv3_c", root / "model.pth")  # official layout
    write_reference_checkpoint("fbnetv3_b", root / "my.pth")
    write_search_run(root / "runs" / "s1")  # best/macs_le_0.4M.yaml, report.md, search.sqlite
    return root


def _out(words: list[str]) -> str | None:
    return words[words.index("--out") + 1].rstrip("/") if "--out" in words else None


def producers(command: str, words: list[str], runnable: list[tuple[str, list[str]]]) -> list[str]:
    """Earlier runnable commands whose ``--out`` this command reads, in document order."""
    own = _out(words)
    text = " ".join(w for w in words if w != own and w.rstrip("/") != own)
    found = []
    for key, other in runnable:
        if key == command:
            break
        out = _out(other)
        if out and re.search(rf"(?<![\w./-]){re.escape(out)}(?![\w.-])", text):
            found.append(key)
    return found


@dataclass
class Runner:
    """Runs documented commands once each (and first the ones whose output they read)."""

    table: Callable[[str], Step]
    runnable: list[tuple[str, list[str]]]
    ran: set[str] = field(default_factory=set)

    def run(self, command: str, words: list[str], capsys) -> None:
        if command in self.ran:
            return
        for key in producers(command, words, self.runnable):
            self.run(key, dict(self.runnable)[key], capsys)
        step = self.table(command)
        for old, new in step.subs:
            assert old in words, f"stale stand-in {old!r}"
            words = [new if w == old else w for w in words]
        words = [*words, *step.extra]
        self.ran.add(command)
        if words[:2] == ["python3", "-c"]:
            exec(compile(words[2], "<document>", "exec"), {})  # noqa: S102 - our own docs
            return
        assert words[0] == "fbnetv3", command
        assert main(words[1:]) == 0, capsys.readouterr().err


def check_parses(command: str) -> None:
    """A command too slow to run, or a template: its arguments parse (or its script exists)."""
    words = shlex.split(command)
    if "..." in words:  # an elided part: nothing to parse
        return
    if "fbnetv3" in words or "fbnetv3_zoo.cli" in words:  # also `torchrun ... -m fbnetv3_zoo.cli`
        start = words.index("fbnetv3" if "fbnetv3" in words else "fbnetv3_zoo.cli") + 1
        build_parser().parse_args(words[start:])
    else:  # python3 SCRIPT ...: the script exists
        assert words[0] == "python3" and (ROOT / words[1]).is_file(), command


def run_python_block(code: str, step: Step) -> None:
    for old, new in step.subs:
        assert old in code, f"stale substitution {old!r}"
        code = code.replace(old, new)
    exec(compile(code, "<document>", "exec"), {})  # noqa: S102 - our own docs
