"""Reading back what a run folder says about itself, as untrusted input.

A run folder is often one the user did not make (copied from a colleague,
unpacked from an archive), so every file we read back from it -- the
checkpoint manifest, the ``.fbnetv3-zoo.json`` marker, ``summary.json``,
a model folder's ``config.json`` -- goes through this module:

* the file must be a regular file (no link, device or FIFO) of bounded size
  holding strict JSON, else one error names the file;
* every field is checked for its type, and an error names the file and the
  field;
* every name a file gives us is a plain relative name from a known set
  (``inner_name``): never absolute, never with ``..``, never resolving
  outside the folder through a linked sub-folder.

Callers then only ever join names that passed here onto their folder.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Container
from pathlib import Path, PurePosixPath
from typing import Any

from fbnetv3_zoo.errors import UserError

MAX_NAME_CHARS = 1024


class UntrustedFileError(UserError):
    """A file read back from a folder says something we refuse to act on."""


def read_regular(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` (no links, devices or FIFOs)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == 40:  # ELOOP: the last component is a link
            raise UntrustedFileError(
                f"{path} is a symbolic link; refusing to read through it"
            ) from None
        raise
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFileError(f"{path} is not a regular file; refusing to read it")
        if info.st_size > max_bytes:
            raise UntrustedFileError(
                f"{path} holds {info.st_size} bytes, more than the {max_bytes} expected"
            )
        return f.read(max_bytes + 1)[:max_bytes]


def _bad(path: Path, field: str, why: str) -> UntrustedFileError:
    where = f"{path}: field {field!r}" if field else str(path)
    return UntrustedFileError(f"{where} {why}; refusing to use it")


def read_json(path: Path, max_bytes: int) -> Any:
    """Parse ``path`` as strict JSON (a regular file of at most ``max_bytes``).

    Errors name the file: a link, a device, an oversized file, bytes that are
    not UTF-8, or text that is not JSON (NaN and Infinity included).
    """
    try:
        raw = read_regular(path, max_bytes)
    except OSError as err:
        raise UntrustedFileError(f"{path} cannot be read ({err.strerror})") from None

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=no_constants)
    except UnicodeDecodeError:
        raise UntrustedFileError(f"{path} is not UTF-8 text; refusing to use it") from None
    except (ValueError, RecursionError) as err:
        raise UntrustedFileError(
            f"{path} is not valid JSON ({str(err).splitlines()[0][:120]}); refusing to use it"
        ) from None


def field(doc: Any, key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    """``doc[key]``, which must exist and be of ``kind`` (a bool is never an int here)."""
    if not isinstance(doc, dict):
        raise _bad(path, "", "does not hold a JSON object")
    if key not in doc:
        raise _bad(path, key, "is missing")
    value = doc[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise _bad(path, key, f"is a {type(value).__name__}, not a {names}")
    return value


def inner_name(
    folder: Path,
    name: Any,
    *,
    source: Path,
    where: str,
    allowed: Container[str] | re.Pattern[str] | Callable[[str], bool] | None = None,
) -> str:
    """``name`` if it is a plain relative name that stays inside ``folder``; else one error.

    ``source`` and ``where`` (the field) name what gave us the name.  With
    ``allowed`` (a set of names, a pattern matched in full, or a predicate),
    only those names are accepted.
    """
    if not isinstance(name, str):
        raise _bad(source, where, f"is a {type(name).__name__}, not a file name")
    if not name or len(name) > MAX_NAME_CHARS or "\x00" in name or "\\" in name:
        raise _bad(source, where, f"holds {name[:80]!r}, not a plain file name")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise _bad(source, where, f"holds {name[:80]!r}, a path that reaches outside {folder}")
    if allowed is not None and not _is_allowed(name, allowed):
        raise _bad(source, where, f"holds {name[:80]!r}, not a name this folder can hold")
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(root, *pure.parts))
    if os.path.commonpath([root, target]) != root:
        raise _bad(source, where, f"holds {name!r}, which resolves outside {folder}")
    return name


def _is_allowed(name: str, allowed: Any) -> bool:
    if isinstance(allowed, re.Pattern):
        return allowed.fullmatch(name) is not None
    if callable(allowed):
        return bool(allowed(name))
    return name in allowed
