"""Outputs of a search: best pair per constraint (YAML), report.md and plots.

Everything is derived from ``search.sqlite`` alone, so ``fbnetv3
search-report`` can render a running or finished search at any time.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any

from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.search.config import PINNED_DEFAULTS
from fbnetv3_zoo.search.latency.picks import verified_best
from fbnetv3_zoo.search.latency.report import PLOT as LATENCY_PLOT
from fbnetv3_zoo.search.latency.report import latency_lines, write_latency_plot
from fbnetv3_zoo.search.report.plots import write_plots
from fbnetv3_zoo.search.report.summaries import best_per_constraint, predictor_fits, with_repeats
from fbnetv3_zoo.search.report.trust import UNTRUSTED_KEY, console_lines, trust_problems
from fbnetv3_zoo.search.report.verdict import top1_text, verdict_lines
from fbnetv3_zoo.search.space.constraints import Constraint, parse_constraint
from fbnetv3_zoo.search.space.definition import SearchSpace, load_space, parse_space
from fbnetv3_zoo.search.store import Store, diverged
from fbnetv3_zoo.search.trainer import build_recipe

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.files.outputs import MARKER, read_marker, refuse_link, write_new
from fbnetv3_zoo.models.result_file import ResultFile
from fbnetv3_zoo.models.stats import in_millions


def score_epoch(row: dict[str, Any], stop_epoch: int | None) -> int:
    """The epoch a candidate's score is from: the early-stopping epoch, or its last if shorter."""
    trained = row["epochs"] or 0
    return min(stop_epoch, trained) if stop_epoch else trained


def averaged_epochs(row: dict[str, Any], stop_epoch: int | None, window: int) -> int:
    """How many epochs, ending at :func:`score_epoch`, a candidate's score averages."""
    return epochs_in_window(score_epoch(row, stop_epoch), window)


def epochs_in_window(end: int, window: int) -> int:
    """Epochs a ``window``-epoch score ending at epoch ``end`` averages (fewer near the start)."""
    return max(1, min(window, end))


def window_of(config: dict[str, Any]) -> int:
    """The run's ``score_epochs`` (what runs made before the setting existed used, when absent)."""
    return int(config.get("score_epochs") or PINNED_DEFAULTS["score_epochs"])


def trainings_of(row: dict[str, Any], seed: int | None) -> list[dict[str, Any]]:
    """Each training behind a candidate's score: its seed (the search's, then + 1) and top-1."""
    scores = row.get("scores") or [row["score"]]
    return [
        dict(seed=None if seed is None else seed + k, top1=round(v, 3))
        for k, v in enumerate(scores)
    ]


def result_document(
    row: dict[str, Any],
    space: SearchSpace,
    constraint: str,
    data: str,
    num_classes: int | None = None,
    stop_epoch: int | None = None,
    schedule: int | None = None,
    made_by: dict[str, Any] | None = None,
    seed: int | None = None,
    score_epochs: int = 1,
) -> ResultFile:
    """The ``best/<constraint>.yaml`` content: arch + full recipe + class count + predicted + measured.

    ``stats`` were computed by the search with ``num_classes`` classes, so every
    tool that reads this file can count the same head.  The recipe is the one
    the pair was trained with: its ``epochs`` is the proxy schedule
    (``measured.schedule_epochs``), so ``fbnetv3 train --model <file>`` repeats
    that training; a full run sets ``--epochs``.  ``search.made_by`` is the
    command line and package versions that started the search (re-rendering
    with ``search-report`` leaves the file as it was).  A re-measured finalist's
    ``measured.top1`` is the mean of its trainings, each listed with its seed
    (the search's ``seed``, then ``seed + 1``) in ``measured.trainings``; each
    training's top-1 is its mean over ``measured.epochs_averaged`` epochs
    ending at ``measured.epoch`` (``SearchConfig.score_epochs``).
    """
    recipe = build_recipe(
        space.recipe_base, row["recipe"], row["arch"]["input_size"], dict(space.recipe_overrides)
    )
    recipe = dataclasses.replace(
        recipe,
        epochs=schedule or recipe.epochs,  # the schedule the pair was trained on
        name=f"searched_{parse_constraint(constraint).slug}",
        description=f"found by fbnetv3 search (space {space.name}, base recipe {space.recipe_base}, data {data})",
    )
    predicted = None
    if row["predicted"] is not None:
        predicted = dict(top1=round(row["predicted"], 3), std=round(row["predicted_std"] or 0.0, 3))
    measured = dict(
        top1=round(row["score"], 3),  # the mean over the trainings below
        trainings=trainings_of(row, seed),
        epoch=score_epoch(row, stop_epoch),  # the epoch top1 is from
        epochs_averaged=averaged_epochs(row, stop_epoch, score_epochs),  # ending at `epoch`
        epochs_trained=row["epochs"],
        schedule_epochs=schedule,
        data=data,
    )
    return ResultFile(
        arch=row["arch"],
        recipe=recipe.to_dict(),
        num_classes=None if num_classes is None else int(num_classes),
        stats=dict(macs=int(row["macs"]), params=int(row["params"])),
        sections=dict(
            predicted=predicted,
            measured=measured,
            search=dict(
                constraint=constraint,
                space=space.name,
                candidate=row["id"],
                source=row["source"],
                **({"made_by": made_by} if made_by else {}),
            ),
        ),
    )


