"""A search folder is locked, reproducible and refuses bad input before it leaves anything behind."""

from __future__ import annotations

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
from fbnetv3_zoo.search.driver import SearchConfig, run_search
from fbnetv3_zoo.search.space.definition import SPACES_DIR, SpaceError, load_space, parse_space
from fbnetv3_zoo.search.store import Store
from fbnetv3_zoo.search.trainer import EvalTask
from search_result import candidate_rows as _rows
from search_settings import TINY_JOINTNAS

from fbnetv3_zoo.cli import main
from fbnetv3_zoo.errors import UserError

HERE = Path(__file__).parent
FAST = dict(settings={"jointnas": TINY_JOINTNAS})
TIMING = ("images_per_s", "epoch_s", "wall_s")


def fake(task: EvalTask) -> dict:
    width = sum(row["channels"] for stage in task.arch["stages"] for row in stage)
    n = task.stop_after or task.epochs
    metrics = [
        {"epoch": e + 1, "val_top1": width * (e + 1) / 10, "ema_top1": None} for e in range(n)
    ]
    return dict(cid=task.cid, status="done", metrics=metrics, error=None, wall_s=0.0)


def _config(**kw) -> SearchConfig:
    base = dict(budget=6, initial=3, batch=2, epochs=2, data="digits:4", constraints=["macs<=1M"])
    return SearchConfig(**{**base, **FAST, **kw})


