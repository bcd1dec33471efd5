"""Does ``--channels-last`` (NHWC weights) speed up CPU training, and for which models?

Times ``fbnetv3 train``'s engine (``recipes.engine.train``: training plus the
validation of every epoch) with the model in the default (NCHW) and in NHWC
memory, in alternating rounds so that changes in the machine's load hit both
alike, one torch thread, the ``baseline`` recipe at batch 32 on ``digits:30``
(300 training, 599 validation images), each model at the size the recipe pools
train it (``benchmarks/recipe_pool.py``).  A cell is the fastest round's wall
seconds per epoch; the ratio is NCHW / NHWC (above 1: NHWC is faster).

    python benchmarks/memory_format.py               # writes benchmarks/results/memory_format.md
    python benchmarks/memory_format.py --rounds 1 --models resnet18@32 --out /tmp/m.md  # quick
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "memory_format.md"
MODELS = ("fbnetv3_a@56", "mobilenetv3_large_100@56", "resnet18@32")
DATA = "digits:30"


def seconds_per_epoch(model: str, resolution: int, channels_last: bool, epochs: int) -> float:
    """Wall seconds per epoch of one seeded engine run (training and validation)."""
    from fbnetv3_zoo.recipes import Recipe
    from fbnetv3_zoo.recipes.engine import train

    recipe = dataclasses.replace(
        Recipe.load("baseline"), batch_size=32, resolution=resolution, epochs=epochs
    )
    start = time.perf_counter()
    train(model, recipe, data=DATA, seed=0, progress=False, channels_last=channels_last)
    return (time.perf_counter() - start) / epochs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="NAME@SIZE entries")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (best is kept)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed run")
    p.add_argument("--out", default=str(RESULTS), help="markdown table to write")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.epochs < 1:
        p.error("--rounds and --epochs must be >= 1")
    for entry in args.models:
        name, _, size = entry.partition("@")
        if not name or not size.isdigit():
            p.error(f"--models: {entry!r} is not NAME@SIZE (e.g. fbnetv3_a@56)")
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.set_num_threads(1)
    first, _, size = args.models[0].partition("@")
    seconds_per_epoch(first, int(size), False, 1)  # untimed: imports and the data's first load
    rows = []
    for entry in args.models:
        name, _, size = entry.partition("@")
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for nhwc in (False, True):
                times[nhwc].append(seconds_per_epoch(name, int(size), nhwc, args.epochs))
        nchw, nhwc = min(times[False]), min(times[True])
        rows.append(f"| {name} | {size} px | {nchw:.3f} | {nhwc:.3f} | {nchw / nhwc:.2f} |")
        print(rows[-1], flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    flags = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/memory_format.py", *flags])
    about = " ".join(__doc__.split("\n\n")[1].split())
    lines = [
        "# Training in NHWC memory (`--channels-last`) on the CPU",
        "",
        f"Re-measure: `{command}`. {about}",
        "",
        f"Rounds: {args.rounds}; epochs per run: {args.epochs}; torch {torch.__version__}; "
        f"{os.cpu_count()} cores, load average {load:.1f} at the end (other jobs share them).",
        "",
        "| model | input | NCHW s/epoch | NHWC s/epoch | speed-up |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
