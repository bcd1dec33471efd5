"""Which torch thread count should ``fbnetv3 train`` and ``validate`` use on the CPU?

Times the two commands' work through their Python entry points, each setting in
a fresh process (torch fixes its thread pool at first use), in alternating
rounds so that changes in the machine's load hit every setting alike:

- validate: ResNet-18 (random weights, 10 classes) on the 599 digits
  validation images at 64 px, and a small FBNetV3 network (a search-result-sized
  ArchSpec) at 32 px;
- train: one epoch of that small network on the digits training split with the
  ``fbnetv3_proxy`` recipe (mixup, EMA, RMSProp), 32 px.

Thread settings: 1, 2 and torch's default (the number of cores it sees).

    python benchmarks/threads.py             # writes benchmarks/results/threads.md (~5 min)
    python benchmarks/threads.py --rounds 1  # a quick look
    python benchmarks/threads.py --rounds 1 --tasks "validate small 32px" --settings 1 default \
        --out /tmp/threads.md                # one task (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "threads.md"
SMALL_ARCH = {
    "stem_channels": 16,
    "stages": [
        [{"kernel": 3, "expansion": 1, "channels": 16}],
        [{"kernel": 3, "expansion": 4, "channels": 24, "stride": 2, "repeats": 2}],
        [{"kernel": 5, "expansion": 4, "channels": 40, "stride": 2, "se": True, "repeats": 2}],
        [{"kernel": 3, "expansion": 4, "channels": 64, "stride": 2, "repeats": 2}],
    ],
    "input_size": 32,
    "feature_width": 256,
    "name": "small",
}
TASKS = ("validate resnet18 64px", "validate small 32px", "train small 32px (1 epoch)")
SETTINGS = ("1", "2", "default")


def measure(task: str, threads: int | None) -> float:
    """Images per second of one task with ``threads`` (None: torch's default)."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from fbnetv3_zoo.recipes import Recipe
    from fbnetv3_zoo.recipes.engine import train
    from fbnetv3_zoo.recipes.validate import validate

    from fbnetv3_zoo import ArchSpec

    spec = ArchSpec.from_dict(SMALL_ARCH)
    if task == TASKS[0]:
        r = validate("resnet18", "digits", num_classes=10, input_size=64, device="cpu")
        return r["images_per_s"]
    if task == TASKS[1]:
        r = validate(spec, "digits", num_classes=10, device="cpu")
        return r["images_per_s"]
    recipe = Recipe.load("fbnetv3_proxy")
    s = train(spec, recipe, data="digits", epochs=1, progress=False, device="cpu")
    return s["images_per_s"]


def _child(task: str, threads: str) -> None:
    import torch

    value = measure(task, None if threads == "default" else int(threads))
    print(json.dumps({"images_per_s": value, "threads": torch.get_num_threads()}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per setting")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument(
        "--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="tasks (default all)"
    )
    p.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="thread settings (default all; the ratio column needs 1 and default)",
    )
    p.add_argument("--out", default=str(RESULTS), help="results file (default %(default)s)")
    args = p.parse_args(argv)
    if args.child:
        _child(*args.child)
        return 0
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Every (task, setting) in fresh processes, alternating rounds; writes the table."""
    tasks, settings = args.tasks, args.settings
    results: dict[tuple[str, str], list[float]] = {}
    used: dict[str, int] = {}  # threads each setting ran with, as its child reports
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for task in tasks:
            for threads in settings:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", task, threads],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                report = json.loads(out.strip().splitlines()[-1])
                value, used[threads] = report["images_per_s"], report["threads"]
                results.setdefault((task, threads), []).append(value)
                print(f"{task:30s} threads={threads:8s} {value:8.1f} images/s", flush=True)

    default = f"torch's default is {used['default']} threads here" if "default" in used else ""
    lines = [
        "# Thread count for `fbnetv3 train` / `validate` on the CPU",
        "",
        f"Machine: {os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at the end){'; ' if default else ''}"
        f"{default}. Each cell: median images/s over {args.rounds} alternating "
        "rounds, each in a fresh process (min-max in brackets).",
        "",
        "| task | "
        + " | ".join(HEADS[s] for s in settings)
        + (" | 1 thread / default |" if "1" in settings and "default" in settings else " |"),
        "|---|" + "---|" * (len(settings) + ("1" in settings and "default" in settings)),
    ]
    lines += [row(task, settings, results) for task in tasks]
    lines += [
        "",
        "Rule chosen for the CLI (`recipes/cli.py`, `CPU_THREADS`): one torch thread when the "
        "model runs on the CPU, torch's default when it runs on a GPU (the CPU then only feeds "
        "it); `--threads N` overrides. A machine with idle cores can do better with more threads "
        "(see the 2-thread column when the load is low); this one is shared, as CI machines and "
        "laptops running other work are.",
        "",
        f"Total wall time: {time.perf_counter() - t0:.0f} s. Re-measure: `python benchmarks/threads.py`"
        f" (these settings: `--rounds {args.rounds}{_options(args)}`).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


def _options(args: argparse.Namespace) -> str:
    """The --tasks/--settings of this run, when they are not the defaults."""
    text = ""
    if list(args.tasks) != list(TASKS):
        text += " --tasks " + " ".join(f'"{t}"' for t in args.tasks)
    if list(args.settings) != list(SETTINGS):
        text += " --settings " + " ".join(args.settings)
    return text


HEADS = {"1": "1 thread", "2": "2 threads", "default": "torch default"}


def row(task: str, settings: list[str], results: dict[tuple[str, str], list[float]]) -> str:
    """One table row: median (min-max) images/s per setting, and 1 thread / default."""
    cells = []
    for threads in settings:
        vals = results[(task, threads)]
        cells.append(f"{statistics.median(vals):.0f} ({min(vals):.0f}-{max(vals):.0f})")
    if "1" in settings and "default" in settings:
        one, default = (statistics.median(results[(task, k)]) for k in ("1", "default"))
        cells.append(f"{one / default:.2f}x")
    return f"| {task} | " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
