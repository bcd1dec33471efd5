"""Search strategies against the ground-truth pool: regret to the pool's best against budget.

    python benchmarks/search.py                  # every strategy x 30 seeds (time: see the results file)
    python benchmarks/search.py --seeds 5        # a quick look

Every search runs through the real driver (``run_search``) with the pool as
its candidate source and its evaluator (``search/pool.py``), so each
"training" is a table look-up of the pair's seed-0 training and a whole
search takes seconds.  Strategies: ``random``; ``jointnas`` as shipped
(pretrained encoder, the Bayesian linear head below 64 measured pairs, so in
every search here, and the network ensemble from there, UCB, early stopping
from 16 first-batch curves); ``jointnas`` with only the GP or only the network
head, without pretraining, with early stopping from 8 curves; the paper's greedy mode
(network head, one member, kappa 0); and a bound: the GP head given the length
scales and noise that its marginal likelihood picks on the whole pool, which
no search knows in advance.  Seed ``s`` gives every strategy the same first
batch.  Writes ``benchmarks/results/search.md`` and ``search.png``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CONSTRAINT = "macs<=1M"  # every pool pair meets it: the whole pool competes
_DRIVER_MIN_STOP: dict[str, int] = {}  # the driver's own MIN_STOP_CURVES, kept per process
_DRIVER_FIT_GP: dict[str, Any] = {}  # the driver's own gp_head.fit_gp, kept per process
ES_RANDOM = "random, early stopping from 8 curves"
ES_JOINTNAS = "jointnas, early stopping from 8 curves"
ORACLE = "gp head, length scales fitted to the whole pool (oracle)"
BUDGETS = (8, 12, 16, 24, 32, 40, 48, 60)

# name -> SearchConfig fields over the common ones
STRATEGIES: dict[str, dict[str, Any]] = {
    "random": dict(strategy="random"),
    "jointnas": dict(strategy="jointnas"),
    "jointnas, gp head": dict(strategy="jointnas", head="gp"),
    # a bound, not a strategy: the GP given the length scales and noise that the marginal
    # likelihood picks on all 150 pairs, which no search knows in advance
    ORACLE: dict(strategy="jointnas", head="gp", oracle=True),
    "jointnas, network head": dict(strategy="jointnas", head="network"),
    "jointnas, no pretraining": dict(strategy="jointnas", pretrain_steps=0),
    "paper (members 1, kappa 0)": dict(strategy="jointnas", head="network", members=1, kappa=0.0),
    # the paper's early stopping chosen from the 8 first-batch curves (the driver needs 16)
    ES_RANDOM: dict(strategy="random", min_stop_curves=3),
    ES_JOINTNAS: dict(strategy="jointnas", min_stop_curves=3),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pool", default=str(HERE / "data" / "pool_tune.jsonl.gz"), help="pool file")
    p.add_argument("--seeds", type=int, default=30, help="paired seeds per strategy (default 30)")
    p.add_argument("--budget", type=int, default=60, help="trainings per search (default 60)")
    p.add_argument("--initial", type=int, default=8, help="first (Sobol) batch (default 8)")
    p.add_argument("--batch", type=int, default=4, help="later batch size (default 4)")
    p.add_argument("--members", type=int, default=3, help="predictor ensemble (default 3)")
    p.add_argument("--fit-steps", type=int, default=100, help="predictor fit steps (default 100)")
    p.add_argument(
        "--pretrain-steps", type=int, default=300, help="pretraining steps (default 300)"
    )
    p.add_argument("--jobs", type=int, default=1, help="searches at once (1 thread each)")
    p.add_argument(
        "--strategies",
        nargs="+",
        default=list(STRATEGIES),
        choices=list(STRATEGIES),
        metavar="NAME",
        help="strategies to compare (random and jointnas always run); default: all of "
        + ", ".join(repr(n) for n in STRATEGIES),
    )
    p.add_argument("--out", default=str(RESULTS / "search.md"), help="results file ('' = none)")
    return p.parse_args(argv)


def search_config(args: argparse.Namespace, pool: Any, name: str, seed: int) -> Any:
    from fbnetv3_zoo.search.config import SearchConfig

    proxy = pool.proxy
    common = dict(
        space=proxy["space"],
        data=proxy["data"],
        epochs=proxy["epochs"],
        constraints=[CONSTRAINT],
        budget=args.budget,
        initial=args.initial,
        batch=args.batch,
        seed=seed,
        members=args.members,
        fit_steps=args.fit_steps,
        pretrain_steps=args.pretrain_steps,
        pretrain_samples=1024,
        ga_population=32,
        ga_generations=10,
    )
    fields = {k: v for k, v in STRATEGIES[name].items() if k not in ("min_stop_curves", "oracle")}
    return SearchConfig(**{**common, **fields})


def _real_fit_gp() -> Any:
    from fbnetv3_zoo.search import gp_head

    return _DRIVER_FIT_GP.setdefault("fit", gp_head.fit_gp)


def whole_pool_fit(pool: Any) -> Any:
    """``fit_gp`` with the length scales and noise it picks on every pool pair (seed-0 scores)."""
    real = _real_fit_gp()
    u = pool.vectors()
    y = np.array([0.0 if p.score(0) is None else p.score(0) for p in pool.pairs])
    found: dict[int, tuple] = {}  # id(pretrained encoder) -> (lengths, noise)

    def fit(u_: Any, y_: Any, pretrained: Any = None, space: Any = None, **kwargs: Any) -> Any:
        if id(pretrained) not in found:
            whole = real(u, y, pretrained, space)
            found[id(pretrained)] = (whole.lengths, whole.noise)
        lengths, noise = found[id(pretrained)]
        return real(u_, y_, pretrained, space, lengths=lengths, noise=noise, **kwargs)

    return fit


def one_search(job: tuple[argparse.Namespace, str, int]) -> dict[str, Any]:
    """Run one search on the pool; returns per-candidate pool index, score and epochs, in order."""
    import torch
    from fbnetv3_zoo.search import coarse, gp_head, report
    from fbnetv3_zoo.search.coarse import run_search
    from fbnetv3_zoo.search.pool import PoolEvaluator, PoolSource, load_pool
    from fbnetv3_zoo.search.space import load_space
    from fbnetv3_zoo.search.store import Store, vector_key

    torch.set_num_threads(1)
    args, name, seed = job
    _DRIVER_MIN_STOP.setdefault("curves", coarse.MIN_STOP_CURVES)
    coarse.MIN_STOP_CURVES = STRATEGIES[name].get("min_stop_curves", _DRIVER_MIN_STOP["curves"])
    pool = load_pool(args.pool)
    space = load_space(pool.proxy["space"])
    gp_head.fit_gp = whole_pool_fit(pool) if STRATEGIES[name].get("oracle") else _real_fit_gp()
    report.write_plots = lambda out, store: []  # plots of 120 throwaway runs: not needed
    where = {vector_key(p.vector): k for k, p in enumerate(pool.pairs)}
    start = time.perf_counter()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # the store commits every write
    with tempfile.TemporaryDirectory(dir=shm) as tmp:
        run_search(
            search_config(args, pool, name, seed),
            tmp,
            evaluator=PoolEvaluator(pool, seed=0),
            progress=False,
            source=PoolSource(space, pool),
        )
        store = Store(Path(tmp) / "search.sqlite", readonly=True)
        rows = store.candidates()
        stop = store.get("stop_epoch")
        store.close()
    return dict(
        name=name,
        seed=seed,
        pair=[where[vector_key(r["vector"])] for r in rows],
        score=[r["score"] if r["status"] == "done" else None for r in rows],
        epochs=[r["epochs"] or 0 for r in rows],
        stop_epoch=stop,
        wall_s=time.perf_counter() - start,
    )


def anytime_regret(run: dict[str, Any], quality: np.ndarray, best: float, budgets) -> np.ndarray:
    """Regret of the search's pick after each budget: the best *measured* score so far, judged by its true quality."""
    out = []
    for b in budgets:
        scored = [
            (s, k) for s, k in zip(run["score"][:b], run["pair"][:b], strict=True) if s is not None
        ]
        out.append(best - quality[max(scored)[1]] if scored else best)
    return np.array(out)


