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
from urllib.error import URLError

import timm
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.model import FBNetV3
from fbnetv3_zoo.models.spec import ArchSpec
from fbnetv3_zoo.models.variants import OFFICIAL_TAG, VARIANTS, Variant
from fbnetv3_zoo.weights.checkpoint import WeightsDownloadError, convert_state_dict, load_weights
from fbnetv3_zoo.weights.resolve import parse_ref

__all__: list[str] = []


def _timm_own_tags() -> tuple[dict[str, Callable[..., Any]], dict[str, dict[str, Any]]]:
    """timm's own entrypoints and tagged cfgs for names we take over, read before we register.

    Only timm's public registry API (``is_model``, ``model_entrypoint``,
    ``get_arch_pretrained_cfgs``), so a timm release that reshuffles its
    internals does not break the zoo.
    """
    own: dict[str, Callable[..., Any]] = {}
    cfgs: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        if not timm.models.is_model(name):
            continue
        own[name] = timm.models.model_entrypoint(name)
        for full, cfg in timm.models.get_arch_pretrained_cfgs(name).items():
            if full.partition(".")[2]:
                cfgs[full] = cfg.to_dict()
    return own, cfgs


_TIMM_ENTRYPOINTS, _TIMM_CFGS = _timm_own_tags()


class FBNetV3Timm(FBNetV3):
    """FBNetV3 with the hook timm calls for ``custom_load`` weights (safe loading + conversion)."""

    def load_pretrained(self, path: str, strict: bool = True) -> None:
        load_weights(self, path)


ACCEPTED_SPECS = "arch is an ArchSpec, its mapping, its YAML (or search result) path or a zoo name"


# what the FBNet authors' repository states (README and setup.py: "CC BY-NC"), as a Hub id
WEIGHTS_LICENSE = "cc-by-nc-4.0"
_GENERIC_DEFAULT = "fbnetv3_a"  # what timm.create_model("fbnetv3") builds without arch=


def _base_cfg(spec: ArchSpec) -> dict[str, Any]:
    """Fields every FBNetV3 network shares, sized for ``spec``'s input resolution."""
    res = spec.input_size
    pool = spec.final_size()
    return dict(
        num_classes=1000,
        input_size=(3, res, res),
        pool_size=(pool, pool),
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="stem.conv",
        classifier="classifier",
        paper_ids="arXiv:2006.02049",
        paper_name="FBNetV3: Joint Architecture-Recipe Search using Predictor Pretraining",
    )


def _pretrained_cfg(variant: Variant) -> dict[str, Any]:
    """The official weights: where they are, how they were evaluated, under which license."""
    res = variant.input_size
    return dict(
        _base_cfg(variant.spec),
        url=variant.weights_url,
        crop_pct=round(variant.crop_pct, 4),
        crop_mode="center",
        interpolation="bilinear",  # our choice: the official eval resizes with PIL's default
        test_input_size=(3, res, res),  # the published top-1 was measured at the train size
        test_crop_pct=round(variant.crop_pct, 4),
        custom_load=True,  # route file/url loads through FBNetV3Timm.load_pretrained
        license=WEIGHTS_LICENSE,
        origin_url="https://github.com/facebookresearch/mobile-vision",
        notes=(
            f"Official FBNet weights, converted on load. ImageNet-1k top-1 {variant.top1} "
            f"at {res}px, resize {variant.eval_resize} (published)."
        ),
    )


default_cfgs = generate_default_cfgs(
    {
        **{f"{name}.{OFFICIAL_TAG}": _pretrained_cfg(v) for name, v in VARIANTS.items()},
        **_TIMM_CFGS,
        # no weights: any spec of the space, sized per spec when built (see fbnetv3())
        "fbnetv3": dict(_base_cfg(VARIANTS[_GENERIC_DEFAULT].spec), crop_pct=0.875),
    }
)


def resolve_arch(arch: ArchSpec | Mapping[str, Any] | str | Path) -> ArchSpec:
    """The ArchSpec of a spec, its mapping, a YAML path or a zoo name (``fbnetv3_zoo.weights.resolve``)."""
    spec = parse_ref(arch).spec
    if spec is None:
        raise UserError(f"{arch}: not an FBNetV3 network; {ACCEPTED_SPECS}")
    return spec


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
    try:
        return build_model_with_cfg(
            FBNetV3Timm,
            name,
            pretrained,
            arch=spec,
            pretrained_filter_fn=_filter_state_dict,
            **kwargs,
        )
    except (URLError, ConnectionError, TimeoutError) as err:
        if not pretrained:
            raise
        raise WeightsDownloadError(_download_failed(name, kwargs, err)) from err


