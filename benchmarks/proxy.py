"""Measure the embedded search proxy: is there a ranking to learn, and what does it cost?

    python benchmarks/proxy.py                 # 24 pairs x 2 seeds (~5 min on 1 core)
    python benchmarks/proxy.py --pairs 8       # a quick look

Trains Sobol-sampled feasible pairs of the search space twice (two seeds)
through the search's own ``evaluate`` on the default ``SearchConfig`` proxy
(data, epochs, space overrides) and reports the test-retest rank agreement
of the final proxy accuracy, the spread between candidates against the
spread within a candidate, accuracy percentiles, the early-stopping rank
agreement per epoch and seconds per candidate.  Writes
``benchmarks/results/proxy.md``.  Flags override the proxy for experiments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from fbnetv3_zoo.search.config import SearchConfig  # light: --help loads no torch

    d = SearchConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pairs", type=int, default=24, help="feasible pairs to train (default 24)")
    p.add_argument("--seeds", type=int, nargs=2, default=[0, 1], help="the two training seeds")
    p.add_argument("--sample-seed", type=int, default=0, help="Sobol seed of the pairs")
    p.add_argument("--space", default=d.space, help="search space name or YAML path")
    p.add_argument("--data", default=d.data, help="proxy data (default: SearchConfig's)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="proxy epochs")
    p.add_argument(
        "--constraints", nargs="*", default=d.constraints, help="pairs meet at least one"
    )
    p.add_argument(
        "--overrides", default=None, help="JSON of recipe fields over the space's overrides"
    )
    p.add_argument(
        "--fix", default=None, help="JSON of searched recipe fields pinned for every pair"
    )
    p.add_argument(
        "--from-pool",
        default=None,
        help="summarise the first --pairs pairs of a pool file (trained there with seeds 0 and 1) instead of training",
    )
    p.add_argument("--out", default=str(RESULTS / "proxy.md"), help="results file ('' = none)")
    return p.parse_args(argv)


def train_pairs(args: argparse.Namespace) -> dict:
    """Train every pair under both seeds; returns curves, stats and timings."""
    import torch
    from fbnetv3_zoo.search.space.constraints import parse_constraint
    from fbnetv3_zoo.search.space.definition import load_space
    from fbnetv3_zoo.search.space.encoding import decode
    from fbnetv3_zoo.search.space.sampling import sample_feasible
    from fbnetv3_zoo.search.trainer import EvalTask, _num_classes, epoch_accuracy, evaluate

    torch.set_num_threads(1)
    space = load_space(args.space)
    classes = _num_classes(args.data)
    limits = [parse_constraint(c) for c in args.constraints]
    u, macs, params = sample_feasible(space, args.pairs, limits, classes, seed=args.sample_seed)
    overrides = {**dict(space.recipe_overrides), **json.loads(args.overrides or "{}")}
    fix = json.loads(args.fix or "{}")
    curves = np.full((len(u), 2, args.epochs), np.nan)
    wall = np.zeros((len(u), 2))
    cpu = np.zeros((len(u), 2))  # CPU seconds: what one idle core would take
    for i, vec in enumerate(u):
        spec, recipe = decode(space, vec)
        for s, seed in enumerate(args.seeds):
            task = EvalTask(
                i,
                spec.to_dict(),
                {**recipe, **fix},
                space.recipe_base,
                args.data,
                args.epochs,
                None,
                seed,
                1,
                overrides,
            )
            cpu0 = time.process_time()
            result = evaluate(task)
            cpu[i, s] = time.process_time() - cpu0
            wall[i, s] = result["wall_s"]
            if result["status"] != "done":
                print(f"pair {i} seed {seed} failed: {result['error']}")
                continue
            for e, record in enumerate(result["metrics"]):
                curves[i, s, e] = epoch_accuracy(record)
            print(
                f"pair {i:2d} seed {seed}: {curves[i, s, -1]:5.1f} % "
                f"({macs[i] / 1e6:.2f} MMACs, res {spec.input_size}, {recipe['optimizer']} "
                f"lr {recipe['lr']:.3f}, {wall[i, s]:.1f} s wall, {cpu[i, s]:.1f} s CPU)",
                flush=True,
            )
    return dict(curves=curves, wall=wall, cpu=cpu, macs=macs, params=params)


def read_pool(args: argparse.Namespace) -> dict:
    """The same arrays as ``train_pairs``, from the pool's first ``--pairs`` pairs (seeds 0, 1)."""
    from fbnetv3_zoo.search.pool import load_pool
    from fbnetv3_zoo.search.trainer import epoch_accuracy

    pool = load_pool(args.from_pool)
    pairs = [p for p in pool.pairs if p.index < args.pairs and {0, 1} <= set(p.runs)]
    proxy = pool.proxy
    args.seeds, args.data, args.epochs, args.space = (
        [0, 1],
        proxy["data"],
        proxy["epochs"],
        proxy["space"],
    )
    args.constraints = pool.meta[0]["constraints"]
    curves = np.full((len(pairs), 2, args.epochs), np.nan)
    wall, cpu = np.zeros((len(pairs), 2)), np.zeros((len(pairs), 2))
    for i, p in enumerate(pairs):
        for s in (0, 1):
            run = p.runs[s]
            wall[i, s], cpu[i, s] = run["wall_s"], run["cpu_s"]
            for e, record in enumerate(run["metrics"]):
                curves[i, s, e] = epoch_accuracy(record)
    return dict(curves=curves, wall=wall, cpu=cpu)


