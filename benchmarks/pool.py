"""Build (or extend) a ground-truth pool of the embedded search space.

    nice python benchmarks/pool.py --pool tune --jobs 2      # 150 pairs x 6 seeds
    nice python benchmarks/pool.py --pool heldout --jobs 2   # another Sobol seed
    python benchmarks/pool.py --pairs 2 --seeds 2 --epochs 1 --data digits:5 \
        --out /tmp/p.jsonl.gz --results ''                     # a tiny pool (smoke test)

Trains Sobol-sampled pairs of the space that meet ``SAMPLE_CONSTRAINTS``
on the default ``SearchConfig`` proxy, through the search's own ``evaluate``,
and appends every training (with its per-epoch curve) to the pool file as it
ends (rerun the same command to resume; finished trainings are skipped).
Every pair is trained with seeds ``0..--seeds-1``, pair by pair, so an
interrupted build holds complete pairs: a search is shown one seed of a pair
and scored on the mean of the others, which needs several seeds for every
pair, not only for the ones that looked good (that selection biased the old
pool's truth towards its own measurements).

Two pools with different Sobol seeds: ``tune`` (sample seed 0) is the one on
which defaults may be chosen, ``heldout`` (sample seed 1) is the one results
are reported on.  Writes a summary to ``benchmarks/results/pool_<name>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
POOLS = {"tune": 0, "heldout": 1}  # pool name -> Sobol seed of its pairs


def pool_path(name: str) -> Path:
    """The committed file of a named pool."""
    return HERE / "data" / f"pool_{name}.jsonl.gz"


SAMPLE_SIZE = 1024  # the Sobol prefix is drawn at this size so --pairs can grow it stably
# pairs are Sobol-sampled inside these limits (the search's defaults when the pools were built;
# they cover almost all of the embedded space, so a benchmark may set its own limits)
SAMPLE_CONSTRAINTS = ("macs<=0.5M", "macs<=1M")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--pool", choices=sorted(POOLS), default="tune", help="which pool (default tune)"
    )
    p.add_argument(
        "--out", help="pool file (appended to; default benchmarks/data/pool_<pool>.jsonl.gz)"
    )
    p.add_argument("--pairs", type=int, default=150, help="pairs in the pool (default 150)")
    p.add_argument(
        "--seeds", type=int, default=6, help="trainings (seeds) of every pair (default 6)"
    )
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (1 thread each)")
    p.add_argument(
        "--results", help="summary file (default benchmarks/results/pool_<pool>.md; '' = none)"
    )
    p.add_argument("--summary-only", action="store_true", help="only rewrite the summary")
    p.add_argument("--epochs", type=int, help="proxy epochs (default: the search's)")
    p.add_argument("--data", help="proxy data (default: the search's)")
    args = p.parse_args(argv)
    # the command a pool records: this script's own when main() is called with a list
    args.argv = None if argv is None else [f"benchmarks/{Path(__file__).name}", *argv]
    args.sample_seed = POOLS[args.pool]
    args.out = args.out or str(pool_path(args.pool))
    if args.results is None:
        args.results = str(HERE / "results" / f"pool_{args.pool}.md")
    return args


def proxy_settings(
    epochs: int | None = None, data: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The default search config (``epochs``/``data`` overridden when given), its space, and
    the proxy settings the pool pins (a file is only extended with the same settings)."""
    import dataclasses

    from fbnetv3_zoo.search.config import SearchConfig
    from fbnetv3_zoo.search.space.definition import load_space
    from fbnetv3_zoo.search.trainer import _num_classes

    config = SearchConfig()
    changes = {k: v for k, v in dict(epochs=epochs, data=data).items() if v is not None}
    config = dataclasses.replace(config, **changes)
    space = load_space(config.space)
    proxy = dict(
        space=space.name,
        space_fingerprint=space.fingerprint(),
        data=config.data,
        epochs=config.epochs,
        overrides=dict(space.recipe_overrides),
        num_classes=_num_classes(config.data),
        constraints=list(SAMPLE_CONSTRAINTS),
        sample_seed=None,
    )
    return config, space, proxy


def session_facts(argv: list[str] | None = None) -> dict[str, Any]:
    """How and where a pool build session runs: command (``argv``, default ``sys.argv``),
    versions, machine, start time."""
    import scipy
    import timm
    import torch

    return dict(
        command="python " + " ".join(shlex.quote(a) for a in argv or sys.argv),
        versions=dict(
            python=platform.python_version(),
            torch=torch.__version__,
            timm=timm.__version__,
            numpy=np.__version__,
            scipy=scipy.__version__,
        ),
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            threads_per_training=1,
        ),
        started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


