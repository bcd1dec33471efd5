"""Plain mistakes around ``fbnetv3 train`` get one line naming the culprit, exit 2, nothing left."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from conftest import TINY_ARCH
from fbnetv3_zoo.recipes import checkpoints as ckpt
from fbnetv3_zoo.recipes.engine import resolve_device

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.errors import UserError

BASE = ["train", "--recipe", "fbnetv3_proxy", "--data", "digits:4", "--resolution", "16"]
BASE += ["--batch-size", "8", "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished 1-epoch CLI run of a tiny ArchSpec network (seed 0)."""
    root = tmp_path_factory.mktemp("errors")
    (root / "tiny.yaml").write_text(TINY_ARCH)
    assert main([*BASE, "--model", str(root / "tiny.yaml"), "--out", str(root / "run")]) == 0
    return root / "run"


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def copy_run(run: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--seed", "1"], ["--seed was 0, now 1"]),
        (["--epochs", "3"], ["--epochs was 1, now 3"]),
        (["--set", "lr=0.5"], ["recipe lr was"]),
        (["--data", "digits:5"], ["--data was 'digits:4', now 'digits:5'"]),
    ],
)
def test_resume_with_other_settings_names_what_differs(run, capsys, extra, needles):
    model = str(run.parent / "tiny.yaml")
    argv = [*BASE, "--model", model, "--out", str(run), "--resume", *extra]
    assert main(argv) == 2
    one_line_error(capsys, *needles)


def test_resume_with_another_model_names_it(run, capsys, tmp_path):
    other = tmp_path / "tiny.yaml"
    other.write_text(TINY_ARCH.replace("channels: 16", "channels: 24"))
    assert main([*BASE, "--model", str(other), "--out", str(run), "--resume"]) == 2
    one_line_error(capsys, "--model was")
    # weights that do not fit the network (e.g. a YAML edited in place) are named too
    with pytest.raises(
        ckpt.ResumeError, match=r"does not fit --model x: 2 missing \(e.g. weight\)"
    ):
        ckpt.load_weights(run / ckpt.WEIGHTS_FILE, torch.nn.Linear(2, 2), "--model x")


def test_resume_with_a_damaged_state_file(run, capsys, tmp_path):
    out = copy_run(run, tmp_path)
    manifest = json.loads((out / ckpt.MANIFEST).read_text())
    state = out / manifest["folder"] / ckpt.STATE_FILE
    argv = [*BASE, "--model", str(run.parent / "tiny.yaml"), "--out", str(out), "--resume"]

    state.write_bytes(state.read_bytes()[:100])  # truncated
    assert main(argv) == 2
    one_line_error(capsys, "state.pt is damaged")

    garbage = b"not a torch file"  # consistent with the manifest, but unreadable
    state.write_bytes(garbage)
    manifest["files"][ckpt.STATE_FILE] = dict(
        size=len(garbage), sha256=hashlib.sha256(garbage).hexdigest()
    )
    (out / ckpt.MANIFEST).write_text(json.dumps(manifest))
    assert main(argv) == 2
    one_line_error(capsys, "state.pt cannot be loaded")

    (out / ckpt.MANIFEST).write_text("{not json")
    assert main(argv) == 2
    one_line_error(capsys, "checkpoint.json is not valid JSON")


def test_input_too_small_leaves_no_run_folder(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    assert main([*BASE, "--model", "fbnetv3_a", "--out", str(out)]) == 2
    one_line_error(capsys, "fbnetv3_a cannot take a 16x16 input")
    assert not (tmp_path / "new").exists()


def test_unusable_out_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("x")
    argv = [*BASE, "--model", "test_resnet"]
    assert main([*argv, "--out", str(tmp_path / "file" / "run")]) == 2
    one_line_error(capsys, "is a file, not a folder")
    # a read-only folder (simulated: root may write anywhere, so the check is what we test)
    monkeypatch.setattr("os.access", lambda path, mode: False)
    assert main([*argv, "--out", str(tmp_path / "ro" / "run")]) == 2
    one_line_error(capsys, "cannot write to --out", "is not writable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_bad_devices_are_one_line(capsys):
    assert main([*BASE, "--model", "test_resnet", "--device", "nope"]) == 2
    one_line_error(capsys, "--device 'nope' is not a device")
    if not torch.cuda.is_available():
        assert main([*BASE, "--model", "test_resnet", "--device", "cuda"]) == 2
        one_line_error(capsys, "--device cuda: no CUDA GPU")
    with pytest.raises(UserError, match="cpu, cuda or mps"):
        resolve_device("meta")


def test_global_batch_must_split_evenly_over_processes(monkeypatch):
    from fbnetv3_zoo.recipes import Recipe, distributed
    from fbnetv3_zoo.recipes.engine import _batch_sizes

    from fbnetv3_zoo.data import load_data

    splits = load_data("digits:4", 8)
    plain = Recipe.load("baseline")
    three = distributed.Dist(rank=0, world_size=3)
    with pytest.raises(UserError, match="batch_size 32 .* does not split evenly over 3 processes"):
        _batch_sizes(dataclasses.replace(plain, batch_size=32), splits, three)
    recipe, local = _batch_sizes(dataclasses.replace(plain, batch_size=30), splits, three)
    assert (recipe.batch_size, local) == (30, 10)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UserError, match="WORLD_SIZE='two' is not an integer"):
        distributed.setup(None)
