"""``fbnetv3 export`` and ``fbnetv3 benchmark``: deployment in one command each.

Only the standard library at top level; torch, onnx, onnxruntime and
matplotlib load inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fbnetv3_zoo.cli.args import add_threads_flag, resolve_threads
from fbnetv3_zoo.deploy.runtimes import BENCH_BACKENDS, DEFAULT_BENCH_BACKENDS


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(part) for part in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export`` and ``benchmark`` subcommands to the ``fbnetv3`` parser."""
    _register_export(subparsers)
    _register_benchmark(subparsers)


def _register_export(subparsers: argparse._SubParsersAction) -> None:
    """The ``export`` subcommand: what to export, to which file, and how it is checked."""
    p = subparsers.add_parser(
        "export",
        help="export a model to ONNX, TorchScript or ExecuTorch (.pte), verified against PyTorch",
        description="Export a zoo name, an ArchSpec YAML, a search result YAML or a local-dir: "
        "folder to ONNX, TorchScript or ExecuTorch (.pte for XNNPACK, fp32 or int8). The file is "
        "checked (onnx.checker + ONNX Runtime, torch.jit.load, or the ExecuTorch runtime) against "
        "PyTorch eager on a seeded batch before it is moved into place; a failed export leaves "
        "no file. Beside it, <file>.preprocess.json records the eval transform to feed it with "
        "(a training run's own for its --checkpoint). Without --pretrained or --checkpoint the "
        "weights are random (as with "
        "timm.create_model): BN statistics and classifier are drawn from a fixed seed so the "
        "check sees outputs of realistic scale, and a line on stderr says so.",
    )
    p.add_argument(
        "model",
        help="zoo name (fbnetv3_b, fbnetv3_b.fb_in1k), timm name, torchvision/<name>, ArchSpec "
        "YAML, search result YAML, or local-dir:DIR",
    )
    p.add_argument(
        "--format",
        default="onnx",
        help="onnx (default), torchscript, or executorch (.pte for XNNPACK; needs the [mobile] extra)",
    )
    p.add_argument(
        "--quantize",
        choices=("int8",),
        default=None,
        help="executorch only: int8 post-training quantisation (PT2E, XNNPACKQuantizer)",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="int8: images to calibrate on and to measure int8 accuracy on: digits, digits:N or "
        "an ImageFolder",
    )
    p.add_argument("--out", required=True, type=Path, help="output file")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    _add_export_model_flags(p)
    p.set_defaults(func=_export)


def _add_export_model_flags(p: argparse.ArgumentParser) -> None:
    """``export``: input size, classifier width, the check's tolerance and the weights."""
    p.add_argument(
        "--input-size",
        type=_positive_int,
        default=None,
        help="square input side in pixels, 8..4096 (default: the model's own)",
    )
    p.add_argument(
        "--num-classes",
        type=_positive_int,
        default=None,
        help="classifier width (default: a search result's num_classes, else 1000)",
    )
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into convs first")
    p.add_argument(
        "--opset", type=int, default=17, help="ONNX opset, 17..torch's newest (default 17)"
    )
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-4,
        help="max |export - eager| allowed, as a fraction of max |eager output| (default 1e-4)",
    )
    p.add_argument("--pretrained", action="store_true", help="load the published weights")
    p.add_argument("--checkpoint", type=Path, default=None, help="weights file to load")


def _register_benchmark(subparsers: argparse._SubParsersAction) -> None:
    """The ``benchmark`` subcommand: models, batches, backends and the timing budget."""
    p = subparsers.add_parser(
        "benchmark",
        help="CPU latency/throughput table of zoo and reference models",
        description="Params, MACs, median batch-1 latency and batch-N throughput per backend. "
        "Models are NAME[@SIZE]: zoo names, ArchSpec YAMLs, or any timm name "
        "(fbnetv3_b.ra2_in1k is timm's own architecture).",
    )
    p.add_argument(
        "--models",
        type=_csv,
        default=None,
        help="comma-separated (default: the zoo, timm's fbnetv3_b and two mobile baselines)",
    )
    p.add_argument("--batch", type=_ints, default=[1, 32], help="batch sizes (default 1,32)")
    p.add_argument(
        "--backends",
        type=_csv,
        default=None,
        help=f"comma-separated, from {', '.join(BENCH_BACKENDS)} (default "
        f"{','.join(DEFAULT_BENCH_BACKENDS)}; eager and onnx are accepted for torch and "
        "onnxruntime); executorch and executorch-int8 need the [mobile] extra and lower each "
        "model first",
    )
    p.add_argument(
        "--compile-models",
        type=_csv,
        default=None,
        help="models to torch.compile (compiling is slow; default fbnetv3_b@224); 'all' for all",
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per cell")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per cell (at most)")
    p.add_argument(
        "--max-seconds", type=float, default=2.0, help="stop timing a cell after this long"
    )
    add_threads_flag(
        p,
        1,
        "intra-op threads of torch, ONNX Runtime and XNNPACK",
        "1; why: benchmarks/results/threads.md",
    )
    p.add_argument("--out", type=Path, default=None, help="write the markdown table here")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    p.set_defaults(func=_benchmark)


