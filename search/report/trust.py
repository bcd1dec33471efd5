"""Can a search's result be used?  The end-of-run lines a newcomer reads on the console.

A recipe found on a proxy that ranks the first batch backwards (a negative
proxy check), or whose best proxy score is barely above guessing, is noise:
:func:`trust_problems` says so, the console prints it, and ``best/recipe.yaml``
carries the reasons under ``extra.untrusted`` so that ``fbnetv3 train
--recipe`` refuses it unless ``--force``.  :func:`console_lines` turns the
report's verdict into plain lines for the end of ``fbnetv3 search``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NEAR_CHANCE", "UNTRUSTED_KEY", "console_lines", "trust_problems"]

# our threshold: a best proxy score below this multiple of chance (20 % on 10 classes) is near
# chance; a pick there says little about which recipe trains best
NEAR_CHANCE = 2.0
UNTRUSTED_KEY = "untrusted"  # the recipe field (under ``extra``) that train --recipe checks


def trust_problems(
    best_score: float | None, num_classes: int | None, proxy_check: dict[str, Any] | None
) -> list[str]:
    """Why a recipe search's pick should not be trusted (empty: no known reason).

    ``proxy_check``: the store's summary (``proxy_check.summarise``); a Spearman
    of 0 or below means the proxy did not rank the first batch like the full
    run.  A check that was not run, or could not rank (ties), is not a reason.
    """
    problems = []
    rho = (proxy_check or {}).get("spearman")
    if rho is not None and rho <= 0:
        problems.append(
            f"the proxy check is negative: the proxy ranks the first batch against its full-length "
            f"trainings at Spearman {rho:.2f} (1: the same order)"
        )
    if best_score is not None and num_classes:
        chance = 100.0 / num_classes
        if best_score < NEAR_CHANCE * chance:
            problems.append(
                f"the best proxy top-1 ({best_score:.2f} %) is near chance ({chance:.1f} % on "
                f"{num_classes} classes; below {NEAR_CHANCE:g}x chance)"
            )
    return problems


def console_lines(
    verdict: list[str], proxy_check: str | None, problems: list[str], recipe_file: str | None
) -> list[str]:
    """The verdict's bullets as plain text, the proxy check, and any warning about the result."""
    lines = [
        "  " + line[2:].replace("`", "").replace("**", "")
        for line in verdict
        if line.startswith("- ")
    ]
    if proxy_check:
        lines.append("  " + proxy_check.replace("**", ""))
    for problem in problems:
        lines.append(f"  WARNING: {problem}.")
    if problems and recipe_file:
        lines.append(
            f"  WARNING: {recipe_file} is marked untrusted (extra.{UNTRUSTED_KEY}); "
            "`fbnetv3 train --recipe` refuses it unless --force."
        )
    return lines
