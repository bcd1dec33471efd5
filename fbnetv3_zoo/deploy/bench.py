"""A small CPU timing harness: models x backends x batch sizes -> median seconds.

Used by ``fbnetv3 benchmark``.  ``params`` is the package's one convention
(Conv2d and Linear weights, as ``fbnetv3 models`` and ``info`` count them) for
every model; ``MACs`` is the official analytic count (zoo rows), and two
other counts appear only under names saying what they count: MACs from
forward hooks on Conv2d and Linear (weights x output positions, the same for
every model, so timm's networks compare fairly) and all parameters (BN and
biases included).
The full report (goals, head-to-head runs, machine notes, plot) lives in
``benchmarks/inference.py``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.checks import check_threads
from fbnetv3_zoo.deploy.export import model_input_size
from fbnetv3_zoo.deploy.runners import RunnerSettings, make_runner
from fbnetv3_zoo.deploy.runtimes import (
    BACKENDS,
    BENCH_BACKENDS,
    DEFAULT_BENCH_BACKENDS,
    backend,
)
from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.latency.timing import interleaved_medians  # the one timing layer
from fbnetv3_zoo.models.model import FBNetV3
from fbnetv3_zoo.models.spec import check_input_size
from fbnetv3_zoo.models.stats import arch_stats, check_forward_cost, conv_linear_weights
from fbnetv3_zoo.models.variants import VARIANTS
from fbnetv3_zoo.weights.resolve import ModelRef, parse_ref

__all__ = [
    "ALL_BACKENDS",
    "DEFAULT_BACKENDS",
    "BACKEND_NOTES",
    "DEFAULT_COMPILE_MODELS",
    "DEFAULT_MODELS",
    "BenchRow",
    "BenchSettings",
    "build_model",
    "count_macs",
    "run_benchmark",
]

MAX_BATCH = 4096  # a larger batch is a typo, not a benchmark
# the registry (``deploy/runtimes.py``) names the backends; these are its benchmark view
BACKEND_NOTES = {name: BACKENDS[name].note for name in BENCH_BACKENDS}
ALL_BACKENDS = BENCH_BACKENDS
DEFAULT_BACKENDS = DEFAULT_BENCH_BACKENDS
DEFAULT_MODELS = (
    *VARIANTS,
    "fbnetv3_b@224",
    "fbnetv3_b.ra2_in1k@224",
    "fbnetv3_b.ra2_in1k@256",
    "fbnetv3_d.ra2_in1k@256",
    "fbnetv3_g.ra2_in1k@288",
    "mobilenetv3_large_100@224",
    "efficientnet_b0@224",
)
# torch.compile compiles anew for each model and batch size, which is slow: one model by default
DEFAULT_COMPILE_MODELS = ("fbnetv3_b@224",)


@dataclass(frozen=True)
class BenchSettings:
    """Everything that changes the numbers; printed with the table."""

    batches: tuple[int, ...] = (1, 32)
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    compile_models: tuple[str, ...] = DEFAULT_COMPILE_MODELS
    warmup: int = 2
    repeats: int = 20
    max_seconds: float = 2.0
    threads: int | None = 1  # None: all cores; why 1: benchmarks/results/threads.md

    def __post_init__(self) -> None:
        # registry names (``eager``/``onnx`` are accepted as ``torch``/``onnxruntime``)
        object.__setattr__(self, "backends", tuple(backend(b).name for b in self.backends))
        bad = [b for b in self.batches if not 1 <= b <= MAX_BATCH]
        if bad or not self.batches:
            raise UserError(f"--batch: batch sizes must be in 1..{MAX_BATCH}, got {bad or 'none'}")
        if self.threads is not None:
            check_threads(self.threads, "--threads (0 = all cores)")
        if self.warmup < 0 or self.repeats < 1 or not self.max_seconds > 0:
            raise UserError(
                f"--warmup >= 0, --repeats >= 1 and --max-seconds > 0 are needed, got "
                f"{self.warmup}, {self.repeats}, {self.max_seconds}"
            )

    @property
    def num_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass
class BenchRow:
    """One model at one input size; ``cells[(backend, batch)]`` is the median seconds or None."""

    model: str
    input_size: int
    params: int  # Conv2d + Linear weights: the official convention, any model
    macs: int  # hook-counted Conv2d + Linear MACs, per image (every model alike)
    official_macs: int | None = None  # zoo only: analytic, official convention
    all_params: int | None = None  # every parameter (BN and biases included)
    top1: float | None = None
    top1_source: str = ""
    cells: dict[tuple[str, int], float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.model.split("@")[0]

    def latency_ms(self, backend: str, batch: int = 1) -> float | None:
        sec = self.cells.get((backend, batch))
        return None if sec is None else sec * 1e3

    def throughput(self, backend: str, batch: int) -> float | None:
        sec = self.cells.get((backend, batch))
        return None if sec is None else batch / sec


def _parse_name(name: str) -> tuple[ModelRef, int | None]:
    """``NAME[@SIZE]``: the resolved reference and the size asked for, checked before any timing."""
    base, _, size = name.partition("@")
    if size and not size.isdigit():
        raise UserError(f"bad input size in {name!r}: expected NAME@SIZE with an integer SIZE")
    if size:
        check_input_size(int(size), f"input size of {name!r}")
    return parse_ref(base), int(size) if size else None


def build_model(name: str) -> tuple[nn.Module, int]:
    """Build ``NAME[@SIZE]`` (any reference ``fbnetv3_zoo.weights.resolve`` takes) in eval mode.

    Random weights (a folder's own ones); a search result keeps its class count.
    Returns the model and its input size (``@SIZE``, else the test size of its config).
    """
    facts, size = _parse_name(name)
    model = facts.create().eval()
    if size:
        return model, size
    cfg = getattr(model, "pretrained_cfg", None) or {}
    test = cfg.get("test_input_size") if isinstance(cfg, dict) else None
    return model, int(test[-1]) if test else model_input_size(model)


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates per image of every Conv2d and Linear, via forward hooks.

    Works for any model; counts weights x output positions (biases, norms,
    activations and pools are not counted).
    """
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            positions = output.shape[-2] * output.shape[-1]
        else:
            positions = output.numel() // output.shape[-1]
        total += module.weight.numel() * positions

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, input_size, input_size))
    finally:
        for h in handles:
            h.remove()
    return total


