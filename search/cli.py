"""``fbnetv3 search`` and ``fbnetv3 search-report``.

Heavy modules (torch training, scipy, Ray, matplotlib) load inside the
handlers so that other subcommands never pay for them.
"""

from __future__ import annotations

import argparse
from typing import Any

DEFAULTS: dict[str, Any] = {}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the search subcommands to the ``fbnetv3`` parser."""
    from dataclasses import fields

    from .coarse import SearchConfig

    d = {f.name: f.default for f in fields(SearchConfig) if not callable(f.default_factory)}
    p = subparsers.add_parser(
        "search",
        help="joint architecture-recipe search (JointNAS); resumes when run again",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Search (ArchSpec, Recipe) pairs under resource constraints. With no options: the "
        "embedded CPU demo (fbnetv3_proxy space on digits, a few minutes). Running the same "
        "command again resumes the run in --out.",
    )
    p.add_argument(
        "--out", required=True, help="run folder (search.sqlite, best/, report.md, plots)"
    )
    p.add_argument(
        "--space",
        default=d["space"],
        help="shipped space name (fbnetv3, fbnetv3_proxy) or a YAML path",
    )
    p.add_argument(
        "--data", default=d["data"], help="digits, digits:N, cifar10, or an ImageFolder directory"
    )
    p.add_argument(
        "--constraint",
        action="append",
        dest="constraints",
        metavar="EXPR",
        help="resource limit such as 'macs<=400M' or 'params<5M'; repeat for several (default: macs<=0.5M and macs<=1M)",
    )
    p.add_argument("--budget", type=int, default=d["budget"], help="candidates to train in total")
    p.add_argument(
        "--batch", type=int, default=d["batch"], help="candidates per iteration after the first"
    )
    p.add_argument(
        "--initial", type=int, default=d["initial"], help="size of the first, Sobol-sampled batch"
    )
    p.add_argument(
        "--epochs", type=int, default=d["epochs"], help="proxy epochs of the first batch"
    )
    p.add_argument(
        "--early-stop-tau",
        type=float,
        default=d["early_stop_tau"],
        help="rank-correlation threshold for the early-stopping epoch",
    )
    p.add_argument(
        "--pool", type=int, default=d["pool"], help="Sobol pool size ranked by the acquisition"
    )
    p.add_argument(
        "--kappa",
        type=float,
        default=d["kappa"],
        help="acquisition: mean + kappa * ensemble spread",
    )
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--executor", default=d["executor"], help="local (default) or ray")
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address (e.g. auto); default: start a local Ray",
    )
    p.add_argument("--cpus-per-trial", type=float, default=d["cpus_per_trial"])
    p.add_argument("--gpus-per-trial", type=float, default=d["gpus_per_trial"])
    p.add_argument(
        "--threads",
        type=int,
        default=d["threads"],
        help="torch threads per candidate (0: torch's default)",
    )
    p.add_argument("--ga-population", type=int, default=d["ga_population"])
    p.add_argument("--ga-generations", type=int, default=d["ga_generations"])
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_search_command)

    r = subparsers.add_parser(
        "search-report", help="tables and plots of a finished or running search"
    )
    r.add_argument("run", help="the search's --out folder")
    r.set_defaults(func=report_command)


def run_search_command(args: argparse.Namespace) -> int:
    from .coarse import SearchConfig, run_search

    config = SearchConfig(
        space=args.space,
        data=args.data,
        constraints=args.constraints or SearchConfig().constraints,
        budget=args.budget,
        batch=args.batch,
        initial=args.initial,
        epochs=args.epochs,
        early_stop_tau=args.early_stop_tau,
        pool=args.pool,
        kappa=args.kappa,
        seed=args.seed,
        executor=args.executor,
        ray_address=args.ray_address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        threads=args.threads or None,
        ga_population=args.ga_population,
        ga_generations=args.ga_generations,
    )
    for name in ("budget", "batch", "initial", "epochs", "pool"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(config, name)}")
    if config.executor not in ("local", "ray"):
        raise ValueError(f"unknown executor {config.executor!r}; choose one of local, ray")
    summary = run_search(config, args.out, progress=not args.quiet)
    _print_summary(summary)
    return 0


def report_command(args: argparse.Namespace) -> int:
    from .report import report_run

    _print_summary(report_run(args.run))
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"{summary['out']}: {summary['done']} candidates trained, {summary['failed']} failed")
    for constraint, row in summary["best"].items():
        if row is None:
            print(f"  {constraint}: no evaluated pair fits")
        else:
            print(f"  {constraint}: top-1 {row['score']:.2f} ({row['macs'] / 1e6:.3f}M MACs)")
    print(f"  report: {summary['out']}/report.md; results: {summary['out']}/best/")
