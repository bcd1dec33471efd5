"""CPU inference benchmark: zoo variants against timm's FBNetV3 and two mobile baselines.

Used by ``fbnetv3 benchmark`` and ``benchmarks/inference.py``.  MACs are
counted the same way for every model (forward hooks on Conv2d and Linear:
weights x output positions) so rows compare fairly; the zoo's analytic
official-convention number is shown beside it.  Timings are medians, and
every setting that affects them goes into the table's preamble.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .export import export_onnx, model_input_size
from .fuse import fuse_bn
from .model import FBNetV3
from .stats import arch_stats
from .variants import VARIANTS

__all__ = [
    "ALL_BACKENDS",
    "DEFAULT_COMPILE_MODELS",
    "DEFAULT_MODELS",
    "BenchRow",
    "BenchSettings",
    "build_model",
    "count_macs",
    "format_markdown",
    "plot_top1_vs_latency",
    "run_benchmark",
]

ALL_BACKENDS = ("eager", "fused", "channels_last", "compile", "onnx")
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
# torch.compile costs minutes per model and batch size on 2 cores: by default only the 224 pair
DEFAULT_COMPILE_MODELS = ("fbnetv3_b@224",)
# our B and timm's B architecture at the same 224 input, also timed head-to-head
PAIR_224 = ("fbnetv3_b@224", "fbnetv3_b.ra2_in1k@224")
PAIRED = "paired eager"
# top-1 that timm reports for its own fbnetv3 architectures (ra2_in1k weights), at these sizes
TIMM_REPORTED_TOP1 = {
    ("fbnetv3_b.ra2_in1k", 256): 79.15,
    ("fbnetv3_d.ra2_in1k", 256): 79.68,
    ("fbnetv3_g.ra2_in1k", 288): 82.03,
}


@dataclass(frozen=True)
class BenchSettings:
    """Everything that changes the numbers; printed with the table."""

    batches: tuple[int, ...] = (1, 32)
    backends: tuple[str, ...] = ALL_BACKENDS
    compile_models: tuple[str, ...] = DEFAULT_COMPILE_MODELS
    warmup: int = 2
    repeats: int = 20
    max_seconds: float = 2.0
    threads: int | None = 1  # None: all cores; 1 is steadier on a shared 2-core box

    @property
    def num_threads(self) -> int:
        return self.threads or os.cpu_count() or 1


@dataclass
class BenchRow:
    """One model at one input size; ``cells[(backend, batch)]`` is the median seconds or None."""

    model: str
    input_size: int
    params: int
    macs: int  # hook-counted, per image
    official_macs: int | None = None  # zoo only: analytic, official convention
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


def _is_zoo(base: str) -> bool:
    return base.split(".")[0] in VARIANTS or base.endswith((".yaml", ".yml"))


def _check_name(name: str) -> str:
    """Fail fast, before minutes of timing, on a name nothing can build; return the base."""
    import timm

    base, _, size = name.partition("@")
    if size and not size.isdigit():
        raise ValueError(f"bad input size in {name!r}: expected NAME@SIZE with an integer SIZE")
    if not (_is_zoo(base) or timm.is_model(base)):
        raise KeyError(
            f"unknown model {base!r}: use a zoo name ({', '.join(VARIANTS)}), an ArchSpec "
            "YAML path or a timm model name"
        )
    return base


def build_model(name: str) -> tuple[nn.Module, int]:
    """Build ``NAME[@SIZE]`` with random weights in eval mode; return it and its input size.

    Zoo names and ArchSpec YAMLs go through ``fbnetv3_zoo.create_model``; any
    other timm name (``fbnetv3_b.ra2_in1k`` is timm's own architecture) through timm.
    """
    import timm

    from . import create_model

    base, _, size = name.partition("@")
    if _is_zoo(base):
        model = create_model(base)
    else:
        model = timm.create_model(_check_name(name), pretrained=False)
    if size:
        return model.eval(), int(size)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    test = cfg.get("test_input_size") if isinstance(cfg, dict) else None
    return model.eval(), int(test[-1]) if test else model_input_size(model)


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


def _interleaved_medians(
    fns: dict[str, Callable[[], Any]], warmup: int, repeats: int, max_seconds: float
) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds per callable, timed in alternating rounds; also the errors by key.

    Alternating spreads background load on a shared machine evenly over the
    callables compared.  Warm-up runs (which also compile for torch.compile)
    stop after ``max_seconds`` per callable, timing after ``max_seconds`` per
    callable, but there is always at least one of each: a big model at batch 32
    is then one warm-up plus one timed run.
    """
    live, errors = dict(fns), {}
    for key, fn in list(live.items()):
        deadline = time.perf_counter() + max_seconds
        try:
            for _ in range(warmup):
                fn()
                if time.perf_counter() > deadline:
                    break
        except Exception as err:  # a backend that fails here is reported, not fatal
            errors[key] = f"{type(err).__name__}: {str(err)[:160]}"
            del live[key]
    times: dict[str, list[float]] = {key: [] for key in live}
    deadline = time.perf_counter() + max_seconds * max(1, len(live))
    rounds = 0
    while live and rounds < max(1, repeats) and (rounds == 0 or time.perf_counter() < deadline):
        for key, fn in list(live.items()):
            start = time.perf_counter()
            try:
                fn()
            except Exception as err:
                errors[key] = f"{type(err).__name__}: {str(err)[:160]}"
                del live[key], times[key]
                continue
            times[key].append(time.perf_counter() - start)
        rounds += 1
    return {key: statistics.median(ts) for key, ts in times.items()}, errors


def _runner(
    backend: str, model: nn.Module, size: int, threads: int, workdir: Path
) -> Callable[[torch.Tensor], Any] | None:
    """A callable for ``backend``, or None where the backend does not apply to this model."""
    if backend == "eager":
        return model
    if backend == "fused":
        fused = fuse_bn(model)
        return fused if sum(1 for _ in fused.modules()) < sum(1 for _ in model.modules()) else None
    if backend == "channels_last":
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        return lambda x: cl(x.contiguous(memory_format=torch.channels_last))
    if backend == "compile":
        return torch.compile(model, dynamic=False)
    if backend == "onnx":
        import onnxruntime as ort

        path = workdir / "model.onnx"
        export_onnx(model, path, size)  # verified against eager, else it raises
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return lambda x: session.run(None, {"input": x.numpy()})
    raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(ALL_BACKENDS)}")