def _child(tmp_path: Path, out: Path, config: str, evaluator: str) -> subprocess.Popen:
    """A search in another process (its own interpreter, so its own RNG history)."""
    script = tmp_path / f"child_{out.name}.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            sys.path.insert(0, {str(HERE)!r})
            import torch
            torch.set_num_threads(1)
            from test_search_reliability import _config, fake
            from fbnetv3_zoo.search.driver import run_search
            from fbnetv3_zoo.search.trainer import evaluate

            def slow(task):
                time.sleep(1)  # time for the test to knock on the lock; changes no result
                return evaluate(task)

            run_search({config}, {str(out)!r}, evaluator={evaluator}, progress=False)
            """
        )
    )
    return subprocess.Popen([sys.executable, str(script)])


def _wait_for(out: Path, proc: subprocess.Popen, done: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if sum(r["status"] == "done" for r in _rows(out)) >= done:
                return
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the child search never reached {done} trained candidates")


def _trace(out: Path) -> list[tuple]:
    """Everything a run decided and measured, minus timings."""
    return [
        (
            r["vector"],
            r["source"],
            r["status"],
            r["score"],
            [{k: v for k, v in e.items() if k not in TIMING} for e in json.loads(r["metrics"])],
        )
        for r in _rows(out)
    ]


@pytest.mark.slow
def test_same_seed_same_search_in_one_go_or_killed_and_resumed_and_locked(tmp_path, capsys):
    """The real evaluator (tiny digits proxy): curves, candidates and picks match exactly.

    While the killed run is alive, a second search on its folder is refused naming its pid;
    after ``kill -9`` the lock is gone and the resumed run ends where an uninterrupted one does.
    """
    tiny = "_config(budget=4, initial=3, batch=1, data='digits:2', constraints=['macs<=0.6M'])"
    config = eval(tiny, {"_config": _config})  # noqa: S307 - the same text the child runs
    # plots=False: the picks, curves and best/ documents are compared, not the PNGs
    a = run_search(config, tmp_path / "a", progress=False, plots=False)
    out = tmp_path / "b"
    proc = _child(tmp_path, out, tiny, "slow")
    try:
        deadline = time.time() + 120
        lock = out / ".lock"
        while time.time() < deadline and proc.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(proc.pid):
                break
            time.sleep(0.1)
        with pytest.raises(UserError, match=rf"another search \(pid {proc.pid}\) is running"):
            run_search(config, out, evaluator=fake, progress=False)
        code = main(["search", "--out", str(out), "--data", "digits:2", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and f"pid {proc.pid}" in err and len(err.strip().splitlines()) == 1
        _wait_for(out, proc, 2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert sum(r["status"] == "done" for r in _rows(out)) < 4
    b = run_search(config, out, progress=False, plots=False)  # the lock died with its process
    assert _trace(tmp_path / "a") == _trace(out)
    assert a["best"]["macs<=0.6M"]["id"] == b["best"]["macs<=0.6M"]["id"]
    doc_a = yaml.safe_load((tmp_path / "a" / "best" / "macs_le_0.6M.yaml").read_text())
    doc_b = yaml.safe_load((out / "best" / "macs_le_0.6M.yaml").read_text())
    # provenance names the process that started each search (here pytest vs. a child)
    made_a, made_b = doc_a["search"].pop("made_by"), doc_b["search"].pop("made_by")
    assert made_a["versions"] == made_b["versions"] and made_a["command"] != made_b["command"]
    assert doc_a == doc_b


@pytest.mark.slow
@pytest.mark.parametrize(
    "change, message",
    [
        (dict(budget=5), "budget: run has 6, now 5; a search can grow, not shrink"),
        (dict(constraints=["macs<=0.5M"]), "constraints: run has ['macs<=1M'], now ['macs<=0.5M']"),
        (dict(strategy="random"), "strategy: run has 'jointnas', now 'random'"),
        (dict(score_epochs=1), "score_epochs: run has 3, now 1"),
        (
            dict(settings={"jointnas": {**FAST["settings"]["jointnas"], "head": "network"}}),
            "head: run has 'auto', now 'network'",
        ),
    ],
)
def test_resume_with_changed_settings_is_refused_naming_both_values(tmp_path, change, message):
    run_search(_config(), tmp_path, evaluator=fake, progress=False)
    before = _rows(tmp_path)
    with pytest.raises(UserError) as err:
        run_search(_config(**change), tmp_path, evaluator=fake, progress=False)
    assert message in str(err.value)
    assert _rows(tmp_path) == before


def _space_with(**recipe) -> dict:
    data = yaml.safe_load((SPACES_DIR / "fbnetv3_proxy.yaml").read_text())
    data["recipe"].update(recipe)
    return data


@pytest.mark.parametrize(
    "recipe, field",
    [
        (dict(lr={"min": 20, "max": 50}), "recipe.lr"),
        (dict(lr={"min": -0.1, "max": 0.1}), "recipe.lr"),
        (dict(optimizer=["sgd", "lbfgs"]), "recipe.optimizer"),
        (dict(dropout={"min": 0.0, "max": 1.0}), "recipe.dropout"),
        (dict(base="no_such_preset"), "recipe.base"),
    ],
)
def test_invalid_recipe_ranges_are_refused_when_the_space_loads(recipe, field):
    with pytest.raises(SpaceError, match=rf"myspace: {field}"):
        parse_space(_space_with(**recipe), source="myspace")


@pytest.mark.parametrize(
    "edit, where, bound",
    [
        (
            lambda d: d["stages"][0][0].update(channels={"min": 8, "max": 10**9}),
            "channels",
            "10000",
        ),
        (
            lambda d: d["stages"][0][0].update(channels={"min": 8, "max": 64, "step": 1e-12}),
            "step",
            "10000",
        ),
        (lambda d: d["stages"][1][1].update(repeats={"min": 1, "max": 1000}), "repeats", "64"),
        (lambda d: d["stages"][0][0].update(channels=[8, 100000]), "channels", "8192"),
        (lambda d: d.update(resolution=[16, 100000]), "resolution", "4096"),
        (lambda d: d["head"].update(feature_width=10**9), "feature_width", "8192"),
    ],
)
def test_space_bounds_are_checked_before_anything_is_allocated(edit, where, bound):
    data = yaml.safe_load((SPACES_DIR / "fbnetv3_proxy.yaml").read_text())
    edit(data)
    start = time.perf_counter()
    with pytest.raises(SpaceError) as err:
        parse_space(data, source="big.yaml")
    assert where in str(err.value) and bound in str(err.value)
    assert time.perf_counter() - start < 5


def test_space_yaml_with_aliases_is_refused(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("a: &x [1, 2]\nb: *x\n")
    with pytest.raises(UserError, match="alias"):
        load_space(path)


def test_a_constraint_no_pair_meets_leaves_nothing(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(UserError, match="macs<=1K"):
        run_search(
            _config(constraints=["macs<=1M", "macs<=1K"]), out, evaluator=fake, progress=False
        )
    assert not out.exists()


def test_damaged_database_is_one_line_naming_the_file(tmp_path, capsys):
    run_search(_config(), tmp_path, evaluator=fake, progress=False)
    db = tmp_path / "search.sqlite"
    db.write_bytes(db.read_bytes()[:1000])  # truncated
    for args in (
        ["search", "--out", str(tmp_path), "--data", "digits:4", "--quiet"],
        ["search-report", str(tmp_path)],
    ):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert str(db) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    db.write_text("not a database at all " * 100)
    with pytest.raises(UserError, match="not a usable search database"):
        Store(db)


def test_report_on_a_read_only_run_reads_without_writing(tmp_path, monkeypatch, capsys):
    run_search(_config(), tmp_path, evaluator=fake, progress=False)
    (tmp_path / "report.md").unlink()
    db = tmp_path / "search.sqlite"
    before = db.read_bytes()
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as if the folder were read-only
    assert main(["search-report", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "read-only" in captured.err and "macs<=1M: top-1" in captured.out
    assert db.read_bytes() == before and not (tmp_path / "report.md").exists()
    assert not (tmp_path / "search.sqlite-wal").exists()
    store = Store(db, readonly=True)
    try:
        with pytest.raises(sqlite3.OperationalError):
            store.set("x", 1)
    finally:
        store.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_out_is_one_line(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["search", "--out", str(folder / "run"), "--data", "digits:4", "--quiet"]) == 2
        assert "cannot write" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


def test_search_offers_the_download_it_asks_for(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "--download" in capsys.readouterr().out
