"""Each benchmark script run for real on a tiny configuration (issue 38): its normal code
path, a few seconds, every output in ``tmp_path``; the table it writes has the expected
rows, columns and sane values, and the committed results and data stay as they are.

Scripts whose measurement cannot be made tiny (``on_device.py``: ExecuTorch lowering takes
about a CPU-minute even for a small network) are checked on their flags and on their
tables filled with hand-made numbers.  ``inference.py``, ``search.py``,
``recipe_search.py`` and ``recipe_pool.py`` have their tiny runs beside their subjects
(``test_bench``, ``test_search_pool``, ``test_recipe_search``, ``test_recipe_pool``).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from bench_script import BENCHMARKS, load_script, md_table, number, tree

POOL_TUNE = BENCHMARKS / "data" / "pool_tune.jsonl.gz"
LATENCY_DATA = Path(__file__).parent / "data" / "latency"


@pytest.fixture(autouse=True)
def committed_files_stay(tmp_path, monkeypatch):
    """Runs in ``tmp_path`` with temporary files under ``tmp_path/tmp``; afterwards the
    benchmarks folder (scripts, committed results and data) is as it was and no script
    left a temporary file or folder behind."""
    before = tree()
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    yield
    assert tree() == before
    # torch keeps its compile cache in the temporary folder, whoever imports it
    assert sorted(p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_")) == []


def _percent(cell: str) -> float:
    value = number(cell)
    assert 0.0 <= value <= 100.0, cell
    return value


# ------------------------------------------------------------------ golden, stats
@pytest.mark.slow
def test_golden_one_variant(tmp_path):
    out = tmp_path / "golden.md"
    load_script("golden").main(["--variants", "fbnetv3_a", "--out", str(out)])
    rows = md_table(out.read_text(), "variant")
    assert rows[0] == [
        "variant",
        "input",
        "logits max rel. dev.",
        "stage_out max rel. dev.",
        "params = reference",
    ]
    assert [r[:2] for r in rows[1:]] == [["fbnetv3_a", "224"]]
    assert 0 < number(rows[1][2]) < 1e-4 and 0 < number(rows[1][3]) < 1e-4
    assert rows[1][4] == "yes"


def test_golden_refuses_an_unknown_variant(capsys):
    with pytest.raises(SystemExit) as err:
        load_script("golden").main(["--variants", "fbnetv3_z", "--out", ""])
    assert err.value.code == 2 and "fbnetv3_a" in capsys.readouterr().err


@pytest.mark.slow
def test_stats_tiny(tmp_path):
    out = tmp_path / "stats.md"
    load_script("stats").main(["--seconds", "0.05", "--batch", "2000", "--out", str(out)])
    text = out.read_text()
    rows = md_table(text, "method")
    assert rows[0] == ["method", "specs / s", "vs build-and-count", "meets goal"]
    assert [r[0] for r in rows[1:]] == [
        "arch_stats, FBNetV3-A…G specs",
        "arch_stats, 200 random specs",
        "ArchSpec.from_dict + arch_stats, random",
        "build module + count params + hook MACs (A, B)",
    ]
    rates = [number(r[1]) for r in rows[1:]]
    assert all(r > 0 for r in rates) and rates[0] > rates[-1]  # analytic beats building
    assert rows[-1][2:] == ["1x", "-"]
    batch = md_table(text, "search filter")
    assert len(batch) == 2 and batch[1][1] == "2,000"
    assert number(batch[1][2]) > 0 and number(batch[1][3]) > 0
    assert batch[1][5] == "n/a (the goal is for 100,000)"  # the goal is for the full batch


# ------------------------------------------------------------------ cli_startup
@pytest.mark.slow
def test_cli_startup_tiny(tmp_path):
    out = tmp_path / "cli.md"
    argv = ["--rounds", "1", "--only", "version", "--no-warmup", "--out", str(out)]
    load_script("cli_startup").main(argv)
    rows = md_table(out.read_text(), "command")
    assert rows[0] == ["command", "median s", "min s", "vs import torch, timm", "meets goal"]
    assert [r[0] for r in rows[1:]] == [
        "fbnetv3 --version",
        'python -c "import torch, timm" (reference)',
    ]
    for r in rows[1:]:
        assert number(r[1]) > 0 and number(r[2]) == number(r[1])  # one round: min = median
    assert rows[1][4] in ("yes", "NO") and rows[2][3:] == ["1.00x", "-"]


def test_cli_startup_only_names_the_labels(tmp_path):
    with pytest.raises(SystemExit, match="no command label contains it; labels: 'fbnetv3 --help'"):
        load_script("cli_startup").main(["--only", "nope", "--out", str(tmp_path / "x.md")])
    assert not (tmp_path / "x.md").exists()


# ------------------------------------------------------------------ trainings on the proxy
@pytest.mark.slow
def test_init_tiny(tmp_path):
    out = tmp_path / "init.md"
    argv = ["--pairs", "2", "--seeds", "0", "--epochs", "1", "--data", "digits:5"]
    load_script("init").main([*argv, "--out", str(out)])
    text = out.read_text()
    assert "Command: `python benchmarks/init.py --pairs 2 --seeds 0 --sample-seed 0 " in text
    assert "--epochs 1 --data digits:5`" in text and "data `digits:5`, 1 epochs" in text
    rows = md_table(text, "measure")
    assert len(rows) == 7
    for r in rows[1:3]:
        _percent(r[1])
    low, high = (number(x) for x in rows[4][1].strip("[]").split(","))
    assert low <= number(rows[3][1]) <= high
    assert rows[5][1].endswith("/ 2") and rows[6][1].endswith("/ 2")
    pairs = md_table(text, "pair")
    assert [r[0] for r in pairs[1:]] == ["0", "1"]
    for r in pairs[1:]:
        torch_acc, eff_acc = _percent(r[1]), _percent(r[2])
        assert number(r[3]) == pytest.approx(eff_acc - torch_acc, abs=0.11)
    assert "Verdict: the interval " in text


@pytest.mark.slow
def test_pool_tiny_builds_resumes_and_refuses_other_settings(tmp_path):
    pool_script = load_script("pool")
    pool, out = tmp_path / "pool.jsonl.gz", tmp_path / "pool.md"
    argv = ["--pairs", "2", "--seeds", "3", "--epochs", "1", "--data", "digits:5"]
    argv += ["--out", str(pool), "--results", str(out)]
    pool_script.main(argv)
    text = out.read_text()
    assert f"Rebuild or extend: `python benchmarks/pool.py {' '.join(argv)}`" in text
    assert "data `digits:5`, 1 epochs" in text
    facts = {r[0]: r[1] for r in md_table(text, "measure")[1:]}
    assert facts["pairs"] == "2" and facts["trainings (failed)"] == "6 (0)"
    assert facts["seeds per pair: min / median / max"] == "3 / 3 / 3"
    for cell in facts["accuracy of the pairs (per-pair mean, %): p10 / p50 / p90 / max"].split("/"):
        _percent(cell)
    noise = next(v for k, v in facts.items() if k.startswith("seed noise"))
    assert 0 <= number(noise) < 100
    best = md_table(text, "pair")
    assert sorted(r[0] for r in best[1:]) == ["0", "1"] and {r[1] for r in best[1:]} == {"3"}
    size = pool.stat().st_size
    pool_script.main(argv)  # the same command again: every training is there, none is run
    assert pool.stat().st_size == size
    with pytest.raises(SystemExit, match=r"other proxy settings \(\['epochs'\]\)"):
        pool_script.main([*argv, "--epochs", "2"])


@pytest.mark.slow
def test_proxy_tiny_trains_and_reads_a_pool(tmp_path):
    proxy = load_script("proxy")
    trained, read = tmp_path / "trained.md", tmp_path / "read.md"
    argv = ["--pairs", "3", "--epochs", "1", "--data", "digits:5", "--out", str(trained)]
    proxy.main(argv)
    proxy.main(["--from-pool", str(POOL_TUNE), "--pairs", "6", "--out", str(read)])
    for path, pairs, epochs in ((trained, 3, 1), (read, 6, 5)):
        text = path.read_text()
        assert f"data `{'digits:5' if epochs == 1 else 'digits'}`, {epochs} epochs; " in text
        assert f"{epochs} epochs; {pairs} Sobol pairs" in text
        facts = {r[0]: r[1] for r in md_table(text, "measure")[1:]}
        assert len(facts) == 8
        for key in ("test-retest Spearman (seed 0 vs seed 1)", "test-retest Kendall tau"):
            value = number(facts[key])
            assert math.isnan(value) or -1 <= value <= 1  # 3 chance-level pairs may tie
        _percent(facts["best candidate (two-seed mean, %)"])
        cpu = [number(x) for x in facts[next(k for k in facts if k.startswith("CPU"))].split("/")]
        assert 0 < cpu[0] <= cpu[1]
        early = text.split("final two-seed mean: ")[1].splitlines()[0].split(", ")
        assert [e.split()[0] for e in early] == [f"e{e + 1}" for e in range(epochs)]
    assert "--from-pool" in read.read_text() and "best two-seed mean" in read.read_text()


# ------------------------------------------------------------------ predictor
@pytest.mark.slow
def test_predictor_tiny_on_the_committed_pool(tmp_path):
    argv = ["--seeds", "2", "--sizes", "8", "16", "--steps", "10"]
    argv += ["--pretrain-samples", "64", "--pretrain-steps", "10", "--out-dir", str(tmp_path)]
    predictor = load_script("predictor")
    predictor.main(argv)
    text = (tmp_path / "predictor.md").read_text()
    assert f"Generated by `python benchmarks/predictor.py {' '.join(argv)}`" in text
    assert "ground-truth pool `pool_tune.jsonl.gz`" in text and "134 held-out pairs" in text
    tau_text, rest = text.split("## Top-10 precision")
    prec_text = rest.split("## Calibration")[0]
    for part, low in ((tau_text, -1.0), (prec_text, 0.0)):
        rows = md_table(part, "method")
        assert rows[0] == ["method", "8 pairs", "16 pairs"]
        assert [r[0] for r in rows[1:]] == list(predictor.METHODS)
        for r in rows[1:]:  # NaN: a fit that predicts one value for every pair has no rank
            assert all(low <= number(c) <= 1.0 or math.isnan(number(c)) for c in r[1:]), r
        for r in rows[-2:]:  # the baselines always rank
            assert all(low <= number(c) <= 1.0 for c in r[1:]), r
    assert (tmp_path / "predictor.png").stat().st_size > 0


def test_predictor_synthetic_table_is_seeded():
    predictor = load_script("predictor")
    a, b = predictor.synthetic_table(40, seed=3), predictor.synthetic_table(40, seed=3)
    assert a.u.shape == (40, a.space.size) and a.y.shape == a.macs.shape == (40,)
    assert (a.y == b.y).all() and (a.macs > 0).all()


# ------------------------------------------------------------------ threads
@pytest.mark.slow
def test_threads_tiny(tmp_path):
    out = tmp_path / "threads.md"
    argv = ["--rounds", "1", "--tasks", "validate small 32px", "--settings", "default"]
    load_script("threads").main([*argv, "--out", str(out)])
    text = out.read_text()
    assert "torch's default is 1 threads here" in text  # OMP_NUM_THREADS=1 in the child
    rows = md_table(text, "task")
    assert rows[0] == ["task", "torch default"]
    assert rows[1][0] == "validate small 32px" and number(rows[1][1]) > 0
    assert "--settings default`" in text and '--tasks "validate small 32px"' in text


def test_threads_row_has_the_ratio_when_both_settings_ran():
    threads = load_script("threads")
    results = {("t", "1"): [100.0, 120.0, 110.0], ("t", "default"): [50.0, 40.0, 60.0]}
    assert (
        threads.row("t", ["1", "default"], results) == "| t | 110 (100-120) | 50 (40-60) | 2.20x |"
    )
    assert threads.row("t", ["default"], results) == "| t | 50 (40-60) |"


# ------------------------------------------------------------------ on_device (no tiny run)
def test_on_device_flags():
    on_device = load_script("on_device")
    args = on_device.parse_args([])
    assert args.models == list(on_device.MODELS) and (args.epochs, args.rounds) == (15, 7)
    assert args.out.endswith("benchmarks/results/on_device.md")
    args = on_device.parse_args(["--models", "fbnetv3_a@64", "--epochs", "1", "--out", "x.md"])
    assert args.models == ["fbnetv3_a@64"] and args.epochs == 1 and args.out == "x.md"
    with pytest.raises(SystemExit):
        on_device.parse_args(["--epochs", "one"])


def test_on_device_tables_on_hand_made_numbers():
    on_device = load_script("on_device")
    counts = dict(n=600, eager=540, fp32=540, int8=531, agree=570)
    lines = on_device.accuracy_table(counts, (90 * 1024, 30 * 1024), (6.6e-7, 7.9e-3))
    rows = md_table("\n".join(lines), "model")
    assert rows[1:] == [
        ["fp32 eager", "90.00", "100", "–", "–"],
        ["fp32 .pte", "90.00", "–", "90", "6.6e-07"],
        ["int8 .pte", "88.50", "95.0", "30", "7.9e-03"],
    ]
    assert "int8 costs +1.50 points of top-1" in "\n".join(lines)
    ms = {"eager": 2.0, "onnxruntime": 1.0, "executorch": 0.8, "executorch-int8": 0.5}
    row = on_device.latency_row("fbnetv3_a@224", ms, (59.4, 118.0))
    assert row == "| fbnetv3_a@224 | 2.0 | 1.0 | 0.8 | 0.5 | executorch-int8 | 59 / 118 |"
    del ms["executorch-int8"]  # the int8 program failed its check: not timed
    row = on_device.latency_row("fbnetv3_a@224", ms, (59.4, 118.0))
    assert "| n/a (failed its check) | executorch |" in row


# ------------------------------------------------------------------ latency
def _recorded_table(cache: Path):
    """This machine's torch table holding the recorded tiny-space entries (as test_latency)."""
    import json

    from fbnetv3_zoo.latency.table import LatencyTable

    table = LatencyTable.for_machine("torch", 1, cache)
    table.path.parent.mkdir(parents=True)
    lines = (LATENCY_DATA / "tiny_torch.jsonl").read_text().splitlines()
    header = json.dumps({"fingerprint": table.fingerprint}, sort_keys=True)
    table.path.write_text("\n".join([header, *lines[1:]]) + "\n")
    return LatencyTable.for_machine("torch", 1, cache)  # read back