def _wants_compile(name: str, settings: BenchSettings) -> bool:
    return "all" in settings.compile_models or name in settings.compile_models


def run_benchmark(
    models: Iterable[str],
    settings: BenchSettings | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[BenchRow]:
    """Measure every model on every backend and batch size; failures become None (n/a)."""
    settings = settings or BenchSettings()
    models = list(models)
    if not models:
        raise UserError("no models to benchmark")
    for name in models:
        _parse_name(name)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads)
    try:
        return [_bench_one(name, settings, log) for name in models]
    finally:
        torch.set_num_threads(threads_before)


def model_row(name: str, batch: int = 1) -> tuple[BenchRow, nn.Module]:
    """The untimed part of a row (sizes, counts, published top-1) and the built model.

    Kept apart from timing so the counts can be checked against ``fbnetv3 models``
    and ``info`` in a fast test.
    """
    model, size = build_model(name)
    if isinstance(model, FBNetV3):  # before any forward pass allocates its activations
        if model.arch.final_size(size) < 1:
            raise UserError(
                f"{name}: {size} px is too small for this network (a feature map vanishes)"
            )
        check_forward_cost(model.arch, size, batch, where=name)
    variant = _parse_name(name)[0].variant
    published = variant is not None and variant.input_size == size
    row = BenchRow(
        model=name,
        input_size=size,
        params=conv_linear_weights(model),
        macs=count_macs(model, size),
        official_macs=arch_stats(model.arch, size, num_classes=model.num_classes).macs
        if isinstance(model, FBNetV3)
        else None,
        all_params=sum(p.numel() for p in model.parameters()),
        top1=variant.top1 if published else None,
        top1_source="FBNet authors" if published else "",
    )
    return row, model


def _runners(
    name: str,
    model: nn.Module,
    size: int,
    settings: BenchSettings,
    rs: RunnerSettings,
    row: BenchRow,
) -> dict[str, Callable[[torch.Tensor], Any]]:
    """A runner per backend that applies to ``name``; a backend that fails to build is a note."""
    example = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    runners = {}
    for backend_name in settings.backends:
        if backend_name == "compile" and not _wants_compile(name, settings):
            continue
        try:
            fn = make_runner(backend_name, model, example, rs, "benchmark")
        except Exception as err:  # a backend that fails here is reported, not fatal
            row.notes.append(f"{backend_name}: {type(err).__name__}: {str(err)[:160]}")
            row.cells.update({(backend_name, batch): None for batch in settings.batches})
            continue
        if fn is not None:
            runners[backend_name] = fn
    return runners


def _bench_one(name: str, settings: BenchSettings, log: Callable[[str], None]) -> BenchRow:
    row, model = model_row(name, max(settings.batches))
    size = row.input_size
    with tempfile.TemporaryDirectory() as tmp:
        rs = RunnerSettings(settings.num_threads, Path(tmp), notes=row.notes)
        runners = _runners(name, model, size, settings, rs, row)
        for batch in settings.batches:
            x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
            calls = {b: (lambda fn=fn, x=x: fn(x)) for b, fn in runners.items()}
            medians, errors = interleaved_medians(
                calls, settings.warmup, settings.repeats, settings.max_seconds
            )
            for backend_name in runners:
                sec = medians.get(backend_name)
                row.cells[(backend_name, batch)] = sec
                if backend_name in errors:
                    row.notes.append(f"{backend_name}@{batch}: {errors[backend_name]}")
                shown = "n/a" if sec is None else f"{sec * 1e3:.1f} ms"
                log(f"{name:28s} {backend_name:13s} batch {batch:3d}: {shown}")
    return row
