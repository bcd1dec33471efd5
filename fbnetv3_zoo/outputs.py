"""Output paths that never cost the user a file this package did not write.

Every command that writes a folder (train, search, convert) or a file
(export) goes through here:

* a folder is *ours* only when it holds ``.fbnetv3-zoo.json`` naming the tool
  that made it (and, for replaceable outputs, every file it wrote);
  ``--overwrite`` replaces only such a folder, and never ``.``, ``..``, the
  home folder, the filesystem root, a folder above the working directory, or
  a folder that holds an input of the command;
* nothing is written or deleted through a symbolic link: files are created
  with ``O_NOFOLLOW | O_EXCL`` under a temporary name and renamed into place,
  and a linked sub-folder or file is refused with one line;
* files we read back (manifests, checkpoints) are read only if they are
  regular files no larger than we expect, so a link to ``/dev/zero`` or a
  FIFO is refused instead of filling memory;
* a run folder is locked with ``flock`` while a process writes it, so a
  second process on the same folder is refused, naming the first one's pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import UserError

MARKER = ".fbnetv3-zoo.json"
LOCK = ".lock"
MAX_MARKER_BYTES = 1 << 20


class OutputError(UserError):
    """An output path that this package will not write to or delete."""


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def refuse_link(path: Path, what: str = "") -> None:
    """One line when ``path`` is a symbolic link (we never write through one)."""
    if path.is_symlink():
        label = f"{what} " if what else ""
        raise OutputError(f"{label}{path} is a symbolic link; refusing to write through it")


def check_protected(out: Path, inputs: Iterable[str | os.PathLike] = ()) -> None:
    """Refuse an output that is a folder the user certainly did not mean to replace.

    ``.``, ``..``, the home folder, the root, any folder containing the working
    directory, and any path that is or contains one of ``inputs``.
    """
    real = Path(os.path.realpath(out))
    cwd = Path.cwd().resolve()
    home = Path(os.path.realpath(Path.home()))
    if real == Path(real.anchor) or real in (home, cwd) or real in cwd.parents:
        raise OutputError(
            f"--out {out} is {real}, a folder that holds the working directory, the home "
            "folder or the filesystem root; refusing to replace it: choose a new folder"
        )
    for item in inputs:
        source = Path(os.path.realpath(item))
        if source == real or real in source.parents:
            raise OutputError(f"--out {out} holds the input {item}; refusing to replace it")


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder this package made, or None (no marker, or not ours)."""
    path = folder / MARKER
    if not _lexists(path):
        return None
    try:
        doc = json.loads(read_regular(path, MAX_MARKER_BYTES))
    except (OSError, ValueError, UserError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("tool"), str) else None


def write_marker(folder: Path, tool: str, files: Iterable[str] = ()) -> None:
    """Record that ``tool`` made ``folder`` and which files it wrote there."""
    doc = {"tool": tool, "files": sorted(files)}
    write_new(folder / MARKER, json.dumps(doc, indent=2).encode())


def _entries(folder: Path) -> list[str]:
    """Every path under ``folder`` (relative, '/'-separated), without following links."""
    found = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        rel = Path(root).relative_to(folder)
        for name in dirs + files:
            found.append((rel / name).as_posix())
    return found


def check_replaceable(out: Path, tool: str) -> None:
    """Refuse to replace ``out`` unless ``tool`` made it and it holds only what ``tool`` wrote."""
    refuse_link(out, "--out")
    if not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder made by `fbnetv3 {tool}`")
    marker = read_marker(out)
    if marker is None or marker["tool"] != tool:
        made_by = f"`fbnetv3 {marker['tool']}`" if marker else "something else"
        raise OutputError(
            f"--out {out} was made by {made_by}, not by `fbnetv3 {tool}`; refusing to replace "
            "it: choose a new folder"
        )
    written = set(marker.get("files") or []) | {MARKER}
    foreign = [e for e in _entries(out) if e not in written and not _is_parent_of(e, written)]
    if foreign:
        raise OutputError(
            f"--out {out} holds {len(foreign)} file(s) that `fbnetv3 {tool}` did not write "
            f"(e.g. {foreign[0]}); refusing to replace it"
        )


def _is_parent_of(entry: str, files: set[str]) -> bool:
    prefix = entry + "/"
    return any(f.startswith(prefix) for f in files)


