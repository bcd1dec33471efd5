"""The neural acquisition function: an MLP ensemble over encoded pairs.

Measured accuracies are expensive, so the encoder is first pretrained on
targets that cost nothing: the analytic log-MACs and log-params of thousands of
sampled pairs.  That teaches it how the architecture columns combine before a
single candidate is trained.  Each ensemble member then starts from that
encoder, gets a fresh head and a bootstrap of the measured pairs, and is fitted
with a Huber loss (robust to the odd badly-trained proxy).  The spread of the
members lets the acquisition trade expected accuracy against uncertainty.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .constraints import batch_stats
from .sampling import sample
from .space import SearchSpace

HIDDEN = 64


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread: for a 64-wide MLP extra threads only add contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encoder(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU())


class MLP(nn.Module):
    """Encoder (shared with pretraining) plus a linear head."""

    def __init__(self, dim: int, outputs: int = 1) -> None:
        super().__init__()
        self.encoder = _encoder(dim)
        self.head = nn.Linear(HIDDEN, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, batch: int, seed: int
) -> float:
    """Adam with a cosine schedule on a Huber loss; returns the final full-data loss."""
    with single_thread():
        return _train_loop(model, x, y, steps, lr, batch, seed)


def _train_loop(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, batch: int, seed: int
) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    loss_fn = nn.HuberLoss(delta=1.0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(x), (min(batch, len(x)),), generator=gen)
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        return float(loss_fn(model(x), y))


def free_targets(space: SearchSpace, u: np.ndarray, num_classes: int = 1000) -> np.ndarray:
    """Standardised log-MACs and log-params: the pretraining targets."""
    macs, params, _ = batch_stats(space, u, num_classes)
    t = np.log(np.stack([macs, params], axis=1).astype(float))
    return (t - t.mean(0)) / (t.std(0) + 1e-9)


@dataclass
class Pretrained:
    """A pretrained encoder and how well it learned the free targets."""

    state: dict[str, torch.Tensor]
    loss: float
    wall_s: float


def pretrain(
    space: SearchSpace,
    samples: int = 4096,
    steps: int = 1000,
    num_classes: int = 1000,
    seed: int = 0,
) -> Pretrained:
    """Fit the encoder to analytic statistics of ``samples`` Sobol pairs."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    u = sample(space, samples, "sobol", seed=seed + 7919)
    x = torch.as_tensor(u, dtype=torch.float32)
    y = torch.as_tensor(free_targets(space, u, num_classes), dtype=torch.float32)
    model = MLP(space.size, outputs=2)
    loss = _train(model, x, y, steps=steps, lr=3e-3, batch=256, seed=seed)
    return Pretrained(copy.deepcopy(model.encoder.state_dict()), loss, time.perf_counter() - start)


@dataclass
class Predictor:
    """An ensemble predicting accuracy; ``predict`` returns mean and spread in target units."""

    members: list[MLP]
    y_mean: float
    y_std: float
    train_loss: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.as_tensor(np.atleast_2d(u), dtype=torch.float32)
        with torch.no_grad(), single_thread():
            out = torch.stack([m(x).squeeze(1) for m in self.members]).numpy()
        out = out * self.y_std + self.y_mean
        return out.mean(0), out.std(0)

    def acquisition(self, u: np.ndarray, kappa: float = 0.5) -> np.ndarray:
        """Upper confidence bound: mean + kappa * ensemble spread."""
        mean, std = self.predict(u)
        return mean + kappa * std


def fit(
    u: np.ndarray,
    y: np.ndarray,
    pretrained: Pretrained | None = None,
    members: int = 5,
    steps: int = 300,
    seed: int = 0,
) -> Predictor:
    """Fit an ensemble to measured ``y``; members start from ``pretrained`` when given."""
    u = np.asarray(u, dtype=float)
    y = np.asarray(y, dtype=float)
    mean, std = float(y.mean()), float(y.std()) or 1.0
    x = torch.as_tensor(u, dtype=torch.float32)
    t = torch.as_tensor((y - mean) / std, dtype=torch.float32).unsqueeze(1)
    rng = np.random.default_rng(seed)
    models, losses = [], []
    for k in range(members):
        torch.manual_seed(seed * 101 + k)
        model = MLP(u.shape[1])
        if pretrained is not None:
            model.encoder.load_state_dict(pretrained.state)
        boot = rng.integers(0, len(u), len(u)) if members > 1 else np.arange(len(u))
        losses.append(_train(model, x[boot], t[boot], steps, lr=3e-3, batch=64, seed=seed + k))
        models.append(model)
    return Predictor(models, mean, std, float(np.mean(losses)))


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
    **kwargs,
) -> tuple[Predictor, dict[str, float]]:
    """Score a fit on held-out pairs, then refit on everything; returns (predictor, quality)."""
    start = time.perf_counter()
    n = len(u)
    quality = {"n": float(n), "tau": float("nan"), "rho": float("nan"), "n_heldout": 0.0}
    n_out = max(3, int(round(holdout * n)))
    if n - n_out >= 3:
        order = np.random.default_rng(seed + 17).permutation(n)
        test, train = order[:n_out], order[n_out:]
        probe = fit(u[train], y[train], pretrained, seed=seed, **kwargs)
        tau, rho = rank_quality(probe.predict(u[test])[0], y[test])
        quality.update(tau=tau, rho=rho, n_heldout=float(n_out))
    predictor = fit(u, y, pretrained, seed=seed, **kwargs)
    quality["train_loss"] = predictor.train_loss
    quality["wall_s"] = time.perf_counter() - start
    return predictor, quality
