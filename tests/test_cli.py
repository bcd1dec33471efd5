"""The ``fbnetv3`` front door: fast start, user errors as one line, numbers that agree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import TINY_ARCH
from search_result import write_search_run

import fbnetv3_zoo
from fbnetv3_zoo import arch_stats
from fbnetv3_zoo.cli import main
from fbnetv3_zoo.errors import UserError

HEAVY = ("torch", "timm", "numpy", "scipy", "onnx", "onnxruntime", "matplotlib", "ray")


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_building_the_parser_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from fbnetv3_zoo.cli import build_parser\n"
        "build_parser().format_help()\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert _python(code) == "[]"


def test_models_command_imports_nothing_heavy():
    code = (
        "import sys, contextlib, io\n"
        "from fbnetv3_zoo.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['models'])\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert _python(code) == "[]"


@pytest.mark.slow
def test_the_exact_models_register_whatever_the_import_order():
    # package first, timm later is the order this test session itself runs in
    cases = {
        "timm first": "import timm, fbnetv3_zoo\nm = timm.create_model('fbnetv3_b')",
        # a submodule that imports timm while our package is half-imported
        "submodule first": "from fbnetv3_zoo.models.model import FBNetV3\nimport timm\n"
        "m = timm.create_model('fbnetv3_d')",
    }
    procs = {  # in parallel: each pays a torch + timm import
        name: subprocess.Popen(
            [sys.executable, "-c", code + "\nprint(type(m).__name__)"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, code in cases.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert (proc.returncode, out.strip()) == (0, "FBNetV3Timm"), (name, err[-2000:])


def test_every_option_of_every_command_has_help():
    import argparse

    from fbnetv3_zoo.cli import build_parser

    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    missing = [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not action.help
    ]
    assert missing == [] and set(commands.choices) >= {"models", "info", "export", "train"}


def test_version_is_the_packaged_one():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert re.search(r'^version = "(.+)"$', text, re.M).group(1) == fbnetv3_zoo.__version__


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"fbnetv3-zoo {fbnetv3_zoo.__version__}"


def test_user_error_is_one_line_but_a_bug_keeps_its_traceback(monkeypatch, capsys):
    import fbnetv3_zoo.cli.zoo as zoo_cli

    def user_mistake(args):
        raise UserError("my.yaml: stem_channels: invalid value 0")

    monkeypatch.setattr(zoo_cli, "_models", user_mistake)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == "fbnetv3 models: error: my.yaml: stem_channels: invalid value 0\n"

    def bug(args):
        raise RuntimeError("internal")

    monkeypatch.setattr(zoo_cli, "_models", bug)
    with pytest.raises(RuntimeError, match="internal"):
        main(["models"])


# ------------------------------------------------------- one class count everywhere
@pytest.fixture(scope="module")
def result_yaml(tmp_path_factory):
    """A run folder written by the search's own store and writers (best/*.yaml, report.md)."""
    path = write_search_run(tmp_path_factory.mktemp("run"))
    return path, yaml.safe_load(path.read_text())