def _export(args: argparse.Namespace) -> int:
    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.files.outputs import check_file_output
    from fbnetv3_zoo.models.spec import check_input_size

    formats = ("onnx", "torchscript", "executorch")
    if args.format not in formats:
        raise UserError(
            f"unknown export format {args.format!r}; choose one of: {', '.join(formats)}"
        )
    if args.out.is_dir() and not args.out.is_symlink():
        raise UserError(f"--out {args.out} is a folder; give a file name")
    if not args.out.parent.is_dir():
        raise UserError(f"--out: folder {args.out.parent} does not exist")
    if args.input_size is not None:
        check_input_size(args.input_size, "--input-size")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise UserError(f"--checkpoint {args.checkpoint}: no such file")
    inputs = [p for p in (args.checkpoint, Path(args.model)) if p is not None and p.is_file()]
    check_file_output(args.out, args.overwrite, inputs)
    from fbnetv3_zoo.deploy.preprocess import sidecar_path

    check_file_output(sidecar_path(args.out), args.overwrite, inputs)  # the preprocessing JSON
    if not args.rtol > 0:
        raise UserError(f"--rtol must be > 0, got {args.rtol}")
    if (args.quantize or args.calibration) and args.format != "executorch":
        raise UserError("--quantize and --calibration apply to --format executorch only")
    if args.quantize and not args.calibration:
        raise UserError("--quantize int8 needs --calibration (digits, or an ImageFolder of yours)")
    if args.format == "executorch":
        from fbnetv3_zoo.deploy.executorch import require_executorch

        require_executorch()  # a missing extra is one line before the model is built
    if args.format == "onnx":
        from fbnetv3_zoo.optional import require

        require("onnx", "--format onnx")  # both before the model is built or downloaded
        require("onnxruntime", "--format onnx (its check)")

    from fbnetv3_zoo.cli.export_preprocess import export_preprocess
    from fbnetv3_zoo.deploy.export import check_opset, export_model
    from fbnetv3_zoo.deploy.preprocess import sidecar_path

    if args.format == "onnx":
        check_opset(args.opset)
    model, random_weights = _export_model(args)
    if args.format == "executorch":
        return _export_executorch(args, model, random_weights)
    preprocess = export_preprocess(args, model)
    result = export_model(
        model,
        args.out,
        args.format,
        input_size=preprocess.input_size,
        fold_bn=args.fold_bn,
        opset=args.opset,
        rtol=args.rtol,
        overwrite=args.overwrite,
        preprocess=preprocess,
    )
    if random_weights:  # said once the export stands, so a refusal stays one line
        print(
            "note: exported random weights (pass --pretrained or --checkpoint for trained ones); "
            "BN statistics and classifier drawn from seed 0",
            file=sys.stderr,
        )
    print(result.summary())
    print(f"wrote {sidecar_path(args.out)} (eval transform: {preprocess.describe()})")
    return 0


def _export_model(args: argparse.Namespace) -> tuple[Any, bool]:
    """The model ``export`` writes, and whether its weights are random (seeded draws).

    With ``--checkpoint`` and no ``--num-classes`` the class count is the
    checkpoint's, not a 1000-class head left freshly initialised.
    """
    from fbnetv3_zoo.cli.export_preprocess import checkpoint_classes
    from fbnetv3_zoo.deploy.export import load_model, randomize_weights_
    from fbnetv3_zoo.weights.resolve import parse_ref

    brings_weights = parse_ref(args.model).brings_weights
    num_classes = args.num_classes
    if num_classes is None and args.checkpoint and not brings_weights:
        num_classes = checkpoint_classes(args.checkpoint)
    model = load_model(
        args.model,
        pretrained=args.pretrained,
        checkpoint=args.checkpoint,
        num_classes=num_classes,
    )
    random_weights = not (args.pretrained or args.checkpoint or brings_weights)
    if random_weights:
        randomize_weights_(model)
    return model, random_weights


