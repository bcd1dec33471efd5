"""Preprocessing travels with exports (issue 37): the sidecar JSON, its reader, and one top-1.

A trained run's checkpoint exported to int8 ExecuTorch reports the same fp32
top-1 as ``train`` and ``validate`` because calibration and accuracy use the
run's recorded transform (crop 1.0, bilinear), not timm's default (0.875,
bicubic), and the ``.onnx`` / ``.pte`` programs apply the sidecar to an image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_ARCH
from PIL import Image

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.deploy.preprocess import (
    Preprocess,
    from_evaluation,
    read_preprocess,
    render,
    sidecar_path,
)
from fbnetv3_zoo.errors import UserError

RUN_EVAL = dict(
    input_size=16,
    crop_pct=1.0,
    interpolation="bilinear",
    mean=[0.485, 0.456, 0.406],
    std=[0.229, 0.224, 0.225],
    image_resolution=16,
    batch_size=64,
)


def _write(tmp_path: Path, p: Preprocess, **changes) -> Path:
    path = sidecar_path(tmp_path / "m.onnx")
    doc = json.loads(render(p, tmp_path / "m.onnx"))
    path.write_text(json.dumps({**doc, **changes}))
    return path


def test_sidecar_round_trips_with_timm_key_names(tmp_path):
    p = from_evaluation(RUN_EVAL, "run/summary.json", num_classes=10, label_names=("a", "b"))
    path = _write(tmp_path, p)
    assert path.name == "m.onnx.preprocess.json"
    doc = json.loads(path.read_text())
    assert doc["input_size"] == [3, 16, 16] and doc["resize_size"] == 16
    assert doc["model_file"] == "m.onnx" and doc["source"] == "run/summary.json"
    assert read_preprocess(path) == p
    crop = from_evaluation({**RUN_EVAL, "input_size": 224, "crop_pct": 0.875}, "x")
    assert crop.resize_size == 256  # timm's floor(224 / 0.875)


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(crop_pct=1.5), "crop_pct"),
        (dict(interpolation="cubic"), "interpolation"),
        (dict(input_size=[3, 16]), "input_size"),
        (dict(mean=[0.5]), "mean"),
        (dict(num_classes="ten"), "num_classes"),
        (dict(kind="other"), "kind"),
        (dict(label_names=[1, 2]), "label_names"),
    ],
)
def test_a_bad_sidecar_is_one_error_naming_the_file_and_field(tmp_path, changes, field):
    path = _write(tmp_path, from_evaluation(RUN_EVAL, "s"), **changes)
    with pytest.raises(UserError) as err:
        read_preprocess(path)
    message = str(err.value)
    assert str(path) in message and field in message and "\n" not in message


def test_to_input_is_timms_eval_transform_for_images_and_arrays():
    from timm.data import create_transform

    p = from_evaluation({**RUN_EVAL, "input_size": 24, "crop_pct": 0.75}, "s")
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    want = create_transform(24, crop_pct=0.75, interpolation="bilinear", mean=p.mean, std=p.std)
    got = p.to_input(array)
    assert got.shape == (1, 3, 24, 24)
    torch.testing.assert_close(got[0], want(Image.fromarray(array)))
    assert p.to_input(array[..., 0]).shape == (1, 3, 24, 24)  # grey is made RGB
    with pytest.raises(UserError, match="uint8"):
        p.to_input(array.astype(np.float32))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A 2-epoch run of the tiny network on all of digits (about 20 % top-1: it has learned
    enough that timm's default crop 0.875 bicubic gives another top-1 than the run's 1.0)."""
    root = tmp_path_factory.mktemp("run")
    (root / "tiny.yaml").write_text(TINY_ARCH)
    argv = ["train", "--model", str(root / "tiny.yaml"), "--recipe", "fbnetv3_proxy"]
    argv += ["--data", "digits", "--epochs", "2", "--resolution", "16", "--batch-size", "32"]
    assert main([*argv, "--out", str(root / "run"), "--no-progress"]) == 0
    return root


