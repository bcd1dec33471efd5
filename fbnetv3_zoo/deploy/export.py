"""ONNX and TorchScript export that is verified before it counts as done.

An exported file is only useful if it computes what the PyTorch model
computes, so every export is written to a temporary file next to the target,
checked (``onnx.checker`` and ONNX Runtime, or ``torch.jit.load``) against
eager PyTorch on a seeded, image-like batch, and only then moved into place.
A failed export leaves nothing behind.

The check is relative to the size of the outputs (max |logit|): an absolute
tolerance would pass anything on a model whose outputs are all near zero, as
freshly initialised ones are.  Exports of random weights therefore draw BN
statistics and the classifier from a seed (:func:`randomize_weights_`) so
that the check sees outputs of the scale a trained network gives.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fbnetv3_zoo.files.outputs import staged_file
from fbnetv3_zoo.models.fuse import fuse_bn
from fbnetv3_zoo.models.spec import ArchSpec
from fbnetv3_zoo.models.stats import check_forward_cost

if TYPE_CHECKING:
    from fbnetv3_zoo.deploy.preprocess import Preprocess

__all__ = [
    "FORMATS",
    "ExportResult",
    "export_model",
    "export_onnx",
    "write_onnx",
    "export_torchscript",
    "load_model",
    "model_input_size",
    "randomize_weights_",
]

FORMATS = ("onnx", "torchscript")
ENGINES = {"onnx": "ONNX Runtime", "torchscript": "TorchScript"}
DEFAULT_OPSET = 17
MIN_OPSET = 17  # the oldest opset these exports are tested with
DEFAULT_RTOL = 1e-4  # max |export - eager| / max |eager|
CHECK_SEED = 0


@dataclass(frozen=True)
class ExportResult:
    """What was written and how closely it matches eager PyTorch."""

    path: Path
    format: str
    input_size: int
    fused: bool
    max_abs_diff: float
    output_scale: float  # max |eager output|, to judge max_abs_diff against
    check_batch: int
    seconds: float

    @property
    def max_rel_diff(self) -> float:
        """``max_abs_diff`` relative to the largest eager output."""
        return _relative(self.max_abs_diff, self.output_scale)

    @classmethod
    def checked(
        cls,
        out: str | os.PathLike,
        format: str,
        input_size: int,
        fused: bool,
        diff: float,
        want: torch.Tensor,
        check_batch: int,
        start: float,
    ) -> ExportResult:
        """The result of an export verified against eager outputs ``want``, timed from ``start``."""
        scale = float(want.abs().max())
        return cls(
            Path(out),
            format,
            input_size,
            fused,
            diff,
            scale,
            check_batch,
            time.perf_counter() - start,
        )

    def summary(self) -> str:
        engine = ENGINES.get(self.format, "ExecuTorch runtime")
        static = self.format.startswith("executorch")
        batch = "batch 1, XNNPACK" if static else "dynamic batch"
        eager = "the int8 eager module" if self.format.endswith("int8") else "PyTorch eager"
        return (
            f"wrote {self.path} ({self.format}, input Nx3x{self.input_size}x{self.input_size}, "
            f"{batch}, BN {'folded' if self.fused else 'kept'}) in {self.seconds:.1f}s; "
            f"{engine} vs {eager} on {self.check_batch} images: "
            f"max abs diff {self.max_abs_diff:.2e} (outputs up to {self.output_scale:.2e}, "
            f"relative {self.max_rel_diff:.1e})"
        )


def _relative(diff: float, scale: float) -> float:
    if scale > 0:
        return diff / scale
    return 0.0 if diff == 0 else float("inf")


def randomize_weights_(model: nn.Module, seed: int = CHECK_SEED) -> nn.Module:
    """Draw BN statistics/affine and the classifier from ``seed``, in place.

    Freshly initialised networks output values near zero (identity BN, a
    small classifier), which makes any parity check pass; these draws give
    logits of order 1 and non-trivial BN folding, like a trained network.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5, generator=g)
                    m.bias.normal_(0.0, 0.2, generator=g)
        head = model.get_classifier() if hasattr(model, "get_classifier") else None
        if isinstance(head, nn.Linear):
            head.weight.normal_(0.0, 1.0, generator=g)
    return model


def _check_input(batch: int, size: int) -> torch.Tensor:
    """A seeded batch with the statistics of normalised images (zero mean, unit variance)."""
    g = torch.Generator().manual_seed(CHECK_SEED)
    return torch.randn(batch, 3, size, size, generator=g)


