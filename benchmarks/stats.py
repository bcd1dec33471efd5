"""Throughput of the analytic params/MACs counter, against building the module and counting.

    python benchmarks/stats.py            # prints a markdown table, writes benchmarks/results/stats.md
    python benchmarks/stats.py --seconds 0.1 --batch 2000 --out ''   # a quick look

The search filters hundreds of thousands of candidates by MACs/params, so
``arch_stats`` must manage at least 20,000 specs per second on one core, and
the search's vectorised ``batch_stats`` (same formulas, numpy columns) must
filter 100,000 candidates of the full ``fbnetv3`` space in at most 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fbnetv3_zoo import ArchSpec

TESTS = Path(__file__).resolve().parents[1] / "tests"

GOAL = 20_000
BATCH = 100_000
BATCH_GOAL_S = 3.0


def per_second(fn, items, min_seconds: float = 2.0) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        for item in items:
            fn(item)
        done += len(items)
    return done / (time.perf_counter() - start)


def build_and_count(spec: ArchSpec) -> tuple[int, int]:
    """What a user would do without analytic stats: build the module, count by running it."""
    import torch
    from torch import nn

    from fbnetv3_zoo import FBNetV3

    model = FBNetV3(spec).eval()
    macs = [0]

    def hook(module, inputs, output):
        positions = output.shape[2] * output.shape[3] if output.dim() == 4 else 1
        macs[0] += module.weight.numel() * positions

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, spec.input_size, spec.input_size))
    return sum(p.numel() for p in model.parameters()), macs[0]


def _space_and_vectors(n: int):
    import numpy as np
    from fbnetv3_zoo.search.space.definition import load_space

    space = load_space("fbnetv3")
    return space, np.random.default_rng(0).random((n, space.size))


def batch_filter_seconds(batch: int = BATCH) -> float:
    """Best of three: MACs/params/validity of ``batch`` candidates with the search's batch_stats."""
    from fbnetv3_zoo.search.space.constraints import batch_stats

    space, u = _space_and_vectors(batch)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        batch_stats(space, u, 1000)
        times.append(time.perf_counter() - start)
    return min(times)


def batch_reference_rate(min_seconds: float = 2.0) -> float:
    """The alternative: decode each candidate to an ArchSpec and call arch_stats (specs/s)."""
    from fbnetv3_zoo.search.space.encoding import decode

    from fbnetv3_zoo import SpecError, arch_stats

    space, u = _space_and_vectors(300)

    def one(row):
        with contextlib.suppress(SpecError):  # a vanished feature map: batch_stats marks it
            arch_stats(decode(space, row)[0])

    return per_second(one, list(u), min_seconds=min_seconds)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "stats.md"),
        help="results file ('' = print only; default benchmarks/results/stats.md)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=2.0,
        help="least seconds per throughput row (default 2; build-and-count gets 1.5x)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"candidates of the search-filter row (default {BATCH:,}; its goal is for {BATCH:,})",
    )
    args = parser.parse_args(argv)
    import torch

    from fbnetv3_zoo import VARIANTS, ArchSpec, arch_stats

    sys.path.insert(0, str(TESTS))
    from conftest import random_spec

    sec = args.seconds
    torch.set_num_threads(1)
    rng = random.Random(0)
    zoo = [v.spec for v in VARIANTS.values()]
    randoms = [random_spec(rng, input_size=rng.choice([160, 192, 224])) for _ in range(200)]
    dicts = [s.to_dict() for s in randoms]
    rows = [
        ("arch_stats, FBNetV3-A…G specs", per_second(arch_stats, zoo, sec)),
        ("arch_stats, 200 random specs", per_second(arch_stats, randoms, sec)),
        (
            "ArchSpec.from_dict + arch_stats, random",
            per_second(lambda d: arch_stats(ArchSpec.from_dict(d)), dicts, sec),
        ),
    ]
    baseline = per_second(build_and_count, zoo[:2], min_seconds=1.5 * sec)
    batch_s = batch_filter_seconds(args.batch)
    lines = [
        f"Analytic stats throughput (1 thread, Python {platform.python_version()}, {platform.machine()}, "
        f"torch {torch.__version__}); goal >= {GOAL:,} specs/s. Load average at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (a busy machine slows every row alike).",
        "",
        "The first two rows call arch_stats again and again on the same spec objects, which keep "
        "their resolved widths and size-free block terms; the third builds every spec anew "
        "(parsing, validation, resolution), as a caller with new specs pays.",
        "",
        "| method | specs / s | vs build-and-count | meets goal |",
        "|---|---|---|---|",
    ]
    for name, rate in rows:
        verdict = "yes" if rate >= GOAL else "NO"
        if "from_dict" in name:
            verdict = "n/a (includes parsing and validation)"
        lines.append(f"| {name} | {rate:,.0f} | {rate / baseline:,.0f}x | {verdict} |")
    lines.append(f"| build module + count params + hook MACs (A, B) | {baseline:,.1f} | 1x | - |")
    rate = args.batch / batch_s
    met = "yes" if batch_s <= BATCH_GOAL_S else "NO"
    if args.batch != BATCH:
        met = f"n/a (the goal is for {BATCH:,})"
    lines += [
        "",
        f"| search filter | candidates | seconds (best of 3) | specs / s | vs arch_stats on the same specs | meets goal (<= {BATCH_GOAL_S:.0f} s) |",
        "|---|---|---|---|---|---|",
        f"| batch_stats, fbnetv3 space, uniform vectors | {args.batch:,} | {batch_s:.2f} | "
        f"{rate:,.0f} | {rate / batch_reference_rate(sec):.1f}x | {met} |",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
