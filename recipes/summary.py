"""A run's result: ``summary.json``, the per-epoch console line and ``curves.png``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.untrusted import read_json

from . import checkpoints as ckpt
from .apply import RecipeParts
from .resume import RunLog

SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
MAX_SUMMARY_BYTES = 64 << 20


def finite(value: float | None) -> float | None:
    """JSON has no NaN: a value that is not a number is recorded as null."""
    return value if value is None or math.isfinite(value) else None


def read_summary(out: Path) -> dict[str, Any] | None:
    """A finished run's ``summary.json`` as written, or None when missing or damaged."""
    try:
        doc = read_json(out / SUMMARY_FILE, MAX_SUMMARY_BYTES)
    except (OSError, UserError):
        return None
    finished = isinstance(doc, dict) and ("final_top1" in doc or "task" in doc)
    return doc if finished else None


def run_summary(
    log: RunLog, settings: dict[str, Any], parts: RecipeParts, wall_s: float, task: Any = None
) -> dict[str, Any]:
    """The run's result file: numbers, the recipe as run, how and where it was made.

    ``recipe`` is the recipe as actually run (after ``fit_to_run`` shrank the
    warmup or EMA horizon, ``recipe_notes`` say how); ``recipe_given`` is what
    was asked for.  ``evaluation`` is the transform the top-1/top-5 numbers were
    measured with (``fbnetv3 validate`` reuses it); ``command``, ``processes``,
    ``device`` and ``versions`` come from the session that trained the last
    epoch, ``sessions`` lists every session's record.  The metrics are the
    task's (``tasks.py``): ``final_<key>``, ``ema_<key>`` and ``best_<headline>``
    (classification: top1/top5; detection: AP...; segmentation: miou...);
    ``not_applied`` lists the recipe fields that did not apply to this run.
    """
    head = task.headline if task is not None else "top1"
    keys = [
        k for k in (task.metric_keys() if task is not None else ("top1", "top5")) if k != "loss"
    ]
    evaluated = [h for h in log.history if h.get(f"val_{head}") is not None]
    last = evaluated[-1] if evaluated else {}
    tops = [h[k] for h in evaluated for k in (f"val_{head}", f"ema_{head}") if h.get(k) is not None]
    last_session = log.sessions[-1] if log.sessions else {}
    weights = [ckpt.WEIGHTS_FILE] + ([ckpt.EMA_FILE] if parts.ema is not None else [])
    metrics = {f"final_{k}": last.get(f"val_{k}") for k in keys}
    metrics |= {f"ema_{k}": last.get(f"ema_{k}") for k in keys}
    metrics[f"best_{head}"] = max(tops) if tops else None
    return dict(
        task=task.name if task is not None else "classification",
        headline=head,
        model=settings["model"],
        data=settings["data"],
        seed=settings["seed"],
        recipe=parts.recipe.to_dict(),
        recipe_given=settings["recipe"],
        recipe_notes=list(parts.notes),
        evaluation=settings["evaluation"],
        weights=sorted(weights),
        epochs_done=log.epoch,
        epochs_planned=log.total_epochs,
        **metrics,
        not_applied=list(parts.not_applied),
        images_per_s=log.train_images / log.train_time if log.train_time else 0.0,
        train_s=log.train_time,
        wall_s=wall_s,
        **{k: last_session.get(k) for k in ("command", "processes", "device", "versions")},
        sessions=log.sessions,
        skipped_files=len(log.skipped),
        skipped_paths=sorted(log.skipped)[:100],
        epochs=log.history,
    )


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    """``summary.json`` (strict JSON, replaced atomically) and the curves beside it."""
    ckpt.atomic_write(out / SUMMARY_FILE, json.dumps(summary, indent=2, allow_nan=False).encode())
    plot_curves(summary["epochs"], out / CURVES_FILE, summary.get("headline", "top1"))


def print_epoch(r: dict[str, Any], total: int, headline: str = "top1") -> None:
    """One console line per epoch, written above the progress bars."""
    from tqdm import tqdm

    loss = f"{r['train_loss']:.4f}" if r["train_loss"] is not None else "n/a"
    text = f"epoch {r['epoch']}/{total}: train loss {loss}, lr {r['lr']:.2e}"
    if headline != "top1":  # detection / segmentation: the task's headline metric
        for prefix in ("val", "ema"):
            value = r.get(f"{prefix}_{headline}")
            if value is not None:
                text += f", {prefix} {headline} {value:.2f}"
        tqdm.write(text + f", {r['images_per_s']:.1f} images/s")
        return
    if r["val_top1"] is not None:
        top5 = "-" if r["val_top5"] is None else f"{r['val_top5']:.2f}"
        text += f", val top-1 {r['val_top1']:.2f} top-5 {top5}"
    if r["ema_top1"] is not None:
        text += f", EMA top-1 {r['ema_top1']:.2f}"
    tqdm.write(text + f", {r['images_per_s']:.1f} images/s")


def plot_curves(history: list[dict[str, Any]], path: Path, headline: str = "top1") -> None:
    """Loss and accuracy per epoch; skipped quietly when matplotlib (the [train] extra) is missing,
    so a run without it still finishes with its numbers."""
    from fbnetv3_zoo.optional import MissingExtra, require

    try:
        require("matplotlib", "curves.png").use("Agg")
        plt = require("matplotlib.pyplot", "curves.png")
    except MissingExtra:
        return
    if not history:
        return

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        a.plot(*series(key), marker=".", label=label)
    a.set(xlabel="epoch", ylabel="loss")
    a.legend()
    for key, label in ((f"val_{headline}", headline), (f"ema_{headline}", f"EMA {headline}")):
        if series(key)[0]:
            b.plot(*series(key), marker=".", label=label)
    b.set(xlabel="epoch", ylabel=f"val {headline} (%)")
    b.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    if os.path.lexists(tmp):
        tmp.unlink()
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