RECIPE_FILE = "recipe.yaml"  # a recipe-only search's result, in best/


def best_file(space: SearchSpace, constraint: Constraint) -> str:
    """Where a constraint's best pick is written, relative to the run folder."""
    return f"best/{RECIPE_FILE}" if space.model is not None else f"best/{constraint.slug}.yaml"


def recipe_document(
    row: dict[str, Any],
    space: SearchSpace,
    config: dict[str, Any],
    stop_epoch: int | None = None,
    made_by: dict[str, Any] | None = None,
    proxy_check: dict[str, Any] | None = None,
    untrusted: list[str] | None = None,
) -> Recipe:
    """A recipe-only search's ``best/recipe.yaml``: the full recipe for the full run, plus where it came from.

    A plain recipe file (``fbnetv3 train --recipe`` and ``Recipe.load`` take it)
    with ``epochs`` set to the full run the proxy shortened and the search's
    facts under ``extra.search``: model, data, budget, the proxy it was ranked
    on and how well that proxy ranked (``proxy_check``).  ``untrusted``: reasons
    not to use it (``report.trust``), kept as ``extra.untrusted`` so that
    ``fbnetv3 train --recipe`` refuses the file unless ``--force``.
    """
    full = config.get("full_epochs") or config.get("epochs")
    ranked_on = config.get("epochs")  # a multi-fidelity search ranks on the full schedule itself
    schedule, trainings = (
        (
            f"the full {full}-epoch schedule",
            f"{config.get('budget')} trainings of up to {full} epochs",
        )
        if ranked_on == full
        else (
            f"the {full}-epoch schedule compressed to {ranked_on} epochs",
            f"{config.get('budget')} proxy trainings of {ranked_on} epochs",
        )
    )
    recipe = build_recipe(
        space.recipe_base, row["recipe"], row["arch"]["input_size"], dict(space.recipe_overrides)
    )
    model = str(space.model)
    check = None
    if proxy_check:
        check = {k: proxy_check.get(k) for k in ("n", "spearman", "kendall", "train_s")}
    facts = dict(
        model=model,
        data=config.get("data"),
        holdout=float(config.get("holdout") or 0.0),  # share of training images ranked on
        resolution=row["arch"]["input_size"],
        space=space.name,
        strategy=config.get("strategy"),
        seed=config.get("seed"),
        budget=config.get("budget"),
        candidate=row["id"],
        proxy=dict(
            epochs=config.get("epochs"),
            schedule=schedule,
            top1=round(row["score"], 3),  # the mean over the trainings below
            trainings=trainings_of(row, config.get("seed")),
            scored_at_epoch=score_epoch(row, stop_epoch),
            epochs_averaged=averaged_epochs(row, stop_epoch, window_of(config)),
        ),
        proxy_check=check,
        **({"made_by": made_by} if made_by else {}),
    )
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).stem if model.endswith(".yaml") else model)
    return dataclasses.replace(
        recipe,
        epochs=full,
        name=f"searched_{slug}",
        description=f"found by fbnetv3 search --model {model} (data {config.get('data')}, "
        f"{trainings})",
        extra={
            **recipe.extra,
            "search": facts,
            **({UNTRUSTED_KEY: "; ".join(untrusted)} if untrusted else {}),
        },
    )


