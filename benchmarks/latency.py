"""How well the per-block latency table predicts whole networks, against MACs.

    python3 benchmarks/latency.py measure --backend onnxruntime   # one backend's table + networks
    python3 benchmarks/latency.py measure --backend torch
    python3 benchmarks/latency.py picks --run runs/s3 --retime     # a latency-limited search's picks
    python3 benchmarks/latency.py report                          # -> benchmarks/results/latency.md

Every phase takes ``--results DIR`` (default ``benchmarks/results``): where it writes
its files and ``report`` reads them.  A tiny run (seconds):

    python3 benchmarks/latency.py measure --backend torch --results /tmp/l --networks 4 \
        --no-variants --space tests/data/latency/tiny_space.yaml
    python3 benchmarks/latency.py report --results /tmp/l

``measure`` builds a fresh table for the embedded space (``fbnetv3_proxy``)
in a temporary cache directory, fits the correction on its seeded calibration
networks, then times ``--networks`` other random architectures of the space
end to end on the same backend, and (``--variants``) FBNetV3-A…G, which are
not points of the embedded space: for them the blocks they use are measured
on demand at their own resolution and the plain block sum is the prediction
(the correction is fitted per space, and fitting one for the full space
needs its whole table).  Raw numbers go to ``benchmarks/results/latency_<backend>.json``.
``picks`` reads finished latency-limited search folders (``--run``, repeatable):
each limit's pick and the best *predicted* pick, predicted and measured at
the end of that search, the table's noise, and (``--retime``) a second
timing of both made now, into ``benchmarks/results/latency_picks.json``.
``report`` reads those files and writes the table: fraction of networks
within ±10 % of measured, mean absolute percentage error and Spearman, for
the table's prediction and for a linear fit of latency on MACs fitted on the
same calibration networks (and, kinder to MACs, on the test networks
themselves), plus a plot of predicted against measured latency.

Each phase should run on a machine as you can make it; the script
says in the report what else may have been running.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
GOAL = 0.95  # fraction of networks within ±10 % (issue 20)
SPEED_GOAL = 10_000  # architectures per second


def _measure(args: argparse.Namespace) -> None:
    from fbnetv3_zoo.search.latency.table import (
        STATISTICS,
        LatencyPredictor,
        build_table,
        calibration_vectors,
        predict_spec,
        space_keys,
    )
    from fbnetv3_zoo.search.space.constraints import batch_stats
    from fbnetv3_zoo.search.space.definition import load_space
    from fbnetv3_zoo.search.space.encoding import decode
    from fbnetv3_zoo.search.space.sampling import sample

    from fbnetv3_zoo.latency.table import (
        LatencyTable,
        measure_network,
        network_runner,
        spec_keys,
    )
    from fbnetv3_zoo.latency.timing import measure_many
    from fbnetv3_zoo.models.stats import arch_stats
    from fbnetv3_zoo.models.variants import VARIANTS

    space = load_space(args.space)
    classes = args.num_classes
    table_dir = args.table_dir or tempfile.mkdtemp(prefix="fbnetv3-latency-")
    table = LatencyTable.for_machine(args.backend, args.threads, table_dir)
    start = time.perf_counter()
    build_table(space, args.backend, args.threads, classes, table=table)
    build_s = time.perf_counter() - start
    print(f"table: {len(table.entries)} entries, built in {build_s:.0f} s", flush=True)

    u = sample(space, 4 * args.networks + 64, "uniform", seed=args.seed)
    u = u[batch_stats(space, u, classes)[2]][: args.networks]
    cal = calibration_vectors(space, 24)
    preds = {s: LatencyPredictor(space, table, classes, s) for s in STATISTICS}
    big = sample(space, 100_000, "uniform", seed=args.seed + 1)
    t0 = time.perf_counter()
    preds["ms"].predict(big)
    speed = len(big) / (time.perf_counter() - t0)
    print(f"prediction: {speed:,.0f} architectures/s", flush=True)

    def networks(vectors: np.ndarray, label: str, chunk: int = 50) -> list[dict]:
        """Each network timed in passes over chunks, as the table's entries are."""
        rows = []
        t_start = time.perf_counter()
        for start in range(0, len(vectors), chunk):
            part = vectors[start : start + chunk]
            specs = [decode(space, row)[0] for row in part]
            fns = [network_runner(spec, args.backend, args.threads, classes) for spec in specs]
            for row, spec, t in zip(part, specs, measure_many(fns, args.threads), strict=True):
                rows.append(
                    dict(
                        macs=arch_stats(spec, num_classes=classes).macs,
                        measured_ms=t.ms,
                        measured_low=t.low,
                        passes=list(t.passes),
                        spread=t.spread,
                        **{f"pred_{s}": float(preds[s].predict(row[None])[0]) for s in STATISTICS},
                        **{
                            f"sum_{s}": float(preds[s].block_sums(row[None])[0][0])
                            for s in STATISTICS
                        },
                    )
                )
            print(
                f"{label}: {len(rows)}/{len(vectors)} ({time.perf_counter() - t_start:.0f} s)",
                flush=True,
            )
        return rows

    cal_rows = networks(cal, "calibration networks")
    test_rows = networks(u, "test networks")
    variant_rows: list[dict] = []

    def save() -> None:
        out = dict(
            backend=args.backend,
            threads=args.threads,
            space=space.name,
            num_classes=classes,
            seed=args.seed,
            table_entries=len(table.entries),
            space_entries=len(space_keys(space, classes)),
            table_build_s=build_s,
            table_build_note=args.build_note,
            fingerprint=table.fingerprint,
            corrections={k: v for k, v in table.corrections.items()},
            prediction_per_s=speed,
            calibration=cal_rows,
            test=test_rows,
            variants=variant_rows,
            load_before=os.getloadavg(),
            finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            note=args.note,
        )
        path = Path(args.results) / f"latency_{args.backend}.json"
        path.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {path}")

    save()  # the test networks are kept even if the variants are cut short
    if args.variants:
        for name, variant in VARIANTS.items():
            spec = variant.spec
            keys = spec_keys(spec, 1000)
            table.measure(keys, progress=False)
            t = measure_network(spec, args.backend, args.threads, 1000)
            variant_rows.append(
                dict(
                    name=name,
                    input_size=spec.input_size,
                    macs=arch_stats(spec, num_classes=1000).macs,
                    measured_ms=t.ms,
                    measured_low=t.low,
                    spread=t.spread,
                    **{f"sum_{s}": predict_spec(table, spec, 1000, None, s) for s in STATISTICS},
                )
            )
            print(
                f"{name}: measured {t.ms:.2f} ms, block sum {variant_rows[-1]['sum_ms']:.2f} ms",
                flush=True,
            )
    save()


