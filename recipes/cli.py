"""``fbnetv3 recipes``, ``fbnetv3 train`` and ``fbnetv3 validate``.

Heavy imports (torch, timm, data) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recipes", help="list the training recipe presets")
    p.add_argument("name", nargs="?", help="print this preset's annotated YAML")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("train", help="train a model with a recipe")
    p.add_argument(
        "--model", required=True, help="timm / torchvision / fbnetv3_a…g name or ArchSpec YAML"
    )
    p.add_argument(
        "--recipe",
        help="preset name or recipe YAML (default: the recipe inside a search-result --model "
        "YAML, else fbnetv3)",
    )
    p.add_argument(
        "--data",
        default="digits",
        help="digits, digits:N (N per class), cifar10, cifar100 or an ImageFolder dir",
    )
    p.add_argument("--epochs", type=int, help="override the recipe's epochs")
    p.add_argument(
        "--batch-size", type=int, help="override the recipe's batch size (lr is rescaled)"
    )
    p.add_argument("--resolution", type=int, help="override the recipe's train resolution")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override any recipe field (YAML value)",
    )
    p.add_argument("--out", help="run directory (metrics, checkpoints, curves); none: keep nothing")
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
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("validate", help="evaluate a model with its own eval transform")
    p.add_argument("--model", required=True)
    p.add_argument("--pretrained", action="store_true", help="load the model's published weights")
    p.add_argument("--checkpoint", help="weights file (.safetensors or torch) to load")
    p.add_argument(
        "--data",
        default="digits",
        help="digits, cifar10, cifar100 or an ImageFolder dir (val/ if present)",
    )
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--input-size", type=int, help="override the pretrained config's input size")
    p.add_argument("--crop-pct", type=float, help="override the pretrained config's crop fraction")
    _common(p, pretrained=False)
    p.set_defaults(func=cmd_validate)


def _common(p: argparse.ArgumentParser, pretrained: bool = True) -> None:
    if pretrained:
        p.add_argument("--pretrained", action="store_true", help="start from published weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--download", action="store_true", help="allow downloading CIFAR")
    p.add_argument(
        "--data-root", help="where CIFAR lives (default ~/.cache/fbnetv3_zoo/data or $FBNETV3_DATA)"
    )
    p.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", help="cpu, cuda, ... (default: auto)")
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
    rows = [[_fmt(getattr(Recipe.load(n), c)) for c in cols] for n in preset_names()]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    for n in preset_names():
        print(f"{n}: {Recipe.load(n).description}")
    return 0


def _fmt(v: Any) -> str:
    return "off" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    changes: dict[str, Any] = {}
    for item in args.set:
        if "=" not in item:
            raise ValueError(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        changes[key.strip()] = yaml.safe_load(value)
    for key in ("epochs", "batch_size", "resolution"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    return changes


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from .engine import TrainingDiverged, train
    from .recipe import Recipe

    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = None if args.recipe else Recipe.from_result_file(args.model)
    if recipe is None:
        recipe = Recipe.load(args.recipe or "fbnetv3")
    changes = _overrides(args)
    if changes:
        recipe = Recipe.from_dict({**recipe.to_dict(), **changes}, source="--set")
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
            stop_after_epochs=args.stop_after,
            data_root=args.data_root,
            download=args.download,
            workers=args.workers,
            device=args.device,
        )
    except TrainingDiverged as err:
        print(f"fbnetv3 train: error: {err}", file=sys.stderr)
        return 1
    ema = f", EMA top-1 {s['ema_top1']:.2f}" if s["ema_top1"] is not None else ""
    print(
        f"{s['model']} / {recipe.name} on {s['data']}: epoch {s['epochs_done']}/{s['epochs_planned']}, "
        f"top-1 {s['final_top1']:.2f}, top-5 {s['final_top5']:.2f}{ema}, best {s['best_top1']:.2f}, "
        f"{s['images_per_s']:.1f} images/s, {s['wall_s']:.1f} s"
    )
    if s["skipped_files"]:
        print(f"skipped {s['skipped_files']} unreadable file(s), e.g. {s['skipped_paths'][0]}")
    if args.out:
        print(f"run written to {args.out}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    import torch
    from timm.data import create_transform, resolve_data_config
    from torch.utils.data import DataLoader

    from .data import collate_skipping, load_data
    from .engine import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg_args: dict[str, Any] = {}
    if args.input_size:
        cfg_args["input_size"] = (3, args.input_size, args.input_size)
    if args.crop_pct:
        cfg_args["crop_pct"] = args.crop_pct
    # the class count comes from the data when our own checkpoint is loaded
    probe = (
        load_data(args.data, 8, args.data_root, args.download, train=False)
        if args.checkpoint
        else None
    )
    num_classes = probe.num_classes if probe else 1000
    model = _validation_model(args.model, args.pretrained, num_classes, args.checkpoint)
    cfg = resolve_data_config(cfg_args, model=model)
    splits = load_data(args.data, cfg["input_size"][-1], args.data_root, args.download, train=False)
    splits.set_transforms(None, create_transform(**cfg, is_training=False))
    device = torch.device(args.device) if args.device else _device()
    loader = DataLoader(
        splits.val, args.batch_size, num_workers=args.workers, collate_fn=collate_skipping
    )
    skipped: set[str] = set()
    r = evaluate(model.to(device), loader, device, skipped, not args.no_progress, "validate")
    size, crop = cfg["input_size"][-1], cfg.get("crop_pct")
    print(
        f"{args.model} on {splits.name} ({r['images']} images, {size}px, crop {crop}): "
        f"top-1 {r['top1']:.2f}, top-5 {r['top5']:.2f}, {r['images_per_s']:.1f} images/s"
    )
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s), e.g. {sorted(skipped)[0]}")
    return 0


def _device() -> Any:
    from .engine import _auto_device

    return _auto_device()


def _validation_model(name: str, pretrained: bool, num_classes: int, checkpoint: str | None) -> Any:
    from pathlib import Path

    import torch

    import fbnetv3_zoo

    from .build import create_model
    from .recipe import Recipe

    is_zoo = name.split(".")[0] in fbnetv3_zoo.VARIANTS or name.endswith((".yaml", ".yml"))
    model = create_model(Recipe(), name, num_classes=num_classes, pretrained=pretrained)
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
        if is_zoo:
            fbnetv3_zoo.load_weights(model, checkpoint)
        elif checkpoint.endswith(".safetensors"):
            from safetensors.torch import load_file

            model.load_state_dict(load_file(checkpoint))
        else:
            sd = torch.load(checkpoint, map_location="cpu", weights_only=True)
            for key in ("state_dict", "model", "state_dict_ema"):
                if isinstance(sd, dict) and isinstance(sd.get(key), dict):
                    sd = sd[key]
                    break
            model.load_state_dict(sd)
    return model.eval()
