"""The benchmark says only what it ran: command header, and the full report's goals and plot."""

import importlib.util
from pathlib import Path

from fbnetv3_zoo.cli import main

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"
QUICK = ["--batch", "1", "--repeats", "1", "--warmup", "0", "--threads", "1"]


def _inference_script():
    spec = importlib.util.spec_from_file_location("inference_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_command_header_describes_only_what_ran(tmp_path):
    md = tmp_path / "b.md"
    argv = ["benchmark", "--models", "mobilenetv3_small_050@32", "--backends", "eager"]
    assert main([*argv, *QUICK, "--out", str(md)]) == 0
    text = md.read_text()
    assert "`eager` PyTorch eager" in text
    for absent in ("compile", "onnx", "ONNX", "paired", "Goals", "top-1", "official", "fuse"):
        assert absent not in text, absent


def test_report_without_zoo_rows_has_no_goals_and_no_plot(tmp_path):
    md, png = tmp_path / "r.md", tmp_path / "r.png"
    argv = ["--models", "mobilenetv3_small_050@32", "--backends", "eager", *QUICK]
    assert _inference_script().main([*argv, "--out", str(md), "--plot", str(png)]) == 0
    assert "## Goals" not in md.read_text() and not png.exists()


def test_report_with_a_zoo_row_has_goals_and_plot(tmp_path):
    md, png = tmp_path / "r.md", tmp_path / "r.png"
    argv = ["--models", "fbnetv3_a", "--backends", "eager,fused", *QUICK]
    assert _inference_script().main([*argv, "--out", str(md), "--plot", str(png)]) == 0
    text = md.read_text()
    assert "## Goals" in text and "Folded BN vs unfolded" in text and "paired" not in text
    assert "79.57 (FBNet authors)" in text and png.stat().st_size > 0