def session_meta(
    proxy: dict[str, Any], sample_seed: int, argv: list[str] | None = None
) -> dict[str, Any]:
    from fbnetv3_zoo.search.pool import POOL_FORMAT

    return dict(
        type="meta",
        format=POOL_FORMAT,
        **{**proxy, "sample_seed": sample_seed},
        **session_facts(argv),
    )


def _train(task: Any) -> tuple[dict[str, Any], float]:
    """Worker: one training on one thread; returns the result and its CPU seconds."""
    import torch
    from fbnetv3_zoo.search.trainer import evaluate

    torch.set_num_threads(1)
    start = time.process_time()
    result = evaluate(task)
    return result, time.process_time() - start


def _trained(tasks: dict, jobs: int):
    """(key, (result, CPU s)) as trainings end: in this process for one job (a forked child of a
    process whose autograd threads already ran cannot train), else in worker processes."""
    if jobs == 1:
        import torch

        threads = torch.get_num_threads()
        try:
            for key, t in tasks.items():
                yield key, _train(t[0])
        finally:
            torch.set_num_threads(threads)
        return
    with ProcessPoolExecutor(max_workers=jobs) as ex:
        futures = {ex.submit(_train, t[0]): key for key, t in tasks.items()}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def run_record(i: int, vec, spec, recipe, macs, params, seed, result, cpu_s) -> dict[str, Any]:
    keep = ("epoch", "val_top1", "ema_top1", "val_loss", "train_loss")
    return dict(
        type="run",
        pair=i,
        vector=[float(v) for v in vec],
        arch=spec.to_dict(),
        recipe=recipe,
        macs=int(macs),
        params=int(params),
        seed=seed,
        status=result["status"],
        error=result["error"],
        metrics=[{k: m.get(k) for k in keep if k in m} for m in result["metrics"]],
        wall_s=round(result["wall_s"], 2),
        cpu_s=round(cpu_s, 2),
    )


def build(args: argparse.Namespace) -> None:
    from fbnetv3_zoo.search.pool import PROXY_KEYS, append_records, load_pool
    from fbnetv3_zoo.search.space.constraints import parse_constraint
    from fbnetv3_zoo.search.space.encoding import decode
    from fbnetv3_zoo.search.space.sampling import sample_feasible
    from fbnetv3_zoo.search.trainer import EvalTask

    config, space, proxy = proxy_settings(args.epochs, args.data)
    out = Path(args.out)
    if out.exists():
        old_pool = load_pool(out)
        old = old_pool.proxy
        diff = [k for k in PROXY_KEYS if old[k] != proxy[k]]
        if old_pool.meta[0]["sample_seed"] != args.sample_seed:
            diff.append("sample_seed")
        if diff:
            raise SystemExit(
                f"{out} was built with other proxy settings ({diff}); use another --out"
            )
    # written with this session's first training
    meta = [session_meta(proxy, args.sample_seed, args.argv)]
    limits = [parse_constraint(c) for c in SAMPLE_CONSTRAINTS]
    u, macs, params = sample_feasible(
        space, SAMPLE_SIZE, limits, proxy["num_classes"], seed=args.sample_seed
    )
    if args.pairs > len(u):
        raise SystemExit(f"only {len(u)} feasible pairs were sampled; ask for fewer")

    def done() -> set[tuple[int, int]]:
        if not out.exists():
            return set()
        return {(p.index, s) for p in load_pool(out).pairs for s in p.runs}

    def run(jobs: list[tuple[int, int]]) -> None:
        have = done()
        jobs = [j for j in jobs if j not in have]
        if not jobs:
            return
        tasks = {}
        for i, seed in jobs:
            spec, recipe = decode(space, u[i])
            task = EvalTask(
                i,
                spec.to_dict(),
                recipe,
                space.recipe_base,
                proxy["data"],
                proxy["epochs"],
                None,
                seed,
                1,
                proxy["overrides"],
            )
            tasks[(i, seed)] = (task, spec, recipe)
        start = time.perf_counter()
        for n, ((i, seed), (result, cpu_s)) in enumerate(_trained(tasks, args.jobs), 1):
            _, spec, recipe = tasks[(i, seed)]
            rec = run_record(i, u[i], spec, recipe, macs[i], params[i], seed, result, cpu_s)
            append_records(out, meta + [rec])
            meta.clear()
            score = rec["metrics"][-1]["val_top1"] if rec["metrics"] else float("nan")
            eta = (time.perf_counter() - start) / n * (len(jobs) - n) / 60
            print(
                f"[{n}/{len(jobs)}] pair {i} seed {seed}: {result['status']} {score:.1f} % "
                f"({cpu_s:.1f} s CPU, {result['wall_s']:.1f} s wall; ~{eta:.0f} min left)",
                flush=True,
            )

    run([(i, seed) for i in range(args.pairs) for seed in range(args.seeds)])


