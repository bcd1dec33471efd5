"""Export round trips, BN folding and the benchmark command, at small input sizes."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import fbnetv3_zoo
from fbnetv3_zoo import BlockSpec
from fbnetv3_zoo.cli import main
from fbnetv3_zoo.deploy.bench import BenchSettings, count_macs, run_benchmark
from fbnetv3_zoo.deploy.bench_table import format_markdown
from fbnetv3_zoo.deploy.export import (
    export_model,
    export_onnx,
    export_torchscript,
    load_model,
    randomize_weights_,
)

SIZE = 64
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and logits of order 1, so folding and parity are exercised."""
    return randomize_weights_(model, seed).eval()


# a small network of the kind the search writes out (kept small: tests run on 2 cores)
SEARCHED = fbnetv3_zoo.ArchSpec(
    stem_channels=8,
    stages=(
        (BlockSpec(3, 1, 8),),
        (BlockSpec(5, 4, 16, 2, 2, se=True),),
        (BlockSpec(3, 3, 24, 1, 2, se=True), BlockSpec(5, 2, 32)),
    ),
    input_size=SIZE,
    feature_width=256,
    name="searched",
)


@pytest.fixture(scope="module")
def spec_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "searched.yaml"
    SEARCHED.to_yaml(path)
    return path


def _eager(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("ref", ["fbnetv3_a", "fbnetv3_d", "yaml"])
def test_onnx_round_trip(ref, spec_yaml, tmp_path):
    model = _randomize_bn(load_model(spec_yaml if ref == "yaml" else ref))
    out = tmp_path / "m.onnx"
    result = export_onnx(model, out, SIZE, fold_bn=ref == "fbnetv3_d")
    assert result.max_abs_diff <= 1e-4 and result.output_scale > 0.1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp file left
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    x = torch.randn(5, 3, SIZE, SIZE)  # a batch size the export never saw
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - _eager(model, x)).max() <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("ref", ["fbnetv3_a", "fbnetv3_d", "yaml"])
def test_torchscript_round_trip(ref, spec_yaml, tmp_path):
    model = _randomize_bn(load_model(spec_yaml if ref == "yaml" else ref))
    out = tmp_path / "m.pt"
    result = export_torchscript(model, out, SIZE, fold_bn=ref != "fbnetv3_a")
    assert result.max_abs_diff <= 1e-4 and result.output_scale > 0.1
    loaded = torch.jit.load(str(out))
    x = torch.randn(2, 3, SIZE, SIZE)
    assert np.abs(_eager(loaded, x) - _eager(model, x)).max() <= 1e-4