def _latency_limited_search(table, out: Path) -> str:
    """A finished 5-candidate random search of the tiny space under a latency limit (scores
    from the architecture, no training); its constraint."""
    import numpy as np
    from fbnetv3_zoo.search.driver import SearchConfig, run_search
    from fbnetv3_zoo.search.latency.table import LatencyPredictor
    from fbnetv3_zoo.search.space.constraints import batch_stats
    from fbnetv3_zoo.search.space.definition import load_space
    from fbnetv3_zoo.search.space.sampling import sample
    from search_settings import TINY_JOINTNAS

    def evaluate(task):
        score = 50 + sum(r["channels"] for s in task.arch["stages"] for r in s) / 10 + task.cid
        metrics = [{"epoch": e + 1, "val_top1": score, "ema_top1": None} for e in range(2)]
        return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)

    space = load_space(LATENCY_DATA / "tiny_space.yaml")
    u = sample(space, 400, "uniform", seed=3)
    u = u[batch_stats(space, u, 10)[2]][:100]
    limit = round(float(np.quantile(LatencyPredictor(space, table, 10).predict(u), 0.6)), 3)
    constraint = f"latency_ms<={limit}@torch"
    config = SearchConfig(
        space=str(LATENCY_DATA / "tiny_space.yaml"),
        constraints=[constraint],
        budget=5,
        initial=4,
        batch=2,
        epochs=2,
        settings={"jointnas": TINY_JOINTNAS},
        strategy="random",
    )
    run_search(config, out, evaluator=evaluate, progress=False)
    return constraint


