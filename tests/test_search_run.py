"""The search loop end to end: store, resume (also after kill -9), failures, CLI, Ray, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from fbnetv3_zoo.search.driver import SearchConfig, choose_stop_epoch, run_search
from fbnetv3_zoo.search.trainer import EvalTask, evaluate
from search_result import candidate_rows as _rows
from search_settings import FAST_JOINTNAS

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.models.spec import ArchSpec

FAST = dict(settings={"jointnas": FAST_JOINTNAS})  # strategies own their settings (issue 19)


def fake_evaluate(task: EvalTask) -> dict:
    """A deterministic stand-in for training: wider, higher-resolution, adamw -> better."""
    width = sum(row["channels"] for stage in task.arch["stages"] for row in stage)
    final = 20 + width / 10 + task.arch["input_size"] + 5 * (task.recipe["optimizer"] == "adamw")
    n = task.stop_after or task.epochs
    metrics = [
        {"epoch": e + 1, "val_top1": final * (e + 1) / task.epochs, "ema_top1": None}
        for e in range(n)
    ]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def _config(**kw) -> SearchConfig:
    base = dict(  # remeasure=0: re-measured finalists have their own tests
        budget=8,
        initial=4,
        batch=2,
        epochs=3,
        constraints=["macs<=0.6M", "macs<=1M"],
        remeasure=0,
        **FAST,
    )
    base.update(kw)
    return SearchConfig(**base)


def _meta(out: Path, key: str):
    import json

    db = sqlite3.connect(out / "search.sqlite")
    try:
        return json.loads(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])
    finally:
        db.close()


def test_choose_stop_epoch():
    curves = [[1, 5, 9], [2, 4, 8], [3, 3, 7], [4, 2, 6]]
    epoch, taus = choose_stop_epoch(curves, 0.8, min_curves=3)
    assert epoch == 2 and taus[0] == pytest.approx(-1.0) and taus[2] == pytest.approx(1.0)
    assert choose_stop_epoch(curves[:2], 0.8, min_curves=2)[0] == 3  # no taus: the final epoch
    # fewer curves than a stable tau needs: no early stopping, but the taus are reported
    epoch, few = choose_stop_epoch(curves, 0.8)
    assert epoch == 3 and few == taus
    many = [[k, 20 - k, 40 - k] for k in range(16)]  # epoch 2 already ranks like epoch 3
    assert choose_stop_epoch(many, 0.8)[0] == 2


@pytest.mark.slow
def test_search_with_fake_evaluator_writes_outputs(tmp_path):
    summary = run_search(_config(), tmp_path, evaluator=fake_evaluate, progress=False)
    rows = _rows(tmp_path)
    assert {r["status"] for r in rows} == {"done"}
    # the budget is spent in full, even when the genetic populations converge
    assert len(rows) == 8 and [r["source"] for r in rows][:4] == ["sobol"] * 4
    assert {"acquisition", "genetic"} <= {r["source"] for r in rows}
    later = [r for r in rows if r["iteration"] > 0]
    assert all(r["epochs"] <= 3 and r["predicted"] is not None for r in later)
    for name in ("report.md", "acc_vs_macs.png", "predicted_vs_measured.png", "progress.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "Predictor quality per iteration" in report and "Kendall tau" in report
    assert "fitted with the Bayesian linear head on the frozen pretrained encoder" in report
    for constraint, slug, limit in (
        ("macs<=0.6M", "macs_le_0.6M", 0.6e6),
        ("macs<=1M", "macs_le_1M", 1e6),
    ):
        doc = yaml.safe_load((tmp_path / "best" / f"{slug}.yaml").read_text())
        assert set(doc) >= {"arch", "recipe", "num_classes", "stats", "predicted", "measured"}
        assert doc["stats"]["macs"] <= limit
        # every tool counts the same head: the search's class count travels with the file
        from fbnetv3_zoo.models.stats import arch_stats

        stats = arch_stats(ArchSpec.from_dict(doc["arch"]), num_classes=doc["num_classes"])
        assert doc["num_classes"] == 10
        assert (stats.macs, stats.params) == (doc["stats"]["macs"], doc["stats"]["params"])
        # the score is from the early-stopping epoch, and the file says which
        stop = _meta(tmp_path, "stop_epoch")
        assert doc["measured"]["epoch"] == min(stop, doc["measured"]["epochs_trained"])
        assert summary["best"][constraint]["score"] == pytest.approx(
            doc["measured"]["top1"], abs=1e-3
        )
        spec = ArchSpec.from_yaml(tmp_path / "best" / f"{slug}.yaml")
        assert spec.input_size == doc["recipe"]["resolution"]
        from fbnetv3_zoo.recipes import Recipe

        assert Recipe.from_dict(doc["recipe"]).optimizer == doc["recipe"]["optimizer"]
    # plots=False (for callers that read only the store): the same outputs minus the PNGs
    for png in tmp_path.glob("*.png"):
        png.unlink()
    (tmp_path / "report.md").unlink()
    again = run_search(_config(), tmp_path, evaluator=fake_evaluate, progress=False, plots=False)
    assert again["best"] == summary["best"] and (tmp_path / "report.md").stat().st_size > 0
    assert not list(tmp_path.glob("*.png"))
    assert ".png" not in (tmp_path / "report.md").read_text()  # it names no plot it did not draw


class Interrupt(BaseException):
    """Stands in for Ctrl-C / a crash in the middle of a batch."""


@pytest.mark.slow
def test_resume_after_interrupt_repeats_nothing(tmp_path):
    calls = []

    def flaky(task):
        if len(calls) == 5:
            raise Interrupt
        calls.append(task.cid)
        return fake_evaluate(task)

    with pytest.raises(Interrupt):
        run_search(_config(), tmp_path, evaluator=flaky, progress=False)
    first = [r["id"] for r in _rows(tmp_path) if r["status"] == "done"]
    assert first == calls[:5]
    again = []
    run_search(
        _config(),
        tmp_path,
        evaluator=lambda t: again.append(t.cid) or fake_evaluate(t),
        progress=False,
    )
    assert not set(first) & set(again)
    rows = _rows(tmp_path)
    assert all(r["status"] == "done" for r in rows) and len(rows) >= 7
    # a third run finds everything done and trains nothing
    third = []
    run_search(
        _config(),
        tmp_path,
        evaluator=lambda t: third.append(t.cid) or fake_evaluate(t),
        progress=False,
    )
    assert third == [] and len(_rows(tmp_path)) == len(rows)


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            from test_search_run import _config, fake_evaluate
            from fbnetv3_zoo.search.driver import run_search

            def slow(task):
                time.sleep(0.4)
                return fake_evaluate(task)

            run_search(_config(), {str(tmp_path / "run")!r}, evaluator=slow, progress=False)
            """
        )
    )
    proc = subprocess.Popen([sys.executable, str(script)])
    db = tmp_path / "run" / "search.sqlite"
    deadline = time.time() + 120
    done = []
    while time.time() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done = [r for r in _rows(tmp_path / "run") if r["status"] == "done"]
            except sqlite3.OperationalError:
                done = []
            if len(done) >= 3:
                break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(done) >= 3, "the child never got going"
    before = {r["id"] for r in _rows(tmp_path / "run") if r["status"] == "done"}
    assert before >= {r["id"] for r in done}
    again = []
    run_search(
        _config(),
        tmp_path / "run",
        evaluator=lambda t: again.append(t.cid) or fake_evaluate(t),
        progress=False,
        plots=False,  # what was retrained is the subject, not the PNGs
    )
    assert not before & set(again)
    assert all(r["status"] == "done" for r in _rows(tmp_path / "run"))


