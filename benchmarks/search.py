"""Measure the JointNAS search: speed, predictor sample efficiency, search vs random.

    python benchmarks/search.py                      # everything (~15-25 min on 2 busy cores)
    python benchmarks/search.py --skip-quality       # speed only (~1-2 min)

Writes ``benchmarks/results/search.md`` (and ``search.png``).  Random
sampling inside the same constraint is the alternative a user would otherwise
pick; it is measured in the same run, on the same proxy, with the same number
of trainings.  One seed: the quality numbers are one draw, not an average.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from fbnetv3_zoo.search.coarse import SearchConfig, run_search
from fbnetv3_zoo.search.constraints import batch_stats, feasible, parse_constraint
from fbnetv3_zoo.search.encoding import decode
from fbnetv3_zoo.search.evaluate import EvalTask, epoch_accuracy, evaluate
from fbnetv3_zoo.search.genetic import genetic_search
from fbnetv3_zoo.search.predictor import fit, pretrain, rank_quality
from fbnetv3_zoo.search.sampling import sample, sample_feasible
from fbnetv3_zoo.search.space import load_space

from fbnetv3_zoo.stats import arch_stats

RESULTS = Path(__file__).parent / "results"


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def speed() -> list[str]:
    """Filtering 100k Sobol candidates, pretraining, one fit, one fine-search run."""
    space = load_space("fbnetv3")
    limit = [parse_constraint("macs<=400M")]

    def vectorised():
        u = sample(space, 100_000, "sobol", seed=0)
        macs, params, valid = batch_stats(space, u)
        return int((valid & feasible(limit, macs, params)).sum())

    kept, t_vec = timed(vectorised)
    u = sample(space, 2000, "sobol", seed=0)

    def one_by_one():
        return sum(arch_stats(decode(space, x)[0]).macs <= 400e6 for x in u)

    _, t_loop = timed(one_by_one)
    proxy = load_space("fbnetv3_proxy")
    pre, t_pre = timed(pretrain, proxy, num_classes=10)
    x = sample(proxy, 100, "uniform", seed=1)
    y = np.random.default_rng(0).normal(50, 10, 100)
    predictor, t_fit = timed(fit, x, y, pre)
    limits = [parse_constraint("macs<=0.5M"), parse_constraint("macs<=1M")]
    _, t_ga = timed(genetic_search, proxy, lambda v: predictor.predict(v)[0], limits, 10, 64, 40)
    return [
        "## Speed",
        "",
        "| step | wall time (s) | note |",
        "|---|---|---|",
        f"| constraint filter, 100,000 Sobol candidates (`fbnetv3` space, vectorised) | {t_vec:.2f} | {kept} of 100,000 meet macs<=400M; includes Sobol sampling |",
        f"| the same, one ArchSpec + `arch_stats` per candidate (alternative) | {t_loop * 50:.1f} | measured on 2,000, times 50 |",
        f"| predictor pretraining on free statistics (4,096 pairs, 1,000 steps) | {t_pre:.2f} | `fbnetv3_proxy` space |",
        f"| one predictor fit (ensemble of 5, 100 measured pairs, 300 steps) | {t_fit:.2f} | |",
        f"| one fine-search run (adaptive GA, 2 constraints, population 64, 40 generations) | {t_ga:.2f} | |",
        "",
    ]


def full_schedule_eval(space, config: SearchConfig, i: int, arch: dict, recipe: dict) -> dict:
    """Train one pair on the full proxy schedule, exactly as the search's first batch is."""
    task = EvalTask(
        i,
        arch,
        recipe,
        space.recipe_base,
        config.data,
        config.epochs,
        None,
        config.seed,
        config.threads,
        dict(space.recipe_overrides),
    )
    return evaluate(task)


def train_pairs(space, u: np.ndarray, config: SearchConfig) -> list[list[float]]:
    """Accuracy curves of encodings trained like the search's first batch."""
    curves = []
    for i, vec in enumerate(u):
        spec, recipe = decode(space, vec)
        result = full_schedule_eval(space, config, i, spec.to_dict(), recipe)
        curve = [epoch_accuracy(e) for e in result["metrics"]]
        curves.append(curve if result["status"] == "done" and curve else [])
        print(f"  random {i + 1}/{len(u)}: {curve[-1] if curve else 'failed'}", flush=True)
    return curves


