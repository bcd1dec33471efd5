"""Backbones and recipes in a Faster R-CNN on the embedded digits-det set: AP, backbone MACs, CPU latency.

    python benchmarks/detection.py                    # 3 backbones x 3 seeds, 2 recipes on FBNetV3-A
    python benchmarks/detection.py --smoke --out ''   # a tiny run that checks the script

Each detector is trained from scratch by the training engine (``fbnetv3
train --task detection``: the same data, schedule, batch and seeds for all)
with the ``fbnetv3`` recipe, and the detectors of ``--compare-on`` (default:
the first) also with ``baseline``, once per seed; each is scored by COCO box
AP on the validation canvases.  Every finished training is appended to
``--rows`` (JSON lines), so a killed run resumes where it stopped.  The table gives the mean AP with a 95 %
t-interval over seeds, the paired difference fbnetv3 - baseline recipe (seeds
paired), the MACs of the backbone with its FPN on one canvas (``torch.utils.flop_counter``,
multiply-adds = FLOPs / 2) and the whole detector's single-thread CPU latency
on one canvas (``fbnetv3_zoo.latency.timing``).

Detectors: one Faster R-CNN (``fbnetv3_zoo.detection``: the same FPN, RPN and
box head) on three backbones: FBNetV3-A, timm's MobileNetV3-Large and
EfficientNet-B0 (``fasterrcnn_<timm name>_fpn``); ``--models`` takes any
detector name, torchvision's (``torchvision/<name>``) included.

Cost: one training is about one detection demo's CPU time
(``benchmarks/results/task_demos.md``: 7.5 CPU-minutes for FBNetV3-A), so the
default 18 trainings take roughly 2 to 3 CPU-hours; the full run was not made yet.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
MODELS = (
    "fasterrcnn_fbnetv3_a_fpn",
    "fasterrcnn_mobilenetv3_large_100_fpn",
    "fasterrcnn_efficientnet_b0_fpn",
)
RECIPES = ("fbnetv3", "baseline")
SMOKE = dict(train_images=8, val_images=4, canvas=64, min_size=16, max_size=28)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="detector names")
    p.add_argument(
        "--recipes",
        nargs="+",
        default=list(RECIPES),
        help="recipe presets (the first for every detector)",
    )
    p.add_argument(
        "--compare-on",
        nargs="+",
        help="detectors trained with every recipe (default: the first of --models)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--epochs", type=int, help="epochs (default: the digits-det demo's)")
    p.add_argument("--batch-size", type=int, help="batch (default: the digits-det demo's)")
    p.add_argument("--data-root", help="where digits-det is written (default: the data root)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny set, 1 epoch, 1 seed: checks the script"
    )
    p.add_argument("--out", default=str(RESULTS / "detection.md"), help="results file ('' = none)")
    p.add_argument(
        "--rows",
        help="finished trainings, read back to resume (default: results/detection_rows.jsonl, "
        "none with --smoke; '' = keep none)",
    )
    args = p.parse_args(argv)
    args.compare_on = args.compare_on or args.models[:1]
    if not set(args.compare_on) <= set(args.models):
        p.error(f"--compare-on {' '.join(args.compare_on)}: each must be one of --models")
    if args.rows is None:
        args.rows = "" if args.smoke else str(RESULTS / "detection_rows.jsonl")
    for name in (args.rows, args.out):
        if name and Path(name).is_symlink():
            p.error(
                f"{name} is a link; this script writes only files it made, never through a link"
            )
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the report's command line
    return args


def _data(args: argparse.Namespace, scratch: Path) -> tuple[str, dict[str, Any] | None]:
    """``--data`` and the task options: digits-det, or a tiny set for ``--smoke``."""
    if not args.smoke:
        return "digits-det", None
    from fbnetv3_zoo.tasks import DigitsSetSettings, write_digits_sets

    root = write_digits_sets(scratch / "digits", DigitsSetSettings(**SMOKE))
    size = SMOKE["canvas"]
    options = dict(min_size=size, max_size=size, box_batch_size_per_image=16)
    return str(root / "det"), {"model_options": options}


def schedule(args: argparse.Namespace) -> dict[str, int]:
    """Epochs and batch of every training: the flags, else the digits-det demo's."""
    from fbnetv3_zoo.recipes.task_cli import DEMO_DEFAULTS

    demo = DEMO_DEFAULTS["digits-det"]
    if args.smoke:
        return dict(epochs=1, batch_size=4)
    return dict(
        epochs=args.epochs or demo["epochs"], batch_size=args.batch_size or demo["batch_size"]
    )


def train_one(
    model: str, recipe_name: str, seed: int, args: argparse.Namespace, data: str, options: Any
) -> dict[str, Any]:
    """One training through the engine: final AP and the CPU seconds it took."""
    from fbnetv3_zoo.recipes import Recipe
    from fbnetv3_zoo.recipes.engine import train

    changes = schedule(args)
    recipe = Recipe.load(recipe_name)
    recipe = Recipe.from_dict({**recipe.to_dict(), **changes}, source="benchmarks/detection.py")
    cpu0 = time.process_time()
    s = train(
        model,
        recipe,
        data=data,
        seed=seed,
        task="detection",
        task_options=options,
        progress=False,
        data_root=args.data_root,
    )
    return dict(
        model=model,
        recipe=recipe_name,
        seed=seed,
        smoke=args.smoke,
        **changes,
        ap=s["final_AP"],
        cpu_s=time.process_time() - cpu0,
    )


