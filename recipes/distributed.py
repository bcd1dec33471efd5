"""Several training processes under ``torchrun``: one process group, rank 0 writes.

``torchrun --nproc_per_node N $(which fbnetv3) train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`setup` joins the group (NCCL on GPUs, gloo
on CPU) and each process trains on its share of every global batch.  Outside
torchrun everything here degrades to a single process with no communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fbnetv3_zoo.errors import UserError


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the group; ``world_size == 1`` means no group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when setup() created the group (and tears it down)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not an integer") from None


def setup(device: torch.device | None) -> tuple[Dist, torch.device | None]:
    """Join the torchrun process group when there is one; pick this process's device.

    ``device`` is the user's choice (None: automatic).  Under torchrun a CUDA
    device becomes ``cuda:LOCAL_RANK`` and the backend NCCL; otherwise gloo.
    """
    if dist.is_available() and dist.is_initialized():  # the caller made the group
        d = Dist(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
        return d, _local_device(device, d)
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Dist(), device
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    d = Dist(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), owns_group=True)
    device = _local_device(device, d)
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=d.rank, world_size=d.world_size)
    return d, device


def _local_device(device: torch.device | None, d: Dist) -> torch.device | None:
    wants_cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    if not wants_cuda:
        return device
    if device is not None and device.index is not None:
        return device  # the user pinned it
    count = torch.cuda.device_count()
    if d.local_rank >= count:
        raise UserError(
            f"process with LOCAL_RANK={d.local_rank} has no GPU of its own ({count} visible): "
            "start at most that many processes per node"
        )
    return torch.device("cuda", d.local_rank)


def teardown(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """The module that trains: ``model`` itself, or its DistributedDataParallel wrapper.

    On GPUs batch norm becomes SyncBatchNorm, so its statistics cover the global
    batch as in a one-process run; PyTorch has no CPU SyncBatchNorm, so gloo runs
    normalise each process's share separately.
    """
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def unwrap(net: nn.Module) -> nn.Module:
    return net.module if hasattr(net, "module") and isinstance(net.module, nn.Module) else net


def sum_all(values: list[float], d: Dist) -> list[float]:
    """Element-wise sum of ``values`` over all processes (the values themselves alone)."""
    if not d.active:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().tolist()


def gather(obj: Any, d: Dist) -> list[Any]:
    """Every process's ``obj``, in rank order (a pickle between our own processes)."""
    if not d.active:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def share(obj: Any, d: Dist) -> Any:
    """Rank 0's ``obj`` on every process (a pickle between our own processes)."""
    if not d.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree_on_error(message: str | None, d: Dist) -> None:
    """Raise ``UserError`` on every process when any process met one (no one waits forever)."""
    if not d.active:
        if message:
            raise UserError(message)
        return
    first = next((m for m in gather(message, d) if m), None)
    if first:
        raise UserError(first)


def main_process() -> bool:
    """True outside torchrun and on its rank 0: the process that should print summaries."""
    return os.environ.get("RANK", "0") == "0"
