"""Runner factories, one per backend of ``runtimes.BACKENDS``.

A factory turns a model and an example input into a callable on an input
batch, ready to be timed by ``fbnetv3_zoo.latency.timing`` (the benchmark
calls it with several batch sizes, a latency table with the example itself).
Every runner runs without autograd; exported programs are checked against
eager on the example before they are timed, so a wrong program is never timed.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

Runner = Callable[[torch.Tensor], Any]

# the timing check's tolerance: max |program - eager| / max |eager| (exports check at 1e-4)
TIMING_RTOL = 1e-2


@dataclass
class RunnerSettings:
    """What a factory needs besides the model: threads, a scratch folder, where notes go.

    ``fixed_shape``: the runner only ever sees the example's shape (a latency
    table), so exported programs may specialise on it; otherwise the batch
    axis stays free (the benchmark's batch sizes).  ``workdir``: where exported
    programs go; None makes a temporary folder on first use (only the backends
    that write a file ask for one), removed when these settings are dropped.
    """

    threads: int
    workdir: Path | None = None
    notes: list[str] = field(default_factory=list)
    fixed_shape: bool = False
    _temporary: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def scratch(self) -> Path:
        """The folder for this runner's files (made on first use when none was given)."""
        if self.workdir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="fbnetv3-runner-")
            self.workdir = Path(self._temporary.name)
        return self.workdir


def _no_grad(module: Callable[[torch.Tensor], Any]) -> Runner:
    def call(x: torch.Tensor) -> Any:
        with torch.no_grad():
            return module(x)

    return call


def eager(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """The model as it is (set torch's thread count around the timing)."""
    return _no_grad(model.eval())


def fused(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner | None:
    """Eager after folding BatchNorm into the convolutions; None when there is nothing to fold."""
    from fbnetv3_zoo.models.fuse import fuse_bn

    folded = fuse_bn(model.eval())
    if sum(1 for _ in folded.modules()) >= sum(1 for _ in model.modules()):
        return None
    return _no_grad(folded)


def channels_last(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """Eager in NHWC memory format, inputs converted on the way in."""
    nhwc = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    return _no_grad(lambda x: nhwc(x.contiguous(memory_format=torch.channels_last)))


def compiled(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """``torch.compile(dynamic=False)``: inductor compiles on the first call (the warm-up)."""
    return _no_grad(torch.compile(model.eval(), dynamic=False))


def onnxruntime(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """ONNX Runtime's CPU provider on the package's one ONNX export (``write_onnx``)."""
    from fbnetv3_zoo.deploy.export import write_onnx

    path = settings.scratch() / "model.onnx"
    write_onnx(model, example, path, dynamic_batch=not settings.fixed_shape)
    session = ort_session(str(path), settings.threads)

    def call(x: torch.Tensor) -> Any:
        return session.run(None, {"input": x.numpy()})

    _check(lambda x: torch.from_numpy(call(x)[0]), model, example, "ONNX Runtime")
    return call


def executorch(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """An XNNPACK fp32 program of batch 1, run image by image, on ``threads`` threads."""
    from fbnetv3_zoo.optional import require

    portable = require("executorch.extension.pybindings.portable_lib", "timing on executorch")

    from fbnetv3_zoo.deploy.executorch import PteProgram, lower, require_executorch

    require_executorch("timing on executorch")
    portable._unsafe_reset_threadpool(settings.threads)
    path = settings.scratch() / "model.pte"
    path.write_bytes(lower(model.eval(), example[:1].contiguous()))
    program = PteProgram(path)
    _check(program, model, example, "ExecuTorch")
    return program


def executorch_int8(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """The int8 program (calibrated on 8 seeded random batches); timed even if its check misses.

    Its speed does not depend on the weights, and random weights (tiny or huge
    logits, calibration on noise) can miss a check that trained ones pass: the
    miss becomes a note instead.
    """
    from fbnetv3_zoo.optional import require

    portable = require("executorch.extension.pybindings.portable_lib", "timing on executorch")

    from fbnetv3_zoo.deploy.executorch import PteProgram, export_executorch

    portable._unsafe_reset_threadpool(settings.threads)
    size = example.shape[-1]
    calibration = [
        torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(i)) for i in range(8)
    ]
    path = settings.scratch() / "int8.pte"
    export_executorch(
        model,
        path,
        size,
        quantize="int8",
        calibration=calibration,
        on_miss=lambda miss: settings.notes.append(
            f"executorch-int8: timed, but on these random weights {miss}"
        ),
    )
    return PteProgram(path)


def cuda(model: nn.Module, example: torch.Tensor, settings: RunnerSettings) -> Runner:
    """Eager on the GPU, waiting for its kernels (``synchronize``) before returning."""
    if not torch.cuda.is_available():
        from fbnetv3_zoo.errors import UserError

        raise UserError("timing on cuda needs a CUDA GPU and this machine has none")
    on_gpu = copy.deepcopy(model).eval().to("cuda")

    def call(x: torch.Tensor) -> Any:
        with torch.no_grad():
            out = on_gpu(x.to("cuda", non_blocking=True))
        torch.cuda.synchronize()
        return out

    return call


def ort_session(model: str | bytes, threads: int) -> Any:
    """An ONNX Runtime CPU session as every timing here uses it: every graph optimisation,
    ``threads`` intra-op threads and one inter-op thread (``model``: a path or the bytes)."""
    from fbnetv3_zoo.optional import require

    ort = require("onnxruntime", "timing on onnxruntime")

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _check(run: Runner, model: nn.Module, example: torch.Tensor, engine: str) -> None:
    """Refuse to time a program whose output on ``example`` differs from eager's."""
    from fbnetv3_zoo.deploy.export import check_close

    with torch.no_grad():
        want = model.eval()(example)
        check_close(run(example), want, TIMING_RTOL, engine)


def make_runner(
    name: str, model: nn.Module, example: torch.Tensor, settings: RunnerSettings, use: str
) -> Runner | None:
    """The runner of backend ``name`` (an alias is accepted) for ``use`` (benchmark or latency)."""
    from fbnetv3_zoo.deploy.runtimes import backend

    return backend(name, use).runner_factory()(model, example, settings)
