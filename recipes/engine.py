"""The training engine: one recipe, one model, one dataset -> metrics and checkpoints.

The search trains every candidate through ``train`` (``out_dir=None`` keeps
nothing on disk); ``fbnetv3 train`` is the same function behind a CLI.

A run directory holds ``metrics.jsonl`` (one line per epoch), ``summary.json``,
``curves.png``, ``model.safetensors`` / ``model_ema.safetensors`` (last
finished epoch) and ``state.pt`` (optimizer, scheduler, RNG states, history;
loads with ``torch.load(weights_only=True)``).  Every file is written to a
temporary name and moved into place, so a killed run leaves the previous
epoch's files intact and ``resume=True`` continues exactly from there.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .build import RecipeParts
from .data import collate_skipping, load_data
from .recipe import Recipe

STATE_FILE = "state.pt"
WEIGHTS_FILE = "model.safetensors"
EMA_FILE = "model_ema.safetensors"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


def train(
    model: nn.Module | str | Path | Any,
    recipe: Recipe,
    data: str | Path = "digits",
    epochs: int | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    progress: bool = True,
    resume: bool = False,
    *,
    pretrained: bool = False,
    stop_after_epochs: int | None = None,
    callback: Callable[[dict[str, Any]], bool | None] | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    workers: int = 0,
    eval_every: int = 1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` on ``data``; return the JSON-ready summary.

    ``model`` is a module, or a timm / torchvision / zoo name, ArchSpec or its
    YAML path, built by ``recipe.create_model`` with the data's class count.

    ``stop_after_epochs`` ends the run early as if it were killed (the schedule
    still spans ``epochs``); ``callback(epoch_record)`` returning True does the same.
    ``eval_every`` > 1 validates only every that many epochs and at the end (the
    other records hold None), which saves time when only the final score matters.
    """
    start_wall = time.perf_counter()
    seed_everything(seed)
    dev = torch.device(device) if device else _auto_device()
    splits = load_data(data, recipe.resolution, data_root=data_root, download=download)
    num_classes = num_classes or splits.num_classes
    from fbnetv3_zoo import ArchSpec

    if isinstance(model, nn.Module):
        model_name = type(model).__name__
    else:  # a name, an ArchSpec or its YAML path
        model_name = (model.name or "ArchSpec") if isinstance(model, ArchSpec) else str(model)
        model = recipe.create_model(model, num_classes=num_classes, pretrained=pretrained)
    model.to(dev)

    assert splits.train is not None
    n_train = len(splits.train)
    batch = min(recipe.batch_size, n_train)
    if recipe.uses_mixup:
        batch -= batch % 2  # mixup pairs images within a batch
    if batch < 1 or n_train // batch < 1:
        raise ValueError(f"{n_train} training image(s) are too few for one batch")
    if batch != recipe.batch_size:  # a small dataset: the lr scaling rule follows the real batch
        recipe = dataclasses.replace(recipe, batch_size=batch)
    total_epochs = epochs or recipe.epochs
    parts = recipe.build(model, n_train // batch, num_classes=num_classes, epochs=total_epochs)
    splits.set_transforms(parts.train_transform, parts.eval_transform)
    gen = torch.Generator().manual_seed(seed)
    loader_args = dict(
        num_workers=workers, collate_fn=collate_skipping, pin_memory=dev.type == "cuda"
    )
    train_loader = DataLoader(
        splits.train, batch, shuffle=True, drop_last=True, generator=gen, **loader_args
    )
    # its own generator: evaluating never draws from the training RNG streams
    val_loader = DataLoader(
        splits.val, max(batch, 64), shuffle=False, generator=torch.Generator(), **loader_args
    )

    out = Path(out_dir) if out_dir is not None else None
    run = _RunState(total_epochs)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if (out / STATE_FILE).exists():
            if not resume:
                raise ValueError(
                    f"{out} already holds a run ({STATE_FILE}): pass --resume to continue it or choose another output directory"
                )
            run = _load_state(out, model, parts, gen, recipe, total_epochs, seed, dev)
    run.wall_start = start_wall
    run.meta = dict(model=model_name, data=str(data), seed=seed, recipe=recipe.to_dict())

    amp = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if recipe.amp and dev.type == "cuda"
        else nullcontext()
    )
    for epoch in range(run.epoch + 1, total_epochs + 1):
        t0 = time.perf_counter()
        train_loss, seen = _train_epoch(
            model, parts, recipe, train_loader, dev, amp, run, epoch, out, progress
        )
        train_s = time.perf_counter() - t0
        run.train_time += train_s
        run.train_images += seen
        record: dict[str, Any] = dict(
            epoch=epoch,
            train_loss=train_loss,
            lr=parts.optimizer.param_groups[0]["lr"],
            images_per_s=seen / train_s if train_s > 0 else 0.0,
        )
        last = epoch == total_epochs or (
            stop_after_epochs is not None and epoch >= stop_after_epochs
        )
        raw = ema = None
        if last or epoch % eval_every == 0:
            raw = evaluate(model, val_loader, dev, run.skipped, progress, f"val {epoch}")
            if parts.ema is not None:
                ema = evaluate(
                    parts.ema.module, val_loader, dev, run.skipped, progress, f"ema {epoch}"
                )
        for prefix, res in (("val", raw), ("ema", ema)):
            for key in ("loss", "top1", "top5"):
                if prefix == "val" or key != "loss":
                    record[f"{prefix}_{key}"] = res[key] if res else None
        record["epoch_s"] = time.perf_counter() - t0
        if progress:
            _print_epoch(record, total_epochs)
        run.history.append(record)
        run.epoch = epoch
        if out is not None:
            _save_state(out, model, parts, gen, run, recipe, seed)
        stop = callback(record) if callback else False
        if stop or (stop_after_epochs is not None and epoch >= stop_after_epochs):
            break

    summary = _summary(run)
    if out is not None:
        _atomic_write(out / "summary.json", json.dumps(summary, indent=2).encode())
        _plot_curves(run.history, out / "curves.png")
    return summary


