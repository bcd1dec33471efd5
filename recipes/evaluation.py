"""Measuring a model on a loader, and the input-size probe run before any work.

``evaluate`` serves the training engine (every validated epoch) and
``validate`` alike, so a run's numbers and a later ``fbnetv3 validate`` of its
checkpoint are computed the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import torch
from torch import nn
from torch.utils.data import DataLoader

from fbnetv3_zoo.errors import UserError, first_line


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str = "cpu",
    skipped: set[str] | None = None,
    progress: bool = False,
    desc: str = "eval",
) -> dict[str, float]:
    """Top-1 / top-5 (percent), mean loss and images/s of ``model`` over ``loader``.

    Only measured numbers come back: top-5 is None with 5 classes or fewer
    (where it is 100 % by definition), and a loader none of whose images could
    be read is refused rather than reported as 0 %.
    """
    from tqdm import tqdm

    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss = correct1 = correct5 = n = 0.0
    classes = 0
    unreadable: list[str] = []
    t0 = time.perf_counter()
    for x, y, bad in tqdm(loader, desc=desc, disable=not progress, leave=False):
        unreadable.extend(bad)
        if skipped is not None:
            skipped.update(bad)
        if len(x) == 0:
            continue
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        classes = logits.shape[1]
        loss += loss_fn(logits, y).item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top.eq(y[:, None])
        correct1 += hits[:, 0].sum().item()
        correct5 += hits.any(dim=1).sum().item()
        n += len(x)
    elapsed = time.perf_counter() - t0
    if n == 0 and unreadable:
        raise UserError(
            f"{desc}: none of the images could be read ({len(unreadable)} skipped, e.g. "
            f"{unreadable[0]}); refusing to report an accuracy measured on no image"
        )
    if n == 0:
        return dict(loss=math.nan, top1=None, top5=None, images=0, images_per_s=0.0)
    return dict(
        loss=loss / n,
        top1=100 * correct1 / n,
        top5=100 * correct5 / n if classes > 5 else None,
        images=int(n),
        images_per_s=n / elapsed if elapsed > 0 else 0.0,
    )


def check_input_size(
    model: nn.Module, name: str, sizes: Iterable[int], device: torch.device | str, option: str
) -> None:
    """One eval-mode forward pass on a blank image per size, so a too-small input fails clearly.

    Without it a network whose feature map shrinks to nothing fails deep inside
    the first batch (or, for training, after the run folder was made);
    ``option`` names the flag that chose the size.
    """
    was_training = model.training
    model.eval()
    try:
        for size in sorted(set(sizes)):
            try:
                with torch.no_grad():
                    model(torch.zeros(1, 3, size, size, device=device))
            except (RuntimeError, AssertionError, ValueError) as err:
                raise UserError(
                    f"model {name} cannot take a {size}x{size} input ({option}): {first_line(err)}"
                ) from None
    finally:
        model.train(was_training)
