"""A run folder the user did not make is untrusted input (issue 35's table, row by row).

Each case builds the hostile folder the issue describes, runs the command,
and checks the refusal the way ``test_no_data_loss`` does: exit 2, one stderr
line naming the file or field, and every file outside (and inside) unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from search_result import write_search_run
from test_no_data_loss import TRAIN, refused, snapshot

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.files.outputs import MARKER, OutputError, RunLock, remove_stale_temps


def _train(out: Path, *extra: str) -> None:
    argv = TRAIN[:-1] + ["2", "--stop-after", "1", "--out", str(out), "--no-progress", *extra]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A training run stopped after epoch 1 of 2, trained once per module (each test gets a copy)."""
    out = tmp_path_factory.mktemp("stopped") / "run"
    _train(out)
    return out


@pytest.fixture
def run_dir(stopped_run, tmp_path, monkeypatch):
    """A copy of ``stopped_run`` inside ``tmp_path/a/b`` (victims above), for a test to corrupt."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "a" / "b" / "run"
    shutil.copytree(stopped_run, out, symlinks=True)
    return out


def _add_to_manifest(run: Path, name: str, payload: bytes) -> None:
    manifest = json.loads((run / "checkpoint.json").read_text())
    manifest["files"][name] = dict(size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    (run / "checkpoint.json").write_text(json.dumps(manifest))


@pytest.mark.slow
def test_row1_a_manifest_name_cannot_climb_out_of_the_run(run_dir, tmp_path, capsys):
    victim = tmp_path / "a" / "victim.txt"
    victim.write_text("precious")
    payload = b"attacker's bytes"
    folder = run_dir / json.loads((run_dir / "checkpoint.json").read_text())["folder"]
    (folder.parent / "victim.txt").write_bytes(payload)  # what ../victim.txt names in the epoch
    _add_to_manifest(run_dir, "../../victim.txt", payload)
    line = refused(capsys, TRAIN[:-1] + ["2", "--out", str(run_dir), "--resume"], tmp_path, "files")
    assert "checkpoint.json" in line and victim.read_text() == "precious"


@pytest.mark.slow
@pytest.mark.parametrize(
    "folder", ["/tmp", "../..", "checkpoints/../../x", "checkpoints/epoch-0002", "checkpoints"]
)
def test_row1_the_epoch_folder_must_be_the_manifests_own(run_dir, tmp_path, capsys, folder):
    manifest = json.loads((run_dir / "checkpoint.json").read_text())
    manifest["folder"] = folder
    (run_dir / "checkpoint.json").write_text(json.dumps(manifest))
    refused(capsys, TRAIN[:-1] + ["2", "--out", str(run_dir), "--resume"], tmp_path, "folder")


@pytest.mark.slow
def test_row1_a_linked_checkpoints_folder_resolves_outside(run_dir, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    os.rename(run_dir / "checkpoints", outside)
    (run_dir / "checkpoints").symlink_to(outside)
    refused(capsys, TRAIN[:-1] + ["2", "--out", str(run_dir), "--resume"], tmp_path, "link")


def test_row2_a_refused_search_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sq = tmp_path / "sq"
    sq.mkdir()
    db = sqlite3.connect(sq / "search.sqlite")
    db.execute("create table t(x)")
    db.commit()
    db.close()
    (sq / "report.md").write_text("mine")
    search = ["search", "--out", str(sq), "--budget", "8", "--quiet"]
    refused(capsys, search, tmp_path, "not a database made by")
    assert sorted(os.listdir(sq)) == ["report.md", "search.sqlite"]  # no marker, no lock
    os.rename(sq / "search.sqlite", tmp_path / "moved.sqlite")
    refused(capsys, search, tmp_path, "did not write")  # still the user's folder
    assert (sq / "report.md").read_text() == "mine"


def test_row3_search_report_writes_only_into_a_search_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    made = tmp_path / "made"
    write_search_run(made)
    mine = tmp_path / "mine"
    (mine / "best").mkdir(parents=True)
    (mine / "report.md").write_text("my report")
    (mine / "best" / "macs_le_0.4M.yaml").write_text("my yaml")
    (mine / "search.sqlite").write_bytes((made / "search.sqlite").read_bytes())
    before = snapshot(tmp_path)
    assert main(["search-report", str(mine)]) == 0  # the summary, nothing rewritten
    assert "showing the summary without rewriting" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    (mine / MARKER).write_text(json.dumps({"tool": "train", "files": []}))
    refused(capsys, ["search-report", str(mine)], tmp_path, "fbnetv3 train")


@pytest.mark.slow
def test_row4_a_hard_linked_lock_is_refused(run_dir, tmp_path, capsys):
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("three years of work")
    (run_dir / ".lock").unlink()
    os.link(thesis, run_dir / ".lock")
    refused(capsys, TRAIN[:-1] + ["2", "--out", str(run_dir), "--resume"], tmp_path, "hard link")
    with pytest.raises(OutputError, match="hard link"):
        RunLock(run_dir).acquire()
    assert thesis.read_text() == "three years of work"


@pytest.mark.parametrize("kind", ["file", "link"])
def test_row5_benchmark_out_follows_the_output_rule(tmp_path, monkeypatch, capsys, kind):
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.md"
    if kind == "file":
        notes.write_text("my notes")
    else:
        (tmp_path / "target.md").write_text("my notes")
        notes.symlink_to(tmp_path / "target.md")
    argv = ["benchmark", "--models", "fbnetv3_a@64", "--backends", "eager", "--batch", "1"]
    refused(capsys, argv + ["--out", str(notes)], tmp_path, "notes.md")
    if kind == "file":
        argv += ["--repeats", "1", "--warmup", "0", "--out", str(notes), "--overwrite"]
        assert main(argv) == 0 and "| fbnetv3_a" in notes.read_text()


def test_row6_an_export_check_too_big_for_memory_is_refused_before_allocating(
    tmp_path, monkeypatch, capsys
):
    from fbnetv3_zoo.deploy import export

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(export, "available_bytes", lambda: 2 << 30)  # a 2 GiB machine
    argv = ["export", "fbnetv3_a", "--input-size", "4096", "--out", str(tmp_path / "a.onnx")]
    refused(capsys, argv, tmp_path, "--input-size 4096")


@pytest.mark.slow
def test_row6_the_check_batch_shrinks_to_what_fits(monkeypatch):
    import timm
    import torch

    from fbnetv3_zoo.deploy import export

    model = timm.create_model("fbnetv3_a")
    largest = export.largest_activation(model, 64)
    seen = []  # the same measured for real, on the CPU
    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda m, i, o: seen.append(o.numel() * o.element_size()))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, 64, 64))
    assert largest == max(seen)
    monkeypatch.setattr(export, "available_bytes", lambda: 2 * 8 * largest)
    assert export.fit_check_batch(model, 64) == 2
    monkeypatch.setattr(export, "available_bytes", lambda: 2 * 100 * largest)
    assert export.fit_check_batch(model, 64) == 3


def test_row7_a_marker_of_the_wrong_shape_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "c"
    out.mkdir()
    (out / "x").write_text("mine")
    (out / MARKER).write_text(json.dumps({"tool": "convert", "files": [["x"]]}))
    argv = ["convert", str(tmp_path / "none.pth"), "--model", "fbnetv3_a", "--out", str(out)]
    (tmp_path / "none.pth").write_bytes(b"x")
    refused(capsys, argv + ["--overwrite"], tmp_path, "files[0]")


def test_row7_a_full_disk_during_convert_is_one_line(
    tmp_path, monkeypatch, capsys, reference_checkpoint
):
    import timm.models

    def full(*args, **kwargs):
        raise RuntimeError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(timm.models, "save_for_hf", full)
    argv = ["convert", str(reference_checkpoint("fbnetv3_a")), "--model", "fbnetv3_a"]
    refused(capsys, argv + ["--out", str(tmp_path / "c")], tmp_path, "no space left")
    assert os.listdir(tmp_path) == []  # its temporary folder went too


def _local_dir(root: Path, config: str | None, link: bool = False) -> str:
    folder = root / "ld"
    folder.mkdir()
    if link:
        (folder / "config.json").symlink_to("/etc/passwd")
    else:
        (folder / "config.json").write_text(config or "")
    return f"local-dir:{folder}"


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d: "fbnetv3_a.in1k", "unknown pretrained tag 'in1k'"),
        (lambda d: "hf-hub:../../etc/passwd", "not a Hugging Face Hub model id"),
        (lambda d: _local_dir(d, "{bad"), "config.json is not valid JSON"),
        (lambda d: _local_dir(d, "[1]"), "config.json"),
        (lambda d: _local_dir(d, None, link=True), "symbolic link"),
    ],
)
@pytest.mark.parametrize("command", ["info", "export"])
def test_row8_bad_model_references_are_one_line(
    tmp_path, monkeypatch, capsys, make, expect, command
):
    monkeypatch.chdir(tmp_path)
    ref = make(tmp_path)
    argv = [command, ref] + (["--out", str(tmp_path / "x.onnx")] if command == "export" else [])
    refused(capsys, argv, tmp_path, expect)


@pytest.mark.parametrize(
    "argv, expect",
    [
        (["search", "--out", "s", "--pretrain-samples", "1000000000"], "pretrain_samples"),
        (["search", "--out", "s", "--ga-population", "1000000000"], "ga_population"),
        (["search", "--out", "s", "--threads", "5000"], "threads"),
        (TRAIN + ["--threads", "1000000", "--out", "t"], "--threads"),
        (TRAIN + ["--threads", "5000", "--out", "t"], "--threads"),
        (["benchmark", "--models", "fbnetv3_a@32", "--threads", "5000"], "--threads"),
    ],
)
def test_row9_numbers_a_user_types_have_upper_bounds(tmp_path, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(tmp_path)
    refused(capsys, argv, tmp_path, expect)


def test_row10_a_raw_pickle_gets_the_usual_refusal(tmp_path, monkeypatch, capsys):
    import pickle

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FBNETV3_TRUST_CHECKPOINT", raising=False)
    (tmp_path / "raw.pth").write_bytes(pickle.dumps({"state_dict": [1, 2]}, protocol=4))
    argv = ["export", "fbnetv3_a", "--checkpoint", "raw.pth", "--out", "x.onnx"]
    line = refused(capsys, argv + ["--input-size", "32"], tmp_path, "refused to load")
    assert "protocol" not in line


def _image_folder(root: Path, readable: bool) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for c in "ab":
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                path = root / split / c / f"{i}.png"
                Image.new("RGB", (16, 16), (60 * i, 0, 0)).save(path)
                if not readable and split == "val":  # a valid header, cut-off pixels
                    path.write_bytes(path.read_bytes()[:40])
    return root


def test_row11_an_output_inside_the_data_folder_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    img = _image_folder(tmp_path / "img", readable=True)
    argv = TRAIN[:3] + ["--data", str(img), "--resolution", "16", "--epochs", "1"]
    refused(capsys, argv + ["--out", str(img / "run")], tmp_path, "inside --data")
    refused(capsys, argv + ["--out", str(img / "train" / "run")], tmp_path, "inside --data")


def test_row12_no_accuracy_is_reported_on_no_image(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    img = _image_folder(tmp_path / "img", readable=False)
    argv = TRAIN[:3] + ["--data", str(img), "--resolution", "16", "--epochs", "1"]
    refused(capsys, argv + ["--no-progress"], tmp_path, "could be read")


def test_row12_a_validation_pass_on_no_readable_image_is_refused():
    import torch
    from fbnetv3_zoo.recipes.evaluation import evaluate

    from fbnetv3_zoo.errors import UserError

    empty = (torch.empty(0), torch.empty(0, dtype=torch.long), ["v/a/0.png", "v/b/0.png"])
    with pytest.raises(UserError, match="none of the images could be read \\(2 skipped"):
        evaluate(torch.nn.Linear(4, 2), [empty], desc="val 1")


def test_row12_top5_is_not_claimed_with_five_classes_or_fewer():
    import torch
    from fbnetv3_zoo.recipes.evaluation import evaluate
    from torch.utils.data import DataLoader

    x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    loader = DataLoader(list(zip(x, y, [[]] * 6, strict=True)), batch_size=3)
    result = evaluate(torch.nn.Linear(4, 2), loader)
    assert result["top5"] is None and 0 <= result["top1"] <= 100


def test_row13_a_database_cut_short_by_a_full_disk_is_completed(tmp_path, monkeypatch, capsys):
    from fbnetv3_zoo.search.store import Store, StoreError, check_ours

    def full(self):
        raise sqlite3.OperationalError("database or disk is full")

    path = tmp_path / "search.sqlite"
    with monkeypatch.context() as m:
        m.setattr(Store, "_create_tables", full)
        with pytest.raises(StoreError, match="run the same command again"):
            Store(path)
    assert path.stat().st_size > 0  # half-made: stamped, no tables
    check_ours(path)  # recognised as ours
    store = Store(path)  # and completed
    assert store.count() == 0
    store.close()


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_row14_leftovers_of_a_killed_export_or_convert_are_removed(tmp_path):
    pid = _dead_pid()
    out = tmp_path / "a.onnx"
    stale_file = tmp_path / f".a.onnx.fbnetv3-{pid}-abc.tmp"
    stale_file.write_bytes(b"12 MB of half an export")
    conv = tmp_path / "c"
    stale_dir = tmp_path / f".c.fbnetv3-{pid}-xyz.tmp"
    stale_dir.mkdir()
    (stale_dir / MARKER).write_text(json.dumps({"tool": "convert", "files": []}))
    (stale_dir / "model.safetensors").write_bytes(b"26 MB")
    live = tmp_path / f".a.onnx.fbnetv3-{os.getpid()}-def.tmp"  # a running export's
    live.write_bytes(b"in progress")
    unmarked = tmp_path / f".c.fbnetv3-{pid}-mine.tmp"  # our name, but not our folder
    unmarked.mkdir()
    (unmarked / "notes.txt").write_text("mine")
    thesis = tmp_path / "thesis.txt"
    thesis.write_text("precious")
    linked = tmp_path / f".a.onnx.fbnetv3-{pid}-lnk.tmp"  # our name, another file's inode
    os.link(thesis, linked)
    assert remove_stale_temps(out) == [stale_file]
    assert remove_stale_temps(conv) == [stale_dir]
    assert live.exists() and (unmarked / "notes.txt").exists() and linked.exists()


@pytest.mark.slow
def test_row14_the_next_export_clears_a_killed_ones_temp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stale = tmp_path / f".a.onnx.fbnetv3-{_dead_pid()}-abc.tmp"
    stale.write_bytes(b"half an export")
    argv = ["export", "fbnetv3_a", "--input-size", "64", "--out", str(tmp_path / "a.onnx")]
    assert main(argv) == 0
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "a.onnx.preprocess.json"]


def test_a_full_disk_is_recognised_through_library_errors():
    from fbnetv3_zoo.cli import _disk_full

    assert _disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not _disk_full(OSError(errno.ENOENT, "No such file or directory"))
