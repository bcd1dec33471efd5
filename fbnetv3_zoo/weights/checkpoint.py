"""Reading checkpoints safely and converting the official layout to ours.

Official FBNet files hold ``{"state_dict": ..., "model_ema": ...}`` with a
``module.`` prefix and mobile-vision key names (``backbone.stages.xif<S>_<j>``);
our own files hold the model's ``state_dict`` directly.  Both load here.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from torch import nn

from fbnetv3_zoo.errors import UserError

TRUST_ENV = "FBNETV3_TRUST_CHECKPOINT"
_OFFICIAL_KEY = re.compile(r"^backbone\.stages\.xif(\d+)_(\d+)\.(.+)$")
_CONTAINER_KEYS = ("model_ema", "state_dict_ema", "state_dict", "model")  # EMA first
# a new num_classes or in_chans: load_weights adapts these, so their shapes may differ
ADAPTABLE_KEYS = ("stem.conv.weight", "classifier.weight", "classifier.bias")


class CheckpointError(UserError):
    """A checkpoint file cannot be read or does not fit the model."""


class WeightsDownloadError(UserError):
    """Pretrained weights could not be downloaded; the message names the URL and local options."""


def read_checkpoint(
    path: str | os.PathLike, trusted: bool | None = None
) -> dict[str, torch.Tensor]:
    """Load a state dict from ``path`` without executing code from the file.

    ``.safetensors`` files load through safetensors; anything else through
    ``torch.load(weights_only=True)``.  A pickle that needs arbitrary objects is
    refused unless ``trusted`` (or the ``FBNETV3_TRUST_CHECKPOINT=1`` variable) says so.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if trusted is None:
        trusted = os.environ.get(TRUST_ENV, "") == "1"
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    refusal = (
        f"{path}: refused to load, the file needs arbitrary unpickling (code execution) "
        f"beyond plain tensors. If you trust where it came from, set {TRUST_ENV}=1, or "
        "write a safe copy with `fbnetv3 convert ... --trust-checkpoint`"
    )
    try:
        with warnings.catch_warnings():  # torch's note on pickle protocols is not for users
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "GLOBAL" in str(err) or _raw_pickle(path):
            # a plain pickle.dump (not torch.save) is refused like any code-running pickle
            raise CheckpointError(refusal) from None
        raise CheckpointError(_not_a_checkpoint(path, err)) from None
    except Exception as err:  # torch raises many types for damaged files
        raise CheckpointError(_not_a_checkpoint(path, err, "truncated or ")) from None
    return select_state_dict(obj, str(path))


def _raw_pickle(path: Path) -> bool:
    """A file that starts like a pickle of protocol 2+ (``pickle.dump``), not a torch.save zip."""
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _not_a_checkpoint(path: Path, err: Exception, maybe: str = "") -> str:
    """Say what was expected and what the file starts with, not torch's unpickler internals."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = next((line for line in lines if "Unsupported operand" in line), None)
    detail = detail or (lines[0] if lines else type(err).__name__)
    with open(path, "rb") as f:
        head = f.read(12)
    return (
        f"{path}: {maybe}not a PyTorch checkpoint: expected a file written by torch.save "
        f"(a zip archive or a pickle) or a .safetensors file; it starts with {head!r} "
        f"(torch.load: {detail[:120]})"
    )


def check_tensors(
    state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Refuse NaN/Inf weights, naming the first bad tensor (they load and run silently otherwise)."""
    for key, value in state_dict.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{source}: tensor {key!r} holds {bad} non-finite value(s) (NaN/Inf) of "
                f"{value.numel()}; refusing weights that cannot be right"
            )
    return dict(state_dict)


def announce_casts(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, source: str = "checkpoint"
) -> None:
    """Warn, naming the tensors, when loading will cast their dtype to the model's."""
    own = model.state_dict()
    casts: dict[tuple[torch.dtype, torch.dtype], list[str]] = {}
    for key, value in state_dict.items():
        if key in own and value.dtype != own[key].dtype:
            casts.setdefault((value.dtype, own[key].dtype), []).append(key)
    for (src, dst), keys in casts.items():
        shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
        warnings.warn(
            f"{source}: casting {len(keys)} tensor(s) from {src} to {dst}: {shown}",
            stacklevel=3,
        )


