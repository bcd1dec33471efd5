"""Argument types shared by the ``fbnetv3`` commands, so one flag means one thing everywhere.

``--threads N`` is the intra-op thread count of torch (and of ONNX Runtime or
XNNPACK where the command runs them) in every command; ``0`` is all cores of
the machine (``os.cpu_count()``).  Commands differ only in their default,
which their help states.  Standard library only: ``fbnetv3 --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["ALL_CORES", "add_threads_flag", "resolve_threads", "threads_arg"]

ALL_CORES = 0  # ``--threads 0``


def threads_arg(text: str) -> int:
    """``--threads``'s type: an integer; its range (0 = all cores, else 1..max) is checked by
    :func:`resolve_threads`, so a bad count is the commands' one-line error, not a usage dump."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an integer >= 0 (0 = all cores), got {text!r}"
        ) from None


def resolve_threads(value: int, where: str = "--threads (0 = all cores)") -> int:
    """The thread count ``--threads value`` stands for: every core for 0, else ``value``,
    refused in one line above ``fbnetv3_zoo.checks.max_threads()``."""
    from fbnetv3_zoo.checks import check_threads
    from fbnetv3_zoo.errors import UserError

    if value < 0:
        raise UserError(f"--threads: expected an integer >= 0 (0 = all cores), got {value}")
    if value == ALL_CORES:
        return os.cpu_count() or 1
    return check_threads(value, where)


def add_threads_flag(
    parser: argparse.ArgumentParser, default: int | None, what: str, default_text: str = ""
) -> None:
    """Add ``--threads N`` with the shared meaning; ``what`` says which threads it sets."""
    parser.add_argument(
        "--threads",
        type=threads_arg,
        default=default,
        metavar="N",
        help=f"{what}; 0 = all cores (default: {default_text or default})",
    )


def add_channels_last_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--channels-last`` (timm's flag name): NHWC weights, faster for depthwise nets on a CPU."""
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help=f"{what} with the model in NHWC memory: faster for FBNetV3 on a CPU, not for a "
        "ResNet (benchmarks/results/memory_format.md); results change in the last bits only",
    )