def summary(path: Path) -> str:
    """Markdown facts about a pool file: size, seeds, accuracy spread, cost, provenance."""
    from fbnetv3_zoo.search.pool import load_pool
    from scipy.stats import spearmanr

    pool = load_pool(path)
    mean, count = pool.quality()
    runs = [r for p in pool.pairs for r in p.runs.values()]
    failed = sum(r["status"] != "done" for r in runs)
    cpu = np.array([r["cpu_s"] for r in runs])
    wall = np.array([r["wall_s"] for r in runs])
    paired = [p for p in pool.pairs if 0 in p.runs and 1 in p.runs]
    a = np.array([p.score(0) or 0.0 for p in paired])
    b = np.array([p.score(1) or 0.0 for p in paired])
    top = np.argsort(-mean)[:10]
    # seed noise of one training, from the pairs trained with >= 3 seeds (the re-measured top)
    spread = [np.std(p.scores(), ddof=1) for p in pool.pairs if len(p.scores()) >= 3]
    m = pool.meta[0]
    lines = [
        "# Ground-truth pool of the embedded search space",
        "",
        f"File: `{path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path}` "
        f"({path.stat().st_size / 1024:.0f} KiB). Rebuild or extend: `{pool.meta[-1]['command']}` "
        "(resumes; finished trainings are skipped).",
        f"Proxy: space `{m['space']}` (fingerprint {m['space_fingerprint']}), data `{m['data']}`, "
        f"{m['epochs']} epochs, recipe overrides {m['overrides']}; pairs Sobol-sampled "
        f"(seed {m['sample_seed']}) inside {', '.join(m['constraints'])}.",
        f"Made with {', '.join(f'{k} {v}' for k, v in m['versions'].items())} on "
        f"{m['machine']['platform']} ({m['machine']['cpus']} cores shared with other jobs, "
        "1 torch thread per training).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| pairs | {len(pool.pairs)} |",
        f"| trainings (failed) | {len(runs)} ({failed}) |",
        f"| seeds per pair: min / median / max | {count.min()} / {np.median(count):g} / {count.max()} |",
        f"| accuracy of the pairs (per-pair mean, %): p10 / p50 / p90 / max | "
        f"{np.percentile(mean, 10):.1f} / {np.percentile(mean, 50):.1f} / {np.percentile(mean, 90):.1f} / {mean.max():.1f} |",
        f"| test-retest Spearman, seed 0 vs 1 ({len(paired)} pairs trained with both) | "
        f"{spearmanr(a, b)[0]:.3f} |",
        f"| seed noise of one training: standard deviation over seeds, median of the {len(spread)} "
        f"pairs trained with >= 3 seeds (points) | {np.median(spread) if spread else float('nan'):.2f} |",
        f"| spread of the 10 best pairs (best - 10th best per-pair mean, points) | "
        f"{mean[top[0]] - mean[top[-1]]:.2f} |",
        f"| CPU seconds per training (mean / max) | {cpu.mean():.1f} / {cpu.max():.1f} |",
        f"| wall seconds per training on the shared machine (mean / max) | {wall.mean():.1f} / {wall.max():.1f} |",
        "",
        "Best pairs by mean accuracy over their seeds:",
        "",
        "| pair | seeds | mean top-1 % | single runs % | MMACs | optimizer | lr |",
        "|---|---|---|---|---|---|---|",
    ]
    for k in top:
        p = pool.pairs[k]
        lines.append(
            f"| {p.index} | {count[k]} | {mean[k]:.1f} | "
            + ", ".join(f"{s:.1f}" for s in p.scores())
            + f" | {p.macs / 1e6:.2f} | {p.recipe['optimizer']} | {p.recipe['lr']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.summary_only:
        build(args)
    text = summary(Path(args.out))
    print(text)
    if args.results:
        Path(args.results).write_text(text)


if __name__ == "__main__":
    main()