def test_fuse_bn_equal_fewer_modules_original_untouched():
    model = _randomize_bn(fbnetv3_zoo.create_model("fbnetv3_b"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fbnetv3_zoo.fuse_bn(model)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert np.abs(_eager(fused, x) - _eager(model, x)).max() <= 1e-5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert len(list(fused.modules())) < len(list(model.modules()))
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fused.stem.conv.bias is not None


def test_hook_macs_match_analytic_conv_macs():
    spec = fbnetv3_zoo.VARIANTS["fbnetv3_c"].spec
    model = fbnetv3_zoo.create_model("fbnetv3_c")
    assert count_macs(model, 96) == fbnetv3_zoo.arch_stats(spec, 96).conv_macs


def _nan_model() -> nn.Module:
    model = fbnetv3_zoo.create_model(SEARCHED).eval()
    model.stem.bn.running_var.fill_(-1.0)  # sqrt of a negative: every output is NaN
    return model


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_failed_export_leaves_no_file(fmt, tmp_path):
    out = tmp_path / f"bad.{fmt}"
    with pytest.raises(ValueError, match="max abs diff"):
        export_model(_nan_model(), out, fmt, input_size=SIZE)
    assert list(tmp_path.iterdir()) == []
    out.write_text("previous export")  # an existing file survives a failed overwrite
    with pytest.raises(ValueError):
        export_model(_nan_model(), out, fmt, input_size=SIZE)
    assert out.read_text() == "previous export"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


def test_cli_export_searched_yaml_round_trip_and_errors(spec_yaml, tmp_path, capsys):
    out = tmp_path / "s.onnx"
    assert main(["export", str(spec_yaml), "--format", "onnx", "--out", str(out)]) == 0
    assert "max abs diff" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model = load_model(spec_yaml)  # the file's weights are random: compare the graph's shape
    x = torch.randn(2, 3, SIZE, SIZE)
    assert session.run(None, {"input": x.numpy()})[0].shape == _eager(model, x).shape
    bad = tmp_path / "x.bin"
    assert main(["export", "fbnetv3_a", "--format", "tflite", "--out", str(bad)]) == 2
    assert "unknown export format 'tflite'" in capsys.readouterr().err
    assert main(["export", "fbnetv3_z", "--out", str(bad)]) == 2
    assert "fbnetv3_z" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.onnx", "s.onnx.preprocess.json"]


def test_benchmark_command_table_shape(tmp_path, capsys):
    md = tmp_path / "bench.md"
    argv = ["benchmark", "--models", "fbnetv3_a@64", "--batch", "1,2", "--backends"]
    argv += [
        "eager,fused",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--threads",
        "1",
        "--out",
        str(md),
    ]
    assert main(argv) == 0
    text = md.read_text()
    for title in ("## Latency, batch 1", "## Throughput, batch 2"):
        section = text.split(title)[1].split("\n## ")[0]
        table = [line for line in section.splitlines() if line.startswith("|")]
        assert table[0] == "| model | input | torch | fused |"  # eager: the old name of torch
        assert len(table) == 3 and table[2].startswith("| fbnetv3_a@64 | 64 |")
        assert all(cell.strip() not in ("n/a", "–") for cell in table[2].split("|")[3:-1])
    assert "Threads: torch" in text
    assert main(["benchmark", "--models", "nonexistent_net", "--backends", "eager"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_benchmark_reports_failing_backend_as_na(monkeypatch):
    import fbnetv3_zoo.deploy.bench as bench

    def broken(*_args, **_kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(bench.torch, "compile", broken)
    settings = BenchSettings(
        batches=(1,),
        backends=("eager", "compile"),
        compile_models=("all",),
        repeats=1,
        warmup=0,
        threads=1,
    )
    rows = run_benchmark(["fbnetv3_a@64"], settings)
    assert rows[0].cells[("compile", 1)] is None and rows[0].cells[("torch", 1)] > 0
    assert "| fbnetv3_a@64 | 64 | " in format_markdown(rows, settings)
    assert "n/a" in format_markdown(rows, settings)


@pytest.mark.slow
def test_cli_export_checkpoint_local_dir_and_recipe_yaml(spec_yaml, tmp_path, capsys):
    import yaml

    from fbnetv3_zoo.weights.convert import convert_checkpoint

    model = _randomize_bn(load_model(spec_yaml))
    ckpt = tmp_path / "trained.pth"
    torch.save(model.state_dict(), ckpt)
    x = torch.randn(2, 3, SIZE, SIZE)
    want = _eager(model, x)

    ts = tmp_path / "ckpt.pt"  # --checkpoint: the file's weights are the ones exported
    argv = ["export", str(spec_yaml), "--checkpoint", str(ckpt), "--format", "torchscript"]
    assert main([*argv, "--fold-bn", "--out", str(ts)]) == 0
    assert np.abs(_eager(torch.jit.load(str(ts)), x) - want).max() <= 1e-4

    folder = convert_checkpoint(ckpt, str(spec_yaml), tmp_path / "converted")
    onnx_out = tmp_path / "local.onnx"  # local-dir: brings its weights along
    assert main(["export", f"local-dir:{folder}", "--out", str(onnx_out)]) == 0
    session = ort.InferenceSession(str(onnx_out), providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - want).max() <= 1e-4

    run_yaml = tmp_path / "best.yaml"  # a search result: spec under `arch:` beside a recipe
    run_yaml.write_text(yaml.safe_dump({"arch": SEARCHED.to_dict(), "recipe": {"epochs": 1}}))
    assert main(["export", str(run_yaml), "--out", str(tmp_path / "best.onnx")]) == 0
    assert "max abs diff" in capsys.readouterr().out
