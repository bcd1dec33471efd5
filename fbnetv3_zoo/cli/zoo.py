"""``fbnetv3 models | info | convert``: the zoo's subcommands.

Only the standard library at top level: the parser must build without torch.
"""

from __future__ import annotations

import argparse
import json
import sys

from fbnetv3_zoo.cli.args import add_threads_flag, resolve_threads
from fbnetv3_zoo.deploy.runtimes import LATENCY_BACKENDS


def zoo_table() -> str:
    """Markdown table of the zoo, generated from the variants' facts and the analytic counts."""
    from fbnetv3_zoo.models.stats import arch_stats, in_millions
    from fbnetv3_zoo.models.variants import VARIANTS

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
    from fbnetv3_zoo.models.spec import check_num_classes
    from fbnetv3_zoo.weights.resolve import parse_ref

    facts = parse_ref(args.model)
    if args.num_classes is not None:
        check_num_classes(args.num_classes, "--num-classes")
    spec = facts.spec
    if spec is None:  # a timm / torchvision name or a folder: the model says what it is
        model = facts.create(pretrained=False, num_classes=args.num_classes)
        spec = getattr(model, "arch", None)
        out = _spec_facts(facts, spec, model.num_classes) if spec else _module_facts(facts, model)
    else:
        out = _spec_facts(facts, spec, facts.num_classes(args.num_classes))
    variant = facts.variant
    if variant is not None:
        out.update(
            imagenet_top1=variant.top1,
            imagenet_top5=variant.top5,
            eval_resize=variant.eval_resize,
            crop_pct=round(variant.crop_pct, 4),
            weights_url=variant.weights_url,
            official_params_m=variant.params_m,
            official_macs_m=variant.macs_m,
        )
    if facts.tag:
        out["pretrained_tag"] = facts.tag
    if args.latency:  # predicted from this machine's table, and measured end to end
        out["latency"] = _latency(facts, spec, args, out["num_classes"])
    print(json.dumps(out, indent=2))
    if spec is not None:
        print(spec.to_yaml(), end="")
    if facts.path is not None:
        _warn_if_file_stats_differ(facts.path, out)
    return 0


def _latency(facts, spec, args: argparse.Namespace, num_classes: int) -> dict:
    """Predicted (this machine's block table) and measured latency of an FBNetV3-space network."""
    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.latency.table import latency_report
    from fbnetv3_zoo.yaml_io import load_yaml

    if spec is None:
        raise UserError(
            f"--latency: {args.model} is not an FBNetV3-space network (a zoo name, spec or result file)"
        )
    threads = resolve_threads(args.threads)
    from fbnetv3_zoo.latency.timing import require_backend

    require_backend(args.latency, f"--latency {args.latency}")
    doc = load_yaml(facts.path) if facts.path is not None and facts.path.is_file() else {}
    search = doc.get("search") if isinstance(doc, dict) else None
    space = search.get("space") if isinstance(search, dict) else None
    return latency_report(spec, args.latency, threads, num_classes, space)


def _spec_facts(facts, spec, num_classes: int) -> dict:
    """Facts of an FBNetV3-space network, from its spec alone (the official counting)."""
    from fbnetv3_zoo.models.stats import arch_stats

    stats = arch_stats(spec, num_classes=num_classes)
    return {
        "name": spec.name or facts.text,
        "input_size": spec.input_size,
        "num_classes": num_classes,
        # the official convention, as in `fbnetv3 models` and `benchmark`'s params/MACs columns
        "params_m": stats.params_m,
        "macs_m": stats.macs_m,
        "all_parameters": stats.torch_params,  # every tensor, BN and biases included
        "blocks": len(spec.blocks()),
    }


def _module_facts(facts, model) -> dict:
    """Facts of any other network, counted on the built module (same convention)."""
    from fbnetv3_zoo.deploy.bench import count_macs
    from fbnetv3_zoo.deploy.export import model_input_size
    from fbnetv3_zoo.models.stats import conv_linear_weights

    size = model_input_size(model)
    return {
        "name": facts.text,
        "kind": facts.kind,
        "input_size": size,
        "num_classes": getattr(model, "num_classes", None) or _last_linear_width(model),
        "params_m": conv_linear_weights(model) / 1e6,
        "macs_m": count_macs(model.eval(), size) / 1e6,
        "all_parameters": sum(p.numel() for p in model.parameters()),
    }


def _last_linear_width(model) -> int | None:
    from torch import nn

    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return widths[-1] if widths else None


def _warn_if_file_stats_differ(path, out: dict) -> None:
    """A result file's own ``stats:`` should match; say so when they do not (e.g. an old file)."""
    from fbnetv3_zoo.models.result_file import read_result_file

    saved = read_result_file(path).stats
    if not isinstance(saved, dict):
        return
    macs, params = round(out["macs_m"] * 1e6), round(out["params_m"] * 1e6)
    if (saved.get("macs"), saved.get("params")) != (macs, params):
        print(
            f"warning: {path} says stats macs={saved.get('macs')} params={saved.get('params')}, "
            f"but this count with num_classes={out['num_classes']} gives macs={macs} "
            f"params={params}; pass the class count its search used (--num-classes)",
            file=sys.stderr,
        )


def _convert(args: argparse.Namespace) -> int:
    from fbnetv3_zoo.weights.convert import convert_checkpoint

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
    p = sub.add_parser(
        "models",
        help="table of the FBNetV3 zoo",
        description="The FBNetV3 zoo as a markdown table: input size, eval resize and crop, "
        "published ImageNet top-1/top-5, params, MACs and the weights tag of each variant.",
    )
    p.set_defaults(func=_models)

    p = sub.add_parser(
        "info",
        help="facts, statistics and spec of a variant, ArchSpec YAML or search result",
        description="Facts, params/MACs and the ArchSpec of a model reference; --latency adds "
        "its predicted and measured batch-1 latency on this machine.",
    )
    p.add_argument(
        "model",
        help="zoo name (fbnetv3_a…fbnetv3_g, optionally .fb_in1k), timm name, "
        "torchvision/<name>, ArchSpec YAML, search result YAML or local-dir:<folder>",
    )
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier width for params/MACs (default: a search result's num_classes, else 1000)",
    )
    p.add_argument(
        "--latency",
        choices=LATENCY_BACKENDS,
        default=None,
        help="also print predicted (this machine's latency table) and measured batch-1 latency",
    )
    add_threads_flag(p, 1, "intra-op threads of the --latency measurement")
    p.set_defaults(func=_info)

    p = sub.add_parser(
        "convert",
        help="checkpoint -> Hub-ready folder (safetensors, config.json, model card)",
        description="Convert an official or our checkpoint into a Hub-ready folder "
        "(model.safetensors, config.json, README.md model card) that timm loads as local-dir:.",
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
