"""The neural acquisition function: the paper's pretrained predictor, as an ensemble option.

Measured accuracies are expensive, so an architecture-only encoder is first
pretrained on targets that cost nothing: the analytic log-MACs and log-params
of thousands of sampled architectures.  The recipe cannot change those, so its
columns are not fed to pretraining; they join at the accuracy head, whose input
is ``concat(arch embedding, recipe features)``.  Fitting to measured pairs then
runs in two phases, as in the paper: the head alone with the encoder frozen,
then every layer at a lower learning rate.  The loss is Huber (robust to the
odd badly trained proxy).  Features are one-hot for choices and min-max for
ranges (``features.py``).

Ensembles and UCB are options on top: each member gets its own head
initialisation and a bootstrap of the measured pairs, and the acquisition adds
``kappa`` times their spread.  An ensemble also decides, by out-of-bag error,
how strongly the recipe enters the head (``RECIPE_WEIGHTS``): with a few dozen
pairs a plain concat leans on the size-aware embedding and barely learns a
recipe effect such as "sgd wants a high lr, adamw a low one", which dominates
accuracy on the digits pool.  ``members=1, kappa=0`` is the paper's greedy
choice (one network, no bootstrap, rank by predicted accuracy).  All members
train together as one batched network (``torch.baddbmm`` over a member axis),
so a fit on a few dozen pairs takes a fraction of a second on one core.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .constraints import batch_stats
from .features import FeatureMap, feature_map
from .sampling import sample
from .space import SearchSpace

HIDDEN = 64  # encoder width (the arch embedding)
HEAD_HIDDEN = 32  # hidden width of the accuracy head
FIT_LR = 3e-3  # head-only phase (and from-scratch fits)
FINETUNE_LR = 3e-4  # all-layer phase: lower so the pretrained encoder is adjusted, not erased
WEIGHT_DECAY = 1e-4
# How strongly the recipe features enter the head relative to the arch embedding.  An
# ensemble trains members at each weight on the same bootstraps and keeps the weight with the
# lower out-of-bag error: 1 leans on the pretrained embedding (right when accuracy follows
# model size), 30 lets the head bend to the recipe (right when the recipe dominates, as on
# the digits pool).  A single network (the paper's mode) uses the first.
RECIPE_WEIGHTS = (1.0, 30.0)
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


def _encoder(members: int, arch_width: int, gen: torch.Generator) -> nn.Sequential:
    return nn.Sequential(
        Linears(members, arch_width, HIDDEN, gen),
        nn.ReLU(),
        Linears(members, HIDDEN, HIDDEN, gen),
        nn.ReLU(),
    )


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
        self.encoder = _encoder(members, arch_width, gen)
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


def _members_axis(x: np.ndarray, members: int) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32).unsqueeze(0).expand(members, -1, -1)


def _optimise(
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


def _huber(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted Huber loss, averaged per member and summed over members (they are independent)."""
    loss = nn.functional.huber_loss(pred, target, reduction="none", delta=1.0)
    return ((loss * weight).sum(1) / weight.sum(1).clamp_min(1e-9)).sum()


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


def pretrain(
    space: SearchSpace,
    samples: int = 4096,
    steps: int = 1000,
    num_classes: int = 1000,
    seed: int = 0,
) -> Pretrained:
    """Fit the arch encoder to the log-MACs/params of ``samples`` Sobol architectures.

    Only the architecture columns are fed; ``steps=0`` or ``samples=0`` returns
    an untrained encoder (the no-pretraining ablation, which fits from scratch).
    """
    start = time.perf_counter()
    fmap = feature_map(space)
    if steps <= 0 or samples <= 0:
        return Pretrained(None, float("nan"), time.perf_counter() - start, fmap)
    u = sample(space, samples, "sobol", seed=seed + 7919)
    valid = batch_stats(space, u, num_classes)[2]
    u = u[valid]
    arch, _ = fmap.split(u)
    y = torch.as_tensor(free_targets(space, u, num_classes), dtype=torch.float32).unsqueeze(0)
    gen = torch.Generator().manual_seed(seed)
    with single_thread():
        encoder = _encoder(1, fmap.arch_width, gen)
        out = Linears(1, HIDDEN, 2, gen)
        x = _members_axis(arch, 1)

        def loss_of(idx: torch.Tensor | None) -> torch.Tensor:
            xb, yb = (x, y) if idx is None else (x[:, idx], y[:, idx])
            return nn.functional.huber_loss(out(encoder(xb)), yb, delta=1.0)

        params = list(encoder.parameters()) + list(out.parameters())
        _optimise(params, loss_of, len(u), steps, FIT_LR, gen)
        with torch.no_grad():
            loss = float(loss_of(None))
    state = {k: v.detach().clone() for k, v in encoder.state_dict().items()}
    return Pretrained(state, loss, time.perf_counter() - start, fmap)


# ---------------------------------------------------------------- fitting
class UpperConfidenceBound:
    """``acquisition`` for any predictor whose ``predict`` returns (mean, spread)."""

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def acquisition(self, u: np.ndarray, kappa: float = 0.5) -> np.ndarray:
        """Upper confidence bound: mean + kappa * spread (kappa=0: greedy on the mean)."""
        mean, std = self.predict(u)
        return mean + kappa * std


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
            out = self.network(_members_axis(arch, m), _members_axis(recipe, m)).double().numpy()
        out = out * self.y_std + self.y_mean
        return out.mean(0), out.std(0)

    def pick_batch(self, u: np.ndarray, n: int, kappa: float = 0.5) -> np.ndarray:
        """Indices of the ``n`` rows of ``u`` with the highest acquisition."""
        return np.argsort(-self.acquisition(u, kappa), kind="stable")[:n]


