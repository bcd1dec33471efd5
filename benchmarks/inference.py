"""Full CPU inference benchmark: writes benchmarks/results/inference.md and the top-1 plot.

Takes the options of ``fbnetv3 benchmark`` (same defaults: the zoo, timm's own
fbnetv3_b/d/g architecture, MobileNetV3 and EfficientNet-B0 on every backend)
plus ``--out``/``--plot``; on top of the command's table it times our B and timm's
B head-to-head, checks the goals below and draws ImageNet top-1 against latency.
Unlike the command, its default backends include the on-device ones
(``executorch``, ``executorch-int8``; the ``[mobile]`` extra), so a plain
``python3 benchmarks/inference.py`` re-measures everything in the results file
(lowering every model twice makes that about an hour on 2 cores).

Goals: our FBNetV3-B vs timm's fbnetv3_b architecture at the same 224 input
(MACs, params, time; ratio timm/ours); ONNX Runtime faster than PyTorch eager
at batch 1 for every zoo row; folded BN at least as unfolded; and, per
model, the fastest path at batch 1 and what int8 buys over fp32 ExecuTorch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fbnetv3_zoo.cli import build_parser
from fbnetv3_zoo.cli.deploy import benchmark_settings
from fbnetv3_zoo.deploy.runtimes import BENCH_BACKENDS

if TYPE_CHECKING:  # the rest loads torch: imported where used, so --help answers at once
    from fbnetv3_zoo.deploy.bench import BenchRow, BenchSettings
from fbnetv3_zoo.models.variants import VARIANTS

RESULTS = Path(__file__).resolve().parent / "results"
# our B and timm's B architecture at the same 224 input, also timed head-to-head
PAIR_224 = ("fbnetv3_b@224", "fbnetv3_b.ra2_in1k@224")
PAIRED = "paired eager"
# backends drawn in the top-1 plot: marker, filled, line style
PLOTTED = {
    "torch": ("o", True, "-"),
    "onnxruntime": ("s", False, ":"),
    "executorch": ("^", True, "--"),
    "executorch-int8": ("v", False, "-."),
}
BACKEND_LABELS = {
    "torch": "PyTorch eager",
    "onnxruntime": "ONNX Runtime",
    "executorch": "ExecuTorch fp32",
    "executorch-int8": "ExecuTorch int8",
}
# top-1 that timm reports for its own fbnetv3 architectures (ra2_in1k weights), at these sizes
TIMM_REPORTED_TOP1 = {
    ("fbnetv3_b.ra2_in1k", 256): 79.15,
    ("fbnetv3_d.ra2_in1k", 256): 79.68,
    ("fbnetv3_g.ra2_in1k", 288): 82.03,
}


def add_timm_top1(rows: Sequence[BenchRow]) -> None:
    for r in rows:
        if (r.base, r.input_size) in TIMM_REPORTED_TOP1:
            r.top1, r.top1_source = TIMM_REPORTED_TOP1[(r.base, r.input_size)], "timm reported"


def paired_eager(rows: Sequence[BenchRow], settings: BenchSettings, log: Callable) -> bool:
    """Time the 224 pair alternately in eager mode (immune to load drift); False if absent."""
    pair = [r for name in PAIR_224 for r in rows if r.model == name]
    if len(pair) != 2 or "torch" not in settings.backends:
        return False
    import torch

    from fbnetv3_zoo.deploy.bench import build_model
    from fbnetv3_zoo.latency.timing import interleaved_medians

    models = {r.model: build_model(r.model)[0] for r in pair}
    torch.set_num_threads(settings.num_threads)
    with torch.no_grad():
        for batch in settings.batches:
            x = torch.randn(batch, 3, 224, 224)
            calls = {name: (lambda m=m, x=x: m(x)) for name, m in models.items()}
            medians, _ = interleaved_medians(
                calls, settings.warmup, 2 * settings.repeats, 2 * settings.max_seconds
            )
            for r in pair:
                r.cells[(PAIRED, batch)] = medians.get(r.model)
                log(f"{r.model:28s} {PAIRED:13s} batch {batch:3d}: {medians.get(r.model)}")
    return True


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def goals(rows: Sequence[BenchRow], batches: Sequence[int]) -> list[str]:
    """The Goals section; empty when no row allows any of its comparisons."""
    by_name = {r.model: r for r in rows}
    lines: list[str] = []
    ours, theirs = by_name.get(PAIR_224[0]), by_name.get(PAIR_224[1])
    if ours and theirs:
        lines.append("**Our FBNetV3-B vs timm's fbnetv3_b architecture, both at 224×224:** ")
        lines.append(
            f"MACs (hooks) {ours.macs / 1e6:.0f}M vs {theirs.macs / 1e6:.0f}M "
            f"(ours/timm {ours.macs / theirs.macs:.2f}); params {ours.params / 1e6:.2f}M vs "
            f"{theirs.params / 1e6:.2f}M."
        )
        for backend in (PAIRED, "torch", "compile", "onnxruntime"):
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
    speedups = [
        (r, _ratio(r.cells.get(("torch", 1)), r.cells.get(("onnxruntime", 1)))) for r in zoo
    ]
    speedups = [(r, s) for r, s in speedups if s is not None]
    if speedups:
        ok = all(s > 1 for _, s in speedups)
        lines.append(
            f"**ONNX Runtime vs PyTorch eager, batch 1** (eager/ORT latency; > 1 means ORT is "
            f"faster) — {'ORT faster for every zoo row' if ok else 'ORT NOT faster for every zoo row'}:"
        )
        lines += [f"- {r.model} @{r.input_size}: {s:.2f}×" for r, s in speedups] + [""]
    fused = [
        (r, batch, _ratio(r.cells.get(("torch", batch)), r.cells.get(("fused", batch))))
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
    lines += fastest_paths(rows)
    return ["## Goals", "", *lines] if lines else []


def fastest_paths(rows: Sequence[BenchRow]) -> list[str]:
    """Per model, the fastest backend at batch 1 and int8's gain over fp32 ExecuTorch."""
    lines = []
    wins: dict[str, int] = {}
    for r in rows:
        times = {
            b: ms
            for b, batch in r.cells
            if batch == 1 and b != PAIRED and (ms := r.latency_ms(b)) is not None
        }
        if len(times) < 2:
            continue
        best = min(times, key=times.__getitem__)
        wins[best] = wins.get(best, 0) + 1
        line = f"- {r.model} @{r.input_size}: **{best}** {times[best]:.1f} ms"
        if "torch" in times:
            line += f" ({times['torch'] / times[best]:.1f}× faster than eager)"
        fp32, int8 = times.get("executorch"), times.get("executorch-int8")
        if fp32 and int8:
            line += f"; ExecuTorch int8 / fp32 = {int8 / fp32:.2f}"
        lines.append(line)
    if not lines:
        return []
    tally = ", ".join(f"{b} {n}" for b, n in sorted(wins.items(), key=lambda kv: -kv[1]))
    return [
        f"**Fastest path at batch 1** (median latency; rows won: {tally}):",
        *lines,
        "",
    ]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_notes(settings: BenchSettings, paired: bool) -> list[str]:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Machine and method",
        "",
        f"Measured {now} on {_cpu_name()} ({os.cpu_count()} cores; a shared development "
        "machine: other jobs may have been running). With other jobs on the cores, several "
        "OpenMP threads in PyTorch stall on each other's time slices and eager times grow "
        f"many-fold, so {settings.num_threads} thread(s) (`--threads`) give the steadier "
        "comparison. A big model at batch 32 may be one warm-up plus one timed run.",
    ]
    if paired:
        lines[-1] += (
            f" `{PAIR_224[0]}` and `{PAIR_224[1]}` were also timed head-to-head in "
            f'alternating eager runs ("{PAIRED}" in Goals).'
        )
    return [*lines, ""]


