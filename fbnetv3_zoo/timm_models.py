"""timm registration: ``fbnetv3_a``…``fbnetv3_g`` and the generic ``fbnetv3``.

timm itself ships preliminary ``fbnetv3_b/d/g`` (its own, different
architecture trained as ``ra2_in1k``).  We take over those names so that the
untagged and ``fb_in1k`` names build the exact published networks, and keep
timm's tags working by handing them back to timm's own entrypoints.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._registry import _model_default_cfgs, _model_entrypoints

from .checkpoint import convert_state_dict, load_weights
from .model import FBNetV3
from .spec import ArchSpec, spatial_size
from .variants import VARIANTS, Variant, get_variant

__all__: list[str] = []

# timm's own entrypoints and tags for names we take over, captured before we register
_TIMM_ENTRYPOINTS: dict[str, Callable[..., Any]] = {}
_TIMM_CFGS: dict[str, dict[str, Any]] = {}
for _name in VARIANTS:
    if _name in _model_entrypoints:
        _TIMM_ENTRYPOINTS[_name] = _model_entrypoints[_name]
        _default = _model_default_cfgs[_name]
        _TIMM_CFGS.update({f"{_name}.{t}": _default.cfgs[t].to_dict() for t in _default.tags if t})


class FBNetV3Timm(FBNetV3):
    """FBNetV3 with the hook timm calls for ``custom_load`` weights (safe loading + conversion)."""

    def load_pretrained(self, path: str, strict: bool = True) -> None:
        load_weights(self, path)


def final_feature_size(spec: ArchSpec, input_size: int) -> int:
    size = spatial_size(input_size, spec.stem_kernel, spec.stem_stride, spec.stem_kernel // 2)
    for b in spec.blocks():
        size = spatial_size(size, b.kernel, b.stride, b.padding)
    return size


def _pretrained_cfg(variant: Variant) -> dict[str, Any]:
    res = variant.input_size
    pool = final_feature_size(variant.spec, res)
    return dict(
        url=variant.weights_url,
        num_classes=1000,
        input_size=(3, res, res),
        pool_size=(pool, pool),
        crop_pct=round(variant.crop_pct, 4),
        crop_mode="center",
        interpolation="bilinear",  # our choice: the official eval resizes with PIL's default
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="stem.conv",
        classifier="classifier",
        custom_load=True,  # route file/url loads through FBNetV3Timm.load_pretrained
        paper_ids="arXiv:2006.02049",
        origin_url="https://github.com/facebookresearch/mobile-vision",
    )


default_cfgs = generate_default_cfgs(
    {
        **{f"{name}.fb_in1k": _pretrained_cfg(v) for name, v in VARIANTS.items()},
        **_TIMM_CFGS,
        "fbnetv3": dict(
            num_classes=1000,
            input_size=(3, 224, 224),
            mean=IMAGENET_DEFAULT_MEAN,
            std=IMAGENET_DEFAULT_STD,
            first_conv="stem.conv",
            classifier="classifier",
        ),
    }
)


def resolve_arch(arch: ArchSpec | Mapping[str, Any] | str | Path) -> ArchSpec:
    """Accept a spec, its dict, a YAML path or a zoo variant name."""
    if isinstance(arch, ArchSpec):
        return arch
    if isinstance(arch, Mapping):
        return ArchSpec.from_dict(arch.get("arch", arch))
    if isinstance(arch, str) and arch in VARIANTS:
        return VARIANTS[arch].spec
    if isinstance(arch, str) and not arch.endswith((".yaml", ".yml")) and not Path(arch).exists():
        get_variant(arch)  # raises, listing the valid names
    if isinstance(arch, str | Path):
        return ArchSpec.from_yaml(arch)
    raise TypeError(
        f"arch must be an ArchSpec, a mapping or a YAML path, not {type(arch).__name__}"
    )


def _filter_state_dict(state_dict: dict, model: FBNetV3) -> dict:
    """timm's hook for weights it loaded itself (local-dir, hub): convert and check them."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return convert_state_dict(
        state_dict, model, str(cfg.get("file") or cfg.get("url") or "checkpoint")
    )


def _build(name: str, spec: ArchSpec, pretrained: bool, **kwargs: Any) -> FBNetV3Timm:
    kwargs.setdefault("feature_cfg", dict(flatten_sequential=True, out_indices=(0, 1, 2, 3, 4)))
    overlay = kwargs.get("pretrained_cfg_overlay")
    if overlay and overlay.get("file"):
        # timm drops custom_load for file overrides; keep our safe reader and its clear errors
        kwargs["pretrained_cfg_overlay"] = {"custom_load": True, **overlay}
    return build_model_with_cfg(
        FBNetV3Timm,
        name,
        pretrained,
        arch=spec,
        pretrained_filter_fn=_filter_state_dict,
        **kwargs,
    )


def _requested_tag(pretrained_cfg: Any) -> str | None:
    if isinstance(pretrained_cfg, str):
        return pretrained_cfg
    if isinstance(pretrained_cfg, Mapping):
        return pretrained_cfg.get("tag")
    return getattr(pretrained_cfg, "tag", None)


def _make_entrypoint(name: str) -> Callable[..., Any]:
    def entrypoint(pretrained: bool = False, **kwargs: Any):
        tag = _requested_tag(kwargs.get("pretrained_cfg"))
        if tag and f"{name}.{tag}" in _TIMM_CFGS:  # timm's own architecture and weights
            return _TIMM_ENTRYPOINTS[name](pretrained=pretrained, **kwargs)
        return _build(name, VARIANTS[name].spec, pretrained, **kwargs)

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"FBNetV3-{name[-1].upper()}, exact to the FBNet authors' network."
    return entrypoint


def fbnetv3(pretrained: bool = False, arch: Any = "fbnetv3_a", **kwargs: Any) -> FBNetV3Timm:
    """Any FBNetV3-space network: ``timm.create_model("fbnetv3", arch=spec_or_yaml_path)``."""
    spec = resolve_arch(arch)
    model = _build("fbnetv3", spec, pretrained, **kwargs)
    model.pretrained_cfg = dict(model.pretrained_cfg)
    size = spec.input_size
    model.pretrained_cfg["input_size"] = (3, size, size)
    pool = final_feature_size(spec, size)
    model.pretrained_cfg["pool_size"] = (pool, pool)
    return model


with warnings.catch_warnings():
    # taking over timm's preliminary fbnetv3_b/d/g is deliberate (their tags are kept)
    warnings.filterwarnings("ignore", message="Overwriting fbnetv3_")
    for _name in VARIANTS:
        _fn = _make_entrypoint(_name)
        globals()[_name] = _fn
        register_model(_fn)
    register_model(fbnetv3)