def _picks(args: argparse.Namespace) -> None:
    """Each latency limit's pick of the given search folders, with a re-timing (``--retime``)."""
    from fbnetv3_zoo.search.space.constraints import parse_constraint
    from fbnetv3_zoo.search.store import Store

    from fbnetv3_zoo.latency.table import measure_network
    from fbnetv3_zoo.models.spec import ArchSpec

    rows = []
    for run in args.run:
        store = Store(Path(run) / "search.sqlite", readonly=True)
        try:
            by_id = {r["id"]: r for r in store.candidates("done")}
            made_by = store.get("made_by") or {}
            classes = store.get("num_classes") or 10
            for text in (store.get("config") or {}).get("constraints", []):
                c = parse_constraint(text)
                doc = store.get(f"latency/{c.slug}")
                if c.metric != "latency_ms" or not doc:
                    continue
                row = dict(
                    run=str(run),
                    command=made_by.get("command"),
                    constraint=c.text,
                    **{k: doc.get(k) for k in PICK_FIELDS},
                    score=by_id[doc["candidate"]]["score"],
                    predicted_pick_score=by_id[doc["predicted_pick"]]["score"],
                )
                if args.retime:
                    for name, cid in (
                        ("retimed_ms", doc["candidate"]),
                        ("predicted_pick_retimed_ms", doc["predicted_pick"]),
                    ):
                        spec = ArchSpec.from_dict(by_id[cid]["arch"])
                        t = measure_network(spec, c.backend, c.threads, classes)
                        row[name] = float(np.median(t.passes))  # judged as the search judges
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            store.close()
    out = dict(
        picks=rows,
        load_before=os.getloadavg(),
        finished=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        note=args.note,
    )
    path = Path(args.results) / "latency_picks.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


