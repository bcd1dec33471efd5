"""Latency on this machine: robust timing of a module, per-block keys, and the table file.

A deployer's constraint is milliseconds on *their* CPU, which MACs predict
poorly for mobile networks (``benchmarks/results/latency.md``).  This module
is the core half of the latency feature and needs only torch (plus
onnxruntime for that backend):

- :func:`~fbnetv3_zoo.latency.timing.measure` (``timing.py``) times one module on one backend with warm-up, several
  rounds, the median and a spread, re-measuring when the spread is high;
- :func:`spec_keys` names every block an :class:`ArchSpec` runs (stem, each
  IRF block at its input size, head), and :func:`build_entry` builds the
  module a key names, so a table of keys -> milliseconds can be measured once
  and summed for any network made of those blocks;
- :class:`LatencyTable` is that table, an append-only JSON-lines file per
  backend, thread count and machine fingerprint under the user cache
  directory (``$FBNETV3_CACHE_DIR`` overrides it), so building is resumable.

The search's vectorised predictor over a whole space lives in
``fbnetv3_zoo.search.latency.table``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.latency.timing import (
    Timing,
    cache_dir,
    machine_fingerprint,
    measure_many,
    runner,
)
from fbnetv3_zoo.models.spec import ArchSpec, ResolvedBlock, make_divisible, spatial_size


class _Head(nn.Module):
    """The network's head alone: 1x1 expansion, pooling, feature layer, classifier."""

    def __init__(self, cin: int, mid: int, width: int, num_classes: int, act: str) -> None:
        super().__init__()
        from timm.layers import SelectAdaptivePool2d

        from fbnetv3_zoo.models.blocks import ConvBnAct, get_act_layer

        self.conv_expand = ConvBnAct(cin, mid, act=act)
        self.global_pool = SelectAdaptivePool2d(pool_type="avg")
        self.conv_head = nn.Conv2d(mid, width, 1, bias=False)
        self.act_head = get_act_layer(act)()
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(width, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_head(self.conv_head(self.global_pool(self.conv_expand(x))))
        return self.classifier(self.flatten(x))


def stem_key(size: int, in_chans: int, cout: int, kernel: int, stride: int, act: str) -> str:
    return f"stem|{size}|{in_chans}|{cout}|{kernel}|{stride}|{act}"


def block_key(
    size: int,
    cin: int,
    mid: int,
    cout: int,
    kernel: int,
    stride: int,
    padding: int,
    se: int,
    act: str,
    has_pw: bool,
) -> str:
    """Everything an IRF block's latency depends on (``se`` 0: no squeeze-excite)."""
    return f"irf|{size}|{cin}|{mid}|{cout}|{kernel}|{stride}|{padding}|{se}|{act}|{int(has_pw)}"


def head_key(size: int, cin: int, mid: int, width: int, num_classes: int, act: str) -> str:
    return f"head|{size}|{cin}|{mid}|{width}|{num_classes}|{act}"


def spec_keys(spec: ArchSpec, num_classes: int = 1000, in_chans: int = 3) -> list[str]:
    """The table keys of every block ``spec`` runs, in order: stem, IRF blocks, head."""
    k = spec.stem_kernel
    size = spatial_size(spec.input_size, k, spec.stem_stride, k // 2)
    keys = [
        stem_key(spec.input_size, in_chans, spec.stem_channels, k, spec.stem_stride, spec.stem_act)
    ]
    for b in spec.blocks():
        keys.append(
            block_key(
                size,
                b.in_channels,
                b.mid_channels,
                b.out_channels,
                b.kernel,
                b.stride,
                b.padding,
                b.se_channels or 0,
                b.act,
                b.has_pw,
            )
        )
        size = spatial_size(size, b.kernel, b.stride, b.padding)
    cin = spec.head_in_channels
    mid = make_divisible(cin * spec.head_expansion)
    keys.append(head_key(size, cin, mid, spec.feature_width, num_classes, spec.head_act))
    return keys


def build_entry(key: str) -> tuple[nn.Module, tuple[int, ...]]:
    """The module a key names (random weights, eval mode) and its input shape (batch 1)."""
    kind, *f = key.split("|")
    try:
        if kind == "stem":
            size, cin, cout, kernel, stride = (int(v) for v in f[:5])
            from fbnetv3_zoo.models.blocks import ConvBnAct

            module = ConvBnAct(cin, cout, kernel, stride, kernel // 2, bias=True, act=f[5])
            return module.eval(), (1, cin, size, size)
        if kind == "irf":
            size, cin, mid, cout, kernel, stride, pad, se = (int(v) for v in f[:8])
            from fbnetv3_zoo.models.blocks import IRFBlock

            block = ResolvedBlock(
                0, 0, cin, mid, cout, kernel, stride, pad, se or None, f[8], bool(int(f[9]))
            )
            return IRFBlock(block).eval(), (1, cin, size, size)
        if kind == "head":
            size, cin, mid, width, classes = (int(v) for v in f[:5])
            return _Head(cin, mid, width, classes, f[5]).eval(), (1, cin, size, size)
    except (ValueError, IndexError):
        pass
    raise UserError(f"malformed latency table key {key!r}")


# ------------------------------------------------------------------ the table
class LatencyTable:
    """Block key -> measured milliseconds for one backend, thread count and machine.

    The file is JSON lines: a header with the fingerprint, then one line per
    measured entry, and ``correction`` lines (a fitted whole-network
    correction per search space; the last one for a space wins).  Lines are
    appended and flushed as they are measured, so an interrupted build
    resumes where it stopped.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any]) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.entries: dict[str, dict[str, Any]] = {}
        self.corrections: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            self._read()

    @classmethod
    def for_machine(
        cls, backend: str, threads: int = 1, directory: str | os.PathLike | None = None
    ) -> LatencyTable:
        """The table of this machine for ``backend`` at ``threads`` (empty if never built)."""
        fp = machine_fingerprint(backend, threads)
        digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]
        base = Path(directory) if directory is not None else cache_dir() / "latency"
        return cls(base / f"{backend}-t{threads}-{digest}.jsonl", fp)

    @property
    def backend(self) -> str:
        return self.fingerprint["backend"]

    @property
    def threads(self) -> int:
        return int(self.fingerprint["threads"])

    def _read(self) -> None:
        if self.path.is_symlink():
            raise UserError(f"{self.path}: a symbolic link; latency tables are regular files")
        for n, line in enumerate(self.path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if n == 0:
                    raise UserError(f"{self.path}: not a latency table (bad first line)") from None
                continue  # a line cut short by a kill: that entry is measured again
            if "fingerprint" in row:
                if row["fingerprint"] != self.fingerprint:
                    raise UserError(f"{self.path}: made on another machine or with other settings")
            elif "key" in row:
                self.entries[row["key"]] = row
            elif "correction" in row:
                self.corrections[row["correction"]["space"]] = row["correction"]

    def _append(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o644)
        with os.fdopen(fd, "a") as f:
            if new:
                f.write(json.dumps({"fingerprint": self.fingerprint}, sort_keys=True) + "\n")
            f.write(json.dumps(row, sort_keys=True) + "\n")

    def missing(self, keys: list[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.entries]

    def measure(
        self,
        keys: list[str],
        limit: int | None = None,
        progress: bool = True,
        desc: str = "latency table",
        chunk: int = 64,
    ) -> int:
        """Measure the keys not yet in the table (at most ``limit``); return how many were.

        Entries are prepared ``chunk`` at a time and timed in passes over the
        chunk (:func:`measure_many`), then appended, so a kill loses one chunk.
        """
        todo = self.missing(keys)[:limit]
        if not todo:
            return 0
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=desc, unit="block", disable=not progress)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            fns = []
            for key in part:
                torch.manual_seed(0)
                module, shape = build_entry(key)
                fns.append(runner(module, shape, self.backend, self.threads))
                bar.update(0.5)
            for key, t in zip(part, measure_many(fns, self.threads), strict=True):
                row = {
                    "key": key,
                    "ms": t.ms,
                    "low": t.low,
                    "spread": t.spread,
                    "passes": list(t.passes),
                    "calls": t.calls,
                    "rounds": t.rounds,
                }
                self.entries[key] = row
                self._append(row)
                bar.update(0.5)
        bar.close()
        return len(todo)

    def set_correction(self, space: str, correction: dict[str, Any]) -> None:
        correction = {**correction, "space": space}
        self.corrections[space] = correction
        self._append({"correction": correction})

    def block_sum(self, keys: list[str], statistic: str = "ms") -> float:
        """Sum of the entries' milliseconds (``ms`` median or ``low`` fastest round)."""
        missing = self.missing(keys)
        if missing:
            raise UserError(f"latency table {self.path} has no entry {missing[0]!r}")
        return float(sum(self.entries[k][statistic] for k in keys))


def network_runner(
    spec: ArchSpec, backend: str, threads: int = 1, num_classes: int = 1000, seed: int = 0
) -> Callable[[], Any]:
    """A runner of the whole network at batch 1 (random weights from ``seed``)."""
    from fbnetv3_zoo.models.model import FBNetV3

    torch.manual_seed(seed)
    model = FBNetV3(spec, num_classes=num_classes).eval()
    return runner(model, (1, 3, spec.input_size, spec.input_size), backend, threads)


def measure_network(
    spec: ArchSpec, backend: str, threads: int = 1, num_classes: int = 1000, seed: int = 0
) -> Timing:
    """End-to-end latency of the whole network at batch 1, timed like the table's entries."""
    fn = network_runner(spec, backend, threads, num_classes, seed)
    return measure_many([fn], threads)[0]


def correction_name(space: str, space_fingerprint: str, num_classes: int, statistic: str) -> str:
    """The key a space's fitted whole-network correction is stored under in a table."""
    return f"{space}/{space_fingerprint}/{num_classes}/{statistic}"


def find_correction(
    table: LatencyTable, space: str, num_classes: int, statistic: str = "ms"
) -> dict[str, Any] | None:
    """The newest correction fitted for space name ``space`` and ``num_classes``, if any."""
    found = None
    for name, corr in table.corrections.items():
        parts = name.split("/")
        if parts[0] == space and parts[-2:] == [str(num_classes), statistic]:
            found = corr
    return found


def latency_report(
    spec: ArchSpec,
    backend: str,
    threads: int = 1,
    num_classes: int = 1000,
    space: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predicted (table) and measured (end to end) milliseconds of one network on this machine.

    Entries the table lacks are measured first and kept.  The prediction is
    the block sum, corrected when the table holds a correction fitted for
    ``space`` (a search result's space) at this class count.
    """
    table = LatencyTable.for_machine(backend, threads)
    keys = spec_keys(spec, num_classes)
    added = table.measure(keys, progress=progress, desc="latency entries")
    block_sum = table.block_sum(keys)
    corr = find_correction(table, space, num_classes) if space else None
    predicted = block_sum
    if corr is not None:
        a, b, c = corr["coef"]
        predicted = a + b * block_sum + c * len(keys)
    t = measure_network(spec, backend, threads, num_classes)
    return dict(
        backend=backend,
        threads=threads,
        predicted_ms=round(predicted, 4),
        block_sum_ms=round(block_sum, 4),
        corrected_for=space if corr is not None else None,
        measured_ms=round(t.ms, 4),
        measured_spread=round(t.spread, 4),
        error=round(predicted / t.ms - 1, 4),
        entries_measured_now=added,
        table=str(table.path),
    )
