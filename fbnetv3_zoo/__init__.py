"""FBNetV3-A…G as exact timm models, plus the spec they and the search share.

Importing this package makes timm build the exact published networks for
``fbnetv3_a``…``fbnetv3_g`` and ``fbnetv3``: at once when timm is already
imported, otherwise the moment timm finishes importing.  Nothing heavy (torch,
timm) is imported by ``import fbnetv3_zoo`` itself, so the ``fbnetv3`` command
answers ``--help`` at once; the public names below load on first use.

Why an import hook (``sys.meta_path``) instead of registering at import: the
registration needs timm, importing torch and timm takes many times longer than
``fbnetv3 --help`` (``benchmarks/results/cli_startup.md``, re-measured by
``python benchmarks/cli_startup.py``), and timm offers no plug-in entry point
for model registries.  The hook watches only imports of timm and of this
package, and removes itself once the models are registered.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it (loaded on first attribute access)
_LAZY = {
    "CheckpointError": "weights.checkpoint",
    "load_weights": "weights.checkpoint",
    "read_checkpoint": "weights.checkpoint",
    "fuse_bn": "models.fuse",
    "FBNetV3": "models.model",
    "ArchSpec": "models.spec",
    "BlockSpec": "models.spec",
    "SpecError": "models.spec",
    "make_divisible": "models.spec",
    "ArchStats": "models.stats",
    "arch_stats": "models.stats",
    "resolve_arch": "models.timm_registry",
    "ModelRef": "weights.resolve",
    "parse_ref": "weights.resolve",
    "resolve_model": "weights.resolve",
    "init_weights": "models.weight_init",
    "ResultFile": "models.result_file",
    "read_result_file": "models.result_file",
    "VARIANTS": "models.variants",
    "Variant": "models.variants",
    "get_variant": "models.variants",
    "UserError": "errors",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load lazily
    import torch

    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.models.fuse import fuse_bn
    from fbnetv3_zoo.models.model import FBNetV3
    from fbnetv3_zoo.models.result_file import ResultFile, read_result_file
    from fbnetv3_zoo.models.spec import ArchSpec, BlockSpec, SpecError, make_divisible
    from fbnetv3_zoo.models.stats import ArchStats, arch_stats
    from fbnetv3_zoo.models.timm_registry import resolve_arch
    from fbnetv3_zoo.models.variants import VARIANTS, Variant, get_variant
    from fbnetv3_zoo.models.weight_init import init_weights
    from fbnetv3_zoo.weights.checkpoint import CheckpointError, load_weights, read_checkpoint
    from fbnetv3_zoo.weights.resolve import ModelRef, parse_ref, resolve_model


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


def create_model(
    arch: ArchSpec | str | Path, pretrained: bool | None = None, **kwargs: Any
) -> torch.nn.Module:
    """Build any model reference (``fbnetv3_zoo.weights.resolve``): a zoo name with or without its
    tag, a timm or ``torchvision/`` name, an ArchSpec or its YAML, ``local-dir:<folder>``.

    ``kwargs`` are the builder's (timm's: ``num_classes``, ``drop_path_rate``,
    ``features_only``, ...); ``pretrained`` None loads weights only for a folder.
    """
    from fbnetv3_zoo.weights.resolve import resolve_model

    return resolve_model(arch, pretrained=pretrained, **kwargs)[0]


# ------------------------------------------------------------ timm registration
def _initializing(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _busy() -> bool:
    """True while timm or one of our submodules is half-imported (registering now would cycle)."""
    if "timm" not in sys.modules or _initializing("timm"):
        return True
    return any(n.startswith(__name__ + ".") and _initializing(n) for n in list(sys.modules))


def _register_if_ready() -> None:
    if _HOOK.done or _busy():
        return
    _HOOK.done = True
    if _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)
    importlib.import_module(".models.timm_registry", __name__)  # registers the models with timm


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then registers with timm if that import completed the picture."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        try:
            self._inner.exec_module(module)
        finally:
            module.__spec__._initializing = False
        _register_if_ready()

    def __getattr__(self, name: str) -> Any:  # resources, get_source, ... of the real loader
        return getattr(self._inner, name)


class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Watches imports of timm and of our submodules until the registration has run."""

    done = False

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "timm" and not name.startswith(__name__ + "."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_HOOK = _RegisterWhenTimmLoads()
if "timm" in sys.modules:
    _register_if_ready()
if not _HOOK.done:
    sys.meta_path.insert(0, _HOOK)


__all__ = [
    "VARIANTS",
    "ArchSpec",
    "ArchStats",
    "BlockSpec",
    "CheckpointError",
    "FBNetV3",
    "ModelRef",
    "ResultFile",
    "SpecError",
    "UserError",
    "Variant",
    "arch_stats",
    "create_model",
    "fuse_bn",
    "get_variant",
    "init_weights",
    "parse_ref",
    "read_result_file",
    "load_weights",
    "make_divisible",
    "read_checkpoint",
    "resolve_arch",
    "resolve_model",
]
