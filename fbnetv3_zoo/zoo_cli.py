"""``fbnetv3 models | info | convert``: the zoo's subcommands.

Only the standard library at top level: the parser must build without torch.
"""

from __future__ import annotations

import argparse
import json
import sys


def zoo_table() -> str:
    """Markdown table of the zoo, generated from the variants' facts and the analytic counts."""
    from .stats import arch_stats, in_millions
    from .variants import VARIANTS

    head = (
        "| model | input | eval resize | crop | ImageNet top-1 | top-5 | params (M) | MACs (M) | weights |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for name, v in VARIANTS.items():
        s = arch_stats(v.spec)
        rows.append(
            f"| {name} | {v.input_size} | {v.eval_resize} | {v.crop_pct:.3f} | {v.top1:.2f} | "
            f"{v.top5:.2f} | {in_millions(s.params, 2)} | {in_millions(s.macs, 1)} | `{name}.fb_in1k` |"
        )
    return head + "\n".join(rows)


def _models(args: argparse.Namespace) -> int:
    print(zoo_table())
    print(
        "\nparams/MACs: official convention (conv and linear weights; their MACs + pooling reads),"
        " computed by"
    )
    print(
        "fbnetv3_zoo.arch_stats from each spec. Top-1/top-5: the FBNet authors' reported numbers."
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from .spec import resolve_spec_ref
    from .stats import arch_stats
    from .variants import VARIANTS

    spec, num_classes = resolve_spec_ref(args.model, args.num_classes)
    stats = arch_stats(spec, num_classes=num_classes)
    out = {
        "name": spec.name or args.model,
        "input_size": spec.input_size,
        "num_classes": num_classes,
        # the official convention, as in `fbnetv3 models` and `benchmark`'s params/MACs columns
        "params_m": stats.params_m,
        "macs_m": stats.macs_m,
        "all_parameters": stats.torch_params,  # every tensor, BN and biases included
        "blocks": len(spec.blocks()),
    }
    if args.model in VARIANTS:
        v = VARIANTS[args.model]
        out.update(
            imagenet_top1=v.top1,
            imagenet_top5=v.top5,
            eval_resize=v.eval_resize,
            crop_pct=round(v.crop_pct, 4),
            weights_url=v.weights_url,
            official_params_m=v.params_m,
            official_macs_m=v.macs_m,
        )
    if args.latency:  # predicted from this machine's table, and measured end to end
        from .errors import UserError
        from .latency import latency_report

        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        from .yaml_io import load_yaml

        doc = {} if args.model in VARIANTS else load_yaml(args.model)
        search = doc.get("search") if isinstance(doc, dict) else None
        space = search.get("space") if isinstance(search, dict) else None
        out["latency"] = latency_report(spec, args.latency, args.threads, num_classes, space)
    print(json.dumps(out, indent=2))
    print(spec.to_yaml(), end="")
    _warn_if_file_stats_differ(args.model, stats, num_classes)
    return 0


def _warn_if_file_stats_differ(ref: str, stats, num_classes: int) -> None:
    """A result file's own ``stats:`` should match; say so when they do not (e.g. an old file)."""
    from .variants import VARIANTS
    from .yaml_io import load_yaml

    if ref in VARIANTS:
        return
    doc = load_yaml(ref)
    saved = doc.get("stats") if isinstance(doc, dict) else None
    if not isinstance(saved, dict):
        return
    if (saved.get("macs"), saved.get("params")) != (stats.macs, stats.params):
        print(
            f"warning: {ref} says stats macs={saved.get('macs')} params={saved.get('params')}, "
            f"but this count with num_classes={num_classes} gives macs={stats.macs} "
            f"params={stats.params}; pass the class count its search used (--num-classes)",
            file=sys.stderr,
        )


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoint

    out = convert_checkpoint(
        args.checkpoint,
        args.model,
        args.out,
        trusted=args.trust_checkpoint,
        overwrite=args.overwrite,
    )
    print(f"wrote {out}/: model.safetensors, config.json, README.md (model card)")
    print(f'load with: timm.create_model("local-dir:{out}", pretrained=True)')
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="table of the FBNetV3 zoo")
    p.set_defaults(func=_models)

    p = sub.add_parser(
        "info", help="facts, statistics and spec of a variant, ArchSpec YAML or search result"
    )
    p.add_argument(
        "model", help="zoo name (fbnetv3_a…fbnetv3_g), ArchSpec YAML or search result YAML"
    )
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier width for params/MACs (default: a search result's num_classes, else 1000)",
    )
    p.add_argument(
        "--latency",
        choices=("onnxruntime", "torch"),
        default=None,
        help="also print predicted (this machine's latency table) and measured batch-1 latency",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="threads for --latency (default: %(default)s)"
    )
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "convert", help="checkpoint -> Hub-ready folder (safetensors, config.json, model card)"
    )
    p.add_argument("checkpoint", help="official .pth file (or one of ours)")
    p.add_argument("--model", required=True, help="zoo name or ArchSpec YAML the weights belong to")
    p.add_argument("--out", required=True, help="output folder (created atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        default=None,
        help="allow full unpickling (runs code from the file); only for files you trust",
    )
    p.set_defaults(func=_convert)