@pytest.mark.slow
def test_changed_space_or_data_is_refused(tmp_path):
    run_search(
        _config(budget=6, data="digits:40"), tmp_path, evaluator=fake_evaluate, progress=False
    )
    with pytest.raises(ValueError, match=r"data: run has 'digits:40', now 'digits:20'"):
        run_search(
            _config(budget=6, data="digits:20"), tmp_path, evaluator=fake_evaluate, progress=False
        )
    from fbnetv3_zoo.search.space.definition import SPACES_DIR

    changed = yaml.safe_load((SPACES_DIR / "fbnetv3_proxy.yaml").read_text())
    changed["resolution"] = {"min": 16, "max": 24, "step": 8}
    path = tmp_path / "fbnetv3_proxy.yaml"
    path.write_text(yaml.safe_dump(changed))
    with pytest.raises(ValueError, match=r"space: run has .*fingerprint"):
        run_search(
            _config(budget=6, data="digits:40", space=str(path)),
            tmp_path,
            evaluator=fake_evaluate,
            progress=False,
        )


@pytest.mark.slow
def test_failing_candidates_do_not_stop_the_search(tmp_path, monkeypatch):
    """The real ``evaluate`` with a training engine that fails every third candidate."""
    import fbnetv3_zoo.recipes.engine as engine

    calls = []

    def train(model, recipe, data, epochs, stop_after_epochs=None, **kw):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise engine.TrainingDiverged("loss became nan")
        n = stop_after_epochs or epochs
        return {
            "epochs": [
                {"epoch": e + 1, "val_top1": 10.0 * (e + 1) + recipe.lr, "ema_top1": None}
                for e in range(n)
            ]
        }

    monkeypatch.setattr(engine, "train", train)
    run_search(_config(budget=10, initial=6), tmp_path, progress=False)
    rows = _rows(tmp_path)
    failed = [r for r in rows if r["status"] == "failed"]
    assert failed and all("TrainingDiverged: loss became nan" in r["error"] for r in failed)
    assert sum(r["status"] == "done" for r in rows) >= 3
    assert "Failed candidates" in (tmp_path / "report.md").read_text()


