"""How fast the ``fbnetv3`` command answers, against merely importing torch and timm.

    python benchmarks/cli_startup.py      # ~1 min on 2 cores; writes benchmarks/results/cli_startup.md
    python benchmarks/cli_startup.py --rounds 1 --only version --no-warmup --out ''   # a quick look

Each command runs as a fresh process (as a user types it) several times in
alternating rounds; the table shows the median wall time.  The reference is
``python -c "import torch, timm"``, the floor any command that imports them
up front could reach.  Goal: ``--help``, ``models``, ``recipes``, ``--version``
and an argument error in under one second.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL_S = 1.0
ROUNDS = 7


def _fbnetv3() -> list[str]:
    exe = shutil.which("fbnetv3")
    return [exe] if exe else [sys.executable, "-m", "fbnetv3_zoo.cli"]


def commands() -> list[tuple[str, list[str], bool]]:
    """(label, argv, has a goal)."""
    cli = _fbnetv3()
    return [
        ("fbnetv3 --help", [*cli, "--help"], True),
        ("fbnetv3 --version", [*cli, "--version"], True),
        ("fbnetv3 models", [*cli, "models"], True),
        ("fbnetv3 recipes", [*cli, "recipes"], True),
        ("fbnetv3 export (missing --out: argument error)", [*cli, "export", "fbnetv3_a"], True),
        ("fbnetv3 search --help", [*cli, "search", "--help"], True),
        (
            'python -c "import torch, timm" (reference)',
            [sys.executable, "-c", "import torch, timm"],
            False,
        ),
    ]


def select(
    cases: list[tuple[str, list[str], bool]], only: list[str] | None
) -> list[tuple[str, list[str], bool]]:
    """The cases whose label contains one of ``only`` (all when None), and the reference (last)."""
    if not only:
        return cases
    chosen = [c for c in cases[:-1] if any(text in c[0] for text in only)]
    if not chosen:
        labels = ", ".join(repr(c[0]) for c in cases[:-1])
        raise SystemExit(f"--only {only}: no command label contains it; labels: {labels}")
    return [*chosen, cases[-1]]


def time_once(argv: list[str]) -> float:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds", type=int, default=ROUNDS, help=f"timed rounds (default {ROUNDS})"
    )
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "cli_startup.md"),
        help="results file ('' = print only; default benchmarks/results/cli_startup.md)",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="TEXT",
        help="time only the commands whose label contains TEXT (repeatable; the reference "
        "always runs; default: every command)",
    )
    parser.add_argument(
        "--warmup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run each command once, untimed, to warm the file cache (default: yes)",
    )
    args = parser.parse_args(argv)
    cases = select(commands(), args.only)
    times: dict[str, list[float]] = {label: [] for label, _, _ in cases}
    for _label, argv, _ in cases if args.warmup else ():  # warm the file cache, untimed
        time_once(argv)
    for _ in range(args.rounds):  # alternate so a busy spell hits every command alike
        for label, argv, _ in cases:
            times[label].append(time_once(argv))
    reference = statistics.median(times[cases[-1][0]])
    lines = [
        f"CLI start-up: median wall time of {args.rounds} fresh processes each, alternating rounds "
        f"(Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs); "
        f"goal < {GOAL_S:.0f} s.",
        "",
        "| command | median s | min s | vs import torch, timm | meets goal |",
        "|---|---|---|---|---|",
    ]
    for label, _, has_goal in cases:
        med = statistics.median(times[label])
        verdict = ("yes" if med < GOAL_S else "NO") if has_goal else "-"
        lines.append(
            f"| {label} | {med:.3f} | {min(times[label]):.3f} | {med / reference:.2f}x | {verdict} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