def sample_efficiency(
    u: np.ndarray, y: np.ndarray, pretrained, sizes: list[int], heldout: int, repeats: int
) -> list[str]:
    lines = [
        "## Predictor sample efficiency",
        "",
        f"Kendall tau between predicted and measured proxy accuracy on {heldout} held-out evaluated pairs, "
        f"mean ± std over {repeats} random splits of {len(u)} randomly sampled, really trained pairs.",
        "",
        "| training pairs | tau, pretrained on free statistics | tau, from scratch |",
        "|---|---|---|",
    ]
    for n in sizes:
        scores = {True: [], False: []}
        for r in range(repeats):
            order = np.random.default_rng(100 + r).permutation(len(u))
            test, train = order[:heldout], order[heldout : heldout + n]
            for pre in (True, False):
                model = fit(u[train], y[train], pretrained if pre else None, seed=r)
                scores[pre].append(rank_quality(model.predict(u[test])[0], y[test])[0])
        cell = {k: f"{np.nanmean(v):.2f} ± {np.nanstd(v):.2f}" for k, v in scores.items()}
        lines.append(f"| {n} | {cell[True]} | {cell[False]} |")
    return lines + [""]


def quality(args) -> list[str]:
    config = SearchConfig(constraints=[args.constraint], seed=args.seed)
    space = load_space(config.space)
    limit = [parse_constraint(args.constraint)]
    out = Path(args.out or tempfile.mkdtemp(prefix="search-bench-"))
    print(f"search -> {out}", flush=True)
    summary, t_search = timed(run_search, config, out, progress=not args.quiet)
    best = summary["best"][args.constraint]
    # retrain the search's pick on the full proxy schedule, as the random pairs are
    pick = full_schedule_eval(space, config, 0, best["arch"], best["recipe"])
    pick_full = epoch_accuracy(pick["metrics"][-1]) if pick["metrics"] else float("nan")
    n_random = max(args.random, config.budget)
    u, _, _ = sample_feasible(space, n_random, limit, 10, method="uniform", seed=args.seed + 99)
    curves, t_random = timed(train_pairs, space, u, config)
    final = np.array([c[-1] if c else np.nan for c in curves], dtype=float)
    equal = final[: config.budget]
    lines = [
        "## Search vs random sampling (equal number of trainings, one seed)",
        "",
        f"Embedded proxy: space `{config.space}`, data `{config.data}`, constraint `{args.constraint}`, "
        f"{config.budget} trainings each, {config.epochs} proxy epochs (the search stops later candidates at its early-stopping epoch).",
        "",
        "| method | best proxy top-1 (%) | wall time (s) |",
        "|---|---|---|",
        f"| JointNAS search: its pick, retrained on the full proxy schedule | {pick_full:.2f} | {t_search:.0f} |",
        f"| JointNAS search: best score it measured (at its early-stopping epoch) | {best['score']:.2f} | |",
        f"| random sampling inside the constraint, {config.budget} pairs, full schedule | {np.nanmax(equal):.2f} | {t_random * config.budget / n_random:.0f} |",
        f"| (random: median of those {config.budget} pairs) | {np.nanmedian(equal):.2f} | |",
        "",
    ]
    ok = ~np.isnan(final)
    pretrained = pretrain(space, num_classes=10, seed=args.seed)
    sizes = [n for n in (4, 8, 12, 16) if n <= ok.sum() - args.heldout]
    lines += sample_efficiency(u[ok], final[ok], pretrained, sizes, args.heldout, args.repeats)
    _plot(final, best, pick_full, out)
    return lines


def _plot(final: np.ndarray, best: dict, pick_full: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(
        np.arange(1, len(final) + 1),
        np.fmax.accumulate(np.nan_to_num(final, nan=0)),
        label="random: best so far",
    )
    ax.axhline(pick_full, color="r", ls="--", label="search pick (full schedule)")
    ax.set(xlabel="trainings", ylabel="proxy top-1 (%)", title="search vs random (1 seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "search.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-quality", action="store_true", help="speed only")
    parser.add_argument("--constraint", default="macs<=1M")
    parser.add_argument(
        "--random", type=int, default=24, help="random pairs to train (>= the search budget)"
    )
    parser.add_argument("--heldout", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="search run folder (default: a temp folder)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# JointNAS search benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, no GPU; "
        f"load average {load:.1f} at start (other developers' jobs shared the CPUs). "
        "Command: `python benchmarks/search.py`.",
        "",
    ]
    lines += speed()
    print("\n".join(lines), flush=True)
    if not args.skip_quality:
        lines += quality(args)
    text = "\n".join(lines)
    (RESULTS / "search.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
