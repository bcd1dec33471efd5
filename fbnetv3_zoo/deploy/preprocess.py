"""The evaluation transform an exported model was checked with, written beside the file.

An ``.onnx``/``.pt``/``.pte`` file holds the network only; a user who feeds it
images resized or normalised differently from training gets other numbers
(an ImageNet-style crop of 0.875 instead of a run's 1.0 moves top-1 by
points).  So every export writes ``<file>.preprocess.json`` beside the file:
the transform as timm's ``pretrained_cfg`` names it (``input_size``,
``interpolation``, ``crop_pct``, ``crop_mode``, ``mean``, ``std``,
``num_classes``, ``label_names``) plus ``resize_size`` spelled out, and where
it came from (a training run's ``summary.json``, or the model's pretrained
config).

The name is per file, not HF's per-folder ``preprocessor_config.json``,
because several exports of one model (``a.onnx``, ``a.pte``, ``a-int8.pte``)
often share a folder and each must keep its own.  :meth:`Preprocess.to_input`
turns a PIL image or an array into the input tensor by that JSON, with timm's
own eval transform, so training, ``validate`` and a deployed model see the
same pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.untrusted import UntrustedFileError, read_json
from fbnetv3_zoo.files.untrusted import field as json_field

if TYPE_CHECKING:
    import torch
    from torch import nn

SUFFIX = ".preprocess.json"
KIND = "fbnetv3-zoo preprocess"
VERSION = 1
MAX_BYTES = 1 << 20
PRETRAINED_CFG = "the model's pretrained config"
INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "lanczos", "box", "hamming")
CROP_MODES = ("center", "squash", "border")


@dataclass(frozen=True)
class Preprocess:
    """An evaluation transform: resize the shorter side, centre-crop, normalise.

    Field names are timm's ``pretrained_cfg`` keys, so
    ``timm.data.create_transform(**p.timm_kwargs(), is_training=False)`` is the
    transform.  ``image_resolution`` is the side in-memory arrays (``digits``)
    are resized to before it; image files ignore it.
    """

    input_size: int
    crop_pct: float
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_mode: str = "center"
    num_classes: int | None = None
    label_names: tuple[str, ...] | None = None
    image_resolution: int | None = None
    source: str = PRETRAINED_CFG

    @property
    def resize_size(self) -> int:
        """The shorter side before the centre crop (timm's ``floor(size / crop_pct)``)."""
        return math.floor(self.input_size / self.crop_pct)

    def describe(self) -> str:
        """One phrase for console lines: size, crop, interpolation and where it came from."""
        return (
            f"{self.input_size} px, resize {self.resize_size}, crop {self.crop_pct:g}, "
            f"{self.interpolation}, from {self.source}"
        )

    def timm_kwargs(self) -> dict[str, Any]:
        """Keywords of ``timm.data.create_transform`` for this eval transform."""
        return dict(
            input_size=self.input_size,
            crop_pct=self.crop_pct,
            crop_mode=self.crop_mode,
            interpolation=self.interpolation,
            mean=self.mean,
            std=self.std,
        )

    @cached_property
    def transform(self) -> Any:
        """timm's eval transform (PIL image -> normalised 3xHxW tensor)."""
        from timm.data import create_transform

        return create_transform(**self.timm_kwargs(), is_training=False)

    def to_input(self, image: Any) -> torch.Tensor:
        """A PIL image, or an HxW / HxWx3 uint8 array, as the 1x3xHxW tensor the model takes."""
        import numpy as np
        from PIL import Image

        if not isinstance(image, Image.Image):
            array = np.asarray(image)
            if array.dtype != np.uint8 or array.ndim not in (2, 3):
                raise UserError(
                    f"expected a PIL image or an HxW / HxWx3 uint8 array, got a {array.dtype} "
                    f"array of shape {array.shape}"
                )
            image = Image.fromarray(array)
        return self.transform(image.convert("RGB"))[None]

    def to_json(self, model_file: str = "") -> dict[str, Any]:
        """The sidecar's content: timm's key names, ``resize_size`` spelled out, the source."""
        doc: dict[str, Any] = dict(kind=KIND, version=VERSION, model_file=model_file)
        doc.update(asdict(self))
        doc["input_size"] = [3, self.input_size, self.input_size]  # timm's layout
        doc["resize_size"] = self.resize_size
        doc["mean"], doc["std"] = list(self.mean), list(self.std)
        if self.label_names is not None:
            doc["label_names"] = list(self.label_names)
        return doc


def from_evaluation(evaluation: dict[str, Any], source: str, **known: Any) -> Preprocess:
    """The transform a training run recorded (``summary.json``'s ``evaluation``)."""
    path = Path(source)
    return Preprocess(
        input_size=int(json_field(evaluation, "input_size", int, path)),
        crop_pct=float(json_field(evaluation, "crop_pct", (int, float), path)),
        interpolation=str(json_field(evaluation, "interpolation", str, path)),
        mean=tuple(float(v) for v in json_field(evaluation, "mean", list, path)),
        std=tuple(float(v) for v in json_field(evaluation, "std", list, path)),
        crop_mode=str(evaluation.get("crop_mode") or "center"),
        image_resolution=evaluation.get("image_resolution"),
        source=source,
        **known,
    )


def from_model(model: nn.Module, input_size: int | None = None, **known: Any) -> Preprocess:
    """The model's own eval transform (timm's ``resolve_data_config`` of its pretrained cfg)."""
    from timm.data import resolve_data_config

    args = {"input_size": (3, input_size, input_size)} if input_size else {}
    cfg = resolve_data_config(args, model=model)
    labels = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    known.setdefault("label_names", tuple(labels) if labels else None)
    known.setdefault("num_classes", getattr(model, "num_classes", None))
    return Preprocess(
        input_size=int(cfg["input_size"][-1]),
        crop_pct=float(cfg.get("crop_pct") or 0.875),
        interpolation=str(cfg["interpolation"]),
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        crop_mode=str(cfg.get("crop_mode") or "center"),
        **known,
    )


def sidecar_path(model_file: str | os.PathLike) -> Path:
    """Where the preprocessing of ``model_file`` lives: ``<model_file>.preprocess.json``."""
    path = Path(model_file)
    return path.with_name(path.name + SUFFIX)


def render(preprocess: Preprocess, model_file: str | os.PathLike) -> bytes:
    """The sidecar's bytes for ``model_file`` (written by the export beside its file)."""
    import json

    doc = preprocess.to_json(Path(model_file).name)
    return (json.dumps(doc, indent=2) + "\n").encode()


def write_preprocess(
    model_file: str | os.PathLike, preprocess: Preprocess, overwrite: bool = False
) -> Path:
    """Write ``<model_file>.preprocess.json`` (staged, never through a link); returns its path."""
    from fbnetv3_zoo.files.outputs import staged_file

    path = sidecar_path(model_file)
    with staged_file(path, overwrite) as tmp:
        tmp.write_bytes(render(preprocess, model_file))
    return path


def for_export(
    model: nn.Module,
    size: int,
    preprocess: Preprocess | None,
    out: str | os.PathLike,
    overwrite: bool = False,
) -> Preprocess:
    """The transform an export at ``size`` to ``out`` writes beside it: ``preprocess`` (a
    training run's, say), else the model's pretrained config's.  Refused in one line, before
    any work, when the sizes disagree or the sidecar exists and may not be replaced."""
    from fbnetv3_zoo.files.outputs import check_file_output

    check_file_output(sidecar_path(out), overwrite)
    if preprocess is None:
        return from_model(model, size)
    if preprocess.input_size != size:
        raise UserError(
            f"the preprocessing's input size {preprocess.input_size} differs from the export's "
            f"{size}; pass the same size to both"
        )
    return preprocess


def read_preprocess(path: str | os.PathLike) -> Preprocess:
    """A sidecar read back as untrusted input: every field checked, errors name the file."""
    path = Path(path)
    doc = read_json(path, MAX_BYTES)
    if json_field(doc, "kind", str, path) != KIND:
        raise UntrustedFileError(f"{path}: field 'kind' is not {KIND!r}; refusing to use it")
    size = json_field(doc, "input_size", list, path)
    if len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size):
        raise UntrustedFileError(f"{path}: field 'input_size' must be [3, H, W] of positive ints")
    evaluation = {**doc, "input_size": size[-1]}
    labels = doc.get("label_names")
    if labels is not None and not (
        isinstance(labels, list) and all(isinstance(x, str) for x in labels)
    ):
        raise UntrustedFileError(f"{path}: field 'label_names' must be a list of strings")
    result = from_evaluation(
        evaluation,
        str(json_field(doc, "source", str, path)),
        num_classes=doc.get("num_classes"),
        label_names=tuple(labels) if labels is not None else None,
    )
    _check(result, path)
    return result