def test_evaluate_reports_errors_instead_of_raising():
    task = EvalTask(1, {"stem_channels": 8, "stages": []}, {}, "fbnetv3_proxy", "digits:5", 1)
    result = evaluate(task)
    assert result["status"] == "failed" and "stages" in result["error"]


@pytest.mark.slow
def test_cli_tiny_search_on_digits_and_report(tmp_path, capsys):
    out = tmp_path / "s1"
    args = ["search", "--out", str(out), "--data", "digits:8", "--budget", "5", "--initial", "4", "--batch", "1",
            "--epochs", "2", "--constraint", "macs<=1M", "--ga-generations", "3", "--ga-population", "16",
            "--pool", "256", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "macs<=1M: top-1" in capsys.readouterr().out
    best = out / "best" / "macs_le_1M.yaml"
    doc = yaml.safe_load(best.read_text())
    assert doc["measured"]["data"] == "digits:8" and 0 <= doc["measured"]["top1"] <= 100
    import fbnetv3_zoo

    model = fbnetv3_zoo.create_model(best, num_classes=10)
    assert model.num_classes == 10
    # the result trains as it is: its own recipe unless --recipe is given
    capsys.readouterr()
    train = ["train", "--model", str(best), "--data", "digits:8", "--epochs", "1", "--no-progress"]
    assert main(train) == 0
    assert f"/ {doc['recipe']['name']} on digits:8" in capsys.readouterr().out
    assert main([*train, "--recipe", "baseline"]) == 0
    assert "/ baseline on digits:8" in capsys.readouterr().out
    rows = _rows(out)
    # a genetic winner already measured gives way to the best unmeasured runner-up
    assert len(rows) == 5 and all(r["status"] == "done" for r in rows)
    assert main(args) == 0  # resume: nothing left to train
    assert _rows(out) == rows
    (out / "report.md").unlink()
    assert main(["search-report", str(out)]) == 0
    assert (out / "report.md").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--executor", "dask"], "invalid choice: 'dask'"),
        (["--constraint", "macs<=1K"], "no sampled pair satisfies"),
        (["--constraint", "flops<1M"], "invalid constraint"),
        (["--space", "nope"], "unknown search space 'nope'"),
        (["--budget", "3"], "budget 3 is too small"),
        (["--threads", "-1"], "--threads: expected an integer >= 0 (0 = all cores)"),
        (["--batch", "0"], "search setting batch (--batch) must be an integer >= 1, got 0"),
        (["--kappa", "-1"], "search setting kappa (--kappa)"),
        (["--eta", "2"], "--eta is a setting of successive-halving, not of --strategy jointnas"),
        (
            ["--strategy", "successive-halving", "--eta", "1"],
            "search setting eta (--eta) of successive-halving must be an integer >= 2, got 1",
        ),
    ],
)
def test_cli_bad_input(tmp_path, capsys, extra, message):
    try:
        code = main(["search", "--out", str(tmp_path / "x"), "--quiet", *extra])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing left behind


class _Stop(Exception):
    """Raised by a stand-in once it has what the command handed on (nothing is trained)."""


@pytest.mark.parametrize("given, expected", [("0", os.cpu_count() or 1), ("2", 2), (None, 1)])
def test_search_threads_flag_means_what_it_means_everywhere(monkeypatch, tmp_path, given, expected):
    """--threads 0 is all cores (the count itself reaches SearchConfig); the default stays 1."""
    import fbnetv3_zoo.search.driver as driver

    def seen(config, out, progress=True):
        raise _Stop(config.threads)

    monkeypatch.setattr(driver, "run_search", seen)
    threads = [] if given is None else ["--threads", given]
    with pytest.raises(_Stop) as stop:
        main(["search", "--out", str(tmp_path / "x"), "--quiet", *threads])
    assert stop.value.args == (expected,)


def test_latency_build_threads_0_builds_the_all_cores_table(monkeypatch):
    import fbnetv3_zoo.search.latency.table as table

    def seen(space, backend, threads, classes, **kw):
        raise _Stop(backend, threads)

    monkeypatch.setattr(table, "build_table", seen)
    with pytest.raises(_Stop) as stop:
        main(["latency", "build", "--backend", "torch", "--threads", "0", "--quiet"])
    assert stop.value.args == ("torch", os.cpu_count() or 1)


