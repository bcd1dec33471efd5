"""``fbnetv3 recipes``, ``fbnetv3 train`` and ``fbnetv3 validate``.

Only the standard library is imported here; torch, timm and the data code load
inside the handlers, so ``fbnetv3 --help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from fbnetv3_zoo.cli.args import add_channels_last_flag, add_threads_flag

from .task_cli import add_task_flag, cmd_validate_task, demo_changes, print_train

CPU_THREADS = 1  # see benchmarks/results/threads.md and the --threads help

# why one thread by default on the CPU: benchmarks/results/threads.md (benchmarks/threads.py)
THREADS_DEFAULT = (
    f"{CPU_THREADS} when the model runs on the CPU, torch's own on a GPU; why: "
    "benchmarks/results/threads.md"
)


def register(sub: argparse._SubParsersAction) -> None:
    _register_recipes(sub)
    _register_train(sub)
    _register_validate(sub)


def _register_recipes(sub: argparse._SubParsersAction) -> None:
    """The ``recipes`` subcommand: list the presets, or print one."""
    p = sub.add_parser(
        "recipes",
        help="list the training recipe presets",
        description="List the training recipe presets, or print one preset's annotated YAML.",
    )
    p.add_argument("name", nargs="?", help="print this preset's annotated YAML")
    p.set_defaults(func=cmd_recipes)


def _register_train(sub: argparse._SubParsersAction) -> None:
    """The ``train`` subcommand: model, recipe and data, then the run's own flags."""
    p = sub.add_parser(
        "train",
        help="train a model with a recipe",
        description="Train any timm, torchvision or FBNetV3 model with a recipe preset or YAML "
        "into a run folder (checkpoints, metrics.jsonl, summary.json); --resume continues it.",
    )
    p.add_argument(
        "--model",
        help="timm / torchvision/<name> / fbnetv3_a…g name, ArchSpec YAML or search-result YAML "
        "(unset: the model a `fbnetv3 search --model` recipe file was searched for)",
    )
    p.add_argument(
        "--recipe",
        help="preset name or recipe YAML (unset: the recipe inside a search-result --model "
        "YAML, else fbnetv3)",
    )
    p.add_argument(
        "--data",
        default="digits",
        help="digits, digits:N (N training images per class), cifar10, cifar100 or an "
        "ImageFolder dir (default: digits)",
    )
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument(
        "--batch-size", type=int, help="override the recipe's batch size (lr is rescaled)"
    )
    p.add_argument(
        "--resolution",
        type=int,
        help="override the train resolution (unset: the recipe's, which for the fbnetv3 and "
        "baseline presets is the model's own input size)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any recipe field with a YAML value, e.g. --set mixup=0.4 (repeatable)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="train a recipe file marked untrusted (extra.untrusted: e.g. a search whose proxy "
        "check was negative)",
    )
    _add_train_run_flags(p)
    add_task_flag(p)
    _common(p)
    p.set_defaults(func=cmd_train)


def _add_train_run_flags(p: argparse.ArgumentParser) -> None:
    """``train``: where the run is kept, resuming and stopping it, its start and its seed."""
    p.add_argument(
        "--out", help="run directory (metrics, checkpoints, curves); unset: keep nothing"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last finished epoch",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop after epoch N (the schedule still spans --epochs)",
    )
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="start from published weights (detection, segmentation: the backbone's ImageNet ones)",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help="classes the model predicts, background included for detection and segmentation "
        "(default: the data's; a VOC segmentation folder: 21)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of every random choice of the run (default: 0)"
    )
    add_channels_last_flag(p, "train")