@pytest.mark.slow
def test_latency_measure_picks_and_report(tmp_path, monkeypatch):
    """The three phases on the tiny space: measure (its table built beforehand, as
    ``--table-dir``/``--build-note`` allow), picks of a latency-limited search, report."""
    import json

    from fbnetv3_zoo.latency.timing import CACHE_ENV

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    table = _recorded_table(tmp_path / "cache" / "latency")
    results, latency = tmp_path / "results", load_script("latency")
    results.mkdir()
    latency.main(
        ["measure", "--backend", "torch", "--space", str(LATENCY_DATA / "tiny_space.yaml")]
        + ["--networks", "4", "--no-variants", "--table-dir", str(table.path.parent)]
        + ["--build-note", "recorded beforehand", "--results", str(results)]
    )
    raw = json.loads((results / "latency_torch.json").read_text())
    assert (len(raw["calibration"]), len(raw["test"]), raw["variants"]) == (24, 4, [])
    constraint = _latency_limited_search(table, tmp_path / "search")
    latency.main(
        ["picks", "--run", str(tmp_path / "search"), "--retime", "--results", str(results)]
    )
    latency.main(["report", "--results", str(results)])
    text = (results / "latency.md").read_text()
    assert "## torch (1 thread)" in text and "(recorded beforehand); 4 test networks" in text
    rows = md_table(text, "statistic")
    assert rows[0] == ["statistic", "predictor", "within ±10 %", "MAPE", "Spearman"]
    assert len(rows) == 10 and sum("retest" in r[1] for r in rows) == 1
    for r in rows[1:]:
        assert 0 <= number(r[2]) <= 100 and number(r[3]) >= 0
        assert -1 <= number(r[4]) <= 1 or math.isnan(number(r[4]))
    picks = md_table(text, "search")
    assert len(picks) == 2 and picks[1][1] == f"`{constraint}`"
    assert number(picks[1][4]) > 0 and number(picks[1][5]) > 0 and number(picks[1][6]) > 0
    assert picks[1][8].split()[0] in ("yes", "**no**")
    assert (results / "latency.png").stat().st_size > 0


