"""ExecuTorch export: fp32 parity through the runtime, int8 on a tiny model, one-line failures."""

from __future__ import annotations

import sys

import pytest
import torch
import yaml
from conftest import TINY_ARCH

from fbnetv3_zoo import ArchSpec, create_model
from fbnetv3_zoo.cli import main
from fbnetv3_zoo.deploy.export import randomize_weights_

pytest.importorskip("executorch.runtime")

from fbnetv3_zoo.deploy.executorch import (  # noqa: E402
    INT8_RTOL,
    PteProgram,
    calibration_batches,
    export_executorch,
    int8_accuracy,
)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    spec = ArchSpec.from_dict(yaml.safe_load(TINY_ARCH)["arch"])
    return randomize_weights_(create_model(spec, num_classes=10).eval())


@pytest.mark.slow
def test_fp32_program_matches_eager_through_the_runtime(tiny, tmp_path):
    out = tmp_path / "tiny.pte"
    result = export_executorch(tiny, out, 16)
    assert out.is_file() and result.format == "executorch"
    assert result.max_rel_diff <= 1e-4 and result.output_scale > 0.1  # realistic-scale outputs
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(PteProgram(out)(x), tiny(x), rtol=1e-4, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # temp file renamed


@pytest.mark.slow
def test_a_missed_check_writes_nothing_unless_the_caller_only_times(tiny, tmp_path, monkeypatch):
    import fbnetv3_zoo.deploy.executorch as ee

    def missed_check(got, want, rtol, what):
        raise ValueError(f"{what}: forced miss")

    monkeypatch.setattr(ee, "check_close", missed_check)
    with pytest.raises(ValueError, match="forced miss"):
        export_executorch(tiny, tmp_path / "refused.pte", 16)
    assert not list(tmp_path.iterdir())  # neither the program nor its temp file
    misses = []
    export_executorch(tiny, tmp_path / "timed.pte", 16, on_miss=misses.append)
    assert misses == ["ExecuTorch: forced miss"] and (tmp_path / "timed.pte").is_file()


@pytest.mark.slow
def test_int8_program_is_checked_and_its_accuracy_measured(tiny, tmp_path):
    out = tmp_path / "tiny8.pte"
    calibration = calibration_batches("digits:20", tiny, 16)
    assert sum(len(b) for b in calibration) > 0
    result = export_executorch(tiny, out, 16, quantize="int8", calibration=calibration)
    assert result.format == "executorch-int8" and result.max_rel_diff <= INT8_RTOL
    acc = int8_accuracy(tiny, out, "digits:20", 16)
    assert acc["images"] > 0 and 0 <= acc["agreement"] <= 100
    # an untrained network agrees with itself far above chance (10 classes) once quantised
    assert acc["agreement"] >= 50


@pytest.mark.parametrize(
    "extra, expect",
    [
        (["--quantize", "int8"], "needs --calibration"),
        (["--format", "onnx", "--quantize", "int8", "--calibration", "digits"], "executorch only"),
    ],
)
def test_int8_mistakes_are_one_line(tmp_path, capsys, extra, expect):
    argv = ["export", "fbnetv3_a", "--format", "executorch", "--out", str(tmp_path / "a.pte")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0]
    assert not list(tmp_path.iterdir())


def test_missing_extra_names_the_pip_command(tmp_path, capsys, monkeypatch):
    for name in ("executorch", "executorch.exir", "executorch.runtime"):
        monkeypatch.setitem(sys.modules, name, None)  # hidden, even after an earlier import
    argv = ["export", "fbnetv3_a", "--format", "executorch", "--out", str(tmp_path / "a.pte")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install "fbnetv3-zoo[mobile]"' in err[0]


@pytest.mark.slow
def test_benchmark_times_the_executorch_backend(tmp_path):
    from fbnetv3_zoo.deploy.bench import BenchSettings, run_benchmark

    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(TINY_ARCH)
    settings = BenchSettings(batches=(1,), backends=("eager", "executorch"), repeats=2, warmup=0)
    (row,) = run_benchmark([str(spec_file)], settings)
    assert row.cells[("executorch", 1)] is not None and not row.notes


@pytest.mark.slow
@pytest.mark.parametrize("miss", [False, True])
def test_benchmark_times_int8_and_notes_a_missed_check(tmp_path, monkeypatch, miss):
    """Random weights can miss the int8 check; the program is still timed, and the table says so."""
    import fbnetv3_zoo.deploy.executorch as ee
    from fbnetv3_zoo.deploy.bench import BenchSettings, run_benchmark

    def missed_check(got, want, rtol, what):
        raise ValueError(f"{what}: forced miss")

    if miss:
        monkeypatch.setattr(ee, "check_close", missed_check)
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(TINY_ARCH)
    settings = BenchSettings(batches=(1,), backends=("executorch-int8",), repeats=2, warmup=0)
    (row,) = run_benchmark([str(spec_file)], settings)
    assert row.cells[("executorch-int8", 1)] is not None
    missed = [n for n in row.notes if "timed, but on these random weights" in n]
    assert missed == (
        ["executorch-int8: timed, but on these random weights ExecuTorch: forced miss"]
        if miss
        else []
    ), row.notes