def _register_validate(sub: argparse._SubParsersAction) -> None:
    """The ``validate`` subcommand: a model's weights, the data, and the evaluation transform."""
    p = sub.add_parser(
        "validate",
        help="evaluate a model with its own eval transform",
        description="Top-1/top-5 of a model on a validation split, with the transform its "
        "training run recorded (for a run's checkpoint) or its pretrained config's.",
    )
    p.add_argument(
        "--model",
        help="timm / torchvision/<name> / fbnetv3_a…g name, ArchSpec YAML or search-result YAML (unset: the model "
        "of the training run holding --checkpoint)",
    )
    p.add_argument("--pretrained", action="store_true", help="load the model's published weights")
    p.add_argument(
        "--checkpoint",
        help="weights file (.safetensors or torch; EMA weights preferred); the class count "
        "then comes from --data",
    )
    p.add_argument(
        "--data",
        default="digits",
        help="digits, digits:N (same validation split for every N), cifar10, cifar100 or an "
        "ImageFolder dir (val/ if present; default: digits)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help="images per forward pass (default: the run's for a run's checkpoint, else 64)",
    )
    p.add_argument(
        "--input-size",
        type=int,
        help="override the input size (px) of the run's evaluation or the model's config",
    )
    p.add_argument(
        "--crop-pct",
        type=float,
        help="override the crop fraction of the run's evaluation or the model's config",
    )
    p.add_argument(
        "--model-transform",
        action="store_true",
        help="use the model's pretrained-config transform even for a checkpoint in a training "
        "run folder (default there: the run's own evaluation transform, so validate "
        "reproduces the numbers train reported)",
    )
    add_task_flag(p)
    _common(p)
    p.set_defaults(func=cmd_validate)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--download", action="store_true", help="allow downloading CIFAR")
    p.add_argument(
        "--data-root",
        help="where CIFAR lives (unset: $FBNETV3_DATA or ~/.cache/fbnetv3_zoo/data)",
    )
    p.add_argument(
        "--workers", type=int, default=0, help="data loader worker processes (default: 0)"
    )
    add_threads_flag(p, None, "torch CPU threads", THREADS_DEFAULT)
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (unset: a GPU if there is one)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


