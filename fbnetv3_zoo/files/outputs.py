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
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.untrusted import UntrustedFileError, field, inner_name, read_json

MARKER = ".fbnetv3-zoo.json"
LOCK = ".lock"
MAX_MARKER_BYTES = 1 << 20
MAX_MARKER_FILES = 10_000
TOOLS = ("train", "search", "convert")  # the commands that make folders


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


def refuse_inside_input(out: Path, source: str | os.PathLike, flag: str = "--data") -> None:
    """Refuse an output folder inside an input folder (a run inside an ImageFolder would
    become one of its classes on the next training)."""
    if not os.path.isdir(source):
        return
    real, src = Path(os.path.realpath(out)), Path(os.path.realpath(source))
    if real == src or src in real.parents:
        raise OutputError(
            f"--out {out} is inside {flag} {source}; the run's files would become data "
            "there: choose a folder outside it"
        )


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder this package made, or None when there is none.

    The marker is untrusted input (the folder may come from anyone): a marker
    that is not a regular JSON file naming one of our tools, or that lists a
    name reaching outside the folder, is refused in one line naming the field.
    """
    path = folder / MARKER
    if not _lexists(path):
        return None
    doc = read_json(path, MAX_MARKER_BYTES)
    tool = field(doc, "tool", str, path)
    if tool not in TOOLS:
        raise UntrustedFileError(
            f"{path}: field 'tool' holds {tool[:40]!r}, not one of {', '.join(TOOLS)}; "
            "refusing to use it"
        )
    files = field(doc, "files", list, path) if "files" in doc else []
    if len(files) > MAX_MARKER_FILES:
        raise UntrustedFileError(f"{path}: field 'files' lists {len(files)} names; refusing it")
    names = [inner_name(folder, f, source=path, where=f"files[{i}]") for i, f in enumerate(files)]
    return {"tool": tool, "files": names}


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
    written = set(marker["files"]) | {MARKER}
    entries = _entries(out)
    foreign = [e for e in entries if e not in written and not _is_parent_of(e, written)]
    if foreign:
        raise OutputError(
            f"--out {out} holds {len(foreign)} file(s) that `fbnetv3 {tool}` did not write "
            f"(e.g. {foreign[0]}); refusing to replace it"
        )
    for entry in entries:  # what the marker lists must still be plain files and folders
        mode = os.lstat(out / entry).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise OutputError(
                f"--out {out}: {entry} is not a regular file or folder; refusing to replace it"
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
    remove_stale_temps(out)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=".tmp", dir=out.parent))
    try:
        write_marker(tmp, tool)  # first: a kill leaves a folder the next run can recognise
        yield tmp
        write_marker(tmp, tool, [e for e in _entries(tmp) if e != MARKER])
        if _lexists(out):
            check_replaceable(out, tool)  # again: it may have changed while we worked
            trash = Path(tempfile.mkdtemp(prefix=_temp_prefix(out), suffix=".old", dir=out.parent))
            write_marker(trash, tool)
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


def _temp_prefix(out: Path) -> str:
    """Temporary names beside ``out`` carry our tag and pid, so leftovers are recognisable."""
    return f".{out.name}.fbnetv3-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_temps(out: Path) -> list[Path]:
    """Remove what a killed run writing ``out`` left beside it; returns what was removed.

    Only our own leftovers go: a name ``.<out>.fbnetv3-<pid>-*.tmp|.old`` whose
    process is gone, and that is a regular file with no other hard link (an
    export) or a real folder holding our marker (a convert).
    """
    pattern = re.compile(re.escape(f".{out.name}.fbnetv3-") + r"(\d{1,9})-[^/]*\.(tmp|old)")
    removed = []
    try:
        names = os.listdir(out.parent)
    except OSError:
        return removed
    for name in names:
        found = pattern.fullmatch(name)
        if found is None or _alive(int(found[1])):
            continue
        path = out.parent / name
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            path.unlink()
        elif stat.S_ISDIR(info.st_mode) and _has_our_marker(path):
            shutil.rmtree(path)
        else:
            continue
        removed.append(path)
    return removed


def _has_our_marker(folder: Path) -> bool:
    try:
        return read_marker(folder) is not None
    except UserError:
        return False


@contextlib.contextmanager
def staged_file(out: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``out``; on success it becomes ``out`` (``publish_file``).

    Without ``overwrite`` nothing at ``out`` is ever replaced, even a file that
    appeared there while the body ran; on failure the temporary file goes.
    """
    out = Path(out)
    if not out.parent.is_dir():
        raise OutputError(f"--out: folder {out.parent} does not exist")
    remove_stale_temps(out)
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=_temp_prefix(out), suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should not be
        publish_file(tmp, out, overwrite)
    finally:
        tmp.unlink(missing_ok=True)


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
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            handle.close()
            what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a regular file"
            raise OutputError(f"{self.path} {what}; refusing to use it as a lock")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = handle.read(64).strip() or "unknown"
            handle.close()
            raise self.busy(owner) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the descriptor releases the flock
            self.handle = None

    def busy(self, owner: str) -> OutputError:
        return OutputError(
            f"{self.path.parent}: another {self.what} (pid {owner}) is running in this "
            "folder; wait for it to finish or choose another --out"
        )

    def refuse_if_held(self) -> None:
        """Refuse now if a live run holds the lock (read-only: nothing is created or changed).

        A run that is starting up has a lock and a half-written marker and
        nothing else yet; naming the run beats calling those files foreign.
        """
        import fcntl

        if not self.path.is_file() or self.path.is_symlink():
            return  # no lock yet, or a linked one that ``acquire`` refuses
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return
        with os.fdopen(fd) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                raise self.busy(handle.read(64).strip() or "unknown") from None


def check_run_folder(out: Path, tool: str, holds_run: bool, what: str | None = None) -> None:
    """Refuse a run folder that ``tool`` may not write into (read-only check, before any work).

    Allowed: a new path, an empty folder, a folder ``tool`` made (its marker),
    or one holding a run of ``tool`` (``holds_run``, for runs made before
    markers).  Anything else holds the user's files, which a run could clobber.
    A folder a live run holds is refused naming that run (``what``, its pid).
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
    RunLock(out, what or tool).refuse_if_held()
    marker = read_marker(out)
    if marker is not None and marker["tool"] != tool:
        raise OutputError(
            f"--out {out} was made by `fbnetv3 {marker['tool']}`, not by `fbnetv3 {tool}`; "
            "choose a new or empty folder"
        )
    if not entries or holds_run or marker is not None:
        return
    # a run that died between taking the lock and writing its marker left only these
    entries = [e for e in entries if e not in (LOCK, f".{MARKER}.tmp")]
    if not entries:
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
