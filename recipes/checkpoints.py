"""A run folder's checkpoints, committed one whole epoch at a time.

Each finished epoch writes its files into a fresh ``checkpoints/epoch-NNNN/``
folder, then atomically replaces ``checkpoint.json`` (the manifest naming that
folder, with each file's size and SHA-256).  Replacing the manifest is the
commit: a process killed at any moment leaves the manifest naming either the
previous epoch's folder or the new one, both whole.  After the commit the
files are linked to the run folder's top level (``model.safetensors``,
``model_ema.safetensors``, ``state.pt``, each replaced atomically) where users
find them, and older epoch folders are removed.

``state.pt`` holds only tensors, numbers, strings and containers of them, so
it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.errors import UserError, first_line
from fbnetv3_zoo.files.outputs import refuse_link, write_new
from fbnetv3_zoo.files.untrusted import (
    UntrustedFileError,
    field,
    inner_name,
    read_json,
    read_regular,
)
from fbnetv3_zoo.weights.checkpoint import CheckpointError, check_fits

MANIFEST = "checkpoint.json"
FOLDER = "checkpoints"
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "model_ema.safetensors"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
FORMAT = 1
EPOCH_FOLDER = re.compile(r"epoch-\d{4,}")
FILE_NAMES = (WEIGHTS_FILE, EMA_FILE, STATE_FILE)  # all a manifest may name
MAX_MANIFEST_BYTES = 1 << 20
MAX_FILE_BYTES = 1 << 40
SHA256 = re.compile(r"[0-9a-f]{64}")

# ``hook(stage, epoch)``, called after each step of a commit; the stages are the
# file names written, then "manifest" and "published".  Tests pass one that dies
# inside the kill window on purpose (``train(..., commit_hook=...)``).
CommitHook = Callable[[str, int], None]


class ResumeError(UserError):
    """A run folder cannot be continued: damaged, or written with other settings."""


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a fresh temporary name (never through a link), then move it over ``path``."""
    write_new(path, payload)


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def weights_bytes(module: nn.Module, epoch: int) -> bytes:
    """``module``'s state dict as safetensors bytes, tagged with the epoch."""
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    return save(sd, metadata={"epoch": str(epoch)})


def state_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def metrics_bytes(history: list[dict[str, Any]]) -> bytes:
    """One strict-JSON line per epoch (``allow_nan=False``: a NaN here is a bug)."""
    return "".join(json.dumps(h, allow_nan=False) + "\n" for h in history).encode()


def has_run(out: Path) -> bool:
    """True when ``out`` holds a committed epoch (or a run from before manifests)."""
    return (out / MANIFEST).exists() or (out / STATE_FILE).exists()


