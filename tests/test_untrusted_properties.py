"""Property tests: no manifest or marker, however hostile, reaches outside its run folder.

Hypothesis writes ``checkpoint.json`` manifests and ``.fbnetv3-zoo.json``
markers with absolute paths, ``..``, links, huge sizes, wrong types and deep
nesting into a run folder that sits next to the user's files, then runs what
a resume (read the committed epoch, publish it) and ``--overwrite`` (replace
a folder we made) do with them.  Each example must end in a clean refusal (a
``UserError`` of one line) or in success, and every file outside the run
folder must be unchanged.  The examples are derandomized: same code, same
examples, every run.

``test_the_property_catches_the_old_reader`` shows the property has teeth:
with the manifest reader this package had before (no name checks), the
issue's example overwrites a file outside the run and the property fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fbnetv3_zoo.recipes import checkpoints as ckpt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_no_data_loss import snapshot

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.outputs import MARKER, staged_folder

PAYLOAD = b"attacker's bytes"
# each example builds and removes a small folder tree: on tmpfs its fsync/rmdir calls cost
# nothing, on this disk ~60% of the test's time (links, hard links and FIFOs work the same)
SCRATCH = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
INFO = dict(size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest())
SETTINGS = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

HOSTILE_NAMES = [
    "../victim.txt",
    "../../outside/victim.txt",
    "checkpoints/../../outside/victim.txt",
    "/etc/passwd",
    "{outside}/victim.txt",  # an absolute path to the user's file, filled in per example
    "..",
    ".",
    "",
    "a/../../b",
    "x\x00y",
    "..\\victim.txt",
    "state.pt",
    "model.safetensors",
    "model_ema.safetensors",
    "link-out",
    "checkpoints/epoch-0001",
    "checkpoints/epoch-0002",
    "checkpoints",
]
names = st.one_of(st.sampled_from(HOSTILE_NAMES), st.text(max_size=30))
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)
sizes = st.one_of(st.just(len(PAYLOAD)), st.integers(), st.just(2**70), junk)
infos = st.one_of(
    st.just(INFO), st.fixed_dictionaries({"size": sizes, "sha256": st.just(INFO["sha256"])}), junk
)
manifests = st.fixed_dictionaries(
    {
        "format": st.one_of(st.just(1), junk),
        "epoch": st.one_of(st.just(1), st.integers(), junk),
        "folder": st.one_of(st.just("checkpoints/epoch-0001"), names, junk),
        "files": st.one_of(st.dictionaries(names, infos, max_size=4), junk),
    }
)
marker_names = st.one_of(st.sampled_from(["mine.txt", "link-out", "mine.txt/"]), names)
# an edit of the run's real manifest: replace it whole, or add files (and maybe a folder) to it
edits = st.one_of(
    manifests.map(lambda m: ("replace", m, None)),
    st.tuples(
        st.just("extend"),
        st.dictionaries(names, infos, min_size=1, max_size=3),
        st.one_of(st.none(), names),
    ),
)
markers = st.one_of(
    st.fixed_dictionaries(
        {
            "tool": st.one_of(st.just("convert"), st.sampled_from(["train", "search"]), junk),
            "files": st.one_of(st.lists(marker_names, max_size=6), junk),
        }
    ),
    junk,
)


def _fill(value: Any, outside: Path) -> Any:
    """Put the example's real outside folder into names that ask for it."""
    if isinstance(value, str):
        return value.replace("{outside}", str(outside))
    if isinstance(value, dict):
        return {_fill(k, outside): _fill(v, outside) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, outside) for v in value]
    return value


def _world(root: Path) -> tuple[Path, Path]:
    """The user's files (``outside``) and a committed run whose folder an attacker filled."""
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "victim.txt").write_text("precious")
    (outside / "dir" / "notes.txt").write_text("also precious")
    run = root / "a" / "run"
    run.mkdir(parents=True)
    state = ckpt.state_bytes({"epoch": 1})
    ckpt.commit_epoch(run, 1, {ckpt.STATE_FILE: state, ckpt.WEIGHTS_FILE: PAYLOAD}, [])
    epoch = run / "checkpoints" / "epoch-0001"
    for place in (run / "checkpoints", run, epoch, epoch / "x", run / "outside"):  # where ../ lands
        place.mkdir(parents=True, exist_ok=True)
        (place / "victim.txt").write_bytes(PAYLOAD)
    (run / "...").mkdir()  # the directory a '.{name}.tmp' of '../x' passes through
    (epoch / "link-out").symlink_to(outside / "victim.txt")
    return outside, run


def _resume_files(run: Path) -> None:
    """What resuming does with a run folder's manifest: verify the epoch, then publish it."""
    ckpt.read_committed(run)
    ckpt.publish(run, [])


