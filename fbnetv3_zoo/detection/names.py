"""Model names in torchvision's style (``fasterrcnn_fbnetv3_a_fpn``) and what they stand for.

Pure Python on purpose: ``DETECTORS``/``SEGMENTERS`` and hubconf's entry list are
read without importing torch.  A family has a generic name (``fasterrcnn_fpn``)
that takes any backbone reference through ``backbone=``, and one name per
published variant, made by putting the variant into the family's pattern.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.variants import VARIANTS

# family -> (generic name, pattern for a published variant)
DETECTION_FAMILIES: dict[str, tuple[str, str]] = {
    "fasterrcnn": ("fasterrcnn_fpn", "fasterrcnn_{}_fpn"),
    "retinanet": ("retinanet_fpn", "retinanet_{}_fpn"),
    "ssdlite": ("ssdlite", "ssdlite_{}"),
    "maskrcnn": ("maskrcnn_fpn", "maskrcnn_{}_fpn"),
}
SEGMENTATION_FAMILIES: dict[str, tuple[str, str]] = {
    "lraspp": ("lraspp", "lraspp_{}"),
    "deeplabv3": ("deeplabv3", "deeplabv3_{}"),
}


def variant_names(families: Mapping[str, tuple[str, str]]) -> tuple[str, ...]:
    """Every family on every published variant, family by family (``fasterrcnn_fbnetv3_a_fpn``...)."""
    return tuple(pattern.format(v) for _, pattern in families.values() for v in VARIANTS)


def generic_names(families: Mapping[str, tuple[str, str]]) -> tuple[str, ...]:
    """The names that need ``backbone=`` (``fasterrcnn_fpn``...)."""
    return tuple(generic for generic, _ in families.values())


def split_name(
    name: str, families: Mapping[str, tuple[str, str]], backbone: Any, what: str
) -> tuple[str, Any]:
    """(family, backbone reference) named by ``name`` (plus ``backbone=`` for a generic name).

    An unknown name is one error listing every accepted name, with close matches first.
    """
    for family, (generic, pattern) in families.items():
        if name == generic:
            if backbone is None:
                raise UserError(
                    f"{what} {name!r} needs backbone= (a zoo name such as fbnetv3_a, an ArchSpec, "
                    f"or an ArchSpec / search result YAML path); or use a named one such as "
                    f"{pattern.format('fbnetv3_a')}"
                )
            return family, backbone
        for variant in VARIANTS:
            if name == pattern.format(variant):
                if backbone is not None:
                    raise UserError(
                        f"{what} {name!r} fixes its backbone ({variant}); pass backbone= only "
                        f"with the generic name {generic!r}"
                    )
                return family, variant
    timm_ref = _timm_backbone(name, families, what)
    if timm_ref is not None:
        return timm_ref
    accepted = [*variant_names(families), *generic_names(families)]
    close = difflib.get_close_matches(str(name), accepted, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UserError(f"unknown {what} {name!r}{hint} Accepted names: {', '.join(accepted)}")


def _timm_backbone(
    name: str, families: Mapping[str, tuple[str, str]], what: str
) -> tuple[str, str] | None:
    """(family, timm name) for a detector named with a timm backbone in the variant's place
    (``fasterrcnn_efficientnet_b0_fpn``), for comparisons in the same detector; else None."""
    if what != "detector":  # the segmenters read FBNetV3's stage layout only
        return None
    for family, (_, pattern) in families.items():
        head, _, tail = pattern.partition("{}")
        inner = name[len(head) : len(name) - len(tail)] if tail else name[len(head) :]
        if name.startswith(head) and name.endswith(tail) and inner:
            import timm  # only for names that are not ours: `import fbnetv3_zoo.detection` stays light

            if timm.is_model(inner) and inner not in VARIANTS:
                return family, inner
    return None


def is_detector(name: str) -> bool:
    """Whether ``create_detector`` takes ``name`` alone: a named FBNetV3 detector, or a family
    with a timm backbone in the variant's place (``fasterrcnn_efficientnet_b0_fpn``)."""
    if name in DETECTORS:
        return True
    return _timm_backbone(name, DETECTION_FAMILIES, "detector") is not None


DETECTORS: tuple[str, ...] = variant_names(DETECTION_FAMILIES)
SEGMENTERS: tuple[str, ...] = variant_names(SEGMENTATION_FAMILIES)