def compute_regret(
    run: dict[str, Any], quality: np.ndarray, best: float, levels, epochs: int, full: bool
) -> np.ndarray:
    """Regret against training epochs spent; ``full`` counts (and scores) every pair at the full schedule."""
    out = []
    final = run["final"]
    spent = np.cumsum([epochs if full else e for e in run["epochs"]])
    for c in levels:
        n = int(np.searchsorted(spent, c + 1e-9, side="right"))
        if n == len(spent) and spent[-1] < c:
            out.append(np.nan)  # this run's budget does not reach that much compute
            continue
        scores = final[:n] if full else run["score"][:n]
        scored = [(s, k) for s, k in zip(scores, run["pair"][:n], strict=True) if s is not None]
        out.append(best - quality[max(scored)[1]] if scored else best)
    return np.array(out)


def bootstrap(values: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval over seeds (rows)."""
    values = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def plot(path: Path, budgets, table: dict[str, np.ndarray]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, regret in table.items():
        stats = np.array([bootstrap(regret[:, j]) for j in range(len(budgets))])
        ax.plot(budgets, stats[:, 0], marker="o", label=name)
        ax.fill_between(budgets, stats[:, 1], stats[:, 2], alpha=0.2)
    ax.set_xlabel("trainings (budget)")
    ax.set_ylabel("regret to the pool's best (top-1 points)")
    ax.set_title("Search on the ground-truth pool (mean, 95 % bootstrap interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    import torch
    from fbnetv3_zoo.search.pool import load_pool

    args = parse_args(argv)
    start = time.perf_counter()
    pool = load_pool(args.pool)
    quality, count = pool.quality()
    best_k = int(np.argmax(quality))
    best = float(quality[best_k])
    epochs = pool.proxy["epochs"]
    budgets = [b for b in BUDGETS if b <= args.budget]
    names = ["random", "jointnas"] + [n for n in args.strategies if n not in ("random", "jointnas")]
    jobs = [(args, name, seed) for name in names for seed in range(args.seeds)]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=args.jobs) as ex:
            runs = list(ex.map(one_search, jobs))
    else:
        runs = [one_search(j) for j in jobs]
    final0 = {k: p.score(0) for k, p in enumerate(pool.pairs)}
    for run in runs:
        run["final"] = [final0[k] for k in run["pair"]]
    regret = {
        name: np.array(
            [anytime_regret(r, quality, best, budgets) for r in runs if r["name"] == name]
        )
        for name in names
    }
    levels = [b * epochs for b in budgets]

    def at_compute(name: str, full: bool) -> np.ndarray:
        return np.array(
            [
                compute_regret(r, quality, best, levels, epochs, full)
                for r in runs
                if r["name"] == name
            ]
        )

    equal = {"random, every pair trained in full": at_compute("random", True)}
    equal["jointnas, every pair trained in full"] = at_compute("jointnas", True)
    if ES_JOINTNAS in names:
        equal[f"{ES_JOINTNAS}: early-stopped pairs cost less"] = at_compute(ES_JOINTNAS, False)
    total = time.perf_counter() - start
    if args.out:
        plot(Path(args.out).with_suffix(".png"), budgets, regret)
    text = report(args, pool, quality, count, best_k, budgets, regret, equal, levels, runs, total)
    text += f"\nMachine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs, torch {torch.__version__}, {args.jobs} search(es) at once, 1 thread each.\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def shown(path: str) -> str:
    """A path relative to the repository when it is inside it (results files travel with the repo)."""
    p = Path(path).resolve()
    return str(p.relative_to(HERE.parent)) if p.is_relative_to(HERE.parent) else path


def fmt(stats: tuple[float, float, float]) -> str:
    return f"{stats[0]:.2f} [{stats[1]:.2f}, {stats[2]:.2f}]"


def report(args, pool, quality, count, best_k, budgets, regret, equal, levels, runs, total) -> str:
    names = list(regret)

    def reference(name: str) -> str:
        """Each strategy is paired with random at the same early-stopping setting."""
        return ES_RANDOM if name == ES_JOINTNAS and ES_RANDOM in regret else "random"

    stops = sorted({r["stop_epoch"] for r in runs} - {None})
    per_run = np.mean([r["wall_s"] for r in runs])
    lines = [
        "# Search strategies on the ground-truth pool",
        "",
        f"Command: `python benchmarks/search.py --seeds {args.seeds} --budget {args.budget} "
        f"--initial {args.initial} --batch {args.batch} --jobs {args.jobs}"
        + (f" --out {shown(args.out)}" if Path(args.out) != RESULTS / "search.md" else "")
        + f"`; run time {total / 60:.1f} min ({per_run:.1f} s per search on average).",
        f"Pool: `{shown(args.pool)}` ({len(pool.pairs)} pairs, {int((count >= 2).sum())} trained with >= 2 seeds, "
        f"{int((count >= 3).sum())} with >= 3; see `benchmarks/results/pool_tune.md`).",
        f"Searches: the real driver (`run_search`) with `PoolSource` and `PoolEvaluator(seed=0)`, constraint "
        f"{CONSTRAINT} (every pool pair meets it), budget {args.budget}, first batch {args.initial}, "
        f"later batches {args.batch}, predictor: {args.members} members, {args.fit_steps} fit steps, "
        f"{args.pretrain_steps} pretraining steps on 1024 pairs, genetic fine step 32 x 10 "
        f"(on a finite source the fine step ranks the pool). Early-stopping epochs chosen by the runs: {stops}.",
        "",
        "**How regret is computed.** True quality of a pool pair = the mean of its final proxy "
        "accuracies over every seed it was trained with (the top pairs were re-measured with "
        "3 seeds; a failed training counts 0 %). The pool's best = the highest true quality "
        f"(pair {pool.pairs[best_k].index}, {quality[best_k]:.2f} %, {count[best_k]} seeds), never the "
        "max of single noisy measurements. A search sees only the seed-0 training of each pair "
        "(its early-stopped epoch when the driver stops it early); after b trainings its pick is "
        "the pair with the best score it measured among its first b (as `best/<constraint>.yaml` "
        "would report), and regret(b) = pool's best - true quality of that pick, in top-1 points. "
        "Curves are anytime curves of one budget-"
        f"{args.budget} run per seed (the final genetic/ranked pick is the run's last training). "
        f"Mean over {args.seeds} seeds, 95 % percentile-bootstrap intervals over seeds (2000 resamples).",
        "",
        "| trainings | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for j, b in enumerate(budgets):
        lines.append(
            f"| {b} | " + " | ".join(fmt(bootstrap(regret[n][:, j])) for n in names) + " |"
        )
    lines += [
        "",
        "Paired difference to random, per seed (negative: closer to the pool's best), and the "
        "ratio of mean regrets; the goal asks `jointnas` for ratio <= 0.5 with the interval "
        "below zero at 16 and 24 trainings:",
        "",
        "| trainings | "
        + " | ".join(
            f"{n}: difference [95 % CI], ratio"
            + (f" (to {reference(n)})" if reference(n) != "random" else "")
            for n in names[1:]
        )
        + " | goal (jointnas) |",
        "|---|" + "---|" * len(names),
    ]
    better = []
    for j, b in enumerate(budgets):
        cells = []
        for n in names[1:]:
            ref = regret[reference(n)][:, j]
            d = bootstrap(regret[n][:, j] - ref)
            ratio = regret[n][:, j].mean() / ref.mean() if ref.mean() > 0 else float("nan")
            cells.append(f"{fmt(d)}, {ratio:.2f}")
            if n == "jointnas":
                met = "met" if ratio <= 0.5 and d[2] < 0 else "missed"
                if d[2] < 0:
                    better.append(b)
        lines.append(f"| {b} | " + " | ".join(cells) + f" | {met if b in (16, 24) else '-'} |")
    lines += [
        "",
        "Verdict: `jointnas` is closer to the pool's best than random search, with the paired "
        "interval below zero, at "
        + (", ".join(str(b) for b in better) + " trainings" if better else "no budget")
        + ".",
    ]
    if ORACLE in regret:
        ratio = {
            b: regret[ORACLE][:, j].mean() / regret["random"][:, j].mean()
            for j, b in enumerate(budgets)
            if b in (16, 24)
        }
        lines += [
            "",
            "Bound: the GP head given the length scales and noise that its marginal likelihood "
            "picks on all the pool's pairs (knowledge no search has before it starts) reaches "
            + " and ".join(f"{r:.2f}x random's regret at {b}" for b, r in ratio.items())
            + ": a rough ceiling for a GP search that must learn those settings from its own few "
            "pairs.",
        ]
    lines += [
        "",
        "## Equal compute",
        "",
        "Compute = proxy epochs trained. Random search and the shipped jointnas train every pair "
        f"for the full {pool.proxy['epochs']} epochs (the driver early-stops only from 16 "
        "first-batch curves); the early-stopping variant trains the pairs after its first batch "
        "only to the epoch it chose, so the same compute buys it more evaluations. Regret at "
        f"equal compute (n/a where a budget-{args.budget} run never spent that much), and the "
        "paired difference of each to random:",
        "",
        "| epochs spent | "
        + " | ".join(equal)
        + " | "
        + " | ".join(f"{k.split(':')[0]} - random [95 % CI]" for k in list(equal)[1:])
        + " |",
        "|---|" + "---|" * (2 * len(equal) - 1),
    ]
    base, others = equal["random, every pair trained in full"], list(equal.values())[1:]
    for j, c in enumerate(levels):
        cells = [
            fmt(bootstrap(v[:, j])) if not np.isnan(v[:, j]).any() else "n/a"
            for v in equal.values()
        ]
        for v in others:
            both = ~np.isnan(base[:, j]) & ~np.isnan(v[:, j])
            cells.append(fmt(bootstrap(v[both, j] - base[both, j])) if both.all() else "n/a")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
