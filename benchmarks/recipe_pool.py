"""Build (or extend) a recipe pool: Sobol-sampled recipes of one backbone, each trained at full length.

    nice python benchmarks/recipe_pool.py --backbone resnet18 --half tune --jobs 1
    nice python benchmarks/recipe_pool.py --backbone fbnetv3_a --half heldout --jobs 1 --channels-last

The recipe analogue of ``benchmarks/pool.py`` (issue 40).  The model is fixed
(``resnet18`` at 32 px, ``fbnetv3_a`` at 56 px: its unpadded stages need
>= 56 px); the recipes are Sobol points of the default recipe space
(``search/spaces/recipe.yaml`` through ``fixed_model_space``, the space
``fbnetv3 search --model`` searches), trained on ``digits:30`` through the
search's own ``evaluate`` at the batch (32) and resolution the space fixes.

Every recipe is trained at FULL length, the schedule a user would train the
pick with, never a proxy: the issue's point is that a recipe must be judged
on the schedule it will be used with.  A search replayed on the pool sees
curve prefixes for its short rungs and is scored on the final accuracy.

Why 40 epochs (``FULL_EPOCHS``; 9 updates each at batch 32 on 300 images),
measured on this machine (one torch thread per training, 2 cores shared
with other jobs).  ResNet-18 at 32 px: ``baseline`` took 35 CPU-s for 20
epochs and 77 for 40, ``fbnetv3`` (AutoAugment, EMA) 68 and 157; a sampled
RMSProp + EMA recipe ~3 s per epoch.  FBNetV3-A at 56 px costs about three
times as much: ``baseline`` 120 CPU-s for 20 epochs, ~8 s per epoch with
EMA.  At the README demo's 20 epochs ``baseline`` ends at 40 % on ResNet-18
(``fbnetv3`` 34 %), still climbing, so recipes would be ranked on how fast
they start; at 40 it ends at 78 % (``fbnetv3`` 77 %) with the cosine tail
flat; 100 epochs (``recipe_search.py``'s low-data regime, ~95 %) would cost
2.5x more per training.  One length for both backbones, so a search default
chosen on one means the same schedule on the other.  Pool sizes
(``RECIPES``) keep a half at a few CPU-hours: 40 recipes x 4 seeds for
ResNet-18 (the build measured 70 CPU-s for ``baseline``, 125 for ``fbnetv3``,
95-130 for sampled recipes: ~5.3 CPU-hours with the presets), 24 for the
dearer FBNetV3-A (~2.7x: ~9 CPU-hours; its pools are built with ``--channels-last``,
NHWC weights, which trains it 1.76x faster: ``benchmarks/results/memory_format.md``).  Recipe-major order makes any
prefix of a build a usable pool, so a build can be stopped early.  The Sobol prefix is stable,
so a pool grows later with ``--recipes`` (resumed, nothing retrained); each
summary states what its build actually cost.

Each recipe gets seeds ``0..--seeds-1`` (default 4), recipe by recipe, so an
interrupted build holds complete recipes; every training is appended to the
pool file (gzipped JSON lines, ``search/pool.py``'s format) as it ends, and a
rerun skips finished trainings.  A file made with other settings is refused,
naming the keys that differ.  The presets ``baseline`` and ``fbnetv3`` are
trained first, the same way (same seeds, batch, resolution, epochs), as
``type: "preset"`` records: ``load_pool`` skips them, so ``PoolSource`` serves
only the sampled recipes while a benchmark can still compare a pick with
``baseline`` on the pool's truth (:func:`preset_runs` reads them).

Two halves with different Sobol seeds: ``tune`` (seed 0), where defaults may
be chosen, and ``heldout`` (seed 1), where results are reported.  Writes a
summary to ``benchmarks/results/recipe_pool_<backbone>_<half>.md``.

As in the arch pools, a diverged training (NaN loss) keeps no curve:
``evaluate`` reports it as failed with no metrics, so a search on the pool
sees it fail at any rung, and truth counts it as 0 %.  Accuracy is on
digits' fixed 599-image validation split (``holdout`` 0, as the arch pools),
scored as the search scores (the better of raw and EMA weights).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the arch pool's script beside this one
from pool import _train, session_facts  # noqa: E402  (one session record, one worker)

HERE = Path(__file__).parent
HALVES = {"tune": 0, "heldout": 1}  # half -> Sobol seed of its recipes
BACKBONES = {"resnet18": 32, "fbnetv3_a": 56}  # backbone -> input size
RECIPES = {"resnet18": 40, "fbnetv3_a": 24}  # default recipes per half (cost; docstring)
FULL_EPOCHS = 40  # the full schedule every recipe is trained for (docstring)
DATA = "digits:30"
PRESETS = ("baseline", "fbnetv3")
HOLDOUT = 0.0  # rank on digits' validation split, as the arch pools
SAMPLE_SIZE = 256  # the Sobol prefix is drawn at this size, so --recipes can grow it stably
KEEP = ("epoch", "val_top1", "ema_top1", "val_loss", "train_loss")  # per-epoch curve fields
# a file is extended only when these settings match (search/pool.py's PROXY_KEYS and more)
SETTING_KEYS = (
    "space",
    "space_fingerprint",
    "data",
    "epochs",
    "overrides",
    "num_classes",
    "model",
    "resolution",
    "recipe_base",
    "holdout",
    "sample_seed",
    "sample_size",
    "channels_last",
)
# what a file made before a setting existed was built with
SETTING_DEFAULTS = {"channels_last": False}


def default_path(kind: str, backbone: str, half: str) -> Path:
    """The committed pool file (``data``) or summary (``results``) of a backbone's half."""
    suffix = "jsonl.gz" if kind == "data" else "md"
    return HERE / kind / f"recipe_pool_{backbone}_{half}.{suffix}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:3]),
    )
    p.add_argument(
        "--backbone",
        default="resnet18",
        help=f"the fixed model ({', '.join(BACKBONES)}, or any model with --resolution)",
    )
    p.add_argument("--half", choices=sorted(HALVES), default="tune", help="pool half")
    p.add_argument("--resolution", type=int, help="input size (default: the backbone's)")
    p.add_argument("--data", default=DATA, help=f"training data (default {DATA})")
    p.add_argument(
        "--epochs", type=int, default=FULL_EPOCHS, help=f"full length (default {FULL_EPOCHS})"
    )
    p.add_argument("--recipes", type=int, help="recipes in the pool (default: per backbone)")
    p.add_argument("--seeds", type=int, default=4, help="trainings per recipe (default 4)")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (1 thread each)")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="train in NHWC memory (fbnetv3 search --channels-last; faster for FBNetV3-A)",
    )
    p.add_argument("--out", help="pool file (appended to; default benchmarks/data/...)")
    p.add_argument("--results", help="summary file (default benchmarks/results/...; '' = none)")
    p.add_argument("--summary-only", action="store_true", help="only rewrite the summary")
    args = p.parse_args(argv)
    if args.resolution is None:
        if args.backbone not in BACKBONES:
            p.error(f"--backbone {args.backbone}: give --resolution (known: {list(BACKBONES)})")
        args.resolution = BACKBONES[args.backbone]
    if args.recipes is None:
        args.recipes = RECIPES.get(args.backbone, 24)
    if not 1 <= args.recipes <= SAMPLE_SIZE:
        p.error(f"--recipes must be in 1..{SAMPLE_SIZE}")
    if args.seeds < 2 or args.epochs < 1 or args.jobs < 1:
        p.error("--seeds must be >= 2 (held-out truth), --epochs and --jobs >= 1")
    args.sample_seed = HALVES[args.half]
    args.out = args.out or str(default_path("data", args.backbone, args.half))
    if args.results is None:
        args.results = str(default_path("results", args.backbone, args.half))
    return args


