"""One model reference -> a model and its facts; every command and entry point comes here.

A reference is any of: a zoo name with or without a tag (``fbnetv3_c``,
``fbnetv3_c.fb_in1k``), a timm name (``resnet18``, ``fbnetv3_b.ra2_in1k``),
``torchvision/<name>`` (or ``tv/<name>``), an ``ArchSpec`` or its mapping, a
YAML path (an ArchSpec or a search result file), or ``local-dir:<folder>`` /
``hf-hub:<id>`` (a folder with weights and ``config.json``).  ``parse_ref``
reads what it is without building anything (``info`` needs no model for a
spec); ``ModelRef.create`` builds it; ``resolve_model`` does both.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnetv3_zoo.checks import DEFAULT_NUM_CLASSES
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.models.result_file import YAML_SUFFIXES, read_result_file
from fbnetv3_zoo.models.spec import ArchSpec
from fbnetv3_zoo.models.variants import OFFICIAL_TAG, VARIANTS, UnknownVariantError, Variant

if TYPE_CHECKING:
    from torch import nn

TORCHVISION_PREFIXES = ("torchvision/", "tv/")
FOLDER_PREFIXES = ("local-dir:", "hf-hub:")
KINDS = ("zoo", "spec", "file", "folder", "timm", "torchvision")
ACCEPTED = (
    f"a zoo name ({', '.join(VARIANTS)}; optionally .{OFFICIAL_TAG}), a timm name, "
    "torchvision/<name>, an ArchSpec or its YAML / search result path, or local-dir:<folder>"
)


@dataclass(frozen=True)
class ModelRef:
    """What a reference names, read without building it."""

    text: str  # the reference as given (for names and messages)
    kind: str  # one of KINDS
    name: str  # what the builder is called with: a timm / torchvision name, or "fbnetv3"
    spec: ArchSpec | None = None  # known without building: zoo names, specs, YAML files
    file_num_classes: int | None = None  # a search result's class count
    path: Path | None = None  # the YAML file it came from

    @property
    def variant(self) -> Variant | None:
        """The published variant for a zoo name (with or without its tag), else None."""
        return VARIANTS.get(self.name.split(".")[0]) if self.kind == "zoo" else None

    @property
    def tag(self) -> str | None:
        base, _, tag = self.name.partition(".")
        return tag or None if self.kind in ("zoo", "timm") else None

    @property
    def brings_weights(self) -> bool:
        """A folder reference is its weights: built with them unless told otherwise."""
        return self.kind == "folder"

    def num_classes(self, given: int | None = None) -> int | None:
        """The class count to build with: ``given``, else a result file's, else 1000 for our
        specs; None leaves a timm / torchvision / folder model its own."""
        if given is not None:
            return given
        if self.file_num_classes is not None:
            return self.file_num_classes
        return DEFAULT_NUM_CLASSES if self.spec is not None else None

    def create(
        self,
        pretrained: bool | None = None,
        num_classes: int | None = None,
        optional: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> nn.Module:
        """Build the model (train mode, as timm returns it).

        ``pretrained`` None: a folder's weights, none otherwise.  ``optional``
        keywords (e.g. dropout) are dropped, one by one, when a timm or
        torchvision constructor refuses them; ``kwargs`` are passed as they are.
        """
        classes = self.num_classes(num_classes)
        pretrained = self.brings_weights if pretrained is None else pretrained
        extra = dict(optional or {}, **kwargs)
        if classes is not None:
            extra["num_classes"] = classes
        if self.kind == "torchvision":
            return _refusing(_torchvision, self.name, pretrained, extra, optional)
        if self.kind in ("spec", "file"):
            overlay = kwargs.get("pretrained_cfg_overlay") or {}
            if pretrained and not overlay.get("file"):
                raise UserError(
                    f"{self.text}: no published weights for an ArchSpec; load a checkpoint "
                    f"(pretrained_cfg_overlay=dict(file=...), --checkpoint) or use a zoo name "
                    f"({', '.join(VARIANTS)}) with pretrained weights"
                )
            extra["arch"] = self.spec
        return _refusing(_timm, self.name, pretrained, extra, optional)


def parse_ref(ref: str | Path | ArchSpec | Mapping[str, Any]) -> ModelRef:
    """Read what ``ref`` names; an unknown name is one error listing the accepted forms."""
    if isinstance(ref, ArchSpec):
        return ModelRef(ref.name or "fbnetv3", "spec", "fbnetv3", spec=ref)
    if isinstance(ref, Mapping):
        spec = ArchSpec.from_dict(ref.get("arch", ref))
        return ModelRef(spec.name or "fbnetv3", "spec", "fbnetv3", spec=spec)
    if not isinstance(ref, str | Path):
        raise TypeError(f"a model reference is {ACCEPTED}; got {type(ref).__name__}")
    text = str(ref)
    if text.startswith(FOLDER_PREFIXES):
        check_folder_ref(text)
        return ModelRef(text, "folder", text)
    if text.startswith(TORCHVISION_PREFIXES):
        name = text.split("/", 1)[1]
        if name not in _torchvision_names():
            raise UserError(f"unknown torchvision model {name!r}{_close(name)}")
        return ModelRef(text, "torchvision", name)
    if text.endswith(YAML_SUFFIXES) or Path(text).is_file():
        result = read_result_file(text)
        spec = ArchSpec.from_dict(result.arch, source=result.source)
        return ModelRef(text, "file", "fbnetv3", spec, result.num_classes, Path(text))
    base, _, tag = text.partition(".")
    if base in VARIANTS and tag in ("", OFFICIAL_TAG):
        return ModelRef(text, "zoo", text, spec=VARIANTS[base].spec)
    return _timm_or_torchvision(text)


def resolve_model(
    ref: str | Path | ArchSpec | Mapping[str, Any],
    pretrained: bool | None = None,
    num_classes: int | None = None,
    optional: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[nn.Module, ModelRef]:
    """Build ``ref`` (see the module docstring) and return it with its facts."""
    facts = parse_ref(ref)
    return facts.create(pretrained, num_classes, optional, **kwargs), facts


def _timm_or_torchvision(text: str) -> ModelRef:
    import timm  # importing timm registers the zoo (see fbnetv3_zoo/__init__.py)

    if timm.is_model(text.partition(".")[0]):
        tag = text.partition(".")[2]
        if tag and _pretrained_cfg(text) is None:
            tags = [n.partition(".")[2] for n in timm.list_pretrained(text.partition(".")[0])]
            raise UserError(
                f"unknown pretrained tag {tag!r} of {text.partition('.')[0]}; known: "
                f"{', '.join(tags) or 'none'}"
            )
        return ModelRef(text, "timm", text)
    if text in _torchvision_names():
        return ModelRef(text, "torchvision", text)
    raise UnknownVariantError(f"unknown model {text!r}{_close(text)}; valid names: {ACCEPTED}")


def _pretrained_cfg(name: str) -> Any:
    """timm's pretrained config of ``name``, None for an unknown tag (timm raises for some)."""
    import timm

    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        return None


