"""Official checkpoint -> ``model.safetensors`` + ``config.json`` (timm / Hugging Face layout)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .checkpoint import CheckpointError, convert_state_dict, read_checkpoint
from .timm_models import resolve_arch
from .variants import VARIANTS


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    model_name: str,  # a zoo variant name or an ArchSpec YAML path
    out_dir: str | os.PathLike,
    trusted: bool | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a folder that ``timm.create_model("local-dir:<out_dir>")`` loads.

    Everything is written to a temporary sibling folder first and renamed at
    the end, so a failure never leaves a half-written ``out_dir``.
    """
    import timm
    from timm.models import save_for_hf

    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} already exists; pass overwrite=True (--overwrite) to replace it"
        )
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
    for key in ("stem.conv.weight", "classifier.weight", "classifier.bias"):
        want = model.state_dict()[key].shape
        if key in sd and sd[key].shape != want:
            raise CheckpointError(
                f"{checkpoint}: {key} has shape {tuple(sd[key].shape)}, model expects {tuple(want)}"
            )
    model.load_state_dict(sd)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_for_hf(model, tmp, model_args=model_args, safe_serialization=True)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