def commit_epoch(
    out: Path,
    epoch: int,
    files: dict[str, bytes],
    history: list[dict[str, Any]],
    hook: CommitHook | None = None,
) -> None:
    """Write ``files`` as epoch ``epoch``'s checkpoint and make it current as one unit.

    ``hook(stage, epoch)`` runs after each step (see ``CommitHook``).
    """
    step = hook or _no_hook
    root = out / FOLDER
    folder = root / f"epoch-{epoch:04d}"
    refuse_link(root)
    refuse_link(folder)
    if folder.exists():  # left by a run killed before committing this epoch
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    digests = {}
    for name, payload in files.items():
        with open(folder / name, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        digests[name] = dict(size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
        step(name, epoch)
    _fsync_dir(folder)
    _fsync_dir(root)
    manifest = dict(format=FORMAT, epoch=epoch, folder=f"{FOLDER}/{folder.name}", files=digests)
    atomic_write(out / MANIFEST, json.dumps(manifest, indent=2).encode())
    _fsync_dir(out)
    step("manifest", epoch)
    publish(out, history)
    step("published", epoch)


def _no_hook(stage: str, epoch: int) -> None:
    """The default commit hook: nothing to observe."""


def publish(out: Path, history: list[dict[str, Any]]) -> None:
    """Expose the committed epoch's files at the run folder's top level; drop older epochs.

    Idempotent: a resumed run calls it again to finish a publication a kill cut short.
    """
    manifest = read_manifest(out)
    folder = out / manifest["folder"]
    for name in manifest["files"]:  # checked names: FILE_NAMES only
        if not stat.S_ISREG(os.lstat(folder / name).st_mode):
            raise ResumeError(f"{folder / name} is not a regular file; refusing to publish it")
        tmp = out / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(folder / name, tmp)  # a hard link: no copy, same bytes
        except OSError:  # a filesystem without hard links
            shutil.copyfile(folder / name, tmp)
        os.replace(tmp, out / name)
    atomic_write(out / METRICS_FILE, metrics_bytes(history))
    refuse_link(out / FOLDER)
    for old in (out / FOLDER).iterdir():  # only our own epoch folders, never through a link
        if EPOCH_FOLDER.fullmatch(old.name) and old.name != folder.name and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)


def read_manifest(out: Path) -> dict[str, Any]:
    """``checkpoint.json``, checked as untrusted input (the run folder may come from anyone).

    The epoch folder must be ``checkpoints/epoch-NNNN`` of the manifest's own
    epoch, every file one of ``FILE_NAMES`` with a size and a SHA-256; anything
    else is refused in one line naming the field.
    """
    path = out / MANIFEST
    if not os.path.lexists(path):
        if (out / STATE_FILE).exists():
            raise ResumeError(
                f"{out} holds a run from an older version (no {MANIFEST}); it cannot be "
                "resumed: start a new run in another --out"
            )
        raise ResumeError(f"{out} holds no finished epoch ({MANIFEST} is missing)")
    try:
        doc = read_json(path, MAX_MANIFEST_BYTES)
        if field(doc, "format", int, path) != FORMAT:
            raise UntrustedFileError(f"{path}: field 'format' is {doc['format']}, not {FORMAT}")
        epoch = field(doc, "epoch", int, path)
        if not 0 <= epoch < 10**6:
            raise UntrustedFileError(f"{path}: field 'epoch' is {epoch}, out of range")
        folder = field(doc, "folder", str, path)
        expected = f"{FOLDER}/epoch-{epoch:04d}"
        inner_name(out, folder, source=path, where="folder", allowed={expected})
        files = field(doc, "files", dict, path)
        for name, info in files.items():
            inner_name(out / folder, name, source=path, where="files", allowed=FILE_NAMES)
            size = field(info, "size", int, path)
            if not 0 <= size <= MAX_FILE_BYTES:
                raise UntrustedFileError(f"{path}: field 'files.{name}.size' is out of range")
            if not SHA256.fullmatch(field(info, "sha256", str, path)):
                raise UntrustedFileError(f"{path}: field 'files.{name}.sha256' is no SHA-256")
    except OSError as err:
        raise ResumeError(
            f"{path} cannot be read ({err.strerror}); the run cannot be resumed"
        ) from None
    except UserError as err:
        raise ResumeError(f"{err}; the run cannot be resumed") from None
    return dict(format=FORMAT, epoch=epoch, folder=folder, files=files)


def read_committed(out: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The committed epoch's ``state.pt`` contents and the paths of its files, verified."""
    manifest = read_manifest(out)
    folder = out / manifest["folder"]
    paths = {}
    for name, info in manifest["files"].items():
        path = folder / name
        size = info["size"]
        try:
            payload = read_regular(path, size)
        except UserError as err:
            raise ResumeError(f"{err}; the run cannot be resumed") from None
        except OSError as err:
            raise ResumeError(
                f"{path} cannot be read ({err.strerror}); the run cannot be resumed"
            ) from None
        if len(payload) != size or hashlib.sha256(payload).hexdigest() != info["sha256"]:
            raise ResumeError(
                f"{path} is damaged (its size or SHA-256 differs from {out / MANIFEST}); "
                "the run cannot be resumed"
            )
        paths[name] = path
    if STATE_FILE not in paths:
        raise ResumeError(f"{out / MANIFEST} names no {STATE_FILE}; the run cannot be resumed")
    try:
        state = torch.load(paths[STATE_FILE], map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable pickle is the same user problem
        raise ResumeError(f"{paths[STATE_FILE]} cannot be loaded: {first_line(err)}") from None
    if not isinstance(state, dict) or state.get("epoch") != manifest["epoch"]:
        raise ResumeError(f"{paths[STATE_FILE]} does not hold epoch {manifest['epoch']}'s state")
    return state, paths


def load_weights(path: Path, module: nn.Module, what: str) -> None:
    """Load safetensors weights into ``module``, naming the mismatch when they do not fit."""
    from safetensors.torch import load_file

    try:
        saved = load_file(str(path))
    except Exception as err:  # noqa: BLE001 - a damaged file
        raise ResumeError(f"{path} cannot be loaded: {err}") from None
    try:
        check_fits(saved, module, str(path), target=what, hint="resume with the run's own --model")
    except CheckpointError as err:
        raise ResumeError(str(err)) from None
    module.load_state_dict(saved)