def pool_settings(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The fixed-model recipe space and the settings a pool file pins."""
    from fbnetv3_zoo.search.space.fixed_model import fixed_model_space
    from fbnetv3_zoo.search.trainer import _num_classes

    num_classes = _num_classes(args.data)
    space = fixed_model_space(args.backbone, resolution=args.resolution, num_classes=num_classes)
    settings = dict(
        space=space.name,
        space_fingerprint=space.fingerprint(),
        data=args.data,
        epochs=args.epochs,
        overrides=dict(space.recipe_overrides),
        num_classes=num_classes,
        model=args.backbone,
        resolution=args.resolution,
        recipe_base=space.recipe_base,
        holdout=HOLDOUT,
        sample_seed=args.sample_seed,
        sample_size=SAMPLE_SIZE,
        channels_last=args.channels_last,
    )
    return space, settings


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def session_meta(settings: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """The meta record of one build session: settings, command, versions, machine."""
    from fbnetv3_zoo.search.pool import POOL_FORMAT

    return dict(
        type="meta",
        format=POOL_FORMAT,
        kind="recipe_pool",
        **settings,
        presets=list(PRESETS),
        requested=dict(recipes=args.recipes, seeds=args.seeds),
        commit=_git_commit(),
        **session_facts(),
    )


def _common(result: dict[str, Any], seed: int, cpu_s: float) -> dict[str, Any]:
    return dict(
        seed=seed,
        status=result["status"],
        error=result["error"],
        metrics=[{k: m[k] for k in KEEP if k in m} for m in result["metrics"]],
        wall_s=round(result["wall_s"], 2),
        cpu_s=round(cpu_s, 2),
    )


def check_settings(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to extend a file built with other settings, naming the keys that differ."""
    from fbnetv3_zoo.search.pool import read_records

    meta = [r for r in read_records(out) if r.get("type") == "meta"]
    if not meta:
        raise SystemExit(f"{out} holds no meta record; not a recipe pool file")
    had = {k: meta[0].get(k, SETTING_DEFAULTS.get(k)) for k in SETTING_KEYS}
    diff = [k for k in SETTING_KEYS if had[k] != settings[k]]
    if diff:
        shown = ", ".join(f"{k}: {had[k]!r} in the file, {settings[k]!r} now" for k in diff)
        raise SystemExit(f"{out} was built with other settings ({shown}); use another --out")


def finished(out: Path) -> set[tuple[str, int | str, int]]:
    """(kind, recipe index or preset name, seed) of every training the file holds."""
    from fbnetv3_zoo.search.pool import read_records

    if not out.exists():
        return set()
    done: set[tuple[str, int | str, int]] = set()
    for r in read_records(out):
        if r.get("type") == "run":
            done.add(("run", int(r["pair"]), int(r["seed"])))
        elif r.get("type") == "preset":
            done.add(("preset", str(r["preset"]), int(r["seed"])))
    return done


def build(args: argparse.Namespace) -> None:
    from fbnetv3_zoo.search.pool import append_records
    from fbnetv3_zoo.search.space.encoding import decode
    from fbnetv3_zoo.search.space.sampling import sample
    from fbnetv3_zoo.search.trainer import EvalTask, build_recipe

    space, settings = pool_settings(args)
    out = Path(args.out)
    if out.exists():
        check_settings(out, settings)
    u = sample(space, SAMPLE_SIZE, "sobol", seed=args.sample_seed)
    stats = dict(macs=int(space.model_stats[0]), params=int(space.model_stats[1]))
    overrides = settings["overrides"]
    arch = {"model": args.backbone, "input_size": args.resolution}
    seeds = range(args.seeds)
    # presets first (a partial pool can always be compared with them), then recipe by recipe
    jobs: list[tuple[str, int | str, int]] = [("preset", n, s) for n in PRESETS for s in seeds]
    jobs += [("run", i, s) for i in range(args.recipes) for s in seeds]
    have = finished(out)
    jobs = [j for j in jobs if j not in have]
    print(f"{out}: {len(have)} trainings there, {len(jobs)} to train", flush=True)
    if not jobs:
        return

    def prepare(job: tuple[str, int | str, int]) -> tuple[Any, dict[str, Any]]:
        """The EvalTask of a job and the record fields that name what it trained."""
        kind, which, seed = job
        if kind == "preset":
            full = build_recipe(str(which), {}, args.resolution, overrides).to_dict()
            full["epochs"] = args.epochs  # what evaluate trains for; the preset's own is longer
            task = EvalTask(-1, arch, {}, str(which), args.data, args.epochs, None, seed, 1,
                            overrides, holdout=HOLDOUT, channels_last=args.channels_last)  # fmt: skip
            return task, dict(type="preset", preset=which, arch=arch, recipe=full, **stats)
        _, recipe = decode(space, u[int(which)])
        task = EvalTask(int(which), arch, recipe, space.recipe_base, args.data, args.epochs,
                        None, seed, 1, overrides, holdout=HOLDOUT,
                        channels_last=args.channels_last)  # fmt: skip
        vector = [float(v) for v in u[int(which)]]
        return task, dict(type="run", pair=which, vector=vector, arch=arch, recipe=recipe, **stats)

    prepared = {job: prepare(job) for job in jobs}
    meta = [session_meta(settings, args)]  # written with this session's first training
    start = time.perf_counter()

    def finish(n: int, job: tuple[str, int | str, int], result: dict, cpu_s: float) -> None:
        record = prepared[job][1] | _common(result, job[2], cpu_s)
        append_records(out, meta + [record])
        meta.clear()
        score = _final(record) if record["metrics"] else None
        shown = f"{score:.1f} %" if score is not None else result["status"]
        eta = (time.perf_counter() - start) / n * (len(jobs) - n) / 3600
        print(
            f"[{n}/{len(jobs)}] {job[0]} {job[1]} seed {job[2]}: {shown} "
            f"({cpu_s:.0f} s CPU, {result['wall_s']:.0f} s wall; ~{eta:.1f} h left)",
            flush=True,
        )

    if args.jobs == 1:  # in this process: no start-up per training, and tests can run it
        for n, job in enumerate(jobs, 1):
            finish(n, job, *_train(prepared[job][0]))
        return
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as ex:
        futures = {ex.submit(_train, prepared[j][0]): j for j in jobs}
        for n, fut in enumerate(as_completed(futures), 1):
            finish(n, futures[fut], *fut.result())


def preset_runs(path: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """The presets' trainings of a recipe pool file: preset name -> seed -> record."""
    from fbnetv3_zoo.search.pool import read_records

    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for r in read_records(path):
        if r.get("type") == "preset":
            runs.setdefault(r["preset"], {})[int(r["seed"])] = r
    return runs


def _final(record: dict[str, Any], epoch: int | None = None) -> float:
    """A training's accuracy after ``epoch`` (default the last) as the search scores it; failed: 0 %."""
    from fbnetv3_zoo.search.trainer import epoch_accuracy

    metrics = record["metrics"]
    if not metrics:
        return 0.0
    value = epoch_accuracy(metrics[-1] if epoch is None else metrics[min(epoch, len(metrics)) - 1])
    return 0.0 if value is None else float(value)


def rebuild_command(meta: dict[str, Any], recipes: int, seeds: int) -> str:
    """The command that rebuilds or extends this file from the repository root."""
    half = {v: k for k, v in HALVES.items()}.get(meta["sample_seed"], "?")
    cmd = f"python benchmarks/recipe_pool.py --backbone {meta['model']} --half {half}"
    if BACKBONES.get(meta["model"]) != meta["resolution"]:
        cmd += f" --resolution {meta['resolution']}"
    if meta["data"] != DATA:
        cmd += f" --data {meta['data']}"
    if meta["epochs"] != FULL_EPOCHS:
        cmd += f" --epochs {meta['epochs']}"
    if recipes != RECIPES.get(meta["model"], 24):
        cmd += f" --recipes {recipes}"
    if meta.get("channels_last"):
        cmd += " --channels-last"
    return cmd + (f" --seeds {seeds}" if seeds != 4 else "")


def _in_repository(path: Path) -> Path:
    """``path`` relative to the git repository that holds it (the one the summary is
    committed to, not necessarily the one this script runs from), else as given."""
    full = path.resolve()
    for root in full.parents:
        if (root / ".git").exists():
            return full.relative_to(root)
    return path


def summary(path: Path) -> str:
    """Markdown facts about a recipe pool: size, spread, noise, presets against the best, cost."""
    from fbnetv3_zoo.search.pool import load_pool
    from scipy.stats import spearmanr

    pool = load_pool(path)
    presets = preset_runs(path)
    m = pool.meta[0]
    mean, count = pool.quality()
    runs = [r for p in pool.pairs for r in p.runs.values()]
    every = runs + [r for by_seed in presets.values() for r in by_seed.values()]
    failed = sum(r["status"] != "done" for r in runs)
    cpu = np.array([r["cpu_s"] for r in every]) if every else np.zeros(1)
    wall = np.array([r["wall_s"] for r in every]) if every else np.zeros(1)
    paired = [p for p in pool.pairs if 0 in p.runs and 1 in p.runs]
    retest = (
        spearmanr([p.final(0) for p in paired], [p.final(1) for p in paired])[0]
        if len(paired) > 2
        else float("nan")
    )
    spread = [np.std([p.final(s) for s in p.runs], ddof=1) for p in pool.pairs if len(p.runs) >= 2]
    chance = 100.0 / m["num_classes"]
    top = np.argsort(-mean)[:10] if len(mean) else np.array([], dtype=int)
    requested = pool.meta[-1].get("requested", {})
    name = _in_repository(path)
    updates = f" ({9 * m['epochs']} updates at batch 32)" if m["data"] == DATA else ""

    def pct(q: float) -> str:
        return f"{np.percentile(mean, q):.1f}" if len(mean) else "-"

    lines = [
        f"# Recipe pool: {m['model']} at {m['resolution']} px, Sobol seed {m['sample_seed']}",
        "",
        f"File: `{name}` ({path.stat().st_size / 1024:.0f} KiB). Rebuild or extend: "
        f"`{rebuild_command(m, requested.get('recipes', len(pool.pairs)), requested.get('seeds', 4))}` "
        "(resumes; finished trainings are skipped). `search/pool.py`'s `load_pool` reads it (the "
        "presets are `preset` records it skips; `preset_runs` in the script reads them).",
        f"Settings: space `{m['space']}` (fingerprint {m['space_fingerprint']}; base "
        f"`{m['recipe_base']}`, overrides {m['overrides']}), data `{m['data']}` (holdout "
        f"{m['holdout']}: scored on the validation split), every training at the full "
        f"{m['epochs']} epochs{updates}; recipes Sobol-sampled (seed {m['sample_seed']}); "
        "a training's score is its last epoch's top-1, the better of raw and EMA weights.",
        f"Made with {', '.join(f'{k} {v}' for k, v in m['versions'].items())} at commit "
        f"`{m.get('commit', 'unknown')[:12]}` on {m['machine']['platform']} "
        f"({m['machine']['cpus']} cores shared with other jobs, 1 torch thread per training"
        f"{', NHWC memory (--channels-last)' if m.get('channels_last') else ''}).",
        f"Build command as run: `{pool.meta[-1]['command']}`.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| recipes (requested) | {len(pool.pairs)} ({requested.get('recipes', '-')}) |",
        f"| trainings of recipes (failed) | {len(runs)} ({failed}) |",
        "| seeds per recipe: min / median / max | "
        + (f"{count.min()} / {np.median(count):g} / {count.max()} |" if len(count) else "- |"),
        f"| accuracy of the recipes (per-recipe mean, %): p10 / p50 / p90 / max | "
        f"{pct(10)} / {pct(50)} / {pct(90)} / {pct(100)} |",
        f"| recipes near chance (mean < {chance + 5:.0f} %) | {int((mean < chance + 5).sum())} |",
        f"| test-retest Spearman, seed 0 vs 1 ({len(paired)} recipes) | {retest:.3f} |",
        f"| seed noise: standard deviation over seeds, median of {len(spread)} recipes (points) | "
        f"{np.median(spread) if spread else float('nan'):.2f} |",
    ]
    if len(top) > 1:
        lines.append(
            f"| spread of the {len(top)} best (best - lowest of them, mean, points) | "
            f"{mean[top[0]] - mean[top[-1]]:.2f} |"
        )
    complete = [p for p in pool.pairs if len(p.runs) >= 2]
    for share in (0.25, 0.5):
        epoch = max(1, round(share * m["epochs"]))
        if len(complete) > 2:
            early = [np.mean([_final(r, epoch) for r in p.runs.values()]) for p in complete]
            late = [np.mean([_final(r) for r in p.runs.values()]) for p in complete]
            lines.append(
                f"| Spearman of the mean at epoch {epoch} (prefix of the full schedule) with the "
                f"final mean ({len(complete)} recipes) | {spearmanr(early, late)[0]:.3f} |"
            )
    lines += [
        f"| CPU seconds per training (mean / max; presets included) | "
        f"{cpu.mean():.0f} / {cpu.max():.0f} |",
        f"| wall seconds per training on the shared machine (mean / max) | "
        f"{wall.mean():.0f} / {wall.max():.0f} |",
        f"| CPU hours so far (all {len(every)} trainings) | {cpu.sum() / 3600:.2f} |",
        "",
        "Presets, trained the same way (same seeds, batch, resolution and epochs):",
        "",
        "| preset | seeds | mean top-1 % | single runs % | recipes with a higher mean | "
        "best recipe - preset (points) |",
        "|---|---|---|---|---|---|",
    ]
    for preset in PRESETS:
        by_seed = presets.get(preset, {})
        if not by_seed:
            lines.append(f"| {preset} | 0 | - | - | - | - |")
            continue
        values = [_final(by_seed[s]) for s in sorted(by_seed)]
        pm = float(np.mean(values))
        best = f"{mean.max() - pm:+.2f}" if len(mean) else "-"
        lines.append(
            f"| {preset} | {len(values)} | {pm:.2f} | {', '.join(f'{v:.1f}' for v in values)} | "
            f"{int((mean > pm).sum())} of {len(mean)} | {best} |"
        )
    lines += [
        "",
        "Best recipes by mean accuracy over their seeds:",
        "",
        "| recipe | seeds | mean top-1 % | single runs % | optimizer | lr | weight decay | mixup | "
        "dropout | drop path | EMA | label smoothing |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for k in top:
        p = pool.pairs[k]
        r = p.recipe
        lines.append(
            f"| {p.index} | {count[k]} | {mean[k]:.2f} | "
            + ", ".join(f"{p.final(s):.1f}" for s in sorted(p.runs))
            + f" | {r['optimizer']} | {r['lr']:.3g} | {r['weight_decay']:.2g} | {r['mixup']:.2f} "
            f"| {r['dropout']:.2f} | {r['drop_path']:.2f} | {r['ema_decay']:g} "
            f"| {r['label_smoothing']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.summary_only:
        build(args)
    elif not Path(args.out).exists():
        raise SystemExit(f"{args.out}: no pool file to summarise")
    text = summary(Path(args.out))
    print(text)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(text)


if __name__ == "__main__":
    main()
