"""Commands never delete or overwrite what they did not write (issue 21's table, row by row).

Each case builds a small tree in a temporary folder, runs the command the
way a careless or hostile user would, and asserts: exit code 2, one line on
stderr, and every file that existed before still exists with the same bytes
(a snapshot of the tree, symlinks and their targets included).  Root ignores
file permissions, so nothing here relies on chmod.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fbnetv3_zoo.recipes.checkpoints import commit_epoch
from search_result import write_search_run

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.files.outputs import (
    MARKER,
    OutputError,
    RunLock,
    check_run_folder,
    claim_run_folder,
    publish_file,
)

TRAIN = ["train", "--model", "resnet18", "--data", "digits", "--resolution", "16", "--epochs", "1"]


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every path under ``root``: a file's bytes, a link's target, or 'dir' (links not followed)."""
    found: dict[str, tuple[str, bytes | str]] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", "")
            else:
                found[rel] = ("file", path.read_bytes())
    return found


def refused(capsys, argv: list[str], root: Path, expect: str) -> str:
    """Run ``fbnetv3 argv``; check exit 2, one stderr line containing ``expect``, nothing lost."""
    before = snapshot(root)
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert expect in err[0], err[0]
    after = snapshot(root)
    lost = {k: v for k, v in before.items() if after.get(k) != v}
    assert not lost, f"changed or deleted: {sorted(lost)}"
    return err[0]


@pytest.fixture
def proj(tmp_path, monkeypatch):
    """A user's project folder (the working directory) with a checkpoint and a neighbour."""
    root = tmp_path / "proj"
    (root / "sub").mkdir(parents=True)
    (root / "a.pth").write_bytes(b"not really a checkpoint")
    (root / "notes.txt").write_text("keep me")
    (root / "sub" / "data.bin").write_bytes(b"\x00\x01")
    monkeypatch.chdir(root)
    return tmp_path


@pytest.mark.parametrize(
    "cwd, out, expect",
    [
        (".", ".", "working directory"),  # row 1
        ("sub", "..", "working directory"),  # row 2
        (".", str(Path.home()), "home"),
        (".", "/", "root"),
    ],
)
def test_convert_never_replaces_the_working_folder_its_parents_or_home(
    proj, monkeypatch, capsys, cwd, out, expect
):
    monkeypatch.chdir(proj / "proj" / cwd)
    argv = ["convert", str(proj / "proj" / "a.pth"), "--model", "fbnetv3_a", "--out", out]
    refused(capsys, argv + ["--overwrite"], proj, expect)


def test_convert_never_replaces_the_folder_holding_its_input(proj, capsys):  # row 3
    ck = proj / "proj" / "ck"
    ck.mkdir()
    (ck / "official.pth").write_bytes(b"weights")
    (ck / "other.pth").write_bytes(b"more weights")
    argv = ["convert", str(ck / "official.pth"), "--model", "fbnetv3_a", "--out", str(ck)]
    refused(capsys, argv + ["--overwrite"], proj, "holds the input")


def test_convert_overwrite_replaces_only_its_own_folder(proj, capsys, reference_checkpoint):
    ckpt = reference_checkpoint("fbnetv3_a")
    out = proj / "proj" / "converted"
    assert main(["convert", str(ckpt), "--model", "fbnetv3_a", "--out", str(out)]) == 0
    assert (out / MARKER).is_file() and (out / "model.safetensors").is_file()
    argv = ["convert", str(ckpt), "--model", "fbnetv3_a", "--out", str(out), "--overwrite"]
    assert main(argv) == 0  # ours: replaced
    (out / "mine.txt").write_text("a file the user put there")
    refused(capsys, argv, proj, "did not write")
    foreign = proj / "proj" / "sub"  # no marker: not ours
    refused(capsys, argv[:-3] + ["--out", str(foreign), "--overwrite"], proj, "not by `fbnetv3")


def test_train_refuses_a_folder_holding_other_files(proj, capsys):  # row 4
    v = proj / "proj" / "v"
    (v / "checkpoints" / "mine").mkdir(parents=True)
    (v / "checkpoints" / "mine" / "best.pth").write_text("x")
    (v / "metrics.jsonl").write_text("my metrics\n")
    refused(capsys, TRAIN + ["--out", str(v)], proj, "did not write")