@contextlib.contextmanager
def staged_folder(out: Path, tool: str, overwrite: bool, inputs: Iterable = ()) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``out`` (checked first).

    The marker is written last, listing every file the body wrote, so a later
    ``--overwrite`` can tell our files from the user's.
    """
    out = Path(out)
    inputs = list(inputs)
    check_protected(out, inputs)
    if _lexists(out):
        if not overwrite:
            raise OutputError(f"{out} already exists; pass --overwrite to replace it")
        check_replaceable(out, tool)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        write_marker(tmp, tool, _entries(tmp))
        if _lexists(out):
            check_replaceable(out, tool)  # again: it may have changed while we worked
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            try:
                os.mkdir(out)  # fails if someone made ``out`` meanwhile; the rename fills it
            except FileExistsError:
                raise OutputError(
                    f"{out} appeared while the output was being written; it was left as it is"
                ) from None
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_file_output(out: Path, overwrite: bool, inputs: Iterable = ()) -> None:
    """Refuse a file output that exists (without ``overwrite``), is a link, or is an input."""
    out = Path(out)
    refuse_link(out, "--out")
    for item in inputs:
        if _lexists(out) and Path(os.path.realpath(item)) == Path(os.path.realpath(out)):
            raise OutputError(f"--out {out} is the input {item}; refusing to replace it")
    if _lexists(out):
        if not overwrite:
            raise OutputError(f"{out} already exists; pass --overwrite to replace it")
        if not stat.S_ISREG(os.lstat(out).st_mode):
            raise OutputError(f"--out {out} is not a regular file; refusing to replace it")


def publish_file(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move a finished temporary file to ``out``; without ``overwrite`` never replace anything.

    A hard link fails if ``out`` appeared while we worked, where a rename would
    silently replace it.
    """
    if overwrite:
        refuse_link(out, "--out")
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise OutputError(
            f"{out} appeared while the output was being written; it was left as it is "
            "(pass --overwrite to replace it)"
        ) from None
    except OSError:  # no hard links on this filesystem: check, then rename
        if _lexists(out):
            raise OutputError(f"{out} already exists; pass --overwrite to replace it") from None
        os.replace(tmp, out)
    else:
        tmp.unlink()


def write_new(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a fresh temporary file, never through a link.

    The temporary file is created with ``O_EXCL | O_NOFOLLOW``; the rename
    replaces a link at ``path`` itself, never its target.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    if _lexists(tmp):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_regular(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` (no links, devices or FIFOs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == 40:  # ELOOP: the last component is a link
            raise OutputError(f"{path} is a symbolic link; refusing to read through it") from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OutputError(f"{path} is not a regular file; refusing to read it")
        if info.st_size > max_bytes:
            raise OutputError(
                f"{path} holds {info.st_size} bytes, more than the {max_bytes} expected"
            )
        return f.read(max_bytes + 1)[:max_bytes]


class RunLock:
    """An exclusive ``flock`` on ``<folder>/.lock``: one writing process per run folder.

    The kernel drops the lock when its process dies, however it dies, so a
    crashed run never leaves the folder stuck; the file holds the owner's pid
    only so that a refusal can name it.  A linked ``.lock`` is refused.
    """

    def __init__(self, folder: str | Path, what: str = "search") -> None:
        self.path = Path(folder) / LOCK
        self.what = what
        self.handle: Any = None

    def acquire(self) -> None:
        import fcntl

        refuse_link(self.path)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as err:
            raise OutputError(f"{self.path}: cannot create the lock ({err.strerror})") from None
        handle = os.fdopen(fd, "r+")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            handle.close()
            raise OutputError(f"{self.path} is not a regular file; refusing to use it as a lock")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = handle.read(64).strip() or "unknown"
            handle.close()
            raise OutputError(
                f"{self.path.parent}: another {self.what} (pid {owner}) is running in this "
                "folder; wait for it to finish or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None


def check_run_folder(out: Path, tool: str, holds_run: bool) -> None:
    """Refuse a run folder that ``tool`` may not write into (read-only check, before any work).

    Allowed: a new path, an empty folder, a folder ``tool`` made (its marker),
    or one holding a run of ``tool`` (``holds_run``, for runs made before
    markers).  Anything else holds the user's files, which a run could clobber.
    """
    out = Path(out)
    refuse_link(out, "--out")
    if not _lexists(out):
        return
    if not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    entries = sorted(os.listdir(out))
    links = [e for e in entries if (out / e).is_symlink()]
    if links:  # our run folders hold no links; writing or cleaning through one is how data is lost
        raise OutputError(
            f"--out {out}: {out / links[0]} is a symbolic link; a run folder must hold none"
        )
    marker = read_marker(out)
    if not entries or holds_run or (marker is not None and marker["tool"] == tool):
        return
    made_by = f" (made by `fbnetv3 {marker['tool']}`)" if marker else ""
    raise OutputError(
        f"--out {out} already holds files that `fbnetv3 {tool}` did not write{made_by}, "
        f"e.g. {entries[0]}; choose a new or empty folder"
    )


def claim_run_folder(out: Path, tool: str, what: str) -> tuple[RunLock, bool]:
    """Create (or adopt) ``out``, lock it and mark it as ``tool``'s; returns (lock, created)."""
    out = Path(out)
    refuse_link(out, "--out")
    created = not _lexists(out)
    out.mkdir(parents=True, exist_ok=True)
    refuse_link(out, "--out")
    lock = RunLock(out, what)
    lock.acquire()
    try:
        if read_marker(out) is None:
            write_marker(out, tool)
    except BaseException:
        lock.release()
        raise
    return lock, created