def plot_top1_vs_latency(rows: Sequence[BenchRow], path: Path) -> bool:
    """ImageNet top-1 against batch-1 latency; False (and no file) when nothing can be drawn."""
    groups = [
        ("FBNet authors", "zoo FBNetV3-A…G (FBNet authors' top-1)", "tab:blue"),
        ("timm reported", "timm's fbnetv3_b/d/g architecture (timm-reported top-1)", "tab:orange"),
    ]
    series = []
    for source, label, color in groups:
        pts = sorted((r for r in rows if r.top1_source == source), key=lambda r: r.top1 or 0.0)
        for backend, (marker, filled, style) in PLOTTED.items():
            xy = [(r.latency_ms(backend), r.top1, r) for r in pts if r.latency_ms(backend)]
            if xy:
                fill = color if filled else "white"
                series.append((xy, backend, marker, fill, style, color, label))
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    for xy, backend, marker, fill, style, color, label in series:
        ax.plot(
            [p[0] for p in xy],
            [p[1] for p in xy],
            marker=marker,
            color=color,
            markerfacecolor=fill,
            linestyle=style,
            label=f"{label}, {BACKEND_LABELS[backend]}",
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
    ax.set_xlabel("measured CPU latency, batch 1 (ms, median, log scale)")
    ax.set_xscale("log")
    ax.set_ylabel("ImageNet top-1 (%)")
    ax.set_title(f"ImageNet top-1 vs measured CPU latency ({os.cpu_count()}-core machine)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def report(rows: Sequence[BenchRow], settings: BenchSettings, paired: bool) -> str:
    from fbnetv3_zoo.deploy.bench_table import format_markdown

    lines = [format_markdown(rows, settings), *machine_notes(settings, paired)]
    lines += goals(rows, settings.batches)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    own = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    own.add_argument("--out", type=Path, default=RESULTS / "inference.md")
    own.add_argument("--plot", type=Path, default=RESULTS / "inference_top1_vs_latency.png")
    ours, rest = own.parse_known_args(argv)
    if not any(a == "--backends" or a.startswith("--backends=") for a in rest):
        rest = ["--backends", ",".join(BENCH_BACKENDS), *rest]
    models, settings = benchmark_settings(build_parser().parse_args(["benchmark", *rest]))
    from fbnetv3_zoo.deploy.bench import run_benchmark

    start = time.perf_counter()
    rows = run_benchmark(models, settings, log=print)
    add_timm_top1(rows)
    paired = paired_eager(rows, settings, log=print)
    minutes = (time.perf_counter() - start) / 60
    text = report(rows, settings, paired) + f"\nThis run took {minutes:.1f} min.\n"
    print(text)
    ours.out.parent.mkdir(parents=True, exist_ok=True)
    ours.out.write_text(text)
    print(f"wrote {ours.out}")
    if plot_top1_vs_latency(rows, ours.plot):
        print(f"wrote {ours.plot}")
    else:
        print("no plot: no row has a published top-1 at its input size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