def test_train_refuses_a_linked_checkpoints_folder(proj, capsys):  # row 5
    others = proj / "others"
    (others / "run1").mkdir(parents=True)
    (others / "run1" / "model.safetensors").write_bytes(b"weights of another run")
    v2 = proj / "proj" / "v2"
    v2.mkdir()
    (v2 / "checkpoints").symlink_to(others)
    refused(capsys, TRAIN + ["--out", str(v2)], proj, "symbolic link")
    (v2 / MARKER).write_text('{"tool": "train", "files": []}')  # even in a folder of ours
    refused(capsys, TRAIN + ["--out", str(v2)], proj, "symbolic link")
    with pytest.raises(OutputError, match="symbolic link"):  # and at commit time
        commit_epoch(v2, 1, {"state.pt": b"x"}, [])


def test_a_second_training_on_one_folder_is_refused_naming_the_pid(proj, capsys):  # row 6
    c = proj / "proj" / "c"
    lock, _ = claim_run_folder(c, "train", "training")  # the first training holds the folder
    try:
        line = refused(capsys, TRAIN + ["--out", str(c)], proj, "another training")
        assert f"pid {os.getpid()}" in line
    finally:
        lock.release()


def test_a_run_starting_up_is_named_not_called_foreign(tmp_path):
    """Between taking the lock and renaming its marker into place, a starting run's
    folder holds only ``.lock`` and the marker's temporary file; a second run checking
    it then must be told that a run is live, and a dead run's leftovers are no obstacle."""
    out = tmp_path / "run"
    out.mkdir()
    (out / f".{MARKER}.tmp").write_text("{")
    lock = RunLock(out, "search")
    lock.acquire()
    try:
        with pytest.raises(OutputError, match=rf"another search \(pid {os.getpid()}\)"):
            check_run_folder(out, "search", holds_run=False, what="search")
    finally:
        lock.release()
    check_run_folder(out, "search", holds_run=False)  # the holder died: nothing foreign here
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write"):
        check_run_folder(out, "search", holds_run=False)


def test_search_lock_is_never_written_through_a_link(proj, capsys):  # row 7
    victim = proj / "victim.txt"
    victim.write_text("precious")
    run = proj / "proj" / "run"
    run.mkdir()
    (run / ".lock").symlink_to(victim)
    search = ["search", "--out", str(run), "--budget", "8", "--quiet"]
    refused(capsys, search, proj, "symbolic link")
    with pytest.raises(OutputError, match="symbolic link"):
        RunLock(run).acquire()
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("target", ["report.md", "best/macs_le_0.4M.yaml", "best", "progress.png"])
def test_search_report_never_writes_through_links(proj, capsys, target):  # row 8
    run = proj / "proj" / "run"
    write_search_run(run)
    victim = proj / "victim"
    victim.mkdir()
    (victim / "macs_le_0.4M.yaml").write_text("mine")
    (victim / "file.txt").write_text("mine")
    path = run / target
    if path.is_dir():
        os.rename(path, proj / "moved")
        path.symlink_to(victim)
    else:
        path.unlink()
        path.symlink_to(victim / "file.txt")
    refused(capsys, ["search-report", str(run)], proj, "symbolic link")


def test_a_manifest_linked_to_dev_zero_is_refused(proj, capsys):  # row 9
    r = proj / "proj" / "r"
    r.mkdir()
    (r / "checkpoint.json").symlink_to("/dev/zero")
    refused(capsys, TRAIN + ["--out", str(r), "--resume"], proj, "checkpoint.json")


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_resume_needs_a_run(proj, capsys, kind):  # row 11
    out = proj / "proj" / "nothing"
    if kind == "empty":
        out.mkdir()
    refused(capsys, TRAIN + ["--out", str(out), "--resume"], proj, "no run to continue")
    assert out.exists() == (kind == "empty")


