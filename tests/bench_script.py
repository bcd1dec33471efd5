"""Helpers of the benchmark-script tests: load a script as a module, read its markdown
tables, and fingerprint the committed results and data so a test can show they stay as
they are."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
COMMITTED = (BENCHMARKS / "results", BENCHMARKS / "data")


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as the module ``benchmark_<name>`` (registered in
    ``sys.modules`` so a forked worker can unpickle the script's functions)."""
    module_name = f"benchmark_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    return module


def tree(folder: Path = BENCHMARKS) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under ``folder``, except the recipe pools, which a long
    build running beside the tests may append to."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith("recipe_pool_") and "__pycache__" not in p.parts
    }


def md_table(text: str, first_header: str) -> list[list[str]]:
    """The markdown table whose header row starts with ``| first_header |``: its header
    cells, then each row's cells (the separator line dropped)."""
    lines = text.splitlines()
    start = next(
        (i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |")), None
    )
    assert start is not None, f"no table starting with | {first_header} | in:\n{text[:2000]}"
    assert set(lines[start + 1]) <= set("|-: "), lines[start + 1]
    rows = [lines[start]]
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows]


def number(cell: str) -> float:
    """The leading number of a table cell: ``'1,234 (5-6)'`` -> 1234.0, ``'9.5 %'`` -> 9.5."""
    head = cell.replace(",", "").replace("%", " ").replace("x", " ").split()[0]
    return float(head)
