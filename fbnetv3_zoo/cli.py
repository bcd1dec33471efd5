"""The ``fbnetv3`` command: one entry point, one subcommand per job.

Each area of the package contributes its subcommands through a ``register``
function, imported lazily so that ``fbnetv3 models`` never pays for the search.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# modules that expose ``register(subparsers)``; missing optional ones are skipped
COMMAND_MODULES = (
    "fbnetv3_zoo.zoo_cli",
    "fbnetv3_zoo.recipes.cli",
    "fbnetv3_zoo.search.cli",
    "fbnetv3_zoo.export_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fbnetv3", description="FBNetV3 model zoo, training recipes and JointNAS search."
    )
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, KeyError, OSError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fbnetv3 {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
