"""Which device a run trains on, and in what precision."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from fbnetv3_zoo.errors import UserError


def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """The user's ``device`` checked against this machine (None: choose automatically)."""
    if device is None or device == "":
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(
            f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) are visible"
            )
    elif dev.type == "mps":
        if not _mps_available():
            raise UserError(f"--device {device}: Apple MPS is not available on this machine")
    elif dev.type != "cpu":
        raise UserError(f"--device {device}: the engine trains on cpu, cuda or mps")
    return dev


def auto_device() -> torch.device:
    """The fastest device here: a CUDA GPU, else Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def precision(amp: bool, device: torch.device) -> AbstractContextManager:
    """bfloat16 autocast on CUDA when the recipe asks for ``amp``; full precision elsewhere."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()
