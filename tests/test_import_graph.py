"""The package's import graph (issue 19): no cycles, function-local imports included, and the
core ``fbnetv3_zoo`` modules never import the search, the recipes or the benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# installed package name -> folder in the repository (pyproject's package-dir)
ROOTS = {"fbnetv3_zoo.search": REPO / "search", "fbnetv3_zoo.recipes": REPO / "recipes"}
CORE = REPO / "fbnetv3_zoo"


def _modules() -> dict[str, Path]:
    found = {}
    for name, folder in {"fbnetv3_zoo": CORE, **ROOTS}.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([name, *parts])] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (inside functions too).

    Imports only type checkers see (``if TYPE_CHECKING:``) are left out: they never run.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {  # imports under `if TYPE_CHECKING:` never run
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        for target in targets:
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


def test_the_check_finds_a_cycle_and_sees_function_local_imports():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = _graph()
    # Recipe.build imports the builder inside the method; the builder sees Recipe only when
    # type checking
    assert "fbnetv3_zoo.recipes.build" in graph["fbnetv3_zoo.recipes.recipe"]
    assert "fbnetv3_zoo.recipes.recipe" not in graph["fbnetv3_zoo.recipes.build"]


def test_the_core_never_imports_search_recipes_or_benchmarks():
    graph = _graph()
    core = [m for m in graph if not m.startswith(("fbnetv3_zoo.search", "fbnetv3_zoo.recipes"))]
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
