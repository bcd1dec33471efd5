"""Throughput of the analytic params/MACs counter, against building the module and counting.

    python benchmarks/stats.py            # prints a markdown table, writes benchmarks/results/stats.md

The search filters hundreds of thousands of candidates by MACs/params, so
``arch_stats`` must manage at least 20,000 specs per second on one core.
"""

from __future__ import annotations

import platform
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import random_spec  # noqa: E402

from fbnetv3_zoo import VARIANTS, ArchSpec, FBNetV3, arch_stats  # noqa: E402

GOAL = 20_000


def per_second(fn, items, min_seconds: float = 2.0) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_seconds:
        for item in items:
            fn(item)
        done += len(items)
    return done / (time.perf_counter() - start)


def build_and_count(spec: ArchSpec) -> tuple[int, int]:
    """What a user would do without analytic stats: build the module, count by running it."""
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


def main() -> None:
    torch.set_num_threads(1)
    rng = random.Random(0)
    zoo = [v.spec for v in VARIANTS.values()]
    randoms = [random_spec(rng, input_size=rng.choice([160, 192, 224])) for _ in range(200)]
    dicts = [s.to_dict() for s in randoms]
    rows = [
        ("arch_stats, FBNetV3-A…G specs", per_second(arch_stats, zoo)),
        ("arch_stats, 200 random specs", per_second(arch_stats, randoms)),
        (
            "ArchSpec.from_dict + arch_stats, random",
            per_second(lambda d: arch_stats(ArchSpec.from_dict(d)), dicts),
        ),
    ]
    baseline = per_second(build_and_count, zoo[:2], min_seconds=3.0)
    lines = [
        f"Analytic stats throughput (1 thread, Python {platform.python_version()}, {platform.machine()}, "
        f"torch {torch.__version__}); goal >= {GOAL:,} specs/s.",
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
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "stats.md"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