def cost(model_name: str, size: int) -> tuple[float, float, float]:
    """(backbone, backbone+FPN MACs in millions, detector latency in ms) on one canvas, one thread."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fbnetv3_zoo.latency.timing import clock_for, time_callable, torch_threads
    from fbnetv3_zoo.tasks.detection import create_any_detector

    net = create_any_detector(model_name, 11, min_size=size, max_size=size).eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    macs = []
    for part in (net.backbone.body, net.backbone):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            part(x)
        macs.append(counter.get_total_flops() / 2 / 1e6)
    with torch_threads(1), torch.no_grad():
        timing = time_callable(lambda: net([x[0]]), clock=clock_for(1))
    return macs[0], macs[1], timing.ms


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (nan with one value)."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)


def table(
    rows: list[dict[str, Any]], costs: dict[str, tuple[float, float]], args: argparse.Namespace
) -> str:
    """The markdown report: one line per (detector, recipe), then the paired recipe differences."""
    lines = [
        "# Detection on digits-det: backbones and recipes in one detector",
        "",
        f"Command: `python benchmarks/detection.py {' '.join(args.argv)}` "
        f"(seeds {args.seeds}; {platform.processor() or platform.machine()}, one thread).",
        "",
        f"Every detector: the same Faster R-CNN (FPN, RPN, box head) trained from scratch "
        f"{schedule(args)['epochs']} epochs at batch {schedule(args)['batch_size']} by "
        "`fbnetv3 train --task detection`, scored by COCO box AP (pycocotools) on the validation "
        "canvases; a detector that finds nothing scores 0. Intervals: 95 % t over seeds. MACs: "
        "the backbone alone and with its FPN on one canvas (torch's FLOP counter / 2); latency: the whole detector "
        "on one canvas, one thread, `fbnetv3_zoo.latency.timing`. CPU s: the training process's "
        "CPU time (trainings were not timed on a quiet machine; CPU time does not depend on that).",
        "",
        "| detector | recipe | box AP (mean ± 95 % CI) | backbone MMACs | backbone+FPN MMACs "
        "| latency ms | CPU s / training |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, recipe in plan(args):
        mine = [r for r in rows if r["model"] == model and r["recipe"] == recipe]
        mean, half = interval([r["ap"] for r in mine])
        cpu = sum(r["cpu_s"] for r in mine) / len(mine)
        body, macs, ms = costs[model]
        lines.append(
            f"| {model} | {recipe} | {mean:.2f} ± {half:.2f} | {body:.1f} | {macs:.1f} | {ms:.1f} "
            f"| {cpu:.0f} |"
        )
    if len(args.recipes) > 1:
        first, others = args.recipes[0], args.recipes[1:]
        lines += [
            "",
            f"Paired difference, {first} minus each other recipe (same detector and seed):",
            "",
        ]
        for model in args.compare_on:
            ap = {(r["recipe"], r["seed"]): r["ap"] for r in rows if r["model"] == model}
            for other in others:
                diffs = [ap[(first, s)] - ap[(other, s)] for s in args.seeds]
                mean, half = interval(diffs)
                lines.append(f"- {model}, {first} - {other}: {mean:+.2f} ± {half:.2f} AP")
    return "\n".join(lines) + "\n"


def plan(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The (detector, recipe) cells: every detector with the first recipe, ``--compare-on`` with all."""
    cells = [(m, args.recipes[0]) for m in args.models]
    cells += [(m, r) for m in args.compare_on for r in args.recipes[1:]]
    return list(dict.fromkeys(cells))


ROW_FIELDS = {
    "model": str,
    "recipe": str,
    "seed": int,
    "smoke": bool,
    "epochs": int,
    "batch_size": int,
}


def read_rows(path: str) -> list[dict[str, Any]]:
    """Finished trainings from an earlier run of this script (plain JSON lines, checked)."""
    if not path or not Path(path).is_file():
        return []
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        try:
            row = json.loads(line)
            ok = all(isinstance(row[k], t) for k, t in ROW_FIELDS.items())
            ok = ok and all(isinstance(row[k], (int, float)) for k in ("ap", "cpu_s"))
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise SystemExit(f"{path}:{n}: not a training row of this script; move the file away")
        rows.append(row)
    return rows


def _key(row: dict[str, Any]) -> tuple:
    return tuple(row[k] for k in ROW_FIELDS)


def main(argv: list[str] | None = None) -> int:
    import tempfile

    import torch

    args = parse_args(argv)
    if args.smoke:
        args.seeds, args.models = args.seeds[:1], args.models[:1]
        args.compare_on = args.models
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="fbnetv3-detection-") as scratch:
        data, options = _data(args, Path(scratch))
        size = SMOKE["canvas"] if args.smoke else 96
        done = {_key(r): r for r in read_rows(args.rows)}
        rows = []
        for model, recipe in plan(args):
            for seed in args.seeds:
                want = dict(
                    model=model, recipe=recipe, seed=seed, smoke=args.smoke, **schedule(args)
                )
                row = done.get(_key(want))
                if row is None:
                    row = train_one(model, recipe, seed, args, data, options)
                    if args.rows:
                        with open(args.rows, "a") as f:
                            f.write(json.dumps(row) + "\n")
                rows.append(row)
                print(row, flush=True)
        costs = {m: cost(m, size) for m in args.models}
    report = table(rows, costs, args)
    print(report)
    if args.out:
        Path(args.out).write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
