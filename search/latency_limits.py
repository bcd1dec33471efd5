"""``latency_ms`` limits inside a search run: bind each to this machine's predictor, measure the picks.

A latency limit needs a table of this machine's block latencies (built first
if missing, with a message saying how long that takes) and, at the end of
the run, a real measurement of every pick it chose, so ``best/<limit>.yaml``
records predicted and measured latency side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.latency import LatencyTable, measure_network

from .constraints import Constraint
from .latency import (
    CALIBRATION_NETWORKS,
    LatencyPredictor,
    build_table,
    space_keys,
)
from .space import SearchSpace

SECONDS_PER_ENTRY = {"onnxruntime": 0.3, "torch": 0.12}  # rough, 2 busy cores (latency.md)


def bind_latency(
    constraints: list[Constraint],
    space: SearchSpace,
    num_classes: int,
    build: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> list[Constraint]:
    """Attach this machine's table predictor to each ``latency_ms`` constraint.

    A missing or incomplete table is built first (``build``), with a line
    saying how long that should take; otherwise the error says which
    ``fbnetv3 latency build`` command makes it.
    """
    import dataclasses
    import os

    out, tables = [], {}
    for c in constraints:
        if c.metric != "latency_ms":
            out.append(c)
            continue
        key = (c.backend, c.threads)
        if key not in tables:
            table = LatencyTable.for_machine(c.backend, c.threads)
            pred = LatencyPredictor(space, table, num_classes)
            missing = table.missing(space_keys(space, num_classes))
            if missing or pred.correction is None:
                command = (
                    f"fbnetv3 latency build --backend {c.backend} --threads {c.threads} "
                    f"--space {space.name} --num-classes {num_classes}"
                )
                if not build:
                    raise UserError(
                        f"constraint {c.text}: this machine's latency table for space "
                        f"{space.name!r} is incomplete ({len(missing)} entries missing); run: {command}"
                    )
                minutes = (len(missing) * SECONDS_PER_ENTRY[c.backend] + 30) / 60
                log(
                    f"constraint {c.text}: measuring this machine's latency table for space "
                    f"{space.name!r} first: {len(missing)} block configurations and "
                    f"{CALIBRATION_NETWORKS} whole networks, roughly {minutes:.0f} min on "
                    f"{os.cpu_count()} cores; cached in {table.path} for every later search "
                    f"(`{command}` does it ahead of time)"
                )
                build_table(
                    space,
                    c.backend,
                    c.threads,
                    num_classes,
                    progress=progress,
                    log=log,
                    table=table,
                )
            else:
                log(
                    f"constraint {c.text}: latency table {table.path} ({len(table.entries)} entries)"
                )
            tables[key] = pred
        out.append(dataclasses.replace(c, predict=tables[key].predict))
    return out


def record_latency(
    store: Any,
    space: SearchSpace,
    constraints: list[Constraint],
    num_classes: int,
    log: Callable[[str], None] = print,
) -> None:
    """Measure each latency limit's pick end to end and keep it in the run's store.

    Stored under ``latency/<slug>`` with the candidate id, so ``best/<slug>.yaml``
    carries predicted and measured latency, and a re-render does not re-measure.
    """
    from fbnetv3_zoo.spec import ArchSpec

    from .summaries import best_per_constraint

    lat = [c for c in constraints if c.metric == "latency_ms"]
    if not lat:
        return
    config = store.get("config") or {}
    done = store.candidates("done")
    best = best_per_constraint(done, lat, store.get("stop_epoch") or config.get("epochs"))
    for c in lat:
        row = best[c.text]
        name = f"latency/{c.slug}"
        if row is None or (store.get(name) or {}).get("candidate") == row["id"]:
            continue
        spec = ArchSpec.from_dict(row["arch"])
        predicted = float(c.predict(np.array([row["vector"]], dtype=float))[0])
        t = measure_network(spec, c.backend, c.threads, num_classes)
        table = LatencyTable.for_machine(c.backend, c.threads)
        corr = LatencyPredictor(space, table, num_classes).correction or {}
        noise = max(t.spread, corr.get("fit_mape", 0.0))
        doc = dict(
            candidate=row["id"],
            backend=c.backend,
            threads=c.threads,
            limit_ms=c.limit,
            predicted_ms=round(predicted, 4),
            measured_ms=round(t.ms, 4),
            measured_spread=round(t.spread, 4),
            noise=round(noise, 4),
            over_limit_beyond_noise=bool(t.ms > c.limit * (1 + noise)),
            table=str(table.path),
        )
        store.set(name, doc)
        flag = " (over the limit by more than the noise)" if doc["over_limit_beyond_noise"] else ""
        log(
            f"{c.text}: pick {row['id']} predicted {predicted:.3f} ms, measured {t.ms:.3f} ms{flag}"
        )
