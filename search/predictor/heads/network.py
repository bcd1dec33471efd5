"""The paper's accuracy head: a network on the pretrained encoder, as an ensemble option.

The head's input is ``concat(arch embedding, recipe features)``.  Fitting to
measured pairs runs in two phases, as in the paper: the head alone with the
encoder frozen, then every layer at a lower learning rate.  The loss is Huber
(robust to the odd badly trained proxy).

Ensembles and UCB are options on top: each member gets its own head
initialisation and a bootstrap of the measured pairs, and the acquisition adds
``kappa`` times their spread.  An ensemble also decides, by out-of-bag error,
how strongly the recipe enters the head (``RECIPE_WEIGHTS``): with a few dozen
pairs a plain concat leans on the size-aware embedding and barely learns a
recipe effect such as "sgd wants a high lr, adamw a low one".  ``members=1,
kappa=0`` is the paper's greedy choice (one network, no bootstrap, rank by
predicted accuracy).  All members train together as one batched network
(``torch.baddbmm`` over a member axis), so a fit on a few dozen pairs stays
cheap on one core.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from fbnetv3_zoo.search.predictor.encoder import (
    FIT_LR,
    HIDDEN,
    Linears,
    Pretrained,
    build_encoder,
    members_axis,
    optimise,
    resolve_features,
    single_thread,
)
from fbnetv3_zoo.search.predictor.features import FeatureMap
from fbnetv3_zoo.search.predictor.heads.base import FitContext, UpperConfidenceBound
from fbnetv3_zoo.search.space.definition import SearchSpace
from torch import nn

HEAD_HIDDEN = 32  # hidden width of the accuracy head
FINETUNE_LR = 3e-4  # all-layer phase: lower so the pretrained encoder is adjusted, not erased
# How strongly the recipe features enter the head relative to the arch embedding.  An
# ensemble trains members at each weight on the same bootstraps and keeps the weight with the
# lower out-of-bag error: 1 leans on the pretrained embedding (right when accuracy follows
# model size), 30 lets the head bend to the recipe (right when the recipe dominates, as on
# the digits pool).  A single network (the paper's mode) uses the first.
RECIPE_WEIGHTS = (1.0, 30.0)


class Network(nn.Module):
    """Arch encoder -> embedding; head(concat(embedding, recipe * weight)) -> accuracy."""

    def __init__(
        self,
        members: int,
        arch_width: int,
        recipe_width: int,
        gen: torch.Generator,
        recipe_weight: float | torch.Tensor = 1.0,
    ) -> None:
        super().__init__()
        self.encoder = build_encoder(members, arch_width, gen)
        self.head = nn.Sequential(
            Linears(members, HIDDEN + recipe_width, HEAD_HIDDEN, gen),
            nn.ReLU(),
            Linears(members, HEAD_HIDDEN, 1, gen),
        )
        weight = torch.as_tensor(recipe_weight, dtype=torch.float32).reshape(-1, 1, 1)
        self.register_buffer("recipe_weight", weight.expand(members, 1, 1).clone())

    def from_embedding(self, emb: torch.Tensor, recipe: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([emb, recipe * self.recipe_weight], dim=2)).squeeze(2)

    def forward(self, arch: torch.Tensor, recipe: torch.Tensor) -> torch.Tensor:
        return self.from_embedding(self.encoder(arch), recipe)

    def select(self, members: slice) -> Network:
        """A network of only the given members (their parameters copied)."""
        out = copy.deepcopy(self)
        for module in out.modules():
            if isinstance(module, Linears):
                module.weight = nn.Parameter(module.weight.detach()[members].clone())
                module.bias = nn.Parameter(module.bias.detach()[members].clone())
        out.recipe_weight = out.recipe_weight[members].clone()
        return out


def _huber(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted Huber loss, averaged per member and summed over members (they are independent)."""
    loss = nn.functional.huber_loss(pred, target, reduction="none", delta=1.0)
    return ((loss * weight).sum(1) / weight.sum(1).clamp_min(1e-9)).sum()


@dataclass
class Predictor(UpperConfidenceBound):
    """An ensemble predicting accuracy; ``predict`` returns mean and spread in target units."""

    network: Network
    features: FeatureMap
    y_mean: float
    y_std: float
    train_loss: float = 0.0

    @property
    def members(self) -> int:
        return int(self.network.encoder[0].weight.shape[0])

    @property
    def recipe_weight(self) -> float:
        """The recipe weight the fit kept (see ``RECIPE_WEIGHTS``)."""
        return float(self.network.recipe_weight[0])

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arch, recipe = self.features.split(u)
        m = self.members
        with torch.no_grad(), single_thread():
            out = self.network(members_axis(arch, m), members_axis(recipe, m)).double().numpy()
        out = out * self.y_std + self.y_mean
        return out.mean(0), out.std(0)

    def diagnostics(self) -> dict[str, float]:
        return {"members": float(self.members), "recipe_weight": self.recipe_weight}


