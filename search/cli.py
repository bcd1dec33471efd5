"""``fbnetv3 search`` and ``fbnetv3 search-report``.

Heavy modules (torch training, scipy, Ray, matplotlib) load inside the
handlers so that other subcommands never pay for them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the search subcommands to the ``fbnetv3`` parser."""
    _register_search(subparsers)
    _register_search_report(subparsers)


_Option = Callable[..., None]


def _register_search(subparsers: argparse._SubParsersAction) -> None:
    """The ``search`` subcommand, its flags in groups, then every strategy's settings."""
    p = subparsers.add_parser(
        "search",
        help="joint architecture-recipe search (JointNAS), or the recipe alone for any --model; "
        "resumes when run again",
        description="Search (ArchSpec, Recipe) pairs under resource constraints. With no options: the "
        "embedded CPU demo (fbnetv3_proxy space on digits, a few minutes). With --model (a timm name, "
        "torchvision/<name>, a zoo name or a search-result YAML): search only the training recipe for "
        "that model, starting from its baseline recipe and judging candidates on prefixes of the "
        "full run's schedule (jointnas-mf; 3 full-run equivalents by default); the result is "
        "OUT/best/recipe.yaml for `fbnetv3 train --recipe`. Example (a few minutes on CPU): "
        "fbnetv3 search --model resnet18 --data digits:30 --full-epochs 40 --out runs/r. Running "
        "the same command again resumes the run in --out (with the same settings; changed ones "
        "are refused).",
    )

    # argparse prints groups in the order made: the flags most runs set come first
    common = p.add_argument_group("common options")
    detail = p.add_argument_group("space, proxy and schedule details")
    where = p.add_argument_group("where candidates train (CPU, GPU, Ray)")
    _add_target_flags(common, detail, _option_adder(common))
    _add_data_flags(common, detail, _option_adder(common), _option_adder(detail))
    _add_budget_flags(common, detail, _option_adder(common), _option_adder(detail))
    _add_executor_flags(where, _option_adder(where))
    common.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    add_strategy_flags(p)
    p.set_defaults(func=run_search_command)


_Group = Any  # an argparse argument group (argparse keeps its class private)


def _option_adder(p: _Group) -> _Option:
    """``opt(flag, help, **kw)``: a flag whose default is SearchConfig's, said in its help."""
    from dataclasses import fields

    from fbnetv3_zoo.search.config import SearchConfig

    d = {f.name: f.default for f in fields(SearchConfig)}

    def opt(flag: str, help: str, **kw: Any) -> None:
        key = flag.lstrip("-").replace("-", "_")
        if key in d and "default" not in kw and kw.get("action") != "store_true":
            kw["default"] = d[key]
            help += " (default: %(default)s)"
        p.add_argument(flag, help=help, **kw)

    return opt


def _add_target_flags(p: _Group, detail: _Group, opt: _Option) -> None:
    """``search``: the run folder, the space or fixed model, and the full run searched for."""
    from fbnetv3_zoo.search.config import ARCH_SPACE, RECIPE_FULL_EPOCHS, RECIPE_SPACE

    p.add_argument(
        "--out", required=True, help="run folder (search.sqlite, best/, report.md, plots)"
    )
    detail.add_argument(
        "--space",
        default=None,
        help=f"shipped space name (fbnetv3, fbnetv3_proxy; {RECIPE_SPACE}: recipe ranges only) or a "
        f"YAML path (default: {ARCH_SPACE}; with --model {RECIPE_SPACE}, of which only the recipe: "
        "ranges are used)",
    )
    p.add_argument(
        "--model",
        default=None,
        help="search only the recipe for this fixed model: any reference `fbnetv3 train --model` "
        "takes (resnet18, torchvision/resnet18, fbnetv3_a, a result YAML)",
    )
    detail.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="with --model: its input size (default: the space file's, 32 for the recipe space)",
    )
    p.add_argument(
        "--full-epochs",
        type=int,
        default=None,
        help="the full run the searched recipe is for (default: none; with --model "
        f"{RECIPE_FULL_EPOCHS}); jointnas-mf's rungs are prefixes of its schedule; for other "
        "strategies the proxy is --epochs of it with the schedule compressed, and the first batch "
        "is also trained at full length to measure the proxy's rank correlation",
    )
    detail.add_argument(
        "--no-proxy-check",
        dest="proxy_check",
        action="store_false",
        help="skip training the first batch at --full-epochs (the proxy's rank correlation is then "
        "not measured)",
    )
    detail.add_argument(
        "--no-start-at-base",
        dest="start_at_base",
        action="store_false",
        default=None,
        help="with --model: draw the whole first batch instead of training the space's base recipe "
        "(baseline) as the first candidate, the recipe the pick has to beat",
    )


