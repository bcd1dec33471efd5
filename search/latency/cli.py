"""``fbnetv3 latency build``: measure this machine's per-block latency table for a space."""

from __future__ import annotations

import argparse

from fbnetv3_zoo.cli.args import add_threads_flag, resolve_threads
from fbnetv3_zoo.deploy.runtimes import LATENCY_BACKENDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fbnetv3 latency`` to the ``fbnetv3`` parser."""
    p = subparsers.add_parser(
        "latency",
        help="per-block latency table of this machine (for latency_ms<= search constraints)",
        description="Measure the latency of every block configuration a search space can produce "
        "on this machine, cached per backend, thread count and CPU; resumable (run it again).",
    )
    sub = p.add_subparsers(
        dest="latency_command",
        required=True,
        metavar="ACTION",
        help="build: measure the table (resumable)",
    )
    b = sub.add_parser(
        "build",
        help="measure the missing entries and fit the whole-network correction",
        description="Measure the missing entries of the table (stem, every row's choices at each "
        "input shape, head), then time a seeded set of whole networks and fit the correction the "
        "predictor adds to the per-block sum. Tables live under the user cache directory "
        "($FBNETV3_CACHE_DIR overrides it).",
    )
    b.add_argument(
        "--backend",
        required=True,
        choices=LATENCY_BACKENDS,
        help="onnxruntime (ONNX Runtime CPU), torch (PyTorch eager), cuda (PyTorch eager on the GPU) "
        "or executorch (XNNPACK fp32 program; the [mobile] extra)",
    )
    add_threads_flag(b, 1, "intra-op threads of the timed backend (part of the table's cache key)")
    b.add_argument(
        "--space",
        default="fbnetv3_proxy",
        help="shipped space name or YAML path (default: %(default)s)",
    )
    b.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="measure only this input resolution of the space (default: every one it allows)",
    )
    b.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier width of the head entries (default: 10 for fbnetv3_proxy, else 1000)",
    )
    b.add_argument(
        "--limit", type=int, default=None, help="measure at most this many new entries this run"
    )
    b.add_argument(
        "--calibrate",
        type=int,
        default=None,
        help="whole networks timed to fit the correction (default: 24; 0: none)",
    )
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_build)


def default_classes(space_name: str) -> int:
    """The class count of the space's usual data: digits (10) for the demo space, else ImageNet."""
    return 10 if space_name == "fbnetv3_proxy" else 1000


def _build(args: argparse.Namespace) -> int:
    import dataclasses

    from fbnetv3_zoo.search.latency.table import CALIBRATION_NETWORKS, build_table
    from fbnetv3_zoo.search.space.definition import Dim, load_space

    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.latency.timing import require_backend
    from fbnetv3_zoo.models.spec import check_input_size, check_num_classes

    threads = resolve_threads(args.threads)
    require_backend(args.backend, f"--backend {args.backend}")
    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit must be >= 0, got {args.limit}")
    space = load_space(args.space)
    if args.input_size is not None:
        check_input_size(args.input_size, "--input-size")
        if args.input_size not in (space.resolution.choices or ()):
            raise UserError(
                f"--input-size {args.input_size} is not a resolution of space {space.name!r}: "
                f"{list(space.resolution.choices or ())}"
            )
        res = Dim("resolution", (args.input_size,))
        space = dataclasses.replace(space, resolution=res, name=f"{space.name}@{args.input_size}")
    classes = args.num_classes or default_classes(space.name.split("@")[0])
    check_num_classes(classes, "--num-classes")
    calibrate = CALIBRATION_NETWORKS if args.calibrate is None else args.calibrate
    build_table(
        space,
        args.backend,
        threads,
        classes,
        limit=args.limit,
        calibrate=calibrate,
        progress=not args.quiet,
    )
    return 0