def _download_failed(name: str, kwargs: Mapping[str, Any], err: Exception) -> str:
    """One message: which URL failed, and how to load the same weights from a local file."""
    given = kwargs.get("pretrained_cfg")
    if isinstance(given, Mapping):  # e.g. from a config.json (hf-hub:, local-dir:)
        cfg = dict(given)
    elif hasattr(given, "to_dict"):  # a PretrainedCfg
        cfg = given.to_dict()
    else:  # a tag or nothing
        found = timm.models.get_pretrained_cfg(f"{name}.{given}" if given else name)
        cfg = found.to_dict() if found else {}
    cfg.update(kwargs.get("pretrained_cfg_overlay") or {})
    hub = cfg.get("hf_hub_id")
    url = f"the Hugging Face Hub ({hub})" if hub else cfg.get("url") or "its pretrained_cfg"
    reason = getattr(err, "reason", None) or err
    return (
        f"could not download the pretrained weights of {name} from {url} ({reason}). "
        f"Without network, fetch that file elsewhere and load it with "
        f'timm.create_model("{name}", pretrained=True, pretrained_cfg_overlay=dict(file="model.pth")), '
        f"or convert it once (fbnetv3 convert model.pth --model {name} --out {name}/) and use "
        f'timm.create_model("local-dir:{name}", pretrained=True).'
    )


def _requested_tag(pretrained_cfg: Any) -> str | None:
    if isinstance(pretrained_cfg, str):
        return pretrained_cfg
    if isinstance(pretrained_cfg, Mapping):
        return pretrained_cfg.get("tag")
    return getattr(pretrained_cfg, "tag", None)


def _variant(name: str, pretrained: bool, **kwargs: Any) -> FBNetV3Timm:
    """A zoo name's entrypoint: the exact published network, or timm's own for timm's tags."""
    tag = _requested_tag(kwargs.get("pretrained_cfg"))
    if tag and f"{name}.{tag}" in _TIMM_CFGS:  # timm's own architecture and weights
        return _TIMM_ENTRYPOINTS[name](pretrained=pretrained, **kwargs)
    return _build(name, VARIANTS[name].spec, pretrained, **kwargs)


def fbnetv3_a(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-A, exact to the FBNet authors' network."""
    return _variant("fbnetv3_a", pretrained, **kwargs)


def fbnetv3_b(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-B, exact to the FBNet authors' network."""
    return _variant("fbnetv3_b", pretrained, **kwargs)


def fbnetv3_c(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-C, exact to the FBNet authors' network."""
    return _variant("fbnetv3_c", pretrained, **kwargs)


def fbnetv3_d(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-D, exact to the FBNet authors' network."""
    return _variant("fbnetv3_d", pretrained, **kwargs)


def fbnetv3_e(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-E, exact to the FBNet authors' network."""
    return _variant("fbnetv3_e", pretrained, **kwargs)


def fbnetv3_f(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-F, exact to the FBNet authors' network."""
    return _variant("fbnetv3_f", pretrained, **kwargs)


def fbnetv3_g(pretrained: bool = False, **kwargs: Any) -> FBNetV3Timm:
    """FBNetV3-G, exact to the FBNet authors' network."""
    return _variant("fbnetv3_g", pretrained, **kwargs)


def fbnetv3(pretrained: bool = False, arch: Any = _GENERIC_DEFAULT, **kwargs: Any) -> FBNetV3Timm:
    """Any FBNetV3-space network: ``timm.create_model("fbnetv3", arch=spec_or_yaml_path)``.

    The model's ``pretrained_cfg`` carries the spec's own input and pool size.
    """
    spec = resolve_arch(arch)
    base = _base_cfg(spec)
    overlay = {
        "input_size": base["input_size"],
        "pool_size": base["pool_size"],
        **(kwargs.pop("pretrained_cfg_overlay", None) or {}),
    }
    return _build("fbnetv3", spec, pretrained, pretrained_cfg_overlay=overlay, **kwargs)


ENTRYPOINTS = (fbnetv3_a, fbnetv3_b, fbnetv3_c, fbnetv3_d, fbnetv3_e, fbnetv3_f, fbnetv3_g, fbnetv3)
if [fn.__name__ for fn in ENTRYPOINTS[:-1]] != list(VARIANTS):  # a new variant needs its entrypoint
    raise RuntimeError(
        "timm_models: the entrypoints do not match fbnetv3_zoo.models.variants.VARIANTS"
    )

with warnings.catch_warnings():
    # taking over timm's preliminary fbnetv3_b/d/g is deliberate (their tags are kept)
    warnings.filterwarnings("ignore", message="Overwriting fbnetv3_")
    for _entrypoint in ENTRYPOINTS:
        register_model(_entrypoint)