def test_config_threads_0_is_all_cores_and_none_is_torchs_default():
    assert SearchConfig(threads=0).threads == (os.cpu_count() or 1)
    assert SearchConfig(threads=None).threads is None
    assert SearchConfig().threads == 1


def test_cli_invalid_space_file_names_the_field(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(
        "stem: {channels: 8}\nresolution: 16\nstages: [[{kernel: 4, expansion: 1, channels: 8, repeats: 1}]]\nrecipe: {}\n"
    )
    assert main(["search", "--out", str(tmp_path / "x"), "--space", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "stages[0][0].kernel" in err


def test_search_report_of_missing_run(tmp_path, capsys):
    assert main(["search-report", str(tmp_path)]) == 2
    assert "no search found" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_executor_runs_a_tiny_search(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = _config(
            budget=4, initial=3, epochs=1, data="digits:4", constraints=["macs<=1M"], executor="ray"
        )
        summary = run_search(config, tmp_path, progress=False, plots=False)  # rows are compared
    finally:
        ray.shutdown()
    rows = _rows(tmp_path)
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    assert summary["best"]["macs<=1M"] is not None
    # Ray workers measure exactly what this process measures: same candidates, curves, picks
    local = dataclasses.replace(config, executor="local")
    again = run_search(local, tmp_path / "local", progress=False, plots=False)

    def trace(rows):
        timing = ("images_per_s", "epoch_s", "wall_s")
        return [
            (
                r["vector"],
                r["score"],
                [{k: v for k, v in e.items() if k not in timing} for e in json.loads(r["metrics"])],
            )
            for r in rows
        ]

    assert trace(_rows(tmp_path / "local")) == trace(rows)
    assert again["best"]["macs<=1M"]["id"] == summary["best"]["macs<=1M"]["id"]


def test_unreachable_ray_address_is_a_clear_error(tmp_path, capsys):
    args = [
        "search",
        "--out",
        str(tmp_path),
        "--executor",
        "ray",
        "--ray-address",
        "127.0.0.1:1",
        "--quiet",
    ]
    assert main(args) == 2
    assert "cannot reach a Ray cluster at address '127.0.0.1:1'" in capsys.readouterr().err
    args[2] = str(tmp_path / "new")
    assert main(args) == 2
    assert not (tmp_path / "new").exists()  # no run folder with pending candidates


@pytest.mark.slow
def test_progress_and_report_say_what_the_numbers_are(tmp_path, capsys, monkeypatch):
    """best= is labelled with its epoch and the re-scoring is announced; report.md says how far to trust it."""

    run_search(  # min_stop_curves=4: early stopping on with this first batch
        _config(budget=10, data="digits:40", min_stop_curves=4),
        tmp_path,
        evaluator=fake_evaluate,
        progress=True,
    )
    err = capsys.readouterr().err
    stop = _meta(tmp_path, "stop_epoch")
    assert stop < 3  # fake curves rank identically at every epoch
    assert f"the first batch is re-scored at epoch {stop}" in err and f"best@e{stop}=" in err
    report = (tmp_path / "report.md").read_text()
    for text in (
        "Strategy `jointnas`",
        "(10 classes)",
        "comes from a short proxy: 3 epochs on `digits:40`",
        # each score is the mean of the (up to 3) epochs ending at the scoring epoch
        "scored at epoch 1" if stop == 1 else f"scored on the mean top-1 of epochs 1-{stop}",
        "Kendall tau 1.00",
        "prospective Kendall tau",
    ):
        assert text in report, text


@pytest.mark.slow
def test_too_few_first_curves_train_every_candidate_in_full(tmp_path, capsys):
    run_search(_config(budget=8, initial=4), tmp_path, evaluator=fake_evaluate, progress=True)
    assert _meta(tmp_path, "stop_epoch") == 3
    assert all(r["epochs"] == 3 for r in _rows(tmp_path))
    assert "no early stopping: 4 first-batch curves, fewer than the 16" in capsys.readouterr().err
    report = (tmp_path / "report.md").read_text()
    assert "**Early stopping: off.** The first batch gave 4 curves" in report


@pytest.mark.slow
def test_cli_stops_in_one_line_when_the_first_batch_fails(tmp_path, capsys, monkeypatch):
    import fbnetv3_zoo.recipes.engine as engine

    def train(*args, **kw):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(engine, "train", train)
    args = ["search", "--out", str(tmp_path), "--data", "digits:4", "--budget", "4", "--initial", "3",
            "--constraint", "macs<=1M", "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "every candidate of the first batch failed (3 of 3)" in err[0]
    assert "most common error (3x): RuntimeError: CUDA out of memory" in err[0]
    assert len(_rows(tmp_path)) == 3  # the rest of the budget was not spent on a broken setup
