"""``random``: feasible draws from the candidate source, the baseline every search should beat."""

from __future__ import annotations

from fbnetv3_zoo.search.strategies.base import Context, Proposal, Strategy, draw_unseen


class RandomStrategy(Strategy):
    """Feasible draws from the source, seeded by the run seed and the iteration."""

    name = "random"

    def ask(self, ctx: Context, iteration: int, n: int) -> Proposal:
        u, m, p = draw_unseen(ctx, n, ctx.constraints, ctx.config.seed + 1000 * iteration)
        return Proposal(u, m, p, "random")