def _check(p: Preprocess, path: Path) -> None:
    """Refuse values timm's transform cannot use, naming the field and what is accepted."""
    problems = []
    if not 0 < p.crop_pct <= 1:
        problems.append(f"'crop_pct' {p.crop_pct} (accepted: 0 < crop_pct <= 1)")
    if p.interpolation not in INTERPOLATIONS:
        problems.append(
            f"'interpolation' {p.interpolation!r} (accepted: {', '.join(INTERPOLATIONS)})"
        )
    if p.crop_mode not in CROP_MODES:
        problems.append(f"'crop_mode' {p.crop_mode!r} (accepted: {', '.join(CROP_MODES)})")
    if len(p.mean) != 3 or len(p.std) != 3 or not all(s > 0 for s in p.std):
        problems.append("'mean'/'std' (accepted: three numbers each, std > 0)")
    for key in ("num_classes", "image_resolution"):
        value = getattr(p, key)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            problems.append(f"{key!r} {value!r} (accepted: a positive integer or null)")
    if problems:
        raise UntrustedFileError(f"{path}: field {problems[0]}; refusing to use it")


def preprocess_beside(model_file: str | os.PathLike) -> Preprocess | None:
    """The sidecar of ``model_file`` when there is one (None when absent)."""
    path = sidecar_path(model_file)
    return read_preprocess(path) if os.path.lexists(path) else None


def require_preprocess(preprocess: Preprocess | None, what: str) -> Preprocess:
    """``preprocess``, or one line saying ``what`` was exported without its sidecar."""
    if preprocess is None:
        raise UserError(
            f"{what} has no {SUFFIX} beside it (exported before exports wrote one?): export "
            "it again, or build the input tensor yourself"
        )
    return preprocess
