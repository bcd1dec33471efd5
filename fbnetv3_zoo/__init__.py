"""FBNetV3-A…G as exact timm models, plus the spec they and the search share.

Importing this package registers ``fbnetv3_a``…``fbnetv3_g`` and ``fbnetv3``
with timm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import timm_models  # noqa: F401  (registers the models with timm)
from .checkpoint import CheckpointError, load_weights, read_checkpoint
from .fuse import fuse_bn
from .model import FBNetV3
from .spec import ArchSpec, BlockSpec, SpecError, make_divisible
from .stats import ArchStats, arch_stats
from .timm_models import resolve_arch
from .variants import VARIANTS, Variant, get_variant

__version__ = "0.1.0"


def create_model(arch: ArchSpec | str | Path, pretrained: bool = False, **kwargs: Any) -> FBNetV3:
    """Build a zoo variant by name, or any network from an ArchSpec or its YAML file.

    ``kwargs`` are timm's (``num_classes``, ``drop_path_rate``, ``features_only``, ...).
    """
    import timm

    if isinstance(arch, str) and arch.split(".")[0] in VARIANTS:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    return timm.create_model("fbnetv3", pretrained=pretrained, arch=resolve_arch(arch), **kwargs)


__all__ = [
    "VARIANTS",
    "ArchSpec",
    "ArchStats",
    "BlockSpec",
    "CheckpointError",
    "FBNetV3",
    "SpecError",
    "Variant",
    "arch_stats",
    "create_model",
    "fuse_bn",
    "get_variant",
    "load_weights",
    "make_divisible",
    "read_checkpoint",
    "resolve_arch",
]