def _short(row: dict[str, Any]) -> str:
    a = row["arch"]
    if "model" in a:
        return f"{a['model']} at {a['input_size']}px"
    widths = "/".join(str(stage[-1]["channels"]) for stage in a["stages"])
    depth = sum(b.get("repeats", 1) for stage in a["stages"] for b in stage)
    return f"{a['input_size']}px, {depth} blocks, widths {widths}"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def _recipe_text(recipe: dict[str, Any]) -> str:
    parts = []
    for k, v in recipe.items():
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


def write_report(
    out: Path,
    store: Store,
    space: SearchSpace,
    constraints: list[Constraint],
    best: dict[str, Any],
    plots: bool = True,
) -> str:
    """Markdown: settings, time spent, best per constraint, top pairs, predictor quality; it
    names the plots only when they are drawn beside it (``plots``)."""
    config = store.get("config", {})
    rows = store.candidates()
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    notes = store.notes()
    fits = predictor_fits(notes)
    lines = [
        *_heading_lines(out, store, space, constraints, config, done, failed),
        *verdict_lines(done, constraints, best, failed),
        *_trust_lines(store, space, config, rows, done, failed, notes, fits),
        *_time_lines(store, rows, notes, fits),
        *_best_lines(space, constraints, best),
        *latency_lines(store, constraints),  # latency limits: measured picks and flags
        *_top_lines(done),
        *_fit_lines(fits),
        *_failed_lines(failed),
        *(_plots_lines(store, constraints) if plots else []),
    ]
    text = "\n".join(lines)
    _write_text(out / "report.md", text)
    return text


def _heading_lines(
    out: Path,
    store: Store,
    space: SearchSpace,
    constraints: list[Constraint],
    config: dict[str, Any],
    done: list[dict[str, Any]],
    failed: list[dict[str, Any]],
) -> list[str]:
    """The report's title and its settings in one sentence."""
    return [
        f"# Search report: {out}",
        "",
        f"Strategy `{config.get('strategy', 'jointnas')}`, space `{space.name}`, data `{config.get('data')}` "
        f"({store.get('num_classes', '?')} classes), constraints {', '.join(f'`{c.text}`' for c in constraints)}, "
        f"budget {config.get('budget')} ({len(done)} done, {len(failed)} failed, {store.count('pending')} pending), "
        f"executor `{config.get('executor')}`, seed {config.get('seed')}.",
        "",
    ]


def _trust_lines(
    store: Store,
    space: SearchSpace,
    config: dict[str, Any],
    rows: list[dict[str, Any]],
    done: list[dict[str, Any]],
    failed: list[dict[str, Any]],
    notes: dict[int, dict[str, Any]],
    fits: list[dict[str, Any]],
) -> list[str]:
    """The "How far to trust these numbers": the proxy, early stopping, the predictor, failures."""
    stop = store.get("stop_epoch")
    taus = store.get("stop_epoch_taus") or []
    res = sorted({r["arch"]["input_size"] for r in rows})
    return [
        "## How far to trust these numbers",
        "",
        f"- **Proxy accuracy, not final accuracy.** Every top-1 below comes from a short proxy: "
        f"{config.get('epochs')} epochs on `{config.get('data')}` at {'/'.join(str(r) for r in res) or '?'} px, "
        f"scored {_scored_on(stop, window_of(config))}. It ranks candidates; training the winner longer "
        + (
            "(`fbnetv3 train --recipe best/recipe.yaml ...`) gives much higher numbers."
            if space.model is not None
            else "(`fbnetv3 train --model best/<file>.yaml ...`) gives much higher numbers."
        ),
        _early_stop_line(
            config,
            stop,
            taus,
            sum(1 for r in done if r["iteration"] == 0),
            config.get("min_stop_curves", 16),
        ),
        _quality_line(
            fits, (config.get("settings") or {}).get("head", "auto"), _pretrained(notes.values())
        ),
        _selection_line(config),
        *_diverged_lines(failed, config, store.get("num_classes")),
        *_fixed_model_lines(space, config, store, notes),
    ]


