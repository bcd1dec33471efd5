"""Timing a module on this machine: warm-up, rounds, passes, the median and a spread.

The core of the latency feature (``latency.py`` builds tables from it):
``measure`` times one module on one backend (torch eager or ONNX Runtime)
robustly on a shared machine, and ``machine_fingerprint`` names what a
measurement depends on (CPU, backend, threads, versions).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.deploy.export import DEFAULT_OPSET
from fbnetv3_zoo.errors import UserError

CACHE_ENV = "FBNETV3_CACHE_DIR"
TABLE_VERSION = 2  # 2: one-thread tables read the thread CPU clock
OPSET = DEFAULT_OPSET  # the one ONNX opset: export's


def check_backend(backend: str) -> str:
    """The registry name of a latency backend (``onnx`` is ``onnxruntime``), else one error."""
    from fbnetv3_zoo.deploy.runtimes import backend as registry_entry

    return registry_entry(backend, "latency").name


def require_gpu(backend: str, what: str) -> None:
    """Refuse ``cuda`` timing on a machine without a CUDA GPU, naming what asked for it."""
    if backend == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"{what}: latency on cuda needs a CUDA GPU and this machine has none "
            "(torch.cuda.is_available() is False); use @torch or @onnxruntime"
        )


def require_backend(backend: str, what: str) -> None:
    """Refuse a backend this machine cannot time (no GPU, no ExecuTorch) in one line naming ``what``."""
    require_gpu(backend, what)
    if backend == "executorch":
        from fbnetv3_zoo.deploy.executorch import require_executorch

        require_executorch(f"{what}: latency on executorch")
    if backend == "onnxruntime":
        from fbnetv3_zoo.optional import require

        require("onnxruntime", f"{what}: latency on onnxruntime")


def cache_dir() -> Path:
    """Where per-machine tables live: ``$FBNETV3_CACHE_DIR``, else the user cache directory."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs

        return Path(platformdirs.user_cache_dir("fbnetv3-zoo"))
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(base) / "fbnetv3-zoo"


def _cpu_model() -> tuple[str, str]:
    """CPU model name and a hash of its feature flags (Linux); platform strings elsewhere."""
    name, flags = platform.processor() or platform.machine(), ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.machine()):
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = value.strip()
    return name, hashlib.sha256(flags.encode()).hexdigest()[:12]


