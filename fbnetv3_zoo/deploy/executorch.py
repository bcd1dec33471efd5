"""ExecuTorch export (``.pte`` for the XNNPACK delegate), fp32 or int8, verified before it counts.

PyTorch Mobile's TorchScript route, which the FBNet authors shipped, has been
replaced by ExecuTorch.  The standard route is used as is: ``torch.export``,
then ``to_edge_transform_and_lower`` with the XNNPACK partitioner, then
``to_executorch``; for int8, PT2E post-training quantisation with
ExecuTorch's ``XNNPACKQuantizer`` (symmetric, per-channel weights) calibrated
on real images first.

Verification runs the written program through the ExecuTorch runtime's
Python bindings, one image at a time (the program has a static batch of 1,
as phone deployments use), against the matching eager model: the fp32 model
for fp32, and the quantised eager module for int8 (so the check tests the
lowering, with the same tolerance as the other formats).  What int8 costs in
accuracy is a separate, measured number (:func:`int8_accuracy`), not a
tolerance.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fbnetv3_zoo.deploy.export import (
    DEFAULT_RTOL,
    ExportResult,
    _check_input,
    _reference,
    check_close,
)
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.outputs import staged_file
from fbnetv3_zoo.optional import install_hint, require

if TYPE_CHECKING:
    from fbnetv3_zoo.deploy.preprocess import Preprocess

INSTALL_HINT = install_hint("mobile")
QUANTIZE = ("int8",)
CALIBRATION_IMAGES = 64  # PT2E observers settle well before this on these networks
# XNNPACK's int8 kernels round (requantise) at each layer where the eager reference only
# simulates quantisation in float, so the two differ by about a quantisation step per layer:
# int8 parity is checked at this fraction of the output scale (fp32 uses --rtol).
INT8_RTOL = 0.05


def require_executorch(what: str = "--format executorch") -> None:
    """Refuse in one line, naming ``what`` asked for ExecuTorch, when the extra is missing."""
    require("executorch.exir", what)
    require("executorch.runtime", what)


def lower(module: nn.Module, example: torch.Tensor) -> bytes:
    """``module`` (eager or PT2E-quantised) as an ExecuTorch program delegated to XNNPACK."""
    partitioner = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", "lowering")
    to_edge_transform_and_lower = require("executorch.exir", "lowering").to_edge_transform_and_lower

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (example,))
        edge = to_edge_transform_and_lower(program, partitioner=[partitioner.XnnpackPartitioner()])
        return edge.to_executorch().buffer


def quantize_int8(model: nn.Module, calibration: Iterable[torch.Tensor], size: int) -> nn.Module:
    """PT2E int8 (symmetric, per-channel) calibrated on ``calibration`` batches."""
    xnnpack = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", "--quantize")
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "--quantize")

    quantizer = xnnpack.XNNPACKQuantizer().set_global(
        xnnpack.get_symmetric_quantization_config(is_per_channel=True)
    )
    example = torch.zeros(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = torch.export.export(model.eval(), (example,)).module()
        prepared = pt2e.prepare_pt2e(graph, quantizer)
        seen = 0
        with torch.no_grad():
            for batch in calibration:
                prepared(batch)
                seen += len(batch)
        if seen == 0:
            raise UserError("int8 calibration got no images")
        return pt2e.convert_pt2e(prepared)


class PteProgram:
    """A ``.pte`` file loaded by the ExecuTorch runtime; call it with a batch of images.

    ``preprocess`` is the transform its export was checked with (the
    ``<file>.preprocess.json`` beside it, None when there is none);
    :meth:`classify` applies it to a PIL image or an array.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from fbnetv3_zoo.deploy.preprocess import preprocess_beside

        runtime = require("executorch.runtime", "PteProgram").Runtime
        self.program = runtime.get().load_program(Path(path))  # kept: the method runs from it
        self.method = self.program.load_method("forward")
        self.preprocess = preprocess_beside(path)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Run image by image (the program's batch is 1) and stack the outputs."""
        return torch.cat([self.method.execute([x[None].contiguous()])[0] for x in images])

    def classify(self, image: Any) -> torch.Tensor:
        """The logits of one PIL image or uint8 array, preprocessed by the sidecar JSON."""
        from fbnetv3_zoo.deploy.preprocess import require_preprocess

        return self(require_preprocess(self.preprocess, "the .pte file").to_input(image))[0]


def export_executorch(
    model: nn.Module,
    out: str | os.PathLike,
    input_size: int,
    quantize: str | None = None,
    calibration: Iterable[torch.Tensor] | None = None,
    rtol: float = DEFAULT_RTOL,
    check_batch: int = 3,
    overwrite: bool = False,
    on_miss: Callable[[str], None] | None = None,
    preprocess: Preprocess | None = None,
) -> ExportResult:
    """Lower ``model`` to an XNNPACK ``.pte`` (int8 if ``quantize``), verify it, move it into place.

    A program that misses the parity check is refused (ValueError, nothing
    written), unless ``on_miss`` is given: it then gets the check's message and
    the program is kept, for callers that only time it.  ``<out>.preprocess.json``
    goes beside it (``preprocess``, else the model's pretrained config's).
    """
    from fbnetv3_zoo.deploy.preprocess import for_export, write_preprocess

    require_executorch()
    preprocess = for_export(model, input_size, preprocess, out, overwrite)
    if quantize not in (None, *QUANTIZE):
        raise UserError(f"--quantize {quantize!r}: choose one of {', '.join(QUANTIZE)}")
    if quantize and calibration is None:
        raise UserError("--quantize int8 needs --calibration (digits, or an ImageFolder)")
    start = time.perf_counter()
    model = model.eval()
    x = _check_input(check_batch, input_size)
    reference = model
    if quantize:
        reference = quantize_int8(model, calibration or [], input_size)
    want = _reference(reference, x)
    with staged_file(Path(out), overwrite) as tmp:
        tmp.write_bytes(lower(reference, x[:1]))
        got = PteProgram(tmp)(x)
        try:
            diff = check_close(got, want, max(rtol, INT8_RTOL) if quantize else rtol, "ExecuTorch")
        except ValueError as err:
            if on_miss is None:
                raise
            on_miss(str(err))
            diff = float((got - want).abs().max())
    write_preprocess(out, preprocess, overwrite)
    fmt = "executorch-int8" if quantize else "executorch"
    return ExportResult.checked(out, fmt, input_size, False, diff, want, check_batch, start)


def eval_images(
    data: str,
    model: nn.Module,
    size: int,
    split: str,
    limit: int | None = None,
    preprocess: Preprocess | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(images, labels) batches of ``data``'s ``split`` under ``preprocess``.

    ``preprocess`` is the transform the model is evaluated with (a training
    run's, see ``fbnetv3_zoo.deploy.preprocess``); None is the model's
    pretrained config's at ``size``.
    """
    from fbnetv3_zoo.data import load_data
    from fbnetv3_zoo.deploy.preprocess import from_model

    preprocess = preprocess or from_model(model, size)
    splits = load_data(data, None, train=split == "train")
    image_size = preprocess.image_resolution or preprocess.input_size
    splits.set_transforms(preprocess.transform, preprocess.transform, image_size)
    dataset = splits.train if split == "train" else splits.val
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, count, 16):
        items = [dataset[i] for i in range(start, min(start + 16, count))]
        items = [item for item in items if isinstance(item, tuple)]  # unreadable files skipped
        if items:
            yield torch.stack([i[0] for i in items]), torch.tensor([i[1] for i in items])


def calibration_batches(
    data: str, model: nn.Module, size: int, preprocess: Preprocess | None = None
) -> list[torch.Tensor]:
    """The first ``CALIBRATION_IMAGES`` training images of ``data`` (seeded split), as batches,
    under the transform the model is evaluated with (``eval_images``)."""
    batches = eval_images(data, model, size, "train", CALIBRATION_IMAGES, preprocess)
    return [images for images, _ in batches]


def int8_accuracy(
    model: nn.Module,
    pte: str | os.PathLike,
    data: str,
    size: int,
    preprocess: Preprocess | None = None,
) -> dict[str, Any]:
    """Top-1 of fp32 eager and of the int8 program on ``data``'s validation split, and agreement,
    under ``preprocess`` (``eval_images``)."""
    program = PteProgram(pte)
    images = fp32 = int8 = agree = 0
    with torch.no_grad():
        for x, y in eval_images(data, model, size, "val", preprocess=preprocess):
            a, b = model(x).argmax(1), program(x).argmax(1)
            images += len(y)
            fp32 += int((a == y).sum())
            int8 += int((b == y).sum())
            agree += int((a == b).sum())
    if images == 0:
        raise UserError(f"{data}: no readable validation image to measure int8 accuracy on")
    return dict(
        images=images,
        top1_fp32=100 * fp32 / images,
        top1_int8=100 * int8 / images,
        agreement=100 * agree / images,
    )
