"""The benchmark says only what it ran: command header, and the full report's goals and plot."""

import importlib.util
from pathlib import Path

import pytest

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
    assert "`torch` PyTorch eager" in text  # `eager` is the old name of `torch`
    for absent in ("compile", "onnx", "ONNX", "paired", "Goals", "top-1", "official", "fuse"):
        assert absent not in text, absent


def test_report_without_zoo_rows_has_no_goals_and_no_plot(tmp_path):
    md, png = tmp_path / "r.md", tmp_path / "r.png"
    argv = ["--models", "mobilenetv3_small_050@32", "--backends", "eager", *QUICK]
    assert _inference_script().main([*argv, "--out", str(md), "--plot", str(png)]) == 0
    assert "## Goals" not in md.read_text() and not png.exists()


@pytest.mark.slow
def test_report_with_a_zoo_row_has_goals_and_plot(tmp_path):
    md, png = tmp_path / "r.md", tmp_path / "r.png"
    argv = ["--models", "fbnetv3_a", "--backends", "eager,fused", *QUICK]
    assert _inference_script().main([*argv, "--out", str(md), "--plot", str(png)]) == 0
    text = md.read_text()
    assert "## Goals" in text and "Folded BN vs unfolded" in text and "paired" not in text
    assert "**Fastest path at batch 1** (median latency; rows won: " in text
    assert "79.57 (FBNet authors)" in text and png.stat().st_size > 0


@pytest.mark.slow
def test_models_info_and_benchmark_count_params_and_macs_alike(capsys):
    """One convention everywhere: the same A-G numbers in models, info and benchmark rows."""
    import json

    from fbnetv3_zoo import VARIANTS
    from fbnetv3_zoo.cli.zoo import zoo_table
    from fbnetv3_zoo.deploy.bench import model_row
    from fbnetv3_zoo.deploy.bench_table import count_cells, count_columns

    table = {line.split(" | ")[0][2:]: line.split(" | ") for line in zoo_table().splitlines()[2:]}
    for name in VARIANTS:
        assert main(["info", name]) == 0
        info = json.loads(capsys.readouterr().out.split("\narch:")[0])
        row, _ = model_row(name)  # the benchmark's row without any timing
        assert round(info["params_m"] * 1e6) == row.params
        assert round(info["macs_m"] * 1e6) == row.official_macs
        assert info["all_parameters"] == row.all_params > row.params
        columns, note = count_columns([row])
        cells = dict(zip(columns, count_cells(row, columns), strict=True))
        assert (cells["params (M)"], cells["MACs (M)"]) == (table[name][6], table[name][7]), name
        assert "BN and biases included" in note


def test_small_counts_keep_three_significant_digits():
    from fbnetv3_zoo.models.stats import in_millions

    assert [in_millions(n, 1) for n in (430_000, 4_321_000, 356_600_000)] == [
        "0.430",
        "4.32",
        "356.6",
    ]
    assert [in_millions(n, 2) for n in (12_345, 8_542_224)] == ["0.0123", "8.54"]


def test_one_backend_registry_serves_benchmark_latency_and_constraints():
    """Every backend name comes from ``deploy/runtimes.py``; each entry's factory exists."""
    from fbnetv3_zoo.deploy.bench import ALL_BACKENDS, BACKEND_NOTES
    from fbnetv3_zoo.deploy.runtimes import BACKENDS, LATENCY_BACKENDS, backend
    from fbnetv3_zoo.errors import UserError

    assert set(ALL_BACKENDS) <= set(BACKENDS) and set(BACKEND_NOTES) == set(ALL_BACKENDS)
    assert set(LATENCY_BACKENDS) == {"torch", "onnxruntime", "executorch", "cuda"}
    for entry in BACKENDS.values():
        assert callable(entry.runner_factory()), entry.name
        assert (entry.entry_s > 0) == entry.latency, entry.name  # a table build's time estimate
    assert backend("eager").name == "torch" and backend("onnx", "latency").name == "onnxruntime"
    with pytest.raises(UserError, match="unknown latency backend 'fused'; choose from torch"):
        backend("fused", "latency")
    with pytest.raises(UserError, match="unknown backend 'tensorrt'; choose from torch, fused"):
        backend("tensorrt")


def test_runners_from_the_registry_agree_with_eager(tmp_path):
    """The benchmark's and the latency table's runners are the same factories, checked on eager."""
    import torch

    from fbnetv3_zoo.deploy.runners import RunnerSettings, make_runner
    from fbnetv3_zoo.latency.timing import runner

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    want = model(x)
    for name in ("eager", "fused", "channels_last", "onnx"):
        run = make_runner(name, model, x[:1], RunnerSettings(1, tmp_path), "benchmark")
        if run is None:  # fused: folds the zoo's own blocks only
            assert name == "fused"
            continue
        got = run(x)
        got = torch.as_tensor(got[0]) if isinstance(got, list) else got
        assert torch.allclose(got, want, atol=1e-5), name
    for name in ("torch", "onnxruntime"):
        out = runner(model, (1, 3, 8, 8), name, threads=1)()
        assert (torch.as_tensor(out[0]) if isinstance(out, list) else out).shape == (1, 4, 6, 6)