PICK_FIELDS = (
    "candidate",
    "limit_ms",
    "predicted_ms",
    "measured_ms",
    "fastest_pass_ms",
    "noise",
    "measured_over_predicted",
    "run_noise",
    "over_limit_beyond_noise",
    "chosen_by",
    "timed_candidates",
    "predicted_pick",
    "predicted_pick_measured_ms",
)


def _picks_lines(folder: Path = RESULTS) -> list[str]:
    """The report's section on latency-limited searches' picks, when ``picks`` has been run."""
    path = Path(folder) / "latency_picks.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    lines = [
        "## Picks of latency-limited searches",
        "",
        "`python3 benchmarks/latency.py picks --run <folder> --retime` on finished searches "
        f"(finished {data['finished']}; load average before: "
        f"{', '.join(f'{v:.1f}' for v in data['load_before'])}). Each limit's pick is the "
        "best-scoring candidate whose latency, timed end to end at the end of the search "
        "(median of 3 passes), is within the limit plus the table's noise (median gap between "
        "an entry's fastest and second fastest pass); the best *predicted* pick (what the table "
        "alone would have chosen) is shown beside it. *Re-timed* is a second timing made by "
        "`picks`; *measured / predicted* is the median over every candidate the search timed "
        "(far from 1: the machine ran slower or faster than when the table was built).",
        "",
    ]
    if data.get("note"):
        lines += [data["note"], ""]
    lines += [
        "| search | limit | pick | proxy top-1 | predicted (ms) | measured (ms) | re-timed (ms) "
        "| noise | within limit + noise | measured / predicted "
        "| best predicted pick: top-1, measured, re-timed (ms) |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in data["picks"]:
        bound = r["limit_ms"] * (1 + r["noise"])

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        within = "yes" if r["measured_ms"] is not None and r["measured_ms"] <= bound else "**no**"
        if r.get("retimed_ms") is not None:
            within += f" (re-timed: {'yes' if r['retimed_ms'] <= bound else '**no**'})"
        same = r["predicted_pick"] == r["candidate"]
        ratio = (
            "-"
            if r.get("measured_over_predicted") is None
            else f"{r['measured_over_predicted']:.2f}"
        )
        ref = (
            "same"
            if same
            else f"{r['predicted_pick']}: {r['predicted_pick_score']:.2f}, "
            f"{ms(r['predicted_pick_measured_ms'])}, {ms(r.get('predicted_pick_retimed_ms'))}"
        )
        lines.append(
            f"| `{r['command'] or r['run']}` | `{r['constraint']}` | {r['candidate']} | "
            f"{r['score']:.2f} | {ms(r['predicted_ms'])} | {ms(r['measured_ms'])} | "
            f"{ms(r.get('retimed_ms'))} | {100 * r['noise']:.1f} % | {within} | "
            f"{ratio} | {ref} |"
        )
    return [*lines, ""]


def _build_text(run: dict) -> str:
    if run.get("table_build_note"):
        return run["table_build_note"]
    return f"built in this run in {run['table_build_s']:.0f} s"


def _scores(pred: np.ndarray, measured: np.ndarray) -> tuple[float, float, float]:
    from scipy.stats import spearmanr

    rel = pred / measured - 1
    return (
        float(np.mean(np.abs(rel) <= 0.10)),
        float(np.mean(np.abs(rel))),
        float(spearmanr(pred, measured).statistic),
    )


def _linear(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares on relative error, as the table's correction is fitted."""
    a = np.stack([np.ones_like(x), x], axis=1) / y[:, None]
    coef, *_ = np.linalg.lstsq(a, np.ones_like(y), rcond=None)
    return float(coef[0]), float(coef[1])


def _report(args: argparse.Namespace) -> None:
    folder = Path(args.results)
    runs = []
    for backend in ("onnxruntime", "torch"):
        path = folder / f"latency_{backend}.json"
        if path.is_file():
            runs.append(json.loads(path.read_text()))
    if not runs:
        sys.exit("no measurements: run `python3 benchmarks/latency.py measure --backend ...` first")
    stat_names = {"ms": "median of calls", "low": "20th percentile of calls"}
    lines = [
        "# Latency prediction from the per-block table (CPU)",
        "",
        "`python3 benchmarks/latency.py measure --backend onnxruntime`, the same with "
        "`--backend torch`, then `python3 benchmarks/latency.py report`.",
        "",
        "Per backend, in one run: a fresh table for the space (every block configuration, batch "
        "1), its correction fitted on 24 seeded calibration networks, then other random "
        "architectures of the space timed end to end on the same backend. Entries and networks "
        "are timed alike: each call on its own (warm-up, 5 rounds of >= 5 calls; with one thread "
        "on the calling thread's CPU clock, so time spent descheduled by other processes does "
        "not count), in 3 passes "
        "over chunks of 50-64 runners so each one's timings are spread over time; the value is "
        "the median of the calls of the least disturbed pass (the 20th percentile of calls is "
        "kept as a second statistic). "
        "Prediction: table sum + fitted correction `a + b * sum + c * blocks`. "
        "Baseline: latency = a + b * MACs by the same relative least squares on the same "
        "calibration networks; `MACs, fitted on the test set` fits it on the very networks it "
        "is scored on (in-sample: the best a MACs line can do).",
        "",
    ]
    fig_data = []
    for run in runs:
        fp = run["fingerprint"]
        versions = f"torch {fp['torch']}" + (
            f", onnxruntime {fp['onnxruntime']}" if "onnxruntime" in fp else ""
        )
        lines += [
            f"## {run['backend']} ({run['threads']} thread{'s' if run['threads'] > 1 else ''})",
            "",
            f"{fp['cpu']} ({fp['cpu_count']} cores), Python {fp['python']}, {versions}. "
            f"Space `{run['space']}`, {run['num_classes']} classes, table of "
            f"{run.get('space_entries', run['table_entries'])} entries for the space "
            f"({_build_text(run)}); "
            f"{len(run['test'])} test networks (uniform, seed {run['seed']}); finished "
            f"{run['finished']}. Prediction speed: {run['prediction_per_s']:,.0f} architectures/s "
            f"(goal >= {SPEED_GOAL:,}).",
            "",
        ]
        if run.get("note"):
            lines += [run["note"], ""]
        lines += [
            "| statistic | predictor | within ±10 % | MAPE | Spearman |",
            "|---|---|---:|---:|---:|",
        ]
        cal, test = run["calibration"], run["test"]
        for stat, key in (("ms", "measured_ms"), ("low", "measured_low")):
            y = np.array([r[key] for r in test])
            yc = np.array([r[key] for r in cal])
            macs = np.array([r["macs"] for r in test], dtype=float)
            macs_c = np.array([r["macs"] for r in cal], dtype=float)
            a, b = _linear(macs_c, yc)
            a2, b2 = _linear(macs, y)
            preds = [
                ("table + correction", np.array([r[f"pred_{stat}"] for r in test])),
                ("table sum alone", np.array([r[f"sum_{stat}"] for r in test])),
                ("MACs, linear fit (calibration networks)", a + b * macs),
                ("MACs, fitted on the test set (in-sample)", a2 + b2 * macs),
            ]
            for label, p in preds:
                w, mape, rho = _scores(p, y)
                lines.append(
                    f"| {stat_names[stat]} | {label} | {100 * w:.1f} % | {100 * mape:.1f} % | {rho:.3f} |"
                )
            if stat == "ms" and all(len(r.get("passes", ())) >= 2 for r in test):
                first = np.array([r["passes"][0] for r in test])
                second = np.array([r["passes"][1] for r in test])
                w, mape, rho = _scores(second, first)
                lines.append(
                    f"| {stat_names[stat]} of one pass | retest: the same network's 2nd pass "
                    f"against its 1st (the noise floor) | {100 * w:.1f} % | {100 * mape:.1f} % | {rho:.3f} |"
                )
            if stat == "ms":
                fig_data.append((run["backend"], y, preds[0][1], preds[2][1]))
        if all(len(r.get("passes", ())) >= 2 for r in test):
            first = np.array([r["passes"][0] for r in test])
            second = np.array([r["passes"][1] for r in test])
            retest = np.mean(np.abs(second / first - 1) <= 0.10)
            best = np.array([r["pred_ms"] for r in test]) / np.array(
                [r["measured_ms"] for r in test]
            )
            lines += [
                "",
                f"Noise floor: timed twice, the same network's two passes agree within ±10 % for "
                f"{100 * retest:.1f} % of the networks, so on this machine at this time no "
                f"predictor could be expected to do better than roughly that; the table's "
                f"prediction is within ±10 % of the least disturbed pass for "
                f"{100 * np.mean(np.abs(best - 1) <= 0.10):.1f} %.",
            ]
        spreads = np.array([r["spread"] for r in test])
        lines += [
            "",
            f"Measured networks: {np.median([r['measured_ms'] for r in test]):.3f} ms median "
            f"(range {min(r['measured_ms'] for r in test):.3f}-{max(r['measured_ms'] for r in test):.3f}); "
            f"noise estimate (interquartile range of round medians / median): median "
            f"{100 * np.median(spreads):.1f} %, 90th percentile {100 * np.quantile(spreads, 0.9):.1f} %.",
            "",
        ]
        if run["variants"]:
            lines += [
                "FBNetV3-A…G are not points of the embedded space: their blocks were measured on "
                "demand into the same table at their own resolution, and the prediction is the "
                "plain block sum (no correction: it is fitted per space).",
                "",
                "| model | input | MACs (M) | measured (ms) | block sum (ms) | error |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for r in run["variants"]:
                err = r["sum_ms"] / r["measured_ms"] - 1
                lines.append(
                    f"| {r['name']} | {r['input_size']} | {r['macs'] / 1e6:.1f} | "
                    f"{r['measured_ms']:.2f} | {r['sum_ms']:.2f} | {100 * err:+.1f} % |"
                )
            lines.append("")
    lines += _picks_lines(folder)
    lines += [
        "The machine is a shared 2-core VM: during each measuring phase the project's "
        "background benchmark jobs were paused (SIGSTOP), but other helpers' test runs may have "
        "been running; every number above comes from that machine, not a quiet one.",
        "",
        "![predicted vs measured](latency.png)",
        "",
    ]
    text = "\n".join(lines)
    (folder / "latency.md").write_text(text)
    print(text)
    _plot(fig_data, folder / "latency.png")


def _plot(data: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4.8), squeeze=False)
    for ax, (backend, y, pred, macs_pred) in zip(axes[0], data, strict=True):
        lo, hi = min(y.min(), pred.min()) * 0.9, max(y.max(), pred.max()) * 1.1
        line = np.linspace(lo, hi, 50)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10 %")
        ax.plot(line, line, color="0.4", lw=0.8)
        ax.scatter(y, macs_pred, s=8, color="tab:orange", alpha=0.6, label="MACs, linear fit")
        ax.scatter(y, pred, s=8, color="tab:blue", label="table + correction")
        ax.set_xlabel("measured latency (ms, median)")
        ax.set_ylabel("predicted latency (ms)")
        ax.set_title(backend)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--results",
        default=str(RESULTS),
        help="folder of the phases' files (default benchmarks/results)",
    )
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", parents=[common])
    m.add_argument("--backend", required=True, choices=("onnxruntime", "torch"))
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--space", default="fbnetv3_proxy")
    m.add_argument("--num-classes", type=int, default=10)
    m.add_argument("--networks", type=int, default=200)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True)
    m.add_argument("--table-dir", default=None, help="default: a fresh temporary directory")
    m.add_argument("--note", default="", help="a line for the report (machine conditions)")
    m.add_argument(
        "--build-note",
        default="",
        help="how the table was built when --table-dir holds one built beforehand",
    )
    m.set_defaults(func=_measure)
    k = sub.add_parser("picks", parents=[common])
    k.add_argument("--run", action="append", required=True, help="a finished search folder")
    k.add_argument("--retime", action="store_true", help="time each pick again now")
    k.add_argument("--note", default="", help="a line for the report (machine conditions)")
    k.set_defaults(func=_picks)
    r = sub.add_parser("report", parents=[common])
    r.set_defaults(func=_report)
    args = p.parse_args(argv)
    print(f"{platform.node()}: {' '.join(sys.argv if argv is None else argv)}", flush=True)
    args.func(args)


if __name__ == "__main__":
    main()
