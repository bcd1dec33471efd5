"""ONNX export of detectors and segmenters, verified through ONNX Runtime before it counts.

Beside ``export.py``'s classifier path, for what detection models do differently:

* torchvision's detectors resize and normalise inside the model, so the file
  takes one image (3xHxW, values in [0, 1]) of the fixed size it was traced at;
* the number of detections varies, and detections of equal score may come in
  another order, so outputs are matched as sets (same count; each eager
  detection paired with an ONNX one of the same label and nearest box), then
  boxes, scores and masks are compared within tolerances.

Segmenters return ``{"out": logits}``; their logits go through ``export_onnx``
unchanged (the one ONNX path: dynamic batch, relative parity check).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fbnetv3_zoo.deploy.export import (
    CHECK_SEED,
    DEFAULT_OPSET,
    ExportResult,
    check_opset,
    export_onnx,
    write_onnx,
)
from fbnetv3_zoo.files.outputs import staged_file

__all__ = [
    "DetectionExportResult",
    "export_detector_onnx",
    "export_segmenter_onnx",
    "match_detections",
]

BOX_RTOL = 1e-4  # of the image's longer side
SCORE_ATOL = 1e-4
MASK_ATOL = 1e-3  # mask probabilities, pasted with bilinear interpolation


@dataclass(frozen=True)
class DetectionExportResult:
    """What was written and how closely ONNX Runtime's detections match eager PyTorch's."""

    path: Path
    image_size: tuple[int, int]
    detections: int
    max_box_diff: float
    max_score_diff: float
    max_mask_diff: float | None
    seconds: float

    def summary(self) -> str:
        masks = "" if self.max_mask_diff is None else f", masks {self.max_mask_diff:.1e}"
        h, w = self.image_size
        return (
            f"wrote {self.path} (onnx, one image 3x{h}x{w}) in {self.seconds:.1f}s; ONNX Runtime "
            f"vs PyTorch eager: {self.detections} detections, max diff boxes "
            f"{self.max_box_diff:.1e} px, scores {self.max_score_diff:.1e}{masks}"
        )


class _OneImage(nn.Module):
    """The detector on one image, its output dict as a tuple (ONNX graphs return tensors)."""

    def __init__(self, model: nn.Module, keys: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.keys = keys

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model([image])[0]
        return tuple(out[k] for k in self.keys)


class _Logits(nn.Module):
    """A segmenter's ``out`` logits alone."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def _keys(model: nn.Module) -> tuple[str, ...]:
    heads = getattr(model, "roi_heads", None)
    masks = heads is not None and heads.has_mask()
    return ("boxes", "labels", "scores", *(("masks",) if masks else ()))


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    from fbnetv3_zoo.errors import UserError

    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 32 for s in size):
        raise UserError(f"image size must be an int or (height, width) >= 32, got {image_size!r}")
    return size  # type: ignore[return-value]


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    """A seeded image-like input: smooth blobs plus noise, values in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(h // 16, 1), max(w // 16, 1), generator=g)
    smooth = nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")[0]
    return (0.8 * smooth + 0.2 * torch.rand(3, h, w, generator=g)).clamp(0, 1)


def _write(
    wrapper: nn.Module, image: torch.Tensor, dest: Path, keys: tuple[str, ...], opset: int
) -> None:
    """Through the package's one ONNX writer; the number of detections is the free axis."""
    axes = {k: {0: "detections"} for k in keys}
    write_onnx(
        wrapper, image, dest, opset, input_name="image", output_names=keys, dynamic_axes=axes
    )


def _run(path: Path, image: torch.Tensor, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    from fbnetv3_zoo.optional import require

    ort = require("onnxruntime", "checking an ONNX export")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the mask-pasting loop logs a shape note per detection
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image.numpy()})
    return {k: torch.from_numpy(v) for k, v in zip(keys, got, strict=True)}


def export_detector_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    image_size: int | tuple[int, int],
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
) -> DetectionExportResult:
    """Export a torchvision detector (boxes, labels, scores, + masks) at a fixed image size;
    traced on one seeded image, verified (onnx.checker, ONNX Runtime) on another; a failed
    check writes nothing."""
    from fbnetv3_zoo.optional import require

    onnx = require("onnx", "ONNX export")
    check_opset(opset)
    start = time.perf_counter()
    h, w = _size(image_size)
    keys = _keys(model)
    wrapper = _OneImage(model.eval(), keys).eval()
    traced, check = (_image(h, w, CHECK_SEED + i) for i in range(2))  # another image checks
    with torch.no_grad():
        want = dict(zip(keys, wrapper(check), strict=True))
    with staged_file(Path(out), overwrite) as tmp:
        _write(wrapper, traced, tmp, keys, opset)
        onnx.checker.check_model(str(tmp), full_check=True)
        diffs = match_detections(_run(tmp, check, keys), want, max(h, w))
    return DetectionExportResult(
        Path(out), (h, w), len(want["scores"]), *diffs, time.perf_counter() - start
    )


def match_detections(
    got: dict[str, torch.Tensor], want: dict[str, torch.Tensor], side: int
) -> tuple[float, float, float | None]:
    """Max (box, score, mask) differences after pairing ``got`` with ``want`` as sets.

    Each eager detection, best first, takes the unpaired one of the same label with
    the nearest box.  Raises ValueError naming what differs beyond the tolerances.
    """
    n, m = len(want["scores"]), len(got["scores"])
    if n != m:
        raise ValueError(f"ONNX Runtime found {m} detections, PyTorch eager {n}")
    if n == 0:
        return 0.0, 0.0, None if "masks" not in want else 0.0
    dist = torch.cdist(want["boxes"].double(), got["boxes"].double(), p=float("inf"))
    dist[want["labels"][:, None] != got["labels"][None, :]] = float("inf")
    order = []
    for i in range(n):
        j = int(torch.argmin(dist[i]))
        if not torch.isfinite(dist[i, j]):
            raise ValueError(
                f"eager detection {i} (label {int(want['labels'][i])}) has no ONNX match"
            )
        order.append(j)
        dist[:, j] = float("inf")
    pick = torch.tensor(order)
    box = float((got["boxes"][pick] - want["boxes"]).abs().max())
    score = float((got["scores"][pick] - want["scores"]).abs().max())
    mask = None if "masks" not in want else float((got["masks"][pick] - want["masks"]).abs().max())
    for what, diff, tol in (
        ("boxes", box, BOX_RTOL * side),
        ("scores", score, SCORE_ATOL),
        ("masks", mask, MASK_ATOL),
    ):
        if diff is not None and not diff <= tol:  # also catches NaN
            raise ValueError(
                f"ONNX Runtime {what} differ from PyTorch eager by {diff:.3e} (tolerance {tol:.1e})"
            )
    return box, score, mask


def export_segmenter_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    input_size: int,
    opset: int = DEFAULT_OPSET,
    overwrite: bool = False,
) -> ExportResult:
    """Export a segmenter's ``out`` logits through ``export_onnx`` (dynamic batch, verified)."""
    return export_onnx(
        _Logits(model.eval()).eval(), out, input_size, opset=opset, overwrite=overwrite
    )