def load_model(
    ref: str | os.PathLike,
    pretrained: bool = False,
    checkpoint: str | os.PathLike | None = None,
    num_classes: int | None = None,
) -> nn.Module:
    """Build any model reference (``fbnetv3_zoo.weights.resolve``) in eval mode.

    A ``local-dir:`` folder always brings its weights (that is what it is for);
    ``checkpoint`` is loaded with ``load_weights`` on top of whatever was built.
    ``num_classes`` defaults to a search result's ``num_classes:`` (else 1000),
    the count ``fbnetv3 info`` and ``arch_stats`` use for the same file.
    """
    from fbnetv3_zoo import load_weights
    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.models.spec import check_num_classes
    from fbnetv3_zoo.weights.resolve import parse_ref

    facts = parse_ref(str(ref))
    if facts.brings_weights and num_classes is not None:
        raise UserError(f"{ref}: the folder's config.json sets the class count; drop --num-classes")
    if num_classes is not None:
        check_num_classes(num_classes)
    model = facts.create(pretrained=pretrained or None, num_classes=num_classes)
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.eval()


def model_input_size(model: nn.Module, default: int = 224) -> int:
    """The square input size the model was designed for (from timm's pretrained cfg)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else getattr(cfg, "input_size", None)
    return int(size[-1]) if size else default


def _reference(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def check_close(got: torch.Tensor, want: torch.Tensor, rtol: float, what: str) -> float:
    """The max abs difference of ``got`` from eager's ``want``; raises when it exceeds ``rtol``.

    ``rtol`` is relative to the largest eager output, so one rule serves logits of any
    scale; export, ExecuTorch lowering and the timing runners all refuse a program by it.
    """
    if got.shape != want.shape:
        raise ValueError(f"{what}: output shape {tuple(got.shape)} != eager {tuple(want.shape)}")
    diff = float((got - want).abs().max())
    scale = float(want.abs().max())
    if not _relative(diff, scale) <= rtol:  # also catches NaN
        raise ValueError(
            f"{what}: max abs diff {diff:.3e} vs PyTorch eager (outputs up to {scale:.2e}) "
            f"exceeds {rtol:.0e} of the output scale"
        )
    return diff


def check_opset(opset: int) -> int:
    """The ONNX opset must be one this torch can write and we have tested (raises UserError)."""
    from fbnetv3_zoo.errors import UserError

    newest = _newest_opset()
    if not MIN_OPSET <= opset <= newest:
        raise UserError(f"--opset {opset} is not supported; choose {MIN_OPSET}..{newest}")
    return opset


def _newest_opset() -> int:
    try:
        from torch.onnx._constants import ONNX_MAX_OPSET
    except ImportError:  # a torch without that constant: trust the exporter to complain
        return 99
    return int(ONNX_MAX_OPSET)


def largest_activation(model: nn.Module, input_size: int) -> int | None:
    """Bytes of the largest layer output of one image's eager forward pass (meta device).

    Traced on the meta device, so nothing is allocated: a check that would need
    more memory than the machine has is refused before it starts.  None when
    the model cannot run on the meta device (then no estimate is made).
    """
    import copy

    largest = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal largest
        for t in output if isinstance(output, tuple | list) else (output,):
            if isinstance(t, torch.Tensor):
                largest = max(largest, t.numel() * t.element_size())

    try:
        meta = copy.deepcopy(model).to("meta").eval()
        for module in meta.modules():
            if not list(module.children()):
                module.register_forward_hook(count)
        with torch.no_grad():
            meta(torch.empty(1, 3, input_size, input_size, device="meta"))
    except Exception:  # noqa: BLE001 - an op without a meta kernel: no estimate, no refusal
        return None
    return largest


def available_bytes() -> int:
    """Memory the system can still give (MemAvailable), or 8 GiB where it cannot say."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 << 30


# Peak memory of an export check per image, in largest layer outputs: a layer's input
# and output, a residual, and the runtime's own buffers (fbnetv3_a at 4096 px peaked
# at ~2.3 largest outputs per image with batch 3; 4 leaves room).
CHECK_PEAK_FACTOR = 4


def fit_check_batch(model: nn.Module, input_size: int, wanted: int = 3) -> int:
    """The largest check batch (``wanted``, else 2, else 1) whose check fits in memory.

    At most half of the available memory is planned for; one line refuses an
    input size at which even one image does not fit.
    """
    from fbnetv3_zoo.errors import UserError

    largest = largest_activation(model, input_size)
    if largest is None:
        return wanted
    budget = available_bytes() // 2
    per_image = CHECK_PEAK_FACTOR * largest
    for batch in dict.fromkeys((wanted, 2, 1)):
        if per_image * batch <= budget:
            return batch
    raise UserError(
        f"--input-size {input_size}: checking the export needs about {per_image / 2**30:.1f} "
        f"GiB for one image, more than half of the {2 * budget / 2**30:.1f} GiB this machine "
        "has available; lower --input-size"
    )