# the files timm reads from a local-dir: folder; read as untrusted input
FOLDER_FILES = (
    "config.json",
    "model.safetensors",
    "pytorch_model.bin",
    "open_clip_model.safetensors",
)
MAX_CONFIG_BYTES = 1 << 20


def check_folder_ref(text: str) -> None:
    """Refuse a ``hf-hub:`` id that is not one, or a ``local-dir:`` folder we would not read.

    A folder is often one the user did not make: its ``config.json`` must be a
    regular JSON file naming an architecture, and none of the files timm reads
    from it may be a link (which could point anywhere).
    """
    from fbnetv3_zoo.files.untrusted import field, read_json

    prefix, _, rest = text.partition(":")
    if prefix == "hf-hub":
        from huggingface_hub.utils import HFValidationError, validate_repo_id

        try:
            validate_repo_id(rest.partition("@")[0])
        except HFValidationError as err:
            raise UserError(f"{text}: not a Hugging Face Hub model id ({err})") from None
        return
    folder = Path(rest)
    if not rest or not folder.is_dir():
        raise UserError(f"{text}: {rest or '(empty)'} is not a folder")
    for name in FOLDER_FILES:
        if (folder / name).is_symlink():
            raise UserError(f"{text}: {folder / name} is a symbolic link; refusing to read it")
    field(
        read_json(folder / "config.json", MAX_CONFIG_BYTES),
        "architecture",
        str,
        folder / "config.json",
    )


def _torchvision_names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _close(text: str) -> str:
    import difflib

    import timm

    names = list(dict.fromkeys([*VARIANTS, *timm.list_models(), *_torchvision_names()]))
    close = difflib.get_close_matches(text, names, n=5, cutoff=0.6)
    return f"; close matches: {', '.join(close)}" if close else ""


def _timm(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    import timm  # importing timm registers the zoo (see fbnetv3_zoo/__init__.py)

    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (RuntimeError, pickle.UnpicklingError) as err:
        if not name.startswith(FOLDER_PREFIXES) or (
            "weights_only" not in str(err) and "GLOBAL" not in str(err)
        ):
            raise
        raise UserError(
            f"{name}: its weights file is a pickle that needs code execution to load; refused. "
            "If you trust it, write a safe copy with `fbnetv3 convert <file> --model <name> "
            "--out <folder> --trust-checkpoint`"
        ) from None


def _torchvision(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights="DEFAULT" if pretrained else None, **kwargs)


def _refusing(
    build: Any,
    name: str,
    pretrained: bool,
    kwargs: dict[str, Any],
    optional: Mapping[str, Any] | None,
) -> nn.Module:
    """``build``, retried without each ``optional`` keyword its constructor refuses."""
    kwargs = dict(kwargs)
    while True:
        try:
            return build(name, pretrained, kwargs)
        except TypeError as err:
            refused = [k for k in (optional or {}) if k in kwargs and f"'{k}'" in str(err)]
            if not refused:
                raise
            for key in refused:
                kwargs.pop(key)