def test_image_folder_walk_survives_link_loops(tmp_path, monkeypatch):  # row 10
    from PIL import Image

    from fbnetv3_zoo import data
    from fbnetv3_zoo.data import DataError, SafeImageFolder

    root = tmp_path / "d"
    for c in "ab":
        (root / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (20 * i, 0, 0)).save(root / c / f"{i}.png")
    plain = SafeImageFolder(str(root)).samples
    (root / "a" / "up").symlink_to("..")
    (root / "b" / "self").symlink_to(".")
    assert SafeImageFolder(str(root)).samples == plain  # 20 images, each once, same labels
    monkeypatch.setattr(data, "MAX_FOLDER_FILES", 5)
    with pytest.raises(DataError, match="more than 5 files"):
        SafeImageFolder(str(root))


def test_export_keeps_a_file_that_appeared_meanwhile(tmp_path):  # row 12
    tmp, out = tmp_path / ".b.onnx.tmp", tmp_path / "b.onnx"
    tmp.write_bytes(b"our export")
    out.write_bytes(b"someone else's file")
    with pytest.raises(OutputError, match="appeared"):
        publish_file(tmp, out, overwrite=False)
    assert out.read_bytes() == b"someone else's file"
    publish_file(tmp, out, overwrite=True)
    assert out.read_bytes() == b"our export"


def test_export_refuses_links_and_its_own_input(proj, capsys, reference_checkpoint):
    victim = proj / "victim.onnx"
    victim.write_bytes(b"precious")
    link = proj / "proj" / "b.onnx"
    link.symlink_to(victim)
    export = ["export", "fbnetv3_a", "--input-size", "32"]
    refused(capsys, export + ["--out", str(link), "--overwrite"], proj, "symbolic link")
    weights = proj / "proj" / "a.pth"
    argv = export + ["--checkpoint", str(weights), "--out", str(weights), "--overwrite"]
    refused(capsys, argv, proj, "is the input")


def _nested_yaml(path: Path) -> Path:
    path.write_text("[" * 200_000)
    return path


def _sqlite(path: Path, sql: str) -> Path:
    import sqlite3

    db = sqlite3.connect(path)
    db.executescript(sql)
    db.commit()
    db.close()
    return path


def _damaged_run(path: Path, sql: str) -> Path:
    """A search run folder whose database was damaged after the fact."""
    write_search_run(path)
    _sqlite(path / "search.sqlite", sql)
    return path


HUGE_ARCH = """\
arch:
  stem_channels: 4096
  stem_stride: 1
  stages:
  - - {kernel: 3, expansion: 1, channels: 8}
  - - {kernel: 3, expansion: 2, channels: 16, stride: 2}
  input_size: 4096
  feature_width: 32
  name: huge
"""


def _huge(folder: Path) -> str:
    """A spec inside every per-field limit whose whole forward pass is absurd (TMACs, TBs)."""
    path = folder / "huge.yaml"
    path.write_text(HUGE_ARCH)
    return str(path)