def _top1(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    assert found, text
    return found.group(1)


@pytest.mark.slow
def test_onnx_export_carries_the_runs_transform(trained, tmp_path, capsys):
    from fbnetv3_zoo.deploy.onnx_program import OnnxProgram

    out, ckpt = tmp_path / "t.onnx", trained / "run" / "model.safetensors"
    assert (
        main(["export", str(trained / "tiny.yaml"), "--checkpoint", str(ckpt), "--out", str(out)])
        == 0
    )
    assert (
        "crop 1, bilinear, from " + str(trained / "run" / "summary.json") in capsys.readouterr().out
    )
    program = OnnxProgram(out)
    assert program.preprocess.num_classes == 10 and program.preprocess.crop_pct == 1.0
    image = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    x = program.preprocess.to_input(image)
    from fbnetv3_zoo.deploy.export import load_model

    model = load_model(trained / "tiny.yaml", checkpoint=ckpt, num_classes=10)
    with torch.no_grad():
        torch.testing.assert_close(program.classify(image), model(x)[0], rtol=1e-4, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.onnx", "t.onnx.preprocess.json"]
    out.unlink()  # the sidecar left alone is refused like the file
    assert main(["export", "fbnetv3_a", "--input-size", "32", "--out", str(out)]) == 2
    assert "t.onnx.preprocess.json already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_int8_export_validate_and_train_print_the_same_top1(trained, tmp_path, capsys):
    pytest.importorskip("executorch.runtime")
    run, summary = trained / "run", json.loads((trained / "run" / "summary.json").read_text())
    ckpt, spec = str(run / "model.safetensors"), str(trained / "tiny.yaml")
    argv = ["validate", "--model", spec, "--data", "digits", "--checkpoint", ckpt]
    assert main([*argv, "--no-progress"]) == 0
    validated = _top1(capsys.readouterr().out, r"top-1 (\d+\.\d\d)")
    argv = ["export", spec, "--checkpoint", ckpt, "--format", "executorch", "--quantize", "int8"]
    assert main([*argv, "--calibration", "digits", "--out", str(tmp_path / "t.pte")]) == 0
    text = capsys.readouterr().out
    assert "int8 calibration and accuracy transform: 16 px, resize 16, crop 1, bilinear" in text
    exported = _top1(text, r"vs fp32 eager (\d+\.\d\d)")
    assert exported == validated == f"{summary['final_top1']:.2f}"
    from fbnetv3_zoo.deploy.executorch import PteProgram

    program = PteProgram(tmp_path / "t.pte")
    assert program.preprocess.label_names == tuple(str(d) for d in range(10))
    assert program.classify(np.zeros((8, 8), dtype=np.uint8)).shape == (10,)


def test_the_python_export_writes_the_sidecar_too(tmp_path):
    import yaml

    from fbnetv3_zoo import ArchSpec, create_model
    from fbnetv3_zoo.deploy.export import export_model

    spec = ArchSpec.from_dict(yaml.safe_load(TINY_ARCH)["arch"])
    model = create_model(spec, num_classes=10).eval()
    out = tmp_path / "t.pt"
    export_model(model, out, "torchscript", input_size=16)
    written = read_preprocess(sidecar_path(out))
    assert (written.input_size, written.num_classes) == (16, 10)
    assert written.source == "the model's pretrained config"
    with pytest.raises(UserError, match="input size 16 differs from the export's 24"):
        export_model(model, tmp_path / "u.pt", "torchscript", input_size=24, preprocess=written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt", "t.pt.preprocess.json"]
    out.unlink()  # a sidecar left alone is refused before anything is written
    with pytest.raises(UserError, match="t.pt.preprocess.json already exists"):
        export_model(model, out, "torchscript", input_size=16)
    assert not out.exists()
