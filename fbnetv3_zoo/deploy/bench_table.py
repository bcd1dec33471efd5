"""The benchmark's markdown table: one row per model, one latency cell per backend, and the counts."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence

import torch

from fbnetv3_zoo.deploy.bench import (
    BACKEND_NOTES,
    BenchRow,
    BenchSettings,
)
from fbnetv3_zoo.models.stats import in_millions


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


def backends_run(rows: Sequence[BenchRow], settings: BenchSettings) -> list[str]:
    """The backends that produced at least one cell (timed or failed)."""
    return [
        b
        for b in settings.backends
        if any((b, n) in r.cells for r in rows for n in settings.batches)
    ]


def count_columns(rows: Sequence[BenchRow]) -> tuple[list[str], str]:
    """The params/MACs column names of ``rows`` and the sentence saying what each counts.

    ``params (M)`` and ``MACs (M)`` mean what they mean in ``fbnetv3 models`` and
    ``info``; any other count is named for what it counts.
    """
    zoo = any(r.official_macs is not None for r in rows)
    names = ["params (M)", *(["MACs (M)"] if zoo else []), "conv+linear MACs (M, hooks)"]
    names.append("all parameters (M)")
    note = "params (M): Conv2d and Linear weights, as `fbnetv3 models` and `fbnetv3 info` count"
    if zoo:
        note += (
            "; MACs (M): the zoo's official analytic count as there (those layers' MACs plus "
            "global-pool reads; `–` for networks outside the zoo)"
        )
    note += (
        "; conv+linear MACs (M, hooks): Conv2d and Linear weights × output positions, measured "
        "the same way for every model; all parameters (M): every tensor of "
        "`model.parameters()`, BN and biases included."
    )
    return names, note


def count_cells(row: BenchRow, columns: Sequence[str]) -> list[str]:
    """The row's cells for ``columns``, in the units every table of the package uses."""
    cells = {
        "params (M)": in_millions(row.params, 2),
        "MACs (M)": "–" if row.official_macs is None else in_millions(row.official_macs, 1),
        "conv+linear MACs (M, hooks)": in_millions(row.macs, 1),
        "all parameters (M)": "–" if row.all_params is None else in_millions(row.all_params, 2),
    }
    return [cells[c] for c in columns]


def format_markdown(rows: Sequence[BenchRow], settings: BenchSettings) -> str:
    """Header describing exactly what ran, model facts, one table per batch size, failures."""
    import timm

    backends = backends_run(rows, settings)
    columns, note = count_columns(rows)
    versions = (
        f"Python {platform.python_version()}, torch {torch.__version__}, timm {timm.__version__}"
    )
    if "onnxruntime" in backends:
        from fbnetv3_zoo.optional import require

        onnxruntime = require("onnxruntime", "the onnxruntime backend")
        versions += f", onnxruntime {onnxruntime.__version__}"
    threads = f"torch {settings.num_threads}"
    if "onnxruntime" in backends:
        threads += f", ONNX Runtime intra-op {settings.num_threads} / inter-op 1"
    ran = "; ".join(f"`{b}` {BACKEND_NOTES[b]}" for b in backends)
    compiled = sorted({r.model for r in rows if ("compile", settings.batches[0]) in r.cells})
    if compiled:
        ran += f" (compiled: {', '.join(compiled)})"
    lines = [
        "# Inference benchmark (CPU)",
        "",
        f"{os.cpu_count()} CPU cores, {versions}. Threads: {threads}. Random weights, "
        "`torch.no_grad()`, float32.",
        "",
        f"Per model and batch size: {settings.warmup} warm-up run(s) per backend, then the "
        f"backends timed in alternating rounds, up to {settings.repeats} rounds or "
        f"{settings.max_seconds:g} s per backend (at least one round); cells show the median. "
        f"Backends: {ran}. `–` not run, `n/a` failed.",
        "",
        note,
    ]
    has_top1 = any(r.top1 is not None for r in rows)
    if has_top1:
        lines[-1] += " Top-1: ImageNet, as published, at the size it was published for."
    head = f"| model | input | {' | '.join(columns)} |"
    rule = "|---|---:|" + "---:|" * len(columns)
    if has_top1:
        head, rule = head + " top-1 (source) |", rule + "---|"
    lines += ["", "## Models", "", head, rule]
    for r in rows:
        cells = [r.model, str(r.input_size), *count_cells(r, columns)]
        if has_top1:
            cells.append("–" if r.top1 is None else f"{r.top1:.2f} ({r.top1_source})")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for batch in settings.batches:
        lines += _cell_table(rows, backends, batch)
    notes = [f"- {r.model}: {n}" for r in rows for n in r.notes]
    if notes:
        lines += ["## Failures and notes", "", *notes, ""]
    return "\n".join(lines)