# ---------------------------------------------------------------- handlers
def cmd_recipes(args: argparse.Namespace) -> int:
    from .recipe import PRESET_DIR, Recipe, preset_names

    if args.name:
        Recipe.load(args.name)  # validates, and names close matches when unknown
        print((PRESET_DIR / f"{args.name}.yaml").read_text(), end="")
        return 0
    cols = (
        "name",
        "optimizer",
        "lr",
        "epochs",
        "batch_size",
        "resolution",
        "mixup",
        "drop_path",
        "ema_decay",
        "auto_augment",
    )
    rows = [[_fmt(c, getattr(Recipe.load(n), c)) for c in cols] for n in preset_names()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    for r in [list(cols), *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    for n in preset_names():
        print(f"{n}: {Recipe.load(n).description}")
    return 0


def _fmt(column: str, v: Any) -> str:
    if v is None:
        return "model's" if column == "resolution" else "off"
    return f"{v:g}" if isinstance(v, float) else str(v)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items as a dict; a malformed item is one line naming it."""
    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.yaml_io import load_yaml_text

    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set mixup=0.4")
        try:
            changes[key.strip()] = load_yaml_text(value, f"--set {item!r}")
        except UserError:
            raise UserError(
                f"--set {item!r}: {value!r} is not a valid YAML value "
                "(e.g. 0.4, null, [0.5, 1.0], 'text')"
            ) from None
    return changes


def _recipe(args: argparse.Namespace) -> Any:
    from .recipe import Recipe

    recipe = None if args.recipe or args.model is None else Recipe.from_result_file(args.model)
    if recipe is None:
        recipe = Recipe.load(args.recipe or "fbnetv3")
    changes = parse_overrides(args.set)
    changes = {**demo_changes(args), **changes}  # an embedded set's defaults; --set wins
    for key in ("epochs", "batch_size", "resolution"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if changes:
        recipe = Recipe.from_dict({**recipe.to_dict(), **changes}, source="--set")
    return recipe


def refuse_untrusted(recipe: Any, force: bool) -> None:
    """A recipe marked ``extra.untrusted`` (by ``fbnetv3 search``) is refused unless ``--force``."""
    from fbnetv3_zoo.errors import UserError

    why = recipe.extra.get("untrusted") if isinstance(recipe.extra, dict) else None
    if why and not force:
        raise UserError(
            f"recipe {recipe.name!r} is marked untrusted ({why}); rerun the search with other "
            "settings, or pass --force to train it anyway"
        )


def searched_model(recipe: Any) -> str:
    """The model a recipe-only search recorded in its recipe file (``extra.search.model``)."""
    from fbnetv3_zoo.errors import UserError

    search = recipe.extra.get("search") if isinstance(recipe.extra, dict) else None
    model = search.get("model") if isinstance(search, dict) else None
    if not isinstance(model, str) or not model:
        raise UserError(
            f"--model is required: recipe {recipe.name!r} records no model it was searched for"
        )
    return model


def set_threads(threads: int | None, device: str | None) -> None:
    """``--threads``, or the measured default: one thread on the CPU (torch's own on a GPU)."""
    import torch

    from fbnetv3_zoo.cli.args import resolve_threads

    if threads is not None:
        torch.set_num_threads(resolve_threads(threads))
        return
    on_gpu = (device or "").startswith(("cuda", "mps")) or (
        device is None and torch.cuda.is_available()
    )
    if not on_gpu:
        torch.set_num_threads(CPU_THREADS)


def check_numbers(args: argparse.Namespace) -> None:
    """One line for a number no run can use (before anything is loaded or written)."""
    from fbnetv3_zoo.errors import UserError

    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    seed = getattr(args, "seed", 0)
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed must be in [0, 2**63), got {seed}")
    if getattr(args, "num_classes", None) is not None:
        from fbnetv3_zoo.checks import check_num_classes

        check_num_classes(args.num_classes, "--num-classes")
    stop = getattr(args, "stop_after", None)
    if stop is not None and stop < 1:
        raise UserError(f"--stop-after must be >= 1 (an epoch number), got {stop}")


def cmd_train(args: argparse.Namespace) -> int:
    from .engine import TrainingDiverged, train

    check_numbers(args)
    recipe = _recipe(args)  # recipe mistakes are reported before torch loads
    refuse_untrusted(recipe, args.force)
    args.model = args.model or searched_model(recipe)
    set_threads(args.threads, args.device)
    try:
        s = train(
            args.model,
            recipe,
            data=args.data,
            out_dir=args.out,
            seed=args.seed,
            progress=not args.no_progress,
            resume=args.resume,
            pretrained=args.pretrained,
            num_classes=args.num_classes,
            stop_after_epochs=args.stop_after,
            data_root=args.data_root,
            download=args.download,
            workers=args.workers,
            device=args.device,
            task=args.task,
            channels_last=args.channels_last,
        )
    except TrainingDiverged as err:
        print(f"fbnetv3 train: error: {err}", file=sys.stderr)
        return 1
    from .distributed import main_process

    if not main_process():  # under torchrun only rank 0 prints the summary
        return 0
    if args.task != "classification":
        print_train(s, recipe.name)
        if args.out:
            print(f"run written to {args.out}")
        return 0
    ema = f", EMA top-1 {s['ema_top1']:.2f}" if s["ema_top1"] is not None else ""
    print(
        f"{s['model']} / {recipe.name} on {s['data']}: epoch {s['epochs_done']}/{s['epochs_planned']}, "
        f"top-1 {s['final_top1']:.2f}, top-5 {_pct(s['final_top5'])}{ema}, best {s['best_top1']:.2f}, "
        f"{s['images_per_s']:.1f} images/s, {s['wall_s']:.1f} s"
    )
    if s["skipped_files"]:
        print(f"skipped {s['skipped_files']} unreadable file(s), e.g. {s['skipped_paths'][0]}")
    if args.out:
        print(f"run written to {args.out}")
    return 0


def _pct(value: float | None) -> str:
    """A percentage, or '-' for one that was not measured (top-5 with 5 classes or fewer)."""
    return "-" if value is None else f"{value:.2f}"


def cmd_validate(args: argparse.Namespace) -> int:
    from .task_validate import run_model_for
    from .validate import validate

    check_numbers(args)
    set_threads(args.threads, args.device)
    if args.task != "classification":
        return cmd_validate_task(args)
    r = validate(
        args.model or run_model_for(args.checkpoint),
        args.data,
        checkpoint=args.checkpoint,
        pretrained=args.pretrained,
        batch_size=args.batch_size,
        input_size=args.input_size,
        crop_pct=args.crop_pct,
        data_root=args.data_root,
        download=args.download,
        workers=args.workers,
        device=args.device,
        progress=not args.no_progress,
        run_transform=not args.model_transform,
    )
    print(f"evaluation transform: {r['transform_from']}")
    print(
        f"{r['model']} on {r['data']} ({r['images']} images, {r['input_size']}px, "
        f"crop {r['crop_pct']}, {r['interpolation']}): top-1 {r['top1']:.2f}, top-5 {_pct(r['top5'])}, "
        f"{r['images_per_s']:.1f} images/s"
    )
    if r["skipped_files"]:
        print(f"skipped {r['skipped_files']} unreadable file(s), e.g. {r['skipped_paths'][0]}")
    return 0