def _export_executorch(args: argparse.Namespace, model: Any, random_weights: bool) -> int:
    """``--format executorch``: lower, verify, and for int8 measure the accuracy it costs.

    Calibration and the accuracy line use the transform written beside the file
    (a training run's own for its checkpoint), and say which it was.
    """
    from fbnetv3_zoo.cli.export_preprocess import data_labels, export_preprocess
    from fbnetv3_zoo.deploy.executorch import calibration_batches, export_executorch, int8_accuracy
    from fbnetv3_zoo.deploy.preprocess import sidecar_path
    from fbnetv3_zoo.models.stats import check_forward_cost

    preprocess = export_preprocess(args, model, data_labels(args.calibration))
    size = preprocess.input_size
    arch = getattr(model, "arch", None)
    if hasattr(arch, "final_size"):
        check_forward_cost(arch, size, batch=3, where="export")
    calibration = None
    if args.quantize:
        print(f"int8 calibration and accuracy transform: {preprocess.describe()}")
        calibration = calibration_batches(args.calibration, model, size, preprocess)
    result = export_executorch(
        model,
        args.out,
        size,
        quantize=args.quantize,
        calibration=calibration,
        rtol=args.rtol,
        overwrite=args.overwrite,
        preprocess=preprocess,
    )
    if random_weights:
        print("note: exported random weights (pass --pretrained or --checkpoint)", file=sys.stderr)
    print(result.summary())
    print(f"wrote {sidecar_path(args.out)} (eval transform: {preprocess.describe()})")
    if args.quantize:
        acc = int8_accuracy(model, args.out, args.calibration, size, preprocess)
        print(
            f"int8 accuracy on {args.calibration}'s validation split ({acc['images']} images, "
            f"{preprocess.input_size} px, crop {preprocess.crop_pct:g}, "
            f"{preprocess.interpolation}): top-1 {acc['top1_int8']:.2f} vs fp32 eager "
            f"{acc['top1_fp32']:.2f} ({acc['top1_int8'] - acc['top1_fp32']:+.2f} points), "
            f"top-1 agreement {acc['agreement']:.1f} %"
        )
    return 0


def benchmark_settings(args: argparse.Namespace) -> tuple[list[str], object]:
    """The models and ``BenchSettings`` that ``fbnetv3 benchmark`` options describe."""
    from fbnetv3_zoo.deploy.bench import (
        DEFAULT_BACKENDS,
        DEFAULT_COMPILE_MODELS,
        DEFAULT_MODELS,
        BenchSettings,
    )

    models = list(DEFAULT_MODELS) if args.models is None else args.models
    settings = BenchSettings(
        batches=tuple(args.batch),
        backends=tuple(DEFAULT_BACKENDS if args.backends is None else args.backends),
        compile_models=tuple(
            DEFAULT_COMPILE_MODELS if args.compile_models is None else args.compile_models
        ),
        warmup=args.warmup,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        threads=resolve_threads(args.threads),
    )
    return models, settings


def _benchmark(args: argparse.Namespace) -> int:
    from fbnetv3_zoo.deploy.bench import run_benchmark
    from fbnetv3_zoo.deploy.bench_table import format_markdown
    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.files.outputs import check_file_output, staged_file

    if args.out is not None:  # checked before minutes of timing, as every output is
        if args.out.is_dir() and not args.out.is_symlink():
            raise UserError(f"--out {args.out} is a folder; give a file name")
        check_file_output(args.out, args.overwrite)
    models, settings = benchmark_settings(args)
    start = time.perf_counter()
    rows = run_benchmark(models, settings, log=print)
    minutes = (time.perf_counter() - start) / 60
    text = format_markdown(rows, settings) + f"\nThis run took {minutes:.1f} min.\n"
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with staged_file(args.out, args.overwrite) as tmp:
            tmp.write_bytes(text.encode())
        print(f"wrote {args.out}")
    return 0