def seed_everything(seed: int) -> None:
    """Seed every RNG a run touches (Python, NumPy for mixup, torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class _RunState:
    """What a resumed run needs besides weights: progress, history, counters."""

    @property
    def wall_time(self) -> float:
        return self.wall_base + time.perf_counter() - self.wall_start

    def __init__(self, total_epochs: int) -> None:
        self.total_epochs = total_epochs
        self.epoch = 0
        self.num_updates = 0
        self.history: list[dict[str, Any]] = []
        self.train_time = 0.0
        self.train_images = 0
        self.wall_base = 0.0  # wall time of earlier (resumed-from) sessions
        self.wall_start = time.perf_counter()
        self.skipped: set[str] = set()
        self.meta: dict[str, Any] = {}


def _train_epoch(
    model: nn.Module,
    parts: RecipeParts,
    recipe: Recipe,
    loader: DataLoader,
    dev: torch.device,
    amp: Any,
    run: _RunState,
    epoch: int,
    out: Path | None,
    progress: bool,
) -> tuple[float, int]:
    from tqdm import tqdm

    model.train()
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{run.total_epochs}", disable=not progress, leave=False)
    for step, (x, y, skipped) in enumerate(bar, 1):
        run.skipped.update(skipped)
        if parts.mixup is not None and len(x) % 2:
            x, y = x[:-1], y[:-1]  # a skipped file left an odd batch
        if len(x) == 0:
            continue
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        target = y
        if parts.mixup is not None:
            x, target = parts.mixup(x, y)
        with amp:
            loss = parts.train_loss(model(x), target)
        if not torch.isfinite(loss):
            last = (
                f"{out / WEIGHTS_FILE} (epoch {run.epoch})"
                if out is not None and run.epoch
                else "none was written"
            )
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch}, step {step}: training stopped; "
                f"last good checkpoint: {last}. Try a lower lr, warmup or grad_clip."
            )
        parts.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        parts.optimizer.step()
        run.num_updates += 1
        parts.scheduler.step_update(num_updates=run.num_updates)
        if parts.ema is not None:
            parts.ema.update(model, step=run.num_updates)
        total += loss.item() * len(x)
        seen += len(x)
        bar.set_postfix(
            loss=f"{loss.item():.3f}", lr=f"{parts.optimizer.param_groups[0]['lr']:.2e}"
        )
    return (total / seen if seen else math.nan), seen


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    skipped: set[str] | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Top-1 / top-5 (percent), mean loss and images/s of ``model`` over ``loader``."""
    from tqdm import tqdm

    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss = correct1 = correct5 = n = 0.0
    t0 = time.perf_counter()
    for x, y, bad in tqdm(loader, desc=desc, disable=not progress, leave=False):
        if skipped is not None:
            skipped.update(bad)
        if len(x) == 0:
            continue
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss += loss_fn(logits, y).item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(y[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        n += len(x)
    elapsed = time.perf_counter() - t0
    if n == 0:
        return dict(loss=math.nan, top1=0.0, top5=0.0, images=0, images_per_s=0.0)
    return dict(
        loss=loss / n,
        top1=100 * correct1 / n,
        top5=100 * correct5 / n,
        images=int(n),
        images_per_s=n / elapsed if elapsed > 0 else 0.0,
    )


def _print_epoch(r: dict[str, Any], total: int) -> None:
    from tqdm import tqdm

    text = f"epoch {r['epoch']}/{total}: train loss {r['train_loss']:.4f}, lr {r['lr']:.2e}"
    if r["val_top1"] is not None:
        text += f", val top-1 {r['val_top1']:.2f} top-5 {r['val_top5']:.2f}"
    if r["ema_top1"] is not None:
        text += f", EMA top-1 {r['ema_top1']:.2f}"
    tqdm.write(text + f", {r['images_per_s']:.1f} images/s")


def _summary(run: _RunState) -> dict[str, Any]:
    evaluated = [h for h in run.history if h.get("val_top1") is not None]
    last = evaluated[-1] if evaluated else {}
    tops = [h[k] for h in evaluated for k in ("val_top1", "ema_top1") if h.get(k) is not None]
    return dict(
        **run.meta,
        epochs_done=run.epoch,
        epochs_planned=run.total_epochs,
        final_top1=last.get("val_top1"),
        final_top5=last.get("val_top5"),
        ema_top1=last.get("ema_top1"),
        ema_top5=last.get("ema_top5"),
        best_top1=max(tops) if tops else None,
        images_per_s=run.train_images / run.train_time if run.train_time else 0.0,
        train_s=run.train_time,
        wall_s=run.wall_time,
        skipped_files=len(run.skipped),
        skipped_paths=sorted(run.skipped)[:100],
        epochs=run.history,
    )


# ------------------------------------------------------------- checkpoints
def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _weights_bytes(module: nn.Module, epoch: int) -> bytes:
    from safetensors.torch import save

    sd = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    return save(sd, metadata={"epoch": str(epoch)})


def _rng_state(gen: torch.Generator) -> dict[str, Any]:
    """Every RNG as tensors/numbers, so the file loads with weights_only=True."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state: dict[str, Any] = dict(
        torch=torch.get_rng_state(),
        loader=gen.get_state(),
        numpy_keys=torch.from_numpy(keys.astype(np.int64)),
        numpy_pos=int(pos),
        numpy_has_gauss=int(has_gauss),
        numpy_gauss=float(gauss),
        python_version=int(py_version),
        python_state=torch.tensor(py_state, dtype=torch.int64),
        python_gauss=py_gauss,
    )
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], gen: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["loader"])
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(
        ("MT19937", keys, state["numpy_pos"], state["numpy_has_gauss"], state["numpy_gauss"])
    )
    py_state = tuple(int(v) for v in state["python_state"].tolist())
    random.setstate((state["python_version"], py_state, state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_state(
    out: Path,
    model: nn.Module,
    parts: RecipeParts,
    gen: torch.Generator,
    run: _RunState,
    recipe: Recipe,
    seed: int,
) -> None:
    import io

    _atomic_write(out / WEIGHTS_FILE, _weights_bytes(model, run.epoch))
    if parts.ema is not None:
        _atomic_write(out / EMA_FILE, _weights_bytes(parts.ema.module, run.epoch))
    state = dict(
        epoch=run.epoch,
        total_epochs=run.total_epochs,
        num_updates=run.num_updates,
        optimizer=parts.optimizer.state_dict(),
        scheduler=parts.scheduler.state_dict(),
        rng=_rng_state(gen),
        history=run.history,
        train_time=run.train_time,
        train_images=run.train_images,
        wall_time=run.wall_time,
        skipped=sorted(run.skipped),
        recipe=recipe.to_dict(),
        seed=seed,
    )
    buf = io.BytesIO()
    torch.save(state, buf)
    _atomic_write(out / STATE_FILE, buf.getvalue())
    lines = "".join(json.dumps(h) + "\n" for h in run.history)
    _atomic_write(out / "metrics.jsonl", lines.encode())


def _load_weights_at(path: Path, module: nn.Module, epoch: int) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        saved = int((f.metadata() or {}).get("epoch", -1))
    if saved != epoch:
        raise ValueError(
            f"{path} is from epoch {saved} but {STATE_FILE} from epoch {epoch}: the run was killed while saving; delete the run or start over"
        )
    module.load_state_dict(load_file(str(path)))


def _load_state(
    out: Path,
    model: nn.Module,
    parts: RecipeParts,
    gen: torch.Generator,
    recipe: Recipe,
    total_epochs: int,
    seed: int,
    dev: torch.device,
) -> _RunState:
    state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    if (
        state["recipe"] != recipe.to_dict()
        or state["total_epochs"] != total_epochs
        or state["seed"] != seed
    ):
        raise ValueError(
            f"{out} holds a run with another recipe, epoch count or seed: resume it with the same settings"
        )
    _load_weights_at(out / WEIGHTS_FILE, model, state["epoch"])
    if parts.ema is not None:
        _load_weights_at(out / EMA_FILE, parts.ema.module, state["epoch"])
    model.to(dev)
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    _set_rng_state(state["rng"], gen)
    run = _RunState(total_epochs)
    run.epoch = state["epoch"]
    run.num_updates = state["num_updates"]
    run.history = state["history"]
    run.train_time = state["train_time"]
    run.train_images = state["train_images"]
    run.wall_base = state["wall_time"]
    run.skipped = set(state["skipped"])
    return run


def _plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and accuracy per epoch; skipped quietly when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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
    for key, label in (("val_top1", "top-1"), ("ema_top1", "EMA top-1")):
        if series(key)[0]:
            b.plot(*series(key), marker=".", label=label)
    b.set(xlabel="epoch", ylabel="val accuracy (%)")
    b.legend()
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
