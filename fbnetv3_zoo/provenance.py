"""How a result was made: the command line, the machine and the package versions.

Every result file (a training run's ``summary.json``, a search's
``best/<constraint>.yaml``) carries this record, so a number can be traced to
the exact software and command that produced it without asking its author.
"""

from __future__ import annotations

import contextlib
import platform
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

# the ``fbnetv3`` command running now, for the result files it writes; set only for the
# duration of one command (``running_command``), so nothing leaks into later calls
_COMMAND: ContextVar[tuple[str, ...] | None] = ContextVar("fbnetv3_command", default=None)


@contextlib.contextmanager
def running_command(argv: Sequence[str]) -> Iterator[None]:
    """While the block runs, result files record ``fbnetv3 <argv>`` as their command."""
    token = _COMMAND.set(("fbnetv3", *argv))
    try:
        yield
    finally:
        _COMMAND.reset(token)


def command_line() -> str:
    """The command being run: ``fbnetv3 ...`` inside the CLI, else this process's ``sys.argv``."""
    command = _COMMAND.get()
    if command is not None:
        return shlex.join(command)
    return shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv])


def versions() -> dict[str, str]:
    """Python, torch, timm, numpy and this package's versions (those that are installed)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("fbnetv3-zoo", "torch", "timm", "torchvision", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_text(device: Any) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: the device type plus the accelerator's name."""
    text = str(device)
    if text.startswith("cuda"):
        import torch

        text += f" ({torch.cuda.get_device_name(device)})"
    return text


def environment(device: Any, processes: int = 1) -> dict[str, Any]:
    """One session's record: command line, process count, device, threads and versions."""
    import torch

    return dict(
        command=command_line(),
        processes=int(processes),
        device=device_text(device),
        torch_threads=torch.get_num_threads(),
        platform=platform.platform(terse=True),
        versions=versions(),
    )
