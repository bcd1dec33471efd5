"""No function or method in the packages is longer than 80 lines (issue 38).

A function's length is ``end_lineno - lineno + 1`` of its ``def`` (decorators
not counted), nested functions measured on their own as well as inside their
parent.  Split a longer one into well-named helpers.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fbnetv3_zoo", "search", "recipes")
MAX_LINES = 80


def long_functions(root: Path = ROOT, limit: int = MAX_LINES) -> list[str]:
    """``path:name:length`` of every function or method over ``limit`` lines."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = node.end_lineno - node.lineno + 1
                    if length > limit:
                        found.append(f"{path.relative_to(root)}:{node.name}:{length}")
    return found


def test_packages_are_there():
    for package in PACKAGES:
        assert any((ROOT / package).rglob("*.py")), f"no Python files under {package}/"


def test_no_function_is_longer_than_80_lines():
    offenders = long_functions()
    assert not offenders, (
        f"{len(offenders)} function(s) over {MAX_LINES} lines; split them into helpers:\n"
        + "\n".join(offenders)
    )


def test_the_check_sees_a_long_function(tmp_path):
    """The measure itself: a 81-line function is caught, an 80-line one is not."""
    body = "".join(f"    x{i} = {i}\n" for i in range(79))
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "ok.py").write_text("def fine():\n" + body)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "long.py").write_text(
        "class C:\n    @staticmethod\n    def method():\n"
        + body.replace("    ", "        ")
        + "        pass\n"
    )
    (tmp_path / "fbnetv3_zoo").mkdir()
    assert long_functions(tmp_path) == [f"{Path('recipes/long.py')}:method:81"]
