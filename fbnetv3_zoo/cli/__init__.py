"""The ``fbnetv3`` command: one entry point, one subcommand per job.

Each area of the package contributes its subcommands through a ``register``
function.  Those modules import only the standard library at top level, so
``fbnetv3 --help``, ``models`` and argument errors answer without loading
torch or timm; each command loads what it needs when it runs.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

# modules that expose ``register(subparsers)``; missing optional ones are skipped
COMMAND_MODULES = (
    "fbnetv3_zoo.cli.zoo",
    "fbnetv3_zoo.recipes.cli",
    "fbnetv3_zoo.search.cli",
    "fbnetv3_zoo.search.latency.cli",
    "fbnetv3_zoo.cli.deploy",
)


def _version() -> str:
    from fbnetv3_zoo import __version__

    return f"fbnetv3-zoo {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbnetv3", description="FBNetV3 model zoo, training recipes and JointNAS search."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # that area is not part of this install
                continue
            raise
        module.register(sub)
    return parser


def _one_line(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    if isinstance(err, OSError) and err.filename is not None and str(err.filename) not in message:
        message = f"{err.filename}: {message}"
    return " ".join(str(message).split()) or type(err).__name__


def _disk_full(err: BaseException) -> bool:
    """A write that failed for want of space, as OSError or as a library's wrapped error
    (safetensors reports ``IoError(Os { code: 28, ... })``)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(err) or "disk is full" in str(err)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; a user mistake is one stderr line and exit code 2."""
    from fbnetv3_zoo.provenance import running_command

    args = build_parser().parse_args(argv)
    with running_command(sys.argv[1:] if argv is None else argv):  # result files record it
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The subcommand, with every user mistake turned into one line and exit code 2."""
    from fbnetv3_zoo.errors import UserError

    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # the reader went away (`fbnetv3 info x | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0
    except Exception as err:
        if isinstance(err, UserError) or isinstance(err, OSError) and not _disk_full(err):
            # UserError: a bad file, flag or value; OSError: a file the user named (missing,
            # unreadable, read-only).  Either way the message says what to fix.
            print(f"fbnetv3 {args.command}: error: {_one_line(err)}", file=sys.stderr)
        elif _disk_full(err):
            print(
                f"fbnetv3 {args.command}: error: no space left on the device while writing "
                "(outputs are written under temporary names, so nothing was replaced); free "
                "space and run the same command again",
                file=sys.stderr,
            )
        elif isinstance(err, ValueError | KeyError):
            # Not (yet) a UserError: maybe a user mistake, maybe a bug.  Keep the traceback
            # so a bug stays diagnosable, and still end with the one-line summary.
            traceback.print_exc()
            print(f"fbnetv3 {args.command}: error: {_one_line(err)}", file=sys.stderr)
        else:
            raise
        return 2