def _top1(name: str, size: int) -> tuple[float | None, str]:
    if name in VARIANTS and VARIANTS[name].input_size == size:
        return VARIANTS[name].top1, "FBNet authors"
    if (name, size) in TIMM_REPORTED_TOP1:
        return TIMM_REPORTED_TOP1[(name, size)], "timm reported"
    return None, ""


def _wants_compile(name: str, settings: BenchSettings) -> bool:
    return "all" in settings.compile_models or name in settings.compile_models


def run_benchmark(
    models: Iterable[str],
    settings: BenchSettings | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[BenchRow]:
    """Measure every model on every backend and batch size; failures become None (n/a)."""
    settings = settings or BenchSettings()
    unknown = [b for b in settings.backends if b not in ALL_BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {unknown[0]!r}; choose from {', '.join(ALL_BACKENDS)}")
    models = list(models)
    if not models:
        raise ValueError("no models to benchmark")
    for name in models:
        _check_name(name)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(settings.num_threads)
    try:
        rows = [_bench_one(name, settings, log) for name in models]
        pair = [r for name in PAIR_224 for r in rows if r.model == name]
        if len(pair) == 2 and "eager" in settings.backends:
            _paired_eager(pair, settings, log)
        return rows
    finally:
        torch.set_num_threads(threads_before)


def _paired_eager(rows: Sequence[BenchRow], settings: BenchSettings, log: Callable) -> None:
    """Time the rows' models in eager mode alternately: a head-to-head immune to load drift."""
    models = {r.model: build_model(r.model)[0] for r in rows}
    with torch.no_grad():
        for batch in settings.batches:
            x = torch.randn(batch, 3, rows[0].input_size, rows[0].input_size)
            calls = {name: (lambda m=m, x=x: m(x)) for name, m in models.items()}
            medians, _ = _interleaved_medians(
                calls, settings.warmup, 2 * settings.repeats, 2 * settings.max_seconds
            )
            for r in rows:
                r.cells[(PAIRED, batch)] = medians.get(r.model)
                sec = medians.get(r.model)
                shown = "n/a" if sec is None else f"{sec * 1e3:.1f} ms"
                log(f"{r.model:28s} {PAIRED:13s} batch {batch:3d}: {shown}")


def _bench_one(name: str, settings: BenchSettings, log: Callable[[str], None]) -> BenchRow:
    model, size = build_model(name)
    base = name.split("@")[0]
    top1, source = _top1(base, size)
    row = BenchRow(
        model=name,
        input_size=size,
        params=sum(p.numel() for p in model.parameters()),
        macs=count_macs(model, size),
        official_macs=arch_stats(model.arch, size).macs if isinstance(model, FBNetV3) else None,
        top1=top1,
        top1_source=source,
    )
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        runners = {}
        for backend in settings.backends:
            if backend == "compile" and not _wants_compile(name, settings):
                continue
            try:
                fn = _runner(backend, model, size, settings.num_threads, Path(tmp))
            except Exception as err:  # a backend that fails here is reported, not fatal
                row.notes.append(f"{backend}: {type(err).__name__}: {str(err)[:160]}")
                row.cells.update({(backend, batch): None for batch in settings.batches})
                continue
            if fn is not None:
                runners[backend] = fn
        for batch in settings.batches:
            x = torch.randn(batch, 3, size, size)
            calls = {b: (lambda fn=fn, x=x: fn(x)) for b, fn in runners.items()}
            medians, errors = _interleaved_medians(
                calls, settings.warmup, settings.repeats, settings.max_seconds
            )
            for backend in runners:
                sec = medians.get(backend)
                row.cells[(backend, batch)] = sec
                if backend in errors:
                    row.notes.append(f"{backend}@{batch}: {errors[backend]}")
                shown = "n/a" if sec is None else f"{sec * 1e3:.1f} ms"
                log(f"{name:28s} {backend:13s} batch {batch:3d}: {shown}")
    return row


def _fmt(value: float | None, missing: bool, digits: int = 1) -> str:
    if missing:
        return "–"
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cell_table(rows: Sequence[BenchRow], backends: Sequence[str], batch: int) -> list[str]:
    unit = "ms, median" if batch == 1 else "img/s"
    title = f"Latency, batch 1 ({unit})" if batch == 1 else f"Throughput, batch {batch} ({unit})"
    lines = [f"## {title}", "", "| model | input | " + " | ".join(backends) + " |"]
    lines.append("|---|---:|" + "---:|" * len(backends))
    for r in rows:
        vals = []
        for b in backends:
            missing = (b, batch) not in r.cells
            v = r.latency_ms(b, batch) if batch == 1 else r.throughput(b, batch)
            vals.append(_fmt(v, missing))
        lines.append(f"| {r.model} | {r.input_size} | " + " | ".join(vals) + " |")
    return lines + [""]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _goals(rows: Sequence[BenchRow], batches: Sequence[int]) -> list[str]:
    by_name = {r.model: r for r in rows}
    lines = ["## Goals", ""]
    ours, theirs = by_name.get("fbnetv3_b@224"), by_name.get("fbnetv3_b.ra2_in1k@224")
    if ours and theirs:
        lines.append("**Our FBNetV3-B vs timm's fbnetv3_b architecture, both at 224×224:** ")
        lines.append(
            f"MACs (hooks) {ours.macs / 1e6:.0f}M vs {theirs.macs / 1e6:.0f}M "
            f"(ours/timm {ours.macs / theirs.macs:.2f}); params {ours.params / 1e6:.2f}M vs "
            f"{theirs.params / 1e6:.2f}M."
        )
        for backend in (PAIRED, "eager", "compile", "onnx"):
            for batch in batches:
                a, b = ours.cells.get((backend, batch)), theirs.cells.get((backend, batch))
                ratio = _ratio(b, a)
                if ratio is not None:
                    verdict = "ours faster" if ratio >= 1 else "ours slower"
                    lines.append(
                        f"- {backend}, batch {batch}: ours {a * 1e3:.1f} ms, timm {b * 1e3:.1f} ms "
                        f"per batch → timm/ours = {ratio:.2f} ({verdict})"
                    )
        lines.append("")
    zoo = [r for r in rows if r.base in VARIANTS and r.official_macs is not None]
    speedups = [(r, _ratio(r.cells.get(("eager", 1)), r.cells.get(("onnx", 1)))) for r in zoo]
    speedups = [(r, s) for r, s in speedups if s is not None]
    if speedups:
        ok = all(s > 1 for _, s in speedups)
        lines.append(
            f"**ONNX Runtime vs PyTorch eager, batch 1** (eager/ORT latency; > 1 means ORT is "
            f"faster) — {'ORT faster for every zoo row' if ok else 'ORT NOT faster for every zoo row'}:"
        )
        lines += [f"- {r.model} @{r.input_size}: {s:.2f}×" for r, s in speedups] + [""]
    fused = [
        (r, batch, _ratio(r.cells.get(("eager", batch)), r.cells.get(("fused", batch))))
        for r in zoo
        for batch in batches
    ]
    fused = [(r, b, s) for r, b, s in fused if s is not None]
    if fused:
        slower = [f"{r.model}@b{b}" for r, b, s in fused if s < 1]
        lines.append(
            "**Folded BN vs unfolded, eager** (unfolded/folded time; ≥ 1 means folding is at "
            f"least as fast) — slower cells: {', '.join(slower) if slower else 'none'}:"
        )
        lines += [f"- {r.model} batch {b}: {s:.2f}×" for r, b, s in fused] + [""]
    return lines


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_markdown(rows: Sequence[BenchRow], settings: BenchSettings) -> str:
    """The results file: settings preamble, model facts, one table per batch size, goals."""
    import onnxruntime
    import timm

    backends = [
        b
        for b in settings.backends
        if any((b, n) in r.cells for r in rows for n in settings.batches)
    ]
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# FBNetV3 inference benchmark (CPU)",
        "",
        f"Measured {now} on {_cpu_name()} with {os.cpu_count()} CPU cores (a shared "
        "development machine: other jobs may have been running), "
        f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}, "
        f"onnxruntime {onnxruntime.__version__}.",
        "",
        f"Threads: torch {settings.num_threads}, ONNX Runtime intra-op {settings.num_threads} / "
        f"inter-op 1 (`--threads`; with other jobs on the cores, several OpenMP threads in "
        "PyTorch stall on each other's time slices and eager times grow many-fold, so one "
        "thread gives the steadier comparison). "
        f"Per model and batch size: {settings.warmup} warm-up runs per backend (these also "
        "compile for `compile`), then the backends are timed in alternating rounds (so load "
        f"drift hits them alike), up to {settings.repeats} rounds or {settings.max_seconds:g} s "
        "per backend, at least one round; cells show the median. A big model at batch 32 is "
        "therefore one warm-up plus one timed run. `fbnetv3_b@224` and "
        "`fbnetv3_b.ra2_in1k@224` are also timed head-to-head in alternating eager runs "
        '("paired eager" in Goals). Random weights, '
        "`torch.no_grad()`, float32. Backends: `eager` PyTorch; `fused` eager after "
        "`fuse_bn` (zoo models only); `channels_last` eager in NHWC; `compile` "
        "`torch.compile(dynamic=False)` (inductor; only for "
        f"{', '.join(settings.compile_models)}, each compile takes minutes here); `onnx` ONNX "
        "Runtime CPU on the verified ONNX export (opset 17). `–` not run, `n/a` failed.",
        "",
        "MACs (hooks): Conv2d and Linear weights × output positions, counted the same way for "
        "every model. MACs (official): the zoo's analytic count in the FBNet authors' convention "
        "(adds global-pool reads). Top-1: ImageNet, as published by the FBNet authors for A–G at "
        "their own resolution, and as reported by timm for its `ra2_in1k` fbnetv3 weights.",
        "",
        "## Models",
        "",
        "| model | input | params (M) | MACs (M, hooks) | MACs (M, official) | top-1 (source) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        official = "–" if r.official_macs is None else f"{r.official_macs / 1e6:.1f}"
        top1 = "–" if r.top1 is None else f"{r.top1:.2f} ({r.top1_source})"
        lines.append(
            f"| {r.model} | {r.input_size} | {r.params / 1e6:.2f} | {r.macs / 1e6:.1f} | "
            f"{official} | {top1} |"
        )
    lines.append("")
    for batch in settings.batches:
        lines += _cell_table(rows, backends, batch)
    lines += _goals(rows, settings.batches)
    notes = [f"- {r.model}: {n}" for r in rows for n in r.notes]
    if notes:
        lines += ["## Failures", "", *notes, ""]
    return "\n".join(lines)


def plot_top1_vs_latency(rows: Sequence[BenchRow], path: str | os.PathLike) -> None:
    """ImageNet top-1 against measured batch-1 latency (eager and ONNX Runtime)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    groups = [
        ("FBNet authors", "zoo FBNetV3-A…G (FBNet authors' top-1)", "tab:blue"),
        ("timm reported", "timm's fbnetv3_b/d/g architecture (timm-reported top-1)", "tab:orange"),
    ]
    for source, label, color in groups:
        pts = sorted((r for r in rows if r.top1_source == source), key=lambda r: r.top1 or 0.0)
        for backend, marker, fill in (("eager", "o", color), ("onnx", "s", "white")):
            xy = [(r.latency_ms(backend), r.top1, r) for r in pts if r.latency_ms(backend)]
            if not xy:
                continue
            ax.plot(
                [p[0] for p in xy],
                [p[1] for p in xy],
                marker=marker,
                color=color,
                markerfacecolor=fill,
                linestyle="-" if backend == "eager" else ":",
                label=f"{label}, {'PyTorch eager' if backend == 'eager' else 'ONNX Runtime'}",
            )
            for lat, top1, r in xy:
                short = r.base.removeprefix("fbnetv3_").replace(".ra2_in1k", " (timm)")
                ax.annotate(
                    f"{short.upper() if len(short) == 1 else short}@{r.input_size}",
                    (lat, top1),
                    fontsize=7,
                    xytext=(5, -3),
                    textcoords="offset points",
                )
    ax.set_xlabel("measured CPU latency, batch 1 (ms, median)")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.set_title(f"ImageNet top-1 vs measured CPU latency ({os.cpu_count()}-core machine)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    else:
        ax.text(
            0.5,
            0.5,
            "no model with a published top-1 at its size",
            ha="center",
            transform=ax.transAxes,
        )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