def _time_lines(
    store: Store,
    rows: list[dict[str, Any]],
    notes: dict[int, dict[str, Any]],
    fits: list[dict[str, Any]],
) -> list[str]:
    """The "Time spent" table: training, predictor, genetic search, proxy check, whole run."""
    train_s = sum(r["wall_s"] or 0.0 for r in rows)
    pretrain_s = _spent(n.get("pretrain") for n in notes.values())
    fit_s = sum(f.get("wall_s") or 0.0 for f in fits)
    return [
        "",
        "## Time spent",
        "",
        "| phase | seconds |",
        "|---|---|",
        f"| training candidates (sum) | {train_s:.1f} |",
        f"| predictor pretraining | {_fmt(pretrain_s, 1)} |",
        f"| predictor fits (sum) | {fit_s:.1f} |",
        f"| genetic search | {_fmt(_spent(n.get('genetic') for n in notes.values()), 1)} |",
        f"| proxy check: first batch at full length (sum) | {_fmt((store.get('proxy_check') or {}).get('train_s'), 1)} |",
        f"| whole run (wall, all sessions) | {_fmt(store.get('wall_s'), 1)} |",
    ]


def _best_lines(
    space: SearchSpace, constraints: list[Constraint], best: dict[str, Any]
) -> list[str]:
    """The best pair per constraint, measured on the proxy; a row for a limit nothing fits."""
    lines = [
        "",
        "## Best pair per constraint (measured on the proxy)",
        "",
        "| constraint | file | proxy top-1 | predicted | MACs (M) | params (M) | architecture |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in constraints:
        r = best.get(c.text)
        if r is None:
            lines.append(f"| `{c.text}` | - | no evaluated pair fits | | | | |")
            continue
        lines.append(
            f"| `{c.text}` | `{best_file(space, c)}` | {top1_text(r)} | {_fmt(r['predicted'])} | "
            f"{in_millions(r['macs'], 3)} | {in_millions(r['params'], 3)} | {_short(r)} |"
        )
    return lines


def _top_lines(done: list[dict[str, Any]]) -> list[str]:
    """The ten best measured pairs (a re-measured pair once, at its mean)."""
    lines = [
        "",
        "## Top pairs",
        "",
        "| # | id | iter | source | top-1 | predicted | MACs (M) | architecture | recipe |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(sorted(with_repeats(done), key=lambda r: -r["score"])[:10], 1):
        lines.append(
            f"| {i} | {r['id']} | {r['iteration']} | {r['source']} | {top1_text(r)} | {_fmt(r['predicted'])} | "
            f"{in_millions(r['macs'], 3)} | {_short(r)} | {_recipe_text(r['recipe'])} |"
        )
    return lines


def _fit_lines(fits: list[dict[str, Any]]) -> list[str]:
    """The predictor's held-out and prospective quality per iteration (nothing without fits)."""
    if not fits:
        return []
    lines = [
        "",
        "## Predictor quality per iteration",
        "",
        "Held-out: a fit on 75 % of the measured pairs ranks the other 25 %. "
        "Prospective: the predictions made when each pair was chosen (all chosen so far) "
        "vs what training measured.",
        "",
        "| iteration | measured pairs | held-out | Kendall tau | Spearman | prospective tau | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in fits:
        lines.append(
            f"| {f['iteration']} | {f['n']} | {f.get('n_heldout', 0)} | {_fmt(f.get('tau'))} | "
            f"{_fmt(f.get('rho'))} | {_fmt(f.get('prospective_tau'))} | {_fmt(f.get('wall_s'), 1)} |"
        )
    return lines


def _failed_lines(failed: list[dict[str, Any]]) -> list[str]:
    """One line per failed candidate: the first line of its error."""
    if not failed:
        return []
    return [
        "",
        "## Failed candidates",
        "",
        *(
            f"- {r['id']} (iteration {r['iteration']}): {(r['error'] or '').splitlines()[0]}"
            for r in failed
        ),
    ]


def _plots_lines(store: Store, constraints: list[Constraint]) -> list[str]:
    """The closing line naming the plots (the latency plot where a latency limit has one)."""
    plots = "`acc_vs_macs.png`, `predicted_vs_measured.png`, `progress.png`"
    if any(store.get(f"latency/{c.slug}") for c in constraints if c.metric == "latency_ms"):
        plots += f", `{LATENCY_PLOT}`"
    return ["", f"Plots: {plots}.", ""]


def _scored_on(stop: int | None, window: int) -> str:
    """How a candidate's top-1 is read off its curve, for the report."""
    if not stop or epochs_in_window(stop, window) == 1:
        return f"at epoch {stop}"
    first = stop - epochs_in_window(stop, window) + 1
    return (
        f"on the mean top-1 of epochs {first}-{stop} (one epoch's top-1 swings with the seed; "
        "the mean of the last few ranks the same trainings better)"
    )


def _early_stop_line(
    config: dict[str, Any], stop: Any, taus: list, curves: int, min_curves: int
) -> str:
    """Which epoch scores the candidates and why (or why every candidate trains in full)."""
    per_epoch = ", ".join(_fmt(t) for t in taus) or "-"
    if curves < min_curves:
        return (
            f"- **Early stopping: off.** The first batch gave {curves} curves, fewer than the "
            f"{min_curves} a Kendall tau needs to be trusted (standard error about 0.3 at 8), "
            f"so every candidate trains all {config.get('epochs')} epochs (tau to the final epoch "
            f"per epoch: {per_epoch}). A first batch of {min_curves} or more turns it on."
        )
    return (
        f"- **Early stopping:** epoch {stop} of {config.get('epochs')} was chosen because its ranking of the "
        f"first batch agrees with the final epoch's at Kendall tau {_fmt(taus[stop - 1] if stop and len(taus) >= stop else None)} "
        f"(per epoch: {per_epoch}; threshold {config.get('early_stop_tau')}; {curves} curves)."
    )


def _diverged_lines(
    failed: list[dict[str, Any]], config: dict[str, Any], num_classes: int | None
) -> list[str]:
    """How many trainings diverged, and what the predictor made of them (JointNAS only)."""
    lost = [r for r in failed if diverged(r)]
    if not lost:
        return []
    told = (
        f" JointNAS's predictor counts each at chance top-1 ({100 / num_classes:.1f} %), so it "
        "learns to avoid their region."
        if config.get("strategy", "jointnas") == "jointnas" and num_classes
        else ""
    )
    return [
        f"- **{len(lost)} training(s) diverged** (NaN loss; candidates {', '.join(str(r['id']) for r in lost)})."
        + told
    ]


def _selection_line(config: dict[str, Any]) -> str:
    """Which images ranked the candidates: a held-out share of training, or the validation split."""
    share = float(config.get("holdout") or 0.0)
    if share:
        return (
            f"- **Ranked on held-out training images.** {share:.0%} of each class's training images "
            "were set aside and every candidate was trained on the rest and scored on them, so the "
            "validation split that `fbnetv3 train` reports on was never seen by the search."
        )
    return (
        "- **Ranked on the validation split** that `fbnetv3 train` reports on, so the best "
        "candidate's number there is optimistic (it was chosen on it); `--holdout 0.2` ranks on "
        "training images held out instead."
    )


def _fixed_model_lines(
    space: SearchSpace, config: dict[str, Any], store: Store, notes: dict[int, Any]
) -> list[str]:
    """A recipe-only search: the fixed model, the proxy's rank correlation, skipped pretraining."""
    from fbnetv3_zoo.search.proxy_check import proxy_sentence

    lines = [f"- {proxy_sentence(store.get('proxy_check'), config.get('strategy'))}"]
    if space.model is None:
        return lines if store.get("proxy_check") else []
    macs, params = space.model_stats
    lines.insert(
        0,
        f"- **Fixed model:** `{space.model}` ({in_millions(macs, 1)}M MACs, {in_millions(params, 2)}M "
        f"params at {space.resolution.choices[0]} px); only its recipe is searched, so MACs/params "
        f"limits do not apply. Proxy: {config.get('epochs')} epochs, the {config.get('full_epochs')}-epoch "
        "schedule compressed (learning-rate schedule, warmup and EMA horizon fitted to the shorter run). "
        f"Result: `best/{RECIPE_FILE}` (`fbnetv3 train --recipe {store.path.parent}/best/{RECIPE_FILE} "
        f"--model {space.model} --data {config.get('data')}`).",
    )
    skipped = [
        n["pretrain"]["skipped"] for n in notes.values() if (n.get("pretrain") or {}).get("skipped")
    ]
    if skipped:
        lines.append(
            f"- **Predictor pretraining skipped:** {skipped[0]}; the predictor fits on the recipe features alone."
        )
    return lines


def _spent(parts: Any) -> float | None:
    """Total ``wall_s`` over the notes that have one; None when none does."""
    times = [p["wall_s"] for p in parts if p and p.get("wall_s") is not None]
    return sum(times) if times else None


def _pretrained(notes: Any) -> bool:
    """Whether any fit used a pretrained encoder (not skipped, not ``pretrain_steps 0``)."""
    return any(n.get("pretrain") and not n["pretrain"].get("skipped") for n in notes)


def _quality_line(
    fits: list[dict[str, Any]], head: str = "network", pretrained: bool = True
) -> str:
    """One sentence on the predictor: which head, last held-out and prospective rank correlation."""
    from fbnetv3_zoo.search.predictor.heads import describe_head, resolve_head

    def described(name: str) -> str:
        text = describe_head(name)
        return text if pretrained else text.replace("the frozen pretrained encoder", "raw features")

    if not fits:
        return (
            "- **Predictor:** not used (strategy without a predictor, or too few measured pairs)."
        )
    held = [f for f in fits if f["tau"] is not None]
    pro = [f for f in fits if f.get("prospective_tau") is not None]
    parts = []
    if held:
        f = held[-1]
        parts.append(
            f"held-out Kendall tau {f['tau']:.2f} (fit on {f['n'] - f['n_heldout']} pairs, ranking {f['n_heldout']} others)"
        )
    else:
        parts.append("held-out quality not measured yet (too few pairs)")
    if pro:
        parts.append(
            f"prospective Kendall tau {pro[-1]['prospective_tau']:.2f} (its predictions for every pair it chose vs the measured result)"
        )
    else:
        parts.append("prospective quality needs 3 acquisition-chosen pairs")
    spans: list[list] = []  # [first pair count, last pair count, head] per run of one head
    for n in (int(f["n"]) for f in fits):
        used = resolve_head(head, n)
        if not spans or spans[-1][2] != used:
            spans.append([n, n, used])
        spans[-1][1] = n
    if spans:
        parts.insert(
            0,
            "fitted with "
            + ", then ".join(
                f"{described(h)} on {lo}-{hi} pairs"
                if lo != hi
                else f"{described(h)} on {lo} pairs"
                for lo, hi, h in spans
            ),
        )
    return (
        "- **Predictor:** "
        + "; ".join(parts)
        + ". 0: no better than random choice; below 0: it ranked backwards."
    )


def _write_text(path: Path, text: str) -> None:
    """Replace one of our own report files; a link in its place is refused, never followed."""
    refuse_link(path)
    write_new(path, text.encode("utf-8"))


def write_outputs(
    out: str | Path,
    store: Store,
    space: SearchSpace,
    constraints: list[Constraint],
    write: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """best/*.yaml, report.md and (``plots``) plots; returns {constraint: best row or None, ...}."""
    out = Path(out)
    config = store.get("config") or {}
    data = config.get("data", "")
    done = store.candidates("done")
    best = best_per_constraint(done, constraints, store.get("stop_epoch") or config.get("epochs"))
    best = verified_best(store, constraints, best)  # latency limits: the measured-within pick
    summary = dict(best=best, done=len(done), failed=store.count("failed"), out=str(out))
    problems = _problems(store, space, constraints, best)
    summary.update(console=_console(out, store, space, constraints, best, problems))
    summary.update(untrusted=problems)
    if not write:
        return summary
    refuse_link(out / "best")
    (out / "best").mkdir(parents=True, exist_ok=True)
    for c in constraints:
        if best[c.text] is not None and space.model is not None:
            doc = recipe_document(
                best[c.text],
                space,
                config,
                stop_epoch=store.get("stop_epoch"),
                made_by=store.get("made_by"),
                proxy_check=store.get("proxy_check"),
                untrusted=problems,
            )
            _write_text(out / best_file(space, c), doc.to_yaml())
        elif best[c.text] is not None:
            doc = result_document(
                best[c.text],
                space,
                c.text,
                data,
                num_classes=store.get("num_classes"),
                stop_epoch=store.get("stop_epoch"),
                schedule=config.get("epochs"),
                made_by=store.get("made_by"),
                seed=config.get("seed"),
                score_epochs=window_of(config),
            )
            latency = store.get(f"latency/{c.slug}")  # measured at the end of a latency search
            if latency and latency.get("candidate") == best[c.text]["id"]:
                doc = dataclasses.replace(doc, sections={**doc.sections, "latency": latency})
            _write_text(out / "best" / f"{c.slug}.yaml", doc.to_yaml())
    write_report(out, store, space, constraints, best, plots)
    if plots:
        write_plots(out, store, best, constraints)
        write_latency_plot(out, store, constraints)
    return summary


def _problems(
    store: Store, space: SearchSpace, constraints: list[Constraint], best: dict[str, Any]
) -> list[str]:
    """A recipe-only search's reasons not to trust its pick (``report.trust``)."""
    pick = best.get(constraints[0].text) if constraints else None
    if space.model is None or pick is None:
        return []
    return trust_problems(pick["score"], store.get("num_classes"), store.get("proxy_check"))


def _console(
    out: Path,
    store: Store,
    space: SearchSpace,
    constraints: list[Constraint],
    best: dict[str, Any],
    problems: list[str],
) -> list[str]:
    """The lines ``fbnetv3 search`` ends with: the verdict, the proxy check, warnings."""
    from fbnetv3_zoo.search.proxy_check import proxy_sentence

    rows = store.candidates()
    done = [r for r in rows if r["status"] == "done"]
    failed = [r for r in rows if r["status"] == "failed"]
    check = store.get("proxy_check")
    sentence = None
    if check or space.model is not None:
        rho = (check or {}).get("spearman")
        passed = "" if rho is None else (" Passed." if rho > 0 else " Failed.")
        sentence = proxy_sentence(check, (store.get("config") or {}).get("strategy")) + passed
    recipe = str(out / "best" / RECIPE_FILE) if space.model is not None else None
    return console_lines(verdict_lines(done, constraints, best, failed), sentence, problems, recipe)


def report_run(out: str | Path) -> dict[str, Any]:
    """Re-render the outputs of a (finished or running) search folder."""
    import sys

    out = Path(out)
    db = out / "search.sqlite"
    if not db.is_file():
        raise UserError(f"no search found in {out} (missing {db.name})")
    marker = read_marker(out)  # checked first: a folder another command made is refused
    if marker is not None and marker["tool"] != "search":
        raise UserError(
            f"{out} was made by `fbnetv3 {marker['tool']}`, not by `fbnetv3 search`; "
            "search-report writes only into search run folders"
        )
    store = Store(db, readonly=True)
    try:
        config = store.get("config") or {}
        raw = store.get("space_yaml")
        import json

        space = parse_space(json.loads(raw), source=str(db)) if raw else load_space(config["space"])
        constraints = [parse_constraint(c) for c in config.get("constraints", [])]
        if any(c.metric == "latency_ms" for c in constraints):
            from fbnetv3_zoo.search.latency.limits import bind_latency

            classes = store.get("num_classes") or 1000
            constraints = bind_latency(
                constraints, space, classes, build=False, log=lambda _m: None
            )
        why_not = _why_not_writable(out)
        if why_not:
            print(
                f"{out} {why_not}: showing the summary without rewriting report.md, best/ or plots",
                file=sys.stderr,
            )
        return write_outputs(out, store, space, constraints, write=not why_not)
    finally:
        store.close()


def _why_not_writable(out: Path) -> str:
    """Why report files may not be rewritten in ``out`` ('' when they may).

    Only a folder whose marker says a search made it: a search database copied
    into a folder of the user's own files must not cost them ``report.md``.
    """
    if not os.access(out, os.W_OK):
        return "is read-only"
    if read_marker(out) is None:
        return (
            f"has no {MARKER} of `fbnetv3 search` (a copied database?); resume the search "
            "there to adopt the folder"
        )
    return ""