def select_state_dict(obj: object, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Pick the weights out of a checkpoint container, preferring EMA weights."""
    if isinstance(obj, Mapping):
        for key in _CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner:
                obj = inner
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {_strip_prefix(k): v for k, v in obj.items()}
        keys = list(obj)[:8]
    else:
        keys = type(obj).__name__
    raise CheckpointError(
        f"{source}: no state dict of tensors found (looked for {', '.join(_CONTAINER_KEYS)} "
        f"or a flat dict of tensors; found {keys})"
    )


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def is_official_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith("backbone.stages.") for k in state_dict)


def official_to_ours(
    state_dict: Mapping[str, torch.Tensor], num_stages: int, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Rename mobile-vision keys to this package's module names."""
    out: dict[str, torch.Tensor] = {}
    head_stage = num_stages + 1
    for key, value in state_dict.items():
        key = _strip_prefix(key)
        m = _OFFICIAL_KEY.match(key)
        if key == "head.conv.weight":
            out["classifier.weight"] = value.reshape(value.shape[0], -1)
        elif key == "head.conv.bias":
            out["classifier.bias"] = value
        elif m is None:
            raise CheckpointError(f"{source}: unexpected key {key!r} in an official checkpoint")
        else:
            stage, index, rest = int(m.group(1)), int(m.group(2)), m.group(3)
            if stage == 0:
                out[f"stem.{rest}"] = value
            elif stage == head_stage:
                if rest.startswith("pw."):
                    out["conv_expand." + rest[3:]] = value
                elif rest == "pwl.conv.weight":
                    out["conv_head.weight"] = value
                else:
                    raise CheckpointError(f"{source}: unexpected head key {key!r}")
            elif 1 <= stage <= num_stages:
                rest = rest.replace("se.se.0.conv.", "se.fc1.").replace("se.se.1.", "se.fc2.")
                out[f"blocks.{stage - 1}.{index}.{rest}"] = value
            else:
                raise CheckpointError(
                    f"{source}: key {key!r} names stage {stage}, but the model has "
                    f"{num_stages} stages between stem and head; is it another architecture?"
                )
    return out


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, source: str = "checkpoint"
) -> dict[str, torch.Tensor]:
    """Bring ``state_dict`` (official or our layout) to ``model``'s keys and check it fits.

    The classifier and the stem's input channels may differ (a new ``num_classes``
    or ``in_chans``); callers decide what to do with those.  Anything else that
    does not fit raises, naming the first offending key and both shapes.
    """
    sd = check_tensors({_strip_prefix(k): v for k, v in state_dict.items()}, source)
    if is_official_layout(sd):
        sd = official_to_ours(sd, len(model.arch.stages), source)
    check_fits(sd, model, source, may_differ=ADAPTABLE_KEYS)
    announce_casts(sd, model, source)
    return sd


def check_fits(
    state_dict: Mapping[str, torch.Tensor],
    model: nn.Module,
    source: str,
    *,
    target: str | None = None,
    may_differ: Collection[str] = (),
    hint: str = "is it for another architecture, variant or class count?",
) -> None:
    """Refuse ``state_dict`` unless it has exactly ``model``'s keys and shapes.

    The one fit check of the package (loading, ``validate``, resume): the
    message names the file, then each kind of misfit with a count and an
    example key (shapes for a mismatching key), so one line says what is wrong.
    Keys in ``may_differ`` may hold another shape (the caller adapts them).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    extra = [k for k in state_dict if k not in own]
    shaped = [
        k
        for k in own
        if k in state_dict
        and k not in may_differ
        and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if not (missing or extra or shaped):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    if shaped:
        key = shaped[0]
        parts.append(
            f"{len(shaped)} mismatching key(s) (e.g. {key}: checkpoint has shape "
            f"{tuple(state_dict[key].shape)}, model expects {tuple(own[key].shape)})"
        )
    raise CheckpointError(
        f"{source} does not fit {target or type(model).__name__}: {', '.join(parts)}; {hint}"
    )


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    trusted: bool | None = None,
) -> nn.Module:
    """Load a checkpoint file into ``model``, adapting the classifier and input channels.

    A classifier of another size is left freshly initialised (fine-tuning); a
    stem with other input channels is adapted the way timm does it.
    """
    from timm.models import adapt_input_conv

    sd = convert_state_dict(read_checkpoint(path, trusted), model, str(path))
    own = model.state_dict()
    if sd["stem.conv.weight"].shape != own["stem.conv.weight"].shape:
        sd["stem.conv.weight"] = adapt_input_conv(
            own["stem.conv.weight"].shape[1], sd["stem.conv.weight"]
        )
    for key in ("classifier.weight", "classifier.bias"):
        if key not in own or sd[key].shape != own[key].shape:
            sd.pop(key, None)
    missing, _ = model.load_state_dict(sd, strict=False)
    unexpected_missing = [k for k in missing if not k.startswith("classifier.")]
    if unexpected_missing:
        raise CheckpointError(f"{path}: keys not loaded: {unexpected_missing}")
    return model