def _edited(real: dict[str, Any], edit: tuple) -> Any:
    how, value, folder = edit
    if how == "replace":
        return value
    manifest = {**real, "files": {**real["files"], **value}}
    return manifest if folder is None else {**manifest, "folder": folder}


def manifest_violations(edit: tuple, action: Callable[[Path], None] = _resume_files) -> list:
    """Run ``action`` on a run folder whose real manifest got ``edit``; return what went wrong.

    Wrong: an exception other than a one-line ``UserError``, or any change
    outside the run folder.
    """
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = Path(tmp)
        outside, run = _world(root)
        real = json.loads((run / "checkpoint.json").read_text())
        (run / "checkpoint.json").write_text(json.dumps(_fill(_edited(real, edit), outside)))
        before = snapshot(outside)
        problems: list = []
        try:
            action(run)
        except UserError as err:
            if len(str(err).splitlines()) != 1:
                problems.append(f"a refusal of {len(str(err).splitlines())} lines")
        except Exception as err:  # noqa: BLE001 - what the property reports
            problems.append(f"{type(err).__name__}: {err}")
        after = snapshot(outside)
        problems += [f"changed outside: {k}" for k in before if after.get(k) != before[k]]
        return problems


@pytest.mark.slow
@SETTINGS
@given(edits)
def test_no_manifest_reaches_outside_its_run(edit):
    assert manifest_violations(edit) == []


@pytest.mark.slow
@SETTINGS
@given(markers, st.sampled_from(["plain", "link", "hardlink", "fifo"]))
def test_no_marker_lets_overwrite_remove_what_it_did_not_write(marker, extra):
    with tempfile.TemporaryDirectory(dir=SCRATCH) as tmp:
        root = Path(tmp)
        outside = root / "outside"
        outside.mkdir()
        (outside / "victim.txt").write_text("precious")
        out = root / "c"
        out.mkdir()
        (out / "mine.txt").write_text("the user's")
        if extra == "link":
            (out / "link-out").symlink_to(outside / "victim.txt")
        elif extra == "hardlink":
            os.link(outside / "victim.txt", out / "link-out")
        elif extra == "fifo":
            os.mkfifo(out / "link-out")
        (out / MARKER).write_text(json.dumps(_fill(marker, outside)))
        before_out, before_outside = _listing(out), snapshot(outside)
        try:
            with staged_folder(out, "convert", overwrite=True) as staging:
                (staging / "model.safetensors").write_bytes(b"new weights")
        except UserError as err:
            assert len(str(err).splitlines()) == 1
            assert _listing(out) == before_out  # a refusal removes nothing
        else:  # replaced: only what the marker listed, as plain files, was there
            listed = set(marker["files"]) if isinstance(marker, dict) else set()
            assert {"mine.txt"} <= listed | {MARKER}
            assert extra == "plain" or "link-out" in listed
            assert extra in ("plain", "hardlink")
        assert snapshot(outside) == before_outside


def _listing(folder: Path) -> dict[str, Any]:
    """Every entry with its type, size and (for regular files) bytes; a FIFO is never opened."""
    found = {}
    for entry in sorted(folder.rglob("*")):
        info = entry.lstat()
        content = entry.read_bytes() if entry.is_file() and not entry.is_symlink() else None
        found[entry.relative_to(folder).as_posix()] = (info.st_mode, info.st_size, content)
    return found


def _old_read_manifest(out: Path) -> dict[str, Any]:
    """The manifest reader before issue 35: it checked the folder but not the file names."""
    path = out / ckpt.MANIFEST
    manifest = json.loads(path.read_text())
    folder = manifest["folder"]
    if Path(folder).is_absolute() or ".." in Path(folder).parts:
        raise ckpt.ResumeError(f"{path} is damaged (folder {folder!r} is outside the run)")
    return manifest


def test_the_property_catches_the_old_reader(monkeypatch):
    # issue 35, row 1: one more file entry (run/.. is a/, a/.. holds outside/)
    example = ("extend", {"../../outside/victim.txt": INFO}, None)
    assert manifest_violations(example) == []  # today's reader refuses it
    monkeypatch.setattr(ckpt, "read_manifest", _old_read_manifest)
    problems = manifest_violations(example)
    assert problems, "the property did not notice the old reader writing outside the run"
    assert any("victim.txt" in p for p in problems)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "", "x\x00"])
def test_inner_name_refuses_each_way_out(tmp_path, name):
    from fbnetv3_zoo.files.untrusted import UntrustedFileError, inner_name

    with pytest.raises(UntrustedFileError, match="field 'files'"):
        inner_name(tmp_path, name, source=tmp_path / "m.json", where="files")