MISTAKES = {  # name: (argv builder given a scratch folder, text the one line must contain)
    "nested yaml, info": (lambda d: ["info", str(_nested_yaml(d / "x.yaml"))], "nested too deeply"),
    "nested yaml, recipe": (
        lambda d: TRAIN + ["--recipe", str(_nested_yaml(d / "r.yaml"))],
        "nested too deeply",
    ),
    "foreign sqlite, search": (
        lambda d: (
            ["search", "--out", str(d), "--budget", "8", "--quiet"]
            if _sqlite(d / "search.sqlite", "CREATE TABLE mine (x);")
            else []
        ),
        "not a database made by",
    ),
    "foreign sqlite, report": (
        lambda d: (
            ["search-report", str(d)]
            if _sqlite(d / "search.sqlite", "CREATE TABLE mine (x);")
            else []
        ),
        "search.sqlite",
    ),
    "null score": (
        lambda d: [
            "search-report",
            str(_damaged_run(d / "r", "UPDATE candidates SET score = NULL;")),
        ],
        "score is None",
    ),
    "bad json": (
        lambda d: [
            "search-report",
            str(_damaged_run(d / "r", "UPDATE candidates SET arch = '{';")),
        ],
        "not valid JSON",
    ),
    "no meta table": (
        lambda d: ["search-report", str(_damaged_run(d / "r", "DROP TABLE meta;"))],
        "meta",
    ),
    "benchmark batch 0": (
        lambda d: ["benchmark", "--models", "fbnetv3_a", "--batch", "0"],
        "--batch",
    ),
    "benchmark batch -1": (
        lambda d: ["benchmark", "--models", "fbnetv3_a", "--batch=-1"],
        "--batch",
    ),
    "benchmark threads -1": (
        lambda d: ["benchmark", "--models", "fbnetv3_a", "--threads=-1"],
        "--threads",
    ),
    "benchmark size 0": (lambda d: ["benchmark", "--models", "fbnetv3_a@0"], "fbnetv3_a@0"),
    "benchmark size huge": (
        lambda d: ["benchmark", "--models", "fbnetv3_a@100000"],
        "fbnetv3_a@100000",
    ),
    "workers -1": (lambda d: TRAIN + ["--workers=-1", "--out", str(d / "w")], "--workers"),
    "seed too large": (lambda d: TRAIN + ["--seed", str(2**70), "--out", str(d / "s")], "--seed"),
    "search seed too large": (
        lambda d: ["search", "--out", str(d / "s"), "--seed", str(2**70)],
        "seed",
    ),
    "stop after 0": (
        lambda d: TRAIN + ["--stop-after", "0", "--out", str(d / "z")],
        "--stop-after",
    ),
    "huge spec, export": (lambda d: ["export", _huge(d), "--out", str(d / "h.onnx")], "TMACs"),
    "huge spec, benchmark": (
        lambda d: ["benchmark", "--models", _huge(d), "--backends", "eager", "--batch", "1"],
        "TMACs",
    ),
    "huge spec, train": (
        lambda d: TRAIN[:2] + [_huge(d)] + TRAIN[3:5] + ["--epochs", "1", "--out", str(d / "t")],
        "TMACs",
    ),
    "newline in constraint": (
        lambda d: ["search", "--out", str(d / "c"), "--constraint", "macs<=1M\n"],
        "invalid constraint",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MISTAKES))
def test_user_mistakes_end_in_one_line_and_leave_nothing(tmp_path, monkeypatch, capsys, name):
    build, expect = MISTAKES[name]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(tmp_path)
    argv = build(scratch)
    refused(capsys, argv, tmp_path, expect)
    before = set(snapshot(tmp_path))
    assert main(argv) == 2  # and again: the first refusal left nothing that changes the answer
    assert set(snapshot(tmp_path)) == before


def test_a_full_disk_during_a_search_is_one_line_and_keeps_the_folder(
    tmp_path, monkeypatch, capsys
):
    import sqlite3

    from fbnetv3_zoo.search.store import Store

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "add_candidates", full)
    run = tmp_path / "run"
    monkeypatch.chdir(tmp_path)
    line = refused(capsys, ["search", "--out", str(run), "--quiet"], tmp_path, "disk")
    assert "resume" in line and (run / "search.sqlite").is_file()


class _Payload:
    """Unpickling this runs ``os.makedirs(target)``: proof that code ran, and harmless."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


@pytest.mark.parametrize("route", ["local-dir", "checkpoint"])
def test_a_malicious_pickle_is_refused_in_one_line_without_running(
    tmp_path, monkeypatch, capsys, route
):
    import json

    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FBNETV3_TRUST_CHECKPOINT", raising=False)
    ran = tmp_path / "code-ran"
    folder = tmp_path / "evil"
    folder.mkdir()
    torch.save({"state_dict": _Payload(str(ran))}, folder / "pytorch_model.bin")
    config = {"architecture": "fbnetv3_a", "num_classes": 1000, "pretrained_cfg": {}}
    (folder / "config.json").write_text(json.dumps(config))
    if route == "local-dir":
        argv = ["export", f"local-dir:{folder}", "--out", "x.onnx", "--input-size", "32"]
    else:
        argv = ["export", "fbnetv3_a", "--checkpoint", str(folder / "pytorch_model.bin")]
        argv += ["--out", "x.onnx", "--input-size", "32"]
    line = refused(capsys, argv, tmp_path, "refused")
    assert not ran.exists()
    assert "weights_only" not in line  # torch's advice to turn the protection off is not repeated
    assert "--trust-checkpoint" not in line or "fbnetv3 convert" in line  # only real options