def _resolve_features(pretrained: Pretrained | None, space: SearchSpace | None) -> FeatureMap:
    if pretrained is not None and pretrained.features is not None:
        return pretrained.features
    if space is None:
        raise TypeError("fit needs the search space (space=...) when no Pretrained is given")
    return feature_map(space)


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
    fmap = _resolve_features(pretrained, space)
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    arch, recipe = fmap.split(u)
    rng = np.random.default_rng(seed)
    if members > 1:  # bootstrap as per-pair counts: same estimator, no gathered copies
        counts = np.stack(
            [np.bincount(rng.integers(0, len(u), len(u)), minlength=len(u)) for _ in range(members)]
        )
        choices = RECIPE_WEIGHTS
    else:
        counts, choices = np.ones((1, len(u))), RECIPE_WEIGHTS[:1]
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
        xa, xr = _members_axis(arch, total), _members_axis(recipe, total)
        state = pretrained.state if pretrained is not None else None

        def rows(t: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
            return t if idx is None else t[:, idx]

        def full_loss(idx: torch.Tensor | None) -> torch.Tensor:
            pred = net(rows(xa, idx), rows(xr, idx))
            return _huber(pred, rows(target, idx).expand_as(pred), rows(weight, idx))

        if state is None:
            _optimise(list(net.parameters()), full_loss, len(u), steps, FIT_LR, gen)
        else:
            net.encoder.load_state_dict(
                {k: v.expand(total, *v.shape[1:]) for k, v in state.items()}
            )
            with torch.no_grad():  # frozen encoder: the embedding is computed once
                emb = net.encoder(xa)

            def head_loss(idx: torch.Tensor | None) -> torch.Tensor:
                pred = net.from_embedding(rows(emb, idx), rows(xr, idx))
                return _huber(pred, rows(target, idx).expand_as(pred), rows(weight, idx))

            frozen = int(round(steps * frozen_fraction))
            _optimise(list(net.head.parameters()), head_loss, len(u), frozen, FIT_LR, gen)
            _optimise(list(net.parameters()), full_loss, len(u), steps - frozen, FINETUNE_LR, gen)
        net.eval()
        with torch.no_grad():
            if len(choices) > 1:
                net = net.select(_lowest_out_of_bag(net(xa, xr), target, weight, members))
            pred = net(xa[:members], xr[:members])
            loss = float(_huber(pred, target.expand_as(pred), weight[:members]))
        loss /= members
    return Predictor(net, fmap, mean, std, loss)


def _lowest_out_of_bag(
    pred: torch.Tensor, target: torch.Tensor, counts: torch.Tensor, members: int
) -> slice:
    """The block of ``members`` (one recipe weight) with the lowest squared error on left-out pairs."""
    left_out = (counts == 0).float()
    err = ((pred - target) ** 2 * left_out).reshape(-1, members, pred.shape[1])
    seen = left_out.reshape(-1, members, pred.shape[1]).sum((1, 2)).clamp_min(1.0)
    best = int(torch.argmin(err.sum((1, 2)) / seen))
    return slice(best * members, (best + 1) * members)


def rank_quality(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """(Kendall tau, Spearman rho); NaN when fewer than three pairs or no variation."""
    from scipy.stats import kendalltau, spearmanr

    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return float("nan"), float("nan")
    return float(kendalltau(predicted, measured)[0]), float(spearmanr(predicted, measured)[0])


def fit_with_holdout(
    u: np.ndarray,
    y: np.ndarray,
    pretrained: Pretrained | None = None,
    holdout: float = 0.25,
    seed: int = 0,
    head: str = "network",
    **kwargs,
) -> tuple[Predictor, dict[str, Any]]:
    """Score a fit on held-out pairs, then refit on everything; returns (predictor, quality).

    ``head`` picks the accuracy head: the paper's ``network`` (``fit``), the
    Bayesian ``linear`` head on the frozen encoder (``linear_head.fit_linear``)
    or the Gaussian process ``gp`` on it (``gp_head.fit_gp``).
    """
    start = time.perf_counter()
    if head == "linear":
        from .linear_head import fit_linear as fit_head
    elif head == "gp":
        from .gp_head import fit_gp as fit_head
    elif head == "network":
        fit_head = fit
    else:
        raise ValueError(f"head must be 'network', 'linear' or 'gp', got {head!r}")
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    n = len(u)
    quality = {"n": float(n), "tau": float("nan"), "rho": float("nan"), "n_heldout": 0.0}
    n_out = max(3, int(round(holdout * n)))
    if n - n_out >= 3:
        order = np.random.default_rng(seed + 17).permutation(n)
        test, train = order[:n_out], order[n_out:]
        probe = fit_head(u[train], y[train], pretrained, seed=seed, **kwargs)
        tau, rho = rank_quality(probe.predict(u[test])[0], y[test])
        quality.update(tau=tau, rho=rho, n_heldout=float(n_out))
    predictor = fit_head(u, y, pretrained, seed=seed, **kwargs)
    quality["head"] = head
    quality["train_loss"] = predictor.train_loss
    quality["recipe_weight"] = predictor.recipe_weight
    quality["wall_s"] = time.perf_counter() - start
    return predictor, quality