def summarise(curves: np.ndarray, wall: np.ndarray, cpu: np.ndarray) -> dict:
    """Test-retest agreement, spreads, percentiles and early-stopping agreement."""
    from scipy.stats import kendalltau, spearmanr

    final = curves[:, :, -1]
    ok = ~np.isnan(final).any(axis=1)
    a, b = final[ok, 0], final[ok, 1]
    mean = final[ok].mean(axis=1)
    within = float(np.sqrt(np.mean((a - b) ** 2) / 2))  # per-measurement noise sd
    early = []
    for e in range(curves.shape[2]):
        epoch = curves[ok, :, e].mean(axis=1)
        early.append(float(spearmanr(epoch, mean)[0]))
    return dict(
        n=int(ok.sum()),
        spearman=float(spearmanr(a, b)[0]),
        kendall=float(kendalltau(a, b)[0]),
        between_sd=float(np.std(mean, ddof=1)),
        within_sd=within,
        percentiles={q: float(np.percentile(final[ok].ravel(), q)) for q in (10, 25, 50, 75, 90)},
        best=float(mean.max()),
        single_best=float(np.nanmax(final)),
        top_quarter=float(np.mean(np.sort(mean)[-max(1, len(mean) // 4) :])),
        early=early,
        wall_mean=float(wall.mean()),
        wall_max=float(wall.max()),
        cpu_mean=float(cpu.mean()),
        cpu_max=float(cpu.max()),
    )


def report(args: argparse.Namespace, s: dict, total_s: float) -> str:
    import torch

    lines = [
        "# Search proxy: test-retest signal",
        "",
        (
            f"Command: `python benchmarks/proxy.py --from-pool {args.from_pool} --pairs {args.pairs}` "
            "(summarises the pool's unbiased paired sample: its first pairs, trained with seeds 0 "
            "and 1 by `benchmarks/pool.py` with the same proxy; without `--from-pool` the script "
            "trains the pairs itself, ~10 CPU-s each)."
            if args.from_pool
            else f"Command: `python benchmarks/proxy.py --pairs {args.pairs} --data {args.data} "
            f"--epochs {args.epochs}` (run time {total_s / 60:.1f} min)."
        ),
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs, "
        f"1 torch thread, torch {torch.__version__}.",
        f"Proxy: space `{args.space}` with its recipe overrides, data `{args.data}`, "
        f"{args.epochs} epochs; {s['n']} Sobol pairs feasible under "
        f"{', '.join(args.constraints)}, each trained with seeds {args.seeds[0]} and "
        f"{args.seeds[1]}. Accuracy is the search's score: the better of raw and EMA top-1 "
        "on the 599 digits validation images after the last epoch.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| test-retest Spearman (seed {args.seeds[0]} vs seed {args.seeds[1]}) | {s['spearman']:.3f} |",
        f"| test-retest Kendall tau | {s['kendall']:.3f} |",
        f"| spread between candidates (sd of the two-seed means, points) | {s['between_sd']:.2f} |",
        f"| spread within a candidate (noise sd of one measurement, points) | {s['within_sd']:.2f} |",
        f"| best candidate (two-seed mean, %) | {s['best']:.1f} |",
        f"| top quarter of candidates (mean of two-seed means, %) | {s['top_quarter']:.1f} |",
        f"| CPU seconds per candidate (mean / max, 1 thread: the time on one idle core) | {s['cpu_mean']:.1f} / {s['cpu_max']:.1f} |",
        f"| wall seconds per candidate on the shared machine (mean / max) | {s['wall_mean']:.1f} / {s['wall_max']:.1f} |",
        "",
        "Accuracy percentiles over all trainings (%): "
        + ", ".join(f"p{q} {v:.1f}" for q, v in s["percentiles"].items()),
        "",
        "Early stopping: Spearman of the two-seed mean accuracy after epoch e against the "
        "final two-seed mean: " + ", ".join(f"e{e + 1} {v:.2f}" for e, v in enumerate(s["early"])),
        "",
        "## Goals (issue 8 section 1)",
        "",
        f"- test-retest Spearman >= 0.8: {s['spearman']:.3f}, "
        + ("met" if s["spearman"] >= 0.8 else "missed"),
        f"- the better candidates reach >= 90 % on digits: best two-seed mean {s['best']:.1f} %, "
        f"best single training {s['single_best']:.1f} %, "
        + ("met" if s["best"] >= 90 else "missed for the two-seed mean"),
        f"- one candidate trains in <= 20 s on one core: {s['cpu_mean']:.1f} s CPU on average, "
        f"{s['cpu_max']:.1f} s at most, "
        + ("met" if s["cpu_max"] <= 20 else "missed")
        + " (aim ~5 s: "
        + ("met" if s["cpu_mean"] <= 5 else "missed")
        + ")",
        "",
        "## Design",
        "",
        "The previous proxy (`digits:40`, 4 epochs, 16-32 px, batch 16, EMA searched, mixup up "
        "to 0.4, crops down to half the image) gave candidates 30-55 % and its noise was never "
        "measured. This one trains on all 1198 digits training images for 5 epochs at 16 px "
        "(the digits are 8x8, so larger inputs only interpolate them), batch 32, "
        "no warm-up, mild crops (scale 0.9-1.0), mixup at most 0.2 and no EMA (an average of a "
        "few hundred steps lags the raw weights). The learning-rate range (0.016-0.5 per 256 "
        "images) covers the useful rates of all three optimizers, so the recipe decides a large "
        "part of the spread between candidates, which is what a joint search should find. "
        "In a profile of one candidate the time went mostly to per-layer work on tiny tensors, "
        "so it scales with steps and depth more than with resolution. With 3 epochs (the "
        "previous default; `--epochs 3`) the same pairs ranked as consistently (Spearman 0.86) "
        "at 7.9 CPU-s each, but the best two-seed mean stayed at 87 %; 5 epochs lift the best "
        "above 90 % for about 2 CPU-s more per candidate. Re-measure any "
        "alternative with this script's flags (`--data`, `--epochs`, `--overrides`, `--fix`).",
        "",
    ]

    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    run = read_pool(args) if args.from_pool else train_pairs(args)
    s = summarise(run["curves"], run["wall"], run["cpu"])
    text = report(args, s, time.perf_counter() - start)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