def _add_data_flags(p: _Group, detail: _Group, opt: _Option, more: _Option) -> None:
    """``search``: the data set, its held-out share, the constraints and the strategy."""
    from fbnetv3_zoo.search.config import (
        DEFAULT_CONSTRAINTS,
        DEFAULT_STRATEGY,
        MF_STRATEGY,
        RECIPE_HOLDOUT,
    )
    from fbnetv3_zoo.search.strategy_settings import SETTINGS

    opt(
        "--data",
        "digits, digits:N (N training images per class), cifar10, cifar100, or an ImageFolder directory",
    )
    more(
        "--download",
        "fetch cifar10/cifar100 into the data folder when missing",
        action="store_true",
    )
    detail.add_argument(
        "--holdout",
        type=float,
        default=None,
        help="share of each class's training images held out of training to rank candidates on, "
        "so the validation split `fbnetv3 train` reports on stays unseen (default: "
        f"{RECIPE_HOLDOUT} with --model; 0, the validation split, for the architecture demo)",
    )
    p.add_argument(
        "--constraint",
        action="append",
        dest="constraints",
        metavar="EXPR",
        help="resource limit such as 'macs<=400M', 'params<5M' or 'latency_ms<=8@onnxruntime' "
        "(also @torch; this machine's latency table, built first if missing); repeat for several "
        f"(default: {' and '.join(DEFAULT_CONSTRAINTS)}, which both cut into the embedded demo "
        "space, so each limit can have its own best pair; none with --model, whose MACs/params "
        "are fixed)",
    )
    opt(
        "--strategy",
        "how candidates are chosen: jointnas (predictor + genetic search), random (the "
        'baseline), optuna-tpe (Optuna\'s TPE sampler; pip install "fbnetv3-zoo[optuna]") or '
        "successive-halving (short trainings for all, the full proxy for the best third); "
        "jointnas-mf (JointNAS on rungs of the full schedule, the fidelity a predictor input; "
        f"default: {DEFAULT_STRATEGY}; {MF_STRATEGY} with --model, chosen on the tune recipe pool)",
        choices=list(SETTINGS),
        default=None,
    )


