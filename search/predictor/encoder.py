"""The architecture encoder every accuracy head builds on: pretraining and frozen features.

Measured accuracies are expensive, so an architecture-only encoder is first
pretrained on targets that cost nothing: the analytic log-MACs and log-params
of thousands of sampled architectures.  The recipe cannot change those, so its
columns are not fed to pretraining; the heads (``heads/``) join them at their
own input.  Features are one-hot for choices and min-max for ranges
(``features.py``).

The encoder's layers carry a member axis (``Linears``), so the network head
can train an ensemble as one batched network; a frozen copy with one member
gives the Bayesian heads their architecture features (``arch_design``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from fbnetv3_zoo.search.predictor.features import FeatureMap, feature_map
from fbnetv3_zoo.search.space.constraints import batch_stats
from fbnetv3_zoo.search.space.definition import SearchSpace
from fbnetv3_zoo.search.space.sampling import sample
from torch import nn

HIDDEN = 64  # encoder width (the arch embedding)
FIT_LR = 3e-3  # pretraining, the head-only phase and from-scratch fits
WEIGHT_DECAY = 1e-4
FULL_BATCH = 256  # up to this many pairs every step sees all of them


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: for a 64-wide MLP extra threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Linears(nn.Module):
    """``members`` independent linear layers applied to ``(members, n, fan_in)`` in one matmul."""

    def __init__(self, members: int, fan_in: int, fan_out: int, gen: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(max(fan_in, 1))  # nn.Linear's default range

        def uniform(*shape: int) -> nn.Parameter:
            return nn.Parameter((torch.rand(*shape, generator=gen) * 2 - 1) * bound)

        self.weight = uniform(members, fan_in, fan_out)
        self.bias = uniform(members, 1, fan_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


def build_encoder(members: int, arch_width: int, gen: torch.Generator) -> nn.Sequential:
    """The arch encoder: two ReLU layers of width ``HIDDEN``, one copy per member."""
    return nn.Sequential(
        Linears(members, arch_width, HIDDEN, gen),
        nn.ReLU(),
        Linears(members, HIDDEN, HIDDEN, gen),
        nn.ReLU(),
    )


def members_axis(x: np.ndarray, members: int) -> torch.Tensor:
    """``x`` as float32 with a leading member axis (a view, not copies)."""
    return torch.as_tensor(x, dtype=torch.float32).unsqueeze(0).expand(members, -1, -1)


def optimise(
    params: list[nn.Parameter],
    loss_of: Callable[[torch.Tensor | None], torch.Tensor],
    n: int,
    steps: int,
    lr: float,
    gen: torch.Generator,
) -> None:
    """AdamW with a cosine schedule; ``loss_of(idx)`` is the loss on rows ``idx`` (None: all)."""
    if steps <= 0:
        return
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=WEIGHT_DECAY, fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = None if n <= FULL_BATCH else torch.randint(n, (FULL_BATCH,), generator=gen)
        opt.zero_grad()
        loss_of(idx).backward()
        opt.step()
        sched.step()


# ---------------------------------------------------------------- pretraining
def free_targets(space: SearchSpace, u: np.ndarray, num_classes: int = 1000) -> np.ndarray:
    """Standardised log-MACs and log-params of the architectures in ``u`` (rows must be valid)."""
    macs, params, _ = batch_stats(space, u, num_classes)
    t = np.log(np.maximum(np.stack([macs, params], axis=1).astype(float), 1.0))
    return (t - t.mean(0)) / (t.std(0) + 1e-9)


@dataclass
class Pretrained:
    """The arch encoder after pretraining (``state`` None: not pretrained) and its featurisation."""

    state: dict[str, torch.Tensor] | None
    loss: float
    wall_s: float
    features: FeatureMap | None = None
    skipped: str | None = None  # why no pretraining ran, when that was the encoder's own call


def pretrain(
    space: SearchSpace,
    samples: int = 4096,
    steps: int = 1000,
    num_classes: int = 1000,
    seed: int = 0,
) -> Pretrained:
    """Fit the arch encoder to the log-MACs/params of ``samples`` Sobol architectures.

    Only the architecture columns are fed; ``steps=0`` or ``samples=0`` returns
    an untrained encoder (the no-pretraining ablation, which fits from scratch),
    and so does a space without architecture columns (a fixed model), with the
    reason in ``skipped``: the heads then fit on the recipe features alone.
    """
    start = time.perf_counter()
    fmap = feature_map(space)
    if fmap.arch_width == 0:  # a recipe-only space: MACs/params are one value, nothing to learn
        reason = "no architecture columns (fixed model): MACs/params are constant"
        return Pretrained(None, float("nan"), time.perf_counter() - start, fmap, reason)
    if steps <= 0 or samples <= 0:
        return Pretrained(None, float("nan"), time.perf_counter() - start, fmap)
    u = sample(space, samples, "sobol", seed=seed + 7919)
    valid = batch_stats(space, u, num_classes)[2]
    u = u[valid]
    arch, _ = fmap.split(u)
    y = torch.as_tensor(free_targets(space, u, num_classes), dtype=torch.float32).unsqueeze(0)
    gen = torch.Generator().manual_seed(seed)
    with single_thread():
        encoder = build_encoder(1, fmap.arch_width, gen)
        out = Linears(1, HIDDEN, 2, gen)
        x = members_axis(arch, 1)

        def loss_of(idx: torch.Tensor | None) -> torch.Tensor:
            xb, yb = (x, y) if idx is None else (x[:, idx], y[:, idx])
            return nn.functional.huber_loss(out(encoder(xb)), yb, delta=1.0)

        params = list(encoder.parameters()) + list(out.parameters())
        optimise(params, loss_of, len(u), steps, FIT_LR, gen)
        with torch.no_grad():
            loss = float(loss_of(None))
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    return Pretrained(state, loss, time.perf_counter() - start, fmap)


@dataclass
class PretrainCache:
    """Pretrained encoders by their inputs, for callers that run many searches in one process.

    Pretraining is a pure function of (space, samples, steps, classes, seed), so
    a benchmark that runs hundreds of searches can share one cache; a search
    given no cache pretrains once for itself.  Holds at most ``size`` encoders.
    """

    size: int = 8
    entries: dict[tuple, Pretrained] = field(default_factory=dict)

    def get(
        self, space: SearchSpace, samples: int, steps: int, num_classes: int, seed: int
    ) -> tuple[Pretrained, bool]:
        """(the encoder, whether it was pretrained by this call)."""
        key = (space.fingerprint(), samples, steps, num_classes, seed)
        if key in self.entries:
            return self.entries[key], False
        while len(self.entries) >= self.size:
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = pretrain(space, samples, steps, num_classes=num_classes, seed=seed)
        return self.entries[key], True


# ---------------------------------------------------------------- frozen features
def resolve_features(pretrained: Pretrained | None, space: SearchSpace | None) -> FeatureMap:
    """The featurisation: the pretrained encoder's, else the space's."""
    if pretrained is not None and pretrained.features is not None:
        return pretrained.features
    if space is None:
        raise TypeError("fit needs the search space (space=...) when no Pretrained is given")
    return feature_map(space)


def frozen_encoder(fmap: FeatureMap, pretrained: Pretrained | None) -> nn.Module | None:
    """The pretrained arch encoder as a one-member module (None without pretraining)."""
    if pretrained is None or pretrained.state is None:
        return None
    encoder = build_encoder(1, fmap.arch_width, torch.Generator().manual_seed(0))
    encoder.load_state_dict(pretrained.state)
    return encoder.eval()


def arch_design(fmap: FeatureMap, encoder: nn.Module | None, u: np.ndarray) -> np.ndarray:
    """The frozen encoder's embedding of ``u``'s architectures (raw features without one)."""
    arch, _ = fmap.split(u)
    if encoder is None:
        return arch
    with torch.no_grad(), single_thread():
        return encoder(members_axis(arch, 1))[0].double().numpy()
