"""Checkpoint -> a Hugging Face Hub-ready folder: model.safetensors, config.json, README.md.

The folder has the layout ``timm.models.push_to_hf_hub`` uploads (weights and
config written by timm's own ``save_for_hf``, the model card by timm's
``generate_readme``), so ``huggingface_hub.upload_folder`` can push it as is,
and ``timm.create_model("local-dir:<folder>", pretrained=True)`` loads it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.outputs import check_protected, check_replaceable, staged_folder
from fbnetv3_zoo.models.timm_registry import WEIGHTS_LICENSE, resolve_arch
from fbnetv3_zoo.models.variants import VARIANTS
from fbnetv3_zoo.weights.checkpoint import check_fits, convert_state_dict, read_checkpoint

CITATION = """@inproceedings{dai2021fbnetv3,
  title={FBNetV3: Joint Architecture-Recipe Search using Predictor Pretraining},
  author={Dai, Xiaoliang and Wan, Alvin and Zhang, Peizhao and Wu, Bichen and He, Zijian and Wei, Zhen and Chen, Kan and Tian, Yuandong and Yu, Matthew and Vajda, Peter and Gonzalez, Joseph E.},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year={2021}
}"""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_card(model: Any, model_name: str, checkpoint: Path, folder_name: str) -> dict:
    """timm's model-card dict: the variant's facts, analytic statistics and provenance."""
    import timm

    from fbnetv3_zoo import __version__
    from fbnetv3_zoo.models.stats import arch_stats

    spec = model.arch
    stats = arch_stats(spec, num_classes=model.num_classes)
    variant = VARIANTS.get(model_name)
    details: dict[str, Any] = {
        "Model Type": "Image classification / feature backbone",
        "Model Stats": {
            # the official convention, as `fbnetv3 models` / `info` / `benchmark` count
            "Params (M)": round(stats.params_m, 3),
            "MACs (M)": round(stats.macs_m, 1),
            "All parameters (M, BN and biases included)": round(stats.torch_params / 1e6, 3),
            "Image size": f"{spec.input_size} x {spec.input_size}",
            "Classes": model.num_classes,
        },
        "Papers": {
            "FBNetV3: Joint Architecture-Recipe Search using Predictor Pretraining": (
                "https://arxiv.org/abs/2006.02049"
            )
        },
        "Provenance": {
            "source checkpoint": f"{checkpoint.name} (sha256 {_sha256(checkpoint)})",
            "converted by": f"fbnetv3-zoo {__version__} with timm {timm.__version__}",
        },
    }
    card: dict[str, Any] = {"details": details, "citation": CITATION}
    if variant is not None:
        details["Dataset"] = "ImageNet-1k"
        details["Published accuracy (FBNet authors)"] = {
            "top-1": variant.top1,
            "top-5": variant.top5,
            "eval": f"resize {variant.eval_resize}, center crop {variant.input_size}",
        }
        details["Original"] = "https://github.com/facebookresearch/mobile-vision"
        details["Provenance"]["official weights"] = variant.weights_url
        card["license"] = WEIGHTS_LICENSE
        card["description"] = (
            f"{model_name} (FBNetV3-{model_name[-1].upper()}), the network found by FBNetV3's "
            "joint architecture-recipe search, with the FBNet authors' ImageNet-1k weights "
            "converted to timm's layout. The license is the one the authors' repository states; "
            "check it before redistributing."
        )
    else:
        card["license"] = "other"
        card["license_name"] = "unspecified"
        card["description"] = (
            f"A network of the FBNetV3 search space ({spec.name or 'custom spec'}); the spec "
            "travels in config.json. Set the license of these weights before publishing."
        )
    card["usage"] = (
        "The architecture is registered by the `fbnetv3-zoo` package: import it before timm "
        "creates the model.\n\n"
        "```python\nimport timm, fbnetv3_zoo\n\n"
        f'model = timm.create_model("local-dir:{folder_name}", pretrained=True)  '
        "# or hf-hub:<user>/<repo> once uploaded\n"
        "cfg = timm.data.resolve_data_config({}, model=model)\n"
        "transform = timm.data.create_transform(**cfg)\n```\n"
    )
    return card


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    model_name: str,  # a zoo variant name or an ArchSpec YAML path
    out_dir: str | os.PathLike,
    trusted: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Hub-ready folder that ``timm.create_model("local-dir:<out_dir>")`` loads.

    Everything is written to a temporary sibling folder first and renamed at
    the end, so a failure never leaves a half-written ``out_dir``.
    """
    import timm
    from timm.models import save_for_hf
    from timm.models._hub import generate_readme

    out = Path(out_dir)
    check_protected(out, [checkpoint])
    if os.path.lexists(out):
        if not overwrite:
            raise UserError(f"{out} already exists; pass --overwrite to replace it")
        check_replaceable(out, "convert")  # before the work, and again before replacing
    sd = read_checkpoint(checkpoint, trusted)
    num_classes = sd["head.conv.weight"].shape[0] if "head.conv.weight" in sd else None
    if num_classes is None and "classifier.weight" in sd:
        num_classes = sd["classifier.weight"].shape[0]
    model_args = None
    if model_name in VARIANTS:
        model = timm.create_model(model_name, num_classes=num_classes or 1000)
    else:  # any ArchSpec YAML: the spec travels in config.json
        spec = resolve_arch(model_name)
        model = timm.create_model("fbnetv3", arch=spec, num_classes=num_classes or 1000)
        model_args = {"arch": spec.to_dict()}
    sd = convert_state_dict(sd, model, str(checkpoint))
    check_fits(sd, model, str(checkpoint))  # converting adapts nothing: exact shapes
    model.load_state_dict(sd)
    card = model_card(model, model_name, Path(checkpoint), out.name)
    with staged_folder(out, "convert", overwrite, inputs=[checkpoint]) as tmp:
        save_for_hf(model, tmp, model_args=model_args, safe_serialization=True)
        (tmp / "README.md").write_text(generate_readme(card, out.name), encoding="utf-8")
    return out