def machine_fingerprint(backend: str, threads: int) -> dict[str, Any]:
    """What a table's numbers depend on besides the blocks: CPU, versions, backend, threads."""
    backend = check_backend(backend)
    require_gpu(backend, "latency on cuda")
    cpu, flags = _cpu_model()
    fp = {
        "table_version": TABLE_VERSION,
        "backend": backend,
        "threads": threads,
        "clock": "thread_time" if threads == 1 else "perf_counter",
        "cpu": cpu,
        "cpu_flags": flags,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if backend == "onnxruntime":
        from fbnetv3_zoo.optional import require

        onnxruntime = require("onnxruntime", "latency on onnxruntime")
        fp["onnxruntime"] = onnxruntime.__version__
        fp["opset"] = OPSET
    if backend == "executorch":
        from importlib.metadata import version

        require_backend(backend, "timing")
        fp["executorch"] = version("executorch")
    if backend == "cuda":  # what a GPU timing depends on; read on the wall clock after a sync
        fp["clock"] = "perf_counter after cuda synchronize"
        fp["gpu"] = torch.cuda.get_device_name()
        fp["cuda"] = torch.version.cuda
    return fp


# ------------------------------------------------------------------ timing
@dataclass(frozen=True)
class Timing:
    """Milliseconds per call: the median of every timed call, and a low quantile."""

    ms: float  # median over all timed calls
    spread: float  # interquartile range of the per-round medians / ms: the noise estimate
    rounds: int
    calls: int  # timed calls per round
    low: float = 0.0  # 20th percentile of the calls: the least disturbed estimate
    passes: tuple[float, ...] = ()  # the median of every pass, when measured in passes


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def runner(module: nn.Module, shape: tuple[int, ...], backend: str, threads: int) -> Callable:
    """A no-argument callable running ``module`` on a fixed seeded input with ``backend``.

    The runner comes from the backend registry (``deploy/runtimes.py``,
    ``deploy/runners.py``) with the input's shape fixed: ONNX Runtime gets a
    static-shape graph from the package's one ONNX writer; torch runs eager
    without autograd (set the thread count with :func:`torch_threads`); cuda
    waits for the GPU before returning, so the wall clock sees the kernels'
    time; executorch runs an XNNPACK fp32 program, as a phone would.
    """
    from fbnetv3_zoo.deploy.runners import RunnerSettings, make_runner
    from fbnetv3_zoo.deploy.runtimes import backend as registry_entry

    entry = registry_entry(backend, "latency")
    require_backend(entry.name, "timing")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    settings = RunnerSettings(threads, fixed_shape=True)
    run = make_runner(entry.name, module.eval(), x, settings, "latency")
    if entry.wall_clock:
        x = x.to("cuda")

    def call() -> Any:
        return run(x)

    call.wall_clock = entry.wall_clock  # type: ignore[attr-defined]
    call.keep = settings  # type: ignore[attr-defined]  # its files (if any) live as long as the runner
    return call


def clock_for(threads: int) -> Callable[[], float]:
    """The clock latency is read from: the calling thread's CPU time when it runs alone.

    With one thread (ONNX Runtime: one intra-op and one inter-op thread; torch:
    ``set_num_threads(1)``) all the work runs on the calling thread, so its CPU
    time equals the wall-clock latency of an idle core, and the stretches in
    which a shared machine's scheduler runs someone else do not count.  With
    more threads, and for a runner marked ``wall_clock`` (cuda), wall-clock.
    """
    return time.thread_time if threads == 1 else time.perf_counter


def time_callable(
    fn: Callable[[], Any],
    rounds: int = 5,
    min_round_s: float = 0.004,
    warmup_s: float = 0.03,
    clock: Callable[[], float] = time.perf_counter,
) -> Timing:
    """Warm up, then ``rounds`` rounds of at least 5 calls lasting ``min_round_s``, each call timed.

    Every call is timed on its own: on a shared machine the scheduler takes
    the CPU away for many milliseconds now and then, and a median over
    single calls ignores those calls, where a median over batches of calls
    would not.
    """
    start = time.perf_counter()
    fn()  # first calls allocate and initialise: not timed
    fn()
    calls, t0 = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < warmup_s:
        fn()
        calls += 1
    one = (time.perf_counter() - t0) / calls
    per_round = max(5, min(5_000, int(min_round_s / max(one, 1e-7)) + 1))
    samples: list[float] = []
    medians = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            this = []
            for _ in range(per_round):
                t = clock()
                fn()
                this.append(clock() - t)
            medians.append(statistics.median(this))
            samples += this
    finally:
        if enabled:
            gc.enable()
    samples.sort()
    med = statistics.median(samples)
    low = samples[len(samples) // 5]
    q = statistics.quantiles(medians, n=4) if len(medians) > 1 else [med, med, med]
    spread = (q[2] - q[0]) / med if med > 0 else 0.0
    return Timing(med * 1e3, spread, rounds, per_round, low * 1e3)


PASSES = 3


def measure_many(
    fns: list[Callable[[], Any]],
    threads: int = 1,
    passes: int = PASSES,
    rounds: int = 5,
    min_round_s: float = 0.004,
) -> list[Timing]:
    """Time every runner in ``passes`` passes over the list; keep each one's fastest pass.

    On a shared machine a runner can spend seconds in a slow phase (another
    job on the same core); passes over a list spread each runner's timings
    over time, and the pass with the lowest median is the one least
    disturbed.  ``Timing.passes`` keeps every pass's median (a retest).
    """
    medians: list[list[float]] = [[] for _ in fns]
    best: list[Timing | None] = [None] * len(fns)
    with torch_threads(threads):
        for _ in range(max(1, passes)):
            for i, fn in enumerate(fns):
                wall = getattr(fn, "wall_clock", False)
                clock = time.perf_counter if wall else clock_for(threads)
                t = time_callable(fn, rounds, min_round_s, clock=clock)
                medians[i].append(t.ms)
                if best[i] is None or t.ms < best[i].ms:
                    best[i] = t
    return [
        Timing(b.ms, b.spread, b.rounds, b.calls, min(b.low, b.ms), tuple(m))
        for b, m in zip(best, medians, strict=True)
    ]


def measure(
    module: nn.Module,
    shape: tuple[int, ...],
    backend: str,
    threads: int = 1,
    passes: int = PASSES,
) -> Timing:
    """Robust latency of ``module`` on an input of ``shape`` (see :func:`measure_many`)."""
    return measure_many([runner(module, shape, backend, threads)], threads, passes)[0]


# ------------------------------------------------------------------ block keys


def interleaved_medians(
    fns: dict[str, Callable[[], Any]], warmup: int, repeats: int, max_seconds: float
) -> tuple[dict[str, float], dict[str, str]]:
    """Median seconds per callable, timed in alternating rounds; also the errors by key.

    Alternating spreads background load on a shared machine evenly over the
    callables compared.  Warm-up runs (which also compile for torch.compile)
    stop after ``max_seconds`` per callable, timing after ``max_seconds`` per
    callable, but there is always at least one timed round.
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