# ------------------------------------------------------------------ recipes
@pytest.mark.slow
def test_recipes_regime_tiny_and_report_only(tmp_path):
    """The regime section for one epoch of 8 updates, its trainings in this process
    (``--jobs 0``: the same ``regime_run`` a spawned worker runs), then ``--report-only`` on
    the saved runs, keeping another section already in the file."""
    import json

    out = tmp_path / "r"
    argv = ["--sections", "regime", "--regime-epochs", "1", "--regime-batch", "128"]
    argv += ["--seeds", "1", "--jobs", "0", "--out-dir", str(out)]
    recipes = load_script("recipes")
    assert recipes.main(argv) == 0
    text = (out / "recipes.md").read_text()
    runs = json.loads((out / "recipes_regime.json").read_text())
    assert len(runs) == 9 and {r["epochs"] for r in runs} == {1}
    assert (out / "recipes.png").stat().st_size > 0
    rows = md_table(text, "recipe")
    assert rows[0][:4] == ["recipe", "chosen lr (x)", "seeds", "test top-1"]
    assert [r[0] for r in rows[1:]] == ["baseline", "fbnetv3", "fbnetv3_noreg"]
    for r in rows[1:]:
        assert r[2] == "1"
        test, train, val = _percent(r[3]), _percent(r[4]), _percent(r[6])
        assert number(r[5]) == pytest.approx(train - test, abs=0.11) and val >= 0
    sweep = md_table(text.split("LR sweep (seed 0)")[1], "recipe")
    assert sweep[0] == ["recipe", "x0.25", "x1", "x4"]
    for r in sweep[1:]:
        assert all(_percent(v) >= 0 for cell in r[1:] for v in cell.split("/"))
    other = "<!-- section: overhead -->\nkept as it was\n<!-- /section: overhead -->"
    (out / "recipes.md").write_text(text.rstrip() + "\n\n" + other + "\n")
    assert recipes.main([*argv, "--report-only"]) == 0
    again = (out / "recipes.md").read_text()
    assert md_table(again, "recipe") == rows and again.rstrip().endswith(other)
    assert "Report rebuilt from the saved runs (`--report-only`)" in again