def _add_budget_flags(p: _Group, detail: _Group, opt: _Option, more: _Option) -> None:
    """``search``: how many candidates, in which batches, for how many epochs, which seed."""
    from fbnetv3_zoo.search.config import (
        ARCH_BUDGET,
        ARCH_EPOCHS,
        ARCH_SCORE_EPOCHS,
        PROXY_SHAPE,
        RECIPE_BUDGET,
        RECIPE_MF_SHAPE,
    )

    def shape(name: str) -> str:
        """The default of a run-shape flag, which a jointnas-mf recipe search sets otherwise."""
        return f"default: {PROXY_SHAPE[name]}; {RECIPE_MF_SHAPE[name]} with --model and jointnas-mf"

    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="candidates to train in total, the final per-constraint picks and re-measured "
        f"finalists included (default: {ARCH_BUDGET}; with --model {RECIPE_MF_SHAPE['budget']} "
        f"for jointnas-mf, 3 full-run equivalents, {RECIPE_BUDGET} for the other strategies)",
    )
    more(
        "--remeasure",
        "finalists per constraint trained once more with another seed before best/ is written "
        f"(picked on the mean of both trainings; counted in --budget; 0: off; {shape('remeasure')})",
        type=int,
        default=None,
    )
    detail.add_argument(
        "--score-epochs",
        type=int,
        default=None,
        help="score a candidate on its mean top-1 over this many epochs ending at the scoring "
        "epoch, a steadier measurement of the same training (default: "
        f"{ARCH_SCORE_EPOCHS}; 1, the scoring epoch alone, with --model)",
    )
    more(
        "--batch",
        f"candidates per iteration after the first ({shape('batch')})",
        type=int,
        default=None,
    )
    opt(
        "--initial",
        "size of the first batch: Sobol draws, the base recipe first with --model "
        f"({shape('initial')})",
        type=int,
        default=None,
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="proxy epochs: the length of each candidate's schedule (later batches may stop at the "
        f"early-stopping epoch; default: {ARCH_EPOCHS}, with --model a tenth of --full-epochs, "
        "compressed); with --model --strategy jointnas-mf, the shortest rung of the "
        "--full-epochs schedule (default: a fifth of it)",
    )
    more("--early-stop-tau", "rank-correlation threshold for the early-stopping epoch", type=float)
    opt("--seed", "seed of every random choice: same seed and settings, same run", type=int)


def _add_executor_flags(p: _Group, opt: _Option) -> None:
    """``search``: where candidates train (this process or Ray) and on how much hardware."""
    p.add_argument(
        "--device",
        default=None,
        help="where the built-in trainer trains each candidate: cpu, cuda, cuda:N or mps "
        "(default: a GPU if there is one); with --executor ray --gpus-per-trial 1 each candidate "
        "gets a GPU of its own",
    )
    opt(
        "--executor",
        "where candidates train: local (this process) or ray",
        choices=("local", "ray"),
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="Ray cluster address such as 'auto' or host:port (default: start a local Ray)",
    )
    opt("--cpus-per-trial", "CPUs Ray reserves per candidate", type=float)
    opt("--gpus-per-trial", "GPUs Ray reserves per candidate (fractions allowed)", type=float)
    from fbnetv3_zoo.search.config import SearchConfig

    from fbnetv3_zoo.cli.args import add_channels_last_flag, add_threads_flag

    add_threads_flag(p, SearchConfig.threads, "torch threads per candidate")
    add_channels_last_flag(p, "train each candidate")


def _register_search_report(subparsers: argparse._SubParsersAction) -> None:
    """The ``search-report`` subcommand."""
    r = subparsers.add_parser(
        "search-report",
        help="tables and plots of a finished or running search",
        description="Re-render report.md, best/ and the plots from a run's search.sqlite (read-only; "
        "on a read-only folder only the summary is printed).",
    )
    r.add_argument("run", help="the search's --out folder")
    r.set_defaults(func=report_command)


def add_strategy_flags(p: argparse.ArgumentParser) -> None:
    """One flag per field of every registered strategy's settings, grouped by strategy.

    A field several strategies share is one flag; defaults are the strategy's
    own (None here means "not given").
    """
    from dataclasses import fields

    from fbnetv3_zoo.search.strategy_settings import SETTINGS, field_types, help_text, owner_of

    seen: set[str] = set()
    for name, cls in SETTINGS.items():
        group = None
        for f in fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            if group is None:
                group = p.add_argument_group(f"{name} settings")
            kind = field_types(cls)[f.name]
            choices = f.metadata["choices"]() if "choices" in f.metadata else None
            owners = " and ".join(owner_of(f.name))
            group.add_argument(
                "--" + f.name.replace("_", "-"),
                type=kind if kind is not bool else None,
                choices=choices,
                default=None,
                help=f"{help_text(f)} ({owners}; default: {f.default})",
            )


