"""The one registry of runtimes a model can be timed on.

``fbnetv3 benchmark`` (one column per backend), the per-block latency tables
and the ``latency_ms<=X@BACKEND`` constraints all read this table; a new
backend is one ``Backend`` entry here plus its runner factory in
``runners.py``.  Kept free of torch so that the command-line parsers can list
the choices without loading it: a factory is named as ``"module:function"``
and imported when it is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fbnetv3_zoo.errors import UserError

__all__ = [
    "ALIASES",
    "BACKENDS",
    "BENCH_BACKENDS",
    "DEFAULT_BENCH_BACKENDS",
    "LATENCY_BACKENDS",
    "Backend",
    "backend",
]

_RUNNERS = "fbnetv3_zoo.deploy.runners"


@dataclass(frozen=True)
class Backend:
    """A runtime: its name, one line saying what runs, how to build a runner, which clock reads it.

    ``factory`` is ``"module:function"``; the function takes ``(model, example,
    settings)`` (see ``runners.RunnerSettings``) and returns a callable on an
    input batch, or None where the backend does not apply to the model.
    ``latency``: usable for per-block latency tables and constraints;
    ``benchmark``: a column of ``fbnetv3 benchmark``, ``default`` among its
    default columns; ``wall_clock``: its work leaves the calling thread (a GPU),
    so it is read on the wall clock even with one thread.  ``entry_s``: rough seconds to
    measure one latency-table entry on a small busy machine (ExecuTorch lowers each entry
    first), only for the message that says how long a table build will take.
    """

    name: str
    note: str
    factory: str
    latency: bool = False
    benchmark: bool = True
    default: bool = True
    wall_clock: bool = False
    entry_s: float = 0.0

    def runner_factory(self) -> Callable[..., Any]:
        module, _, function = self.factory.partition(":")
        return getattr(importlib.import_module(module), function)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", "PyTorch eager", f"{_RUNNERS}:eager", latency=True, entry_s=0.12),
        Backend("fused", "eager after `fuse_bn` (zoo models only)", f"{_RUNNERS}:fused"),
        Backend("channels_last", "eager in NHWC memory format", f"{_RUNNERS}:channels_last"),
        Backend("compile", "`torch.compile(dynamic=False)` (inductor)", f"{_RUNNERS}:compiled"),
        Backend(
            "onnxruntime",
            "ONNX Runtime CPU on the package's ONNX export, checked against eager",
            f"{_RUNNERS}:onnxruntime",
            latency=True,
            entry_s=0.3,
        ),
        Backend(
            "executorch",
            "ExecuTorch XNNPACK fp32 program (checked against eager; batch-1 program, a batch "
            "runs image by image as on a phone; its thread pool set to the same thread count)",
            f"{_RUNNERS}:executorch",
            latency=True,
            entry_s=2.0,
            default=False,  # lowering takes minutes per model and needs the [mobile] extra
        ),
        Backend(
            "executorch-int8",
            "as `executorch`, int8 (PT2E, XNNPACKQuantizer) calibrated on 8 seeded random "
            "batches (latency only: benchmarks/on_device.py measures accuracy; a program that "
            "misses its parity check on these random weights is timed and noted)",
            f"{_RUNNERS}:executorch_int8",
            default=False,
        ),
        Backend(
            "cuda",
            "PyTorch eager on the GPU, synchronised after each call",
            f"{_RUNNERS}:cuda",
            latency=True,
            entry_s=0.1,
            default=False,
            wall_clock=True,
        ),
    )
}
# earlier names of the same runtimes, still accepted wherever a backend is named
ALIASES = {"eager": "torch", "onnx": "onnxruntime"}
LATENCY_BACKENDS = tuple(n for n, b in BACKENDS.items() if b.latency)
BENCH_BACKENDS = tuple(n for n, b in BACKENDS.items() if b.benchmark)
DEFAULT_BENCH_BACKENDS = tuple(n for n, b in BACKENDS.items() if b.benchmark and b.default)


def backend(name: str, use: str = "benchmark") -> Backend:
    """The registry entry for ``name`` (an alias is accepted) that serves ``use``.

    ``use`` is ``"benchmark"`` or ``"latency"``; an unknown or unsuitable name
    is one error listing the names that serve it.
    """
    entry = BACKENDS.get(ALIASES.get(name, name))
    if entry is None or not getattr(entry, use):
        names = LATENCY_BACKENDS if use == "latency" else BENCH_BACKENDS
        what = "latency backend" if use == "latency" else "backend"
        raise UserError(f"unknown {what} {name!r}; choose from {', '.join(names)}")
    return entry
