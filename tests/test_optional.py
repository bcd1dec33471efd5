"""A missing extra is one line (issue 37): every optional dependency, hidden, names its extra.

Hiding a module is ``sys.modules[name] = None`` (Python then refuses to import
it), so these run on the full install the suite has.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.optional import EXTRAS, MissingExtra, require

REPO = Path(__file__).resolve().parents[1]
# Files whose optional imports may stay their own (none today); a new file with a bare
# optional import fails the scan below.
NOT_YET: set[str] = set()


SEARCH = ["search", "--out", "{tmp}/run", "--quiet"]


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_each_optional_dependency_hidden_is_one_line_naming_its_extra(module, monkeypatch):
    _hide(monkeypatch, module)
    with pytest.raises(MissingExtra) as err:
        require(module, "the feature")
    extra, package = EXTRAS[module]
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"the feature needs {package}, which is not installed")
    assert text.endswith(f'pip install "fbnetv3-zoo[{extra}]"')


def test_a_submodule_hidden_names_the_top_level_extra(monkeypatch):
    _hide(monkeypatch, "executorch.runtime")
    with pytest.raises(MissingExtra, match=r'\[mobile\]"$'):
        require("executorch.runtime", "--format executorch")


def test_a_library_that_fails_to_import_says_why(tmp_path, monkeypatch):
    (tmp_path / "brokenlib").mkdir()
    (tmp_path / "brokenlib" / "__init__.py").write_text("import no_such_module_of_brokenlib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtra) as err:
        require("brokenlib", "x", extra="onnx")
    assert "brokenlib, which does not import (No module named 'no_such_module_of_brokenlib')" in (
        str(err.value)
    )


@pytest.mark.parametrize(
    "hidden, argv, extra",
    [
        (["onnx"], ["export", "fbnetv3_a", "--out", "{tmp}/a.onnx"], "onnx"),
        (["onnxruntime"], ["export", "fbnetv3_a", "--out", "{tmp}/a.onnx"], "onnx"),
        (
            ["executorch.exir"],
            ["export", "fbnetv3_a", "--format", "executorch", "--out", "{tmp}/a.pte"],
            "mobile",
        ),
        (["sklearn.datasets"], ["validate", "--model", "fbnetv3_a", "--data", "digits"], "train"),
        (["onnxruntime"], ["info", "fbnetv3_a", "--latency", "onnxruntime"], "onnx"),
        (["ray"], [*SEARCH, "--executor", "ray"], "distributed"),
        (["optuna"], [*SEARCH, "--strategy", "optuna-tpe"], "optuna"),
        (["scipy.stats.qmc"], SEARCH, "search"),  # the first batch's Sobol sample
    ],
)
def test_commands_refuse_a_missing_extra_in_one_line(
    hidden, argv, extra, tmp_path, monkeypatch, capsys
):
    _hide(monkeypatch, *hidden)
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(f'pip install "fbnetv3-zoo[{extra}]"'), err
    assert not list(tmp_path.iterdir())


def _bare_optional_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names = [node.module]
        found += [
            f"{path.relative_to(REPO)}:{node.lineno} {n}"
            for n in names
            if n.partition(".")[0] in EXTRAS
        ]
    return found


def test_core_recipes_and_search_import_optional_libraries_only_through_require():
    files = [f for pkg in ("fbnetv3_zoo", "recipes", "search") for f in (REPO / pkg).rglob("*.py")]
    bare = [
        hit
        for path in files
        if str(path.relative_to(REPO)) not in NOT_YET | {"fbnetv3_zoo/optional.py"}
        for hit in _bare_optional_imports(path)
    ]
    assert bare == []


def test_each_extra_in_pyproject_installs_what_require_names():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]

    def installs(extra: str) -> set[str]:
        names = set()
        for item in extras[extra]:
            name = item.split(";")[0].split("[")[0]
            for sep in "<>=!~ ":
                name = name.split(sep)[0]
            names |= installs(item.split("[")[1].rstrip("]")) if name == "fbnetv3-zoo" else {name}
        return names

    pip_only_through = {"torchao": "executorch"}  # a dependency of executorch, not listed itself
    for module, (extra, package) in EXTRAS.items():
        assert package in installs(extra) or pip_only_through.get(package) in installs(extra), (
            module
        )


def test_a_run_without_matplotlib_skips_only_its_curves(tmp_path, monkeypatch):
    from fbnetv3_zoo.recipes.summary import plot_curves

    history = [
        dict(epoch=e, train_loss=1.0 / e, val_loss=1.2 / e, val_top1=10.0 * e) for e in (1, 2)
    ]
    plot_curves(history, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0
    _hide(monkeypatch, "matplotlib", "matplotlib.pyplot")
    plot_curves(history, tmp_path / "hidden.png")
    assert not (tmp_path / "hidden.png").exists()


def test_coco_evaluation_without_pycocotools_names_the_detection_extra(monkeypatch):
    from fbnetv3_zoo.tasks.metrics import coco_evaluate

    _hide(monkeypatch, "pycocotools", "pycocotools.coco")
    with pytest.raises(MissingExtra, match=r'^COCO evaluation needs pycocotools.*\[detection\]"$'):
        coco_evaluate({"images": [], "annotations": [], "categories": []}, [])


def test_the_search_plots_without_matplotlib_name_the_search_extra(monkeypatch):
    """The search's plots (report and latency plot) load pyplot through one helper."""
    from fbnetv3_zoo.search.report.plots import pyplot

    assert pyplot().get_backend().lower() == "agg"
    _hide(monkeypatch, "matplotlib", "matplotlib.pyplot")
    with pytest.raises(MissingExtra, match=r"^the search's plots needs matplotlib.*\[search\]"):
        pyplot()


def test_rank_quality_without_scipy_names_the_search_extra(monkeypatch):
    import numpy as np
    from fbnetv3_zoo.search.predictor.fit import rank_quality

    _hide(monkeypatch, "scipy.stats")
    with pytest.raises(MissingExtra, match=r"^the search's rank correlations needs scipy"):
        rank_quality(np.arange(4.0), np.arange(4.0))