def strategy_options(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The chosen strategy's settings given on the command line; others' flags are an error."""
    from dataclasses import fields

    from fbnetv3_zoo.search.config import default_strategy
    from fbnetv3_zoo.search.strategy_settings import SETTINGS, owner_of

    from fbnetv3_zoo.errors import UserError

    chosen = args.strategy or default_strategy(getattr(args, "model", None) is not None)
    mine = {f.name for f in fields(SETTINGS[chosen])}
    given: dict[str, Any] = {}
    for name in sorted({f.name for cls in SETTINGS.values() for f in fields(cls)}):
        value = getattr(args, name, None)
        if value is None:
            continue
        if name not in mine:
            flag = "--" + name.replace("_", "-")
            raise UserError(
                f"{flag} is a setting of {' and '.join(owner_of(name))}, not of --strategy {chosen}"
            )
        given[name] = value
    return {chosen: given} if given else {}


def run_search_command(args: argparse.Namespace) -> int:
    from fbnetv3_zoo.search.driver import SearchConfig, run_search

    from fbnetv3_zoo.cli.args import resolve_threads

    config = SearchConfig(
        space=args.space,
        data=args.data,
        constraints=args.constraints,
        budget=args.budget,
        batch=args.batch,
        initial=args.initial,
        remeasure=args.remeasure,
        score_epochs=args.score_epochs,
        epochs=args.epochs,
        early_stop_tau=args.early_stop_tau,
        seed=args.seed,
        strategy=args.strategy,
        executor=args.executor,
        ray_address=args.ray_address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        threads=resolve_threads(args.threads),
        device=args.device,
        channels_last=args.channels_last,
        settings=strategy_options(args),
        download=args.download,
        model=args.model,
        resolution=args.resolution,
        full_epochs=args.full_epochs,
        proxy_check=args.proxy_check,
        holdout=args.holdout,
        start_at_base=args.start_at_base,
    )
    summary = _storing(lambda: run_search(config, args.out, progress=not args.quiet), args.out)
    _print_summary(summary)
    if summary["done"] == 0 and summary["failed"] > 0:
        import sys

        print(
            f"fbnetv3 search: error: every candidate failed; see the errors in {args.out}/report.md",
            file=sys.stderr,
        )
        return 1
    return 0


def report_command(args: argparse.Namespace) -> int:
    from fbnetv3_zoo.search.report.outputs import report_run

    _print_summary(_storing(lambda: report_run(args.run), args.run))
    return 0


def _storing(work: Callable[[], Any], out: str) -> Any:
    """Run ``work``; a database that fails mid-run (disk full, damaged) is one line, not a traceback.

    Every result committed before the failure stays in ``search.sqlite``, so
    the same command resumes once the cause is fixed.
    """
    import sqlite3

    from fbnetv3_zoo.errors import UserError

    try:
        return work()
    except sqlite3.DatabaseError as err:
        raise UserError(
            f"{out}/search.sqlite: {err} (a full disk or a damaged file?); the results committed "
            "so far are kept: free space or restore the file, then run the same command to resume"
        ) from None


def _print_summary(summary: dict[str, Any]) -> None:
    from fbnetv3_zoo.models.stats import in_millions

    print(f"{summary['out']}: {summary['done']} candidates trained, {summary['failed']} failed")
    for constraint, row in summary["best"].items():
        if row is None:
            print(f"  {constraint}: no evaluated pair fits")
        elif "model" in row["arch"]:
            print(f"  best recipe for {row['arch']['model']}: proxy top-1 {row['score']:.2f}")
        else:
            macs = in_millions(row["macs"], 3)
            print(f"  {constraint}: top-1 {row['score']:.2f} ({macs}M MACs)")
    lines = summary.get("console") or []
    if lines:
        print("verdict:")
        print("\n".join(lines))
    print(f"  report: {summary['out']}/report.md; results: {summary['out']}/best/")