def write_onnx(
    module: nn.Module,
    example: torch.Tensor,
    dest: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
    input_name: str = "input",
    output_names: tuple[str, ...] = ("output",),
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> None:
    """The one ONNX writer: ``module`` traced on ``example``, input ``input``, output ``output``.

    ``dynamic_batch`` frees axis 0 of the input and the output; a model with
    other outputs (a detector: ``boxes``, ``scores``, ...) names them and its
    free axes (``dynamic_axes``) instead.

    Every ONNX file of the package comes from here (exports, the ``onnxruntime``
    benchmark and latency backend), so all of them share one exporter and one
    opset.  It uses torch's TorchScript-based exporter (``dynamo=False``), the
    quicker of the two here; these convnets need nothing only the dynamo
    exporter can express.  Not verified here: callers compare ONNX Runtime's
    output with eager's.
    """
    axes = dynamic_axes
    if dynamic_batch:
        axes = {name: {0: "batch"} for name in (input_name, *output_names)}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(dest),
            input_names=[input_name],
            output_names=list(output_names),
            opset_version=opset,
            dynamic_axes=axes,
            dynamo=False,
            external_data=False,
        )


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    input_size: int,
    fold_bn: bool = False,
    opset: int = DEFAULT_OPSET,
    rtol: float = DEFAULT_RTOL,
    check_batch: int = 3,
    overwrite: bool = False,
) -> ExportResult:
    """Export to ONNX with a dynamic batch axis (:func:`write_onnx`), then verify with
    onnx.checker and ONNX Runtime on another batch size than the traced one."""
    from fbnetv3_zoo.optional import require

    onnx = require("onnx", "--format onnx")
    ort = require("onnxruntime", "--format onnx")

    check_opset(opset)
    start = time.perf_counter()
    model = model.eval()
    net = fuse_bn(model) if fold_bn else model
    dummy = torch.zeros(1, 3, input_size, input_size)
    x = _check_input(check_batch, input_size)  # another batch size: tests the axis
    want = _reference(model, x)
    with staged_file(Path(out), overwrite) as tmp:
        write_onnx(net, dummy, tmp, opset, dynamic_batch=True)
        onnx.checker.check_model(str(tmp), full_check=True)
        try:
            session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        except (RuntimeError, MemoryError, ort.capi.onnxruntime_pybind11_state.Fail) as err:
            from fbnetv3_zoo.errors import UserError, first_line

            raise UserError(
                f"ONNX Runtime could not run the exported model at {input_size} px on a batch "
                f"of {check_batch} ({first_line(err)[:200]}); lower --input-size"
            ) from None
        diff = check_close(got, want, rtol, "ONNX Runtime")
    return ExportResult.checked(out, "onnx", input_size, fold_bn, diff, want, check_batch, start)


def export_torchscript(
    model: nn.Module,
    out: str | os.PathLike,
    input_size: int,
    fold_bn: bool = False,
    rtol: float = DEFAULT_RTOL,
    check_batch: int = 3,
    overwrite: bool = False,
) -> ExportResult:
    """Script the model (no tracing: control flow is kept), save, reload and verify."""
    start = time.perf_counter()
    model = model.eval()
    net = fuse_bn(model) if fold_bn else model
    x = _check_input(check_batch, input_size)
    want = _reference(model, x)
    with staged_file(Path(out), overwrite) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            torch.jit.save(torch.jit.script(net), str(tmp))
            loaded = torch.jit.load(str(tmp), map_location="cpu").eval()
        with torch.jit.optimized_execution(False):  # one check run needs no profiling passes
            diff = check_close(_reference(loaded, x), want, rtol, "TorchScript")
    return ExportResult.checked(
        out, "torchscript", input_size, fold_bn, diff, want, check_batch, start
    )


def export_model(
    model: nn.Module,
    out: str | os.PathLike,
    format: str = "onnx",
    input_size: int | None = None,
    fold_bn: bool = False,
    opset: int = DEFAULT_OPSET,
    rtol: float = DEFAULT_RTOL,
    overwrite: bool = False,
    preprocess: Preprocess | None = None,
) -> ExportResult:
    """Export ``model`` in ``format`` (``onnx`` or ``torchscript``), verified; see the two above.

    Beside the file goes ``<out>.preprocess.json``: ``preprocess`` (the eval transform
    the model was measured with, e.g. a training run's), else its pretrained config's.
    """
    from fbnetv3_zoo.deploy.preprocess import for_export, write_preprocess
    from fbnetv3_zoo.errors import UserError
    from fbnetv3_zoo.models.spec import check_input_size

    if format not in FORMATS:
        raise UserError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    size = (
        model_input_size(model)
        if input_size is None
        else check_input_size(input_size, "--input-size")
    )
    arch = getattr(model, "arch", None)
    if hasattr(arch, "final_size") and arch.final_size(size) < 1:
        raise UserError(
            f"--input-size {size} is too small for this network (a feature map vanishes)"
        )
    if isinstance(arch, ArchSpec):
        check_forward_cost(arch, size, batch=3, where="export")  # the check batch is 3
    preprocess = for_export(model, size, preprocess, out, overwrite)
    check_batch = fit_check_batch(model, size)  # before any real allocation
    common = dict(fold_bn=fold_bn, rtol=rtol, check_batch=check_batch, overwrite=overwrite)
    if format == "onnx":
        result = export_onnx(model, out, size, opset=opset, **common)
    else:
        result = export_torchscript(model, out, size, **common)
    write_preprocess(out, preprocess, overwrite)
    return result