@pytest.mark.slow
def test_info_arch_stats_export_and_benchmark_agree_with_the_result_file(
    result_yaml, tmp_path, capsys
):
    import onnx

    path, doc = result_yaml
    stats = arch_stats(str(path))  # the file route: the file's class count
    assert (stats.macs, stats.params) == (doc["stats"]["macs"], doc["stats"]["params"])
    assert arch_stats(str(path), num_classes=1000).params > stats.params

    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # the file's own stats: agree
    info = json.loads(captured.out.split("\narch:")[0])
    assert info["num_classes"] == 10
    assert round(info["macs_m"] * 1e6) == doc["stats"]["macs"]
    assert round(info["params_m"] * 1e6) == doc["stats"]["params"]

    out = tmp_path / "best.onnx"
    assert main(["export", str(path), "--out", str(out)]) == 0
    capsys.readouterr()
    graph = onnx.load(str(out)).graph
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == 10
    model = fbnetv3_zoo.create_model(str(path), num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == stats.torch_params

    from fbnetv3_zoo.deploy.bench import BenchSettings, run_benchmark

    settings = BenchSettings(batches=(1,), backends=("eager",), repeats=1, warmup=0, threads=1)
    (row,) = run_benchmark([str(path)], settings)
    assert (row.official_macs, row.params) == (stats.macs, stats.params)
    assert row.all_params == stats.torch_params

    report = (path.parent.parent / "report.md").read_text()
    best_row = next(line for line in report.splitlines() if "`best/macs_le_0.4M.yaml`" in line)
    assert f"| {stats.macs / 1e6:.3f} | {stats.params / 1e6:.3f} |" in best_row

    assert main(["info", str(path), "--num-classes", "1000"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.split("\narch:")[0])["num_classes"] == 1000
    assert "warning" in captured.err and "--num-classes" in captured.err  # not the file's count


# --------------------------------------------------------------- bounded inputs
@pytest.fixture()
def tiny_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_ARCH)
    return path


@pytest.mark.parametrize(
    "extra, culprit",
    [
        (["--input-size", "20000"], "--input-size"),
        (["--input-size", "4"], "--input-size"),
        (["--opset", "99"], "--opset 99"),
        (["--format", "tflite"], "tflite"),
        (["--num-classes", "1000000000"], "num_classes"),
        (["--rtol", "0"], "--rtol"),
        (["--pretrained"], "no published weights"),
    ],
)
def test_export_mistakes_are_one_line_and_leave_nothing(extra, culprit, tiny_yaml, capsys):
    out = tiny_yaml.parent / "x.onnx"
    assert main(["export", str(tiny_yaml), "--out", str(out), *extra]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(lines) == 1 and culprit in lines[0] and "Traceback" not in lines[0]
    assert sorted(p.name for p in tiny_yaml.parent.iterdir()) == ["tiny.yaml"]


@pytest.mark.parametrize("value", ["0", "-5"])
def test_export_nonpositive_input_size_is_an_argument_error(value, tiny_yaml, capsys):
    with pytest.raises(SystemExit) as done:
        main(
            [
                "export",
                str(tiny_yaml),
                "--out",
                str(tiny_yaml.parent / "x.onnx"),
                "--input-size",
                value,
            ]
        )
    assert done.value.code == 2 and "--input-size" in capsys.readouterr().err


def test_export_refuses_to_overwrite_and_says_when_weights_are_random(tiny_yaml, capsys):
    out = tiny_yaml.parent / "tiny.onnx"
    out.write_text("keep me")
    assert main(["export", str(tiny_yaml), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "keep me"
    assert main(["export", str(tiny_yaml), "--out", str(out), "--overwrite"]) == 0
    captured = capsys.readouterr()
    assert "random weights" in captured.err
    # the seeded BN/classifier draw makes the parity check see outputs of realistic scale
    scale = float(captured.out.split("outputs up to ")[1].split(",")[0])
    assert scale > 0.5 and out.stat().st_size > 1000


@pytest.mark.parametrize(
    "field, value",
    [("repeats", 100_000_000), ("channels", 1_000_000_000), ("kernel", "3")],
)
def test_info_rejects_huge_or_mistyped_specs_at_once(field, value, tmp_path, capsys):
    doc = yaml.safe_load(TINY_ARCH)
    doc["arch"]["stages"][0][0][field] = value
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"stages[0][0].{field}" in err and "huge.yaml" in err


def test_info_of_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.yaml" in err


def _subcommands() -> dict:
    import argparse

    from fbnetv3_zoo.cli import build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    found = dict(commands.choices)
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._SubParsersAction):
                found.update({f"{name} {n}": s for n, s in action.choices.items()})
    return found


def test_every_subcommand_has_a_description_and_top_help_names_executorch():
    from fbnetv3_zoo.cli import build_parser

    assert [name for name, sub in _subcommands().items() if not sub.description] == []
    assert "ExecuTorch" in " ".join(build_parser().format_help().split())


def test_threads_means_the_same_in_every_command():
    """--threads N: N intra-op threads, 0 = all cores, one type and wording everywhere."""
    import os

    from fbnetv3_zoo.cli.args import resolve_threads, threads_arg
    from fbnetv3_zoo.errors import UserError

    flags = {
        name: action
        for name, sub in _subcommands().items()
        for action in sub._actions
        if "--threads" in action.option_strings
    }
    assert {"train", "validate", "benchmark", "info", "search", "latency build"} <= set(flags)
    for name, action in flags.items():
        assert action.type is threads_arg and "0 = all cores" in action.help, name
    assert resolve_threads(0) == (os.cpu_count() or 1) and resolve_threads(1) == 1
    with pytest.raises(Exception, match="integer >= 0"):
        threads_arg("two")
    with pytest.raises(UserError, match="integer >= 0"):  # one line from the command, no usage
        resolve_threads(-1)


def test_validate_help_names_result_yamls_and_digits_n():
    help_text = " ".join(_subcommands()["validate"].format_help().split())
    assert "search-result YAML" in help_text and "digits:N" in help_text
