"""The package's import graph (issues 19 and 38): no cycles, function-local and
``TYPE_CHECKING`` imports included (a type-only edge is still a two-way dependency), the
benchmark scripts included, no import of a module that does not exist, and the core
``fbnetv3_zoo`` modules never import the search, the recipes or the benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# installed package name -> folder in the repository (pyproject's package-dir)
ROOTS = {"fbnetv3_zoo.search": REPO / "search", "fbnetv3_zoo.recipes": REPO / "recipes"}
CORE = REPO / "fbnetv3_zoo"
BENCHMARKS = REPO / "benchmarks"


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in {"fbnetv3_zoo": CORE, **ROOTS, "benchmarks": BENCHMARKS}.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name, *parts])] = path
    return found


def _import_targets(name: str, path: Path) -> list[tuple[str, bool]]:
    """(module, is_from) for every import in ``name``'s file, relative ones made absolute.

    Imports inside functions and under ``if TYPE_CHECKING:`` count like any other.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, bool]] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, True))
            found += [(f"{base}.{alias.name}", False) for alias in node.names]
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file."""
    out: set[str] = set()
    for target, _ in _import_targets(name, path):
        while target and target not in known:  # `from pkg import name`: the module part
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    for name in graph:  # a package importing its own submodules is how packages work
        graph[name] = {t for t in graph[name] if not (t.startswith(name + ".") and name != t)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles_even_through_function_local_imports():
    assert _cycles(_graph()) == []


def test_the_check_finds_a_cycle_and_sees_function_local_and_type_only_imports(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg.b import B\n"
        "def f():\n    from pkg import c\n"
    )
    assert _imports("pkg.m", module, {"pkg", "pkg.b", "pkg.c", "pkg.m"}) == {
        "pkg",
        "pkg.b",
        "pkg.c",
    }


def test_no_import_names_a_module_that_does_not_exist():
    """``from fbnetv3_zoo.x import y`` / ``import fbnetv3_zoo.x`` need ``fbnetv3_zoo.x`` to exist
    (a rename that left a caller behind fails here, not when that code path first runs)."""
    modules = _modules()
    missing = []
    for name, path in modules.items():
        for target, is_from in _import_targets(name, path):
            ours = target.startswith(("fbnetv3_zoo.", "benchmarks.")) or target == "benchmarks"
            if ours and (is_from or "." in target) and target not in modules:
                parent = target.rpartition(".")[0]
                if is_from or parent not in modules:  # `from pkg import name`: name may be data
                    missing.append(f"{path.relative_to(REPO)}: {target}")
    assert missing == []


def test_the_core_never_imports_search_recipes_or_benchmarks():
    graph = _graph()
    core = [
        m
        for m in graph
        if m.startswith("fbnetv3_zoo")
        and not m.startswith(("fbnetv3_zoo.search", "fbnetv3_zoo.recipes"))
    ]
    bad = {
        m: sorted(
            t for t in graph[m] if t.startswith(("fbnetv3_zoo.search", "fbnetv3_zoo.recipes"))
        )
        for m in core
    }
    assert not {m: t for m, t in bad.items() if t}
    for path in CORE.rglob("*.py"):
        text = path.read_text()
        assert "import benchmarks" not in text and "from benchmarks" not in text, path