def fit(
    u: np.ndarray,
    y: np.ndarray,
    pretrained: Pretrained | None = None,
    members: int = 5,
    steps: int = 300,
    seed: int = 0,
    space: SearchSpace | None = None,
    frozen_fraction: float = 0.5,
) -> Predictor:
    """Fit to measured ``y``: head with the pretrained encoder frozen, then all layers at a lower lr.

    ``frozen_fraction`` of the ``steps`` train the head alone.  Without a
    pretrained encoder (``None`` or one with ``state=None``) every layer trains
    from scratch for ``steps`` at the head's learning rate.  With
    ``members > 1`` each member sees a bootstrap of the pairs, ``members``
    networks train at each of ``RECIPE_WEIGHTS`` on the same bootstraps, and
    the weight with the lower out-of-bag error is kept (one batched training).
    """
    if members < 1:
        raise ValueError(f"members must be >= 1, got {members}")
    if not 0.0 <= frozen_fraction <= 1.0:
        raise ValueError(f"frozen_fraction must be in [0, 1], got {frozen_fraction}")
    fmap = resolve_features(pretrained, space)
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    arch, recipe = fmap.split(u)
    counts, choices = _bootstrap(len(u), members, np.random.default_rng(seed))
    total = members * len(choices)  # every recipe weight gets the same bootstraps
    weight = torch.as_tensor(np.tile(counts, (len(choices), 1)), dtype=torch.float32)
    target = torch.as_tensor((y - mean) / std, dtype=torch.float32).unsqueeze(0)
    gen = torch.Generator().manual_seed(seed)
    with single_thread():
        net = Network(
            total,
            fmap.arch_width,
            fmap.width - fmap.arch_width,
            gen,
            torch.as_tensor(np.repeat(choices, members)),
        )
        xa, xr = members_axis(arch, total), members_axis(recipe, total)
        state = pretrained.state if pretrained is not None else None
        _train(net, xa, xr, target, weight, state, steps, frozen_fraction, gen)
        net, loss = _kept_members(net, xa, xr, target, weight, members, len(choices) > 1)
    return Predictor(net, fmap, mean, std, loss)


def _bootstrap(
    n: int, members: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Per-member counts of each of ``n`` pairs, and the recipe weights to train at.

    Several members: a bootstrap each and every weight of ``RECIPE_WEIGHTS``;
    one member sees each pair once, at the first weight.
    """
    if members > 1:  # bootstrap as per-pair counts: same estimator, no gathered copies
        counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(members)])
        choices = RECIPE_WEIGHTS
    else:
        counts, choices = np.ones((1, n)), RECIPE_WEIGHTS[:1]
    return counts, choices


def _train(
    net: Network,
    xa: torch.Tensor,
    xr: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    state: dict[str, torch.Tensor] | None,
    steps: int,
    frozen_fraction: float,
    gen: torch.Generator,
) -> None:
    """Without ``state`` every layer from scratch; with it the head alone, then all layers."""
    total, n = xa.shape[0], xa.shape[1]  # members x recipe weights, measured pairs

    def rows(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return t if idx is None else t[:, idx]

    def full_loss(idx: torch.Tensor | None) -> torch.Tensor:
        pred = net(rows(xa, idx), rows(xr, idx))
        return _huber(pred, rows(target, idx).expand_as(pred), rows(weight, idx))

    if state is None:
        optimise(list(net.parameters()), full_loss, n, steps, FIT_LR, gen)
        return
    net.encoder.load_state_dict({k: v.expand(total, *v.shape[1:]) for k, v in state.items()})
    with torch.no_grad():  # frozen encoder: the embedding is computed once
        emb = net.encoder(xa)

    def head_loss(idx: torch.Tensor | None) -> torch.Tensor:
        pred = net.from_embedding(rows(emb, idx), rows(xr, idx))
        return _huber(pred, rows(target, idx).expand_as(pred), rows(weight, idx))

    frozen = int(round(steps * frozen_fraction))
    optimise(list(net.head.parameters()), head_loss, n, frozen, FIT_LR, gen)
    optimise(list(net.parameters()), full_loss, n, steps - frozen, FINETUNE_LR, gen)


def _kept_members(
    net: Network,
    xa: torch.Tensor,
    xr: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    members: int,
    choose: bool,
) -> tuple[Network, float]:
    """The members at the recipe weight kept (when there was a ``choose``), and their loss."""
    net.eval()
    with torch.no_grad():
        if choose:
            net = net.select(_lowest_out_of_bag(net(xa, xr), target, weight, members))
        pred = net(xa[:members], xr[:members])
        loss = float(_huber(pred, target.expand_as(pred), weight[:members]))
    loss /= members
    return net, loss


def _lowest_out_of_bag(
    pred: torch.Tensor, target: torch.Tensor, counts: torch.Tensor, members: int
) -> slice:
    """The block of ``members`` (one recipe weight) with the lowest squared error on left-out pairs."""
    left_out = (counts == 0).float()
    err = ((pred - target) ** 2 * left_out).reshape(-1, members, pred.shape[1])
    seen = left_out.reshape(-1, members, pred.shape[1]).sum((1, 2)).clamp_min(1.0)
    best = int(torch.argmin(err.sum((1, 2)) / seen))
    return slice(best * members, (best + 1) * members)


@dataclass(frozen=True)
class NetworkHead:
    """The network head; ``frozen_fraction`` of the fit's steps train the head alone."""

    frozen_fraction: float = 0.5
    name: str = "network"

    def fit(self, u: np.ndarray, y: np.ndarray, ctx: FitContext) -> Predictor:
        return fit(
            u,
            y,
            ctx.pretrained,
            members=ctx.members,
            steps=ctx.steps,
            seed=ctx.seed,
            space=ctx.space,
            frozen_fraction=self.frozen_fraction,
        )
