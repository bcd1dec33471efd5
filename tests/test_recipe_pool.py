"""benchmarks/recipe_pool.py on a tiny model: build, presets, resume, refusal, summary, the search's loader."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from fbnetv3_zoo.search.pool import PoolEvaluator, PoolSource, load_pool
from fbnetv3_zoo.search.space.fixed_model import fixed_model_space
from fbnetv3_zoo.search.trainer import EvalTask

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "recipe_pool.py"
# timm's smallest resnet at 16 px on 3 images per class, 1 epoch: a training takes about a second
TINY = ["--backbone", "test_resnet", "--resolution", "16", "--data", "digits:3", "--epochs", "1",
        "--seeds", "2", "--jobs", "1"]  # fmt: skip


def _script():
    spec = importlib.util.spec_from_file_location("recipe_pool_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A pool of one recipe and both presets, two seeds each, and its summary."""
    root = tmp_path_factory.mktemp("recipe_pool")
    out, md = root / "pool.jsonl.gz", root / "pool.md"
    _script().main([*TINY, "--recipes", "1", "--out", str(out), "--results", str(md)])
    return out, md


def _copy(built, tmp_path) -> Path:
    out = tmp_path / "pool.jsonl.gz"
    shutil.copy(built[0], out)
    return out


@pytest.mark.slow
def test_build_holds_recipes_and_presets(built):
    records = _records(built[0])
    meta = [r for r in records if r["type"] == "meta"]
    assert len(meta) == 1 and meta[0]["model"] == "test_resnet" and meta[0]["epochs"] == 1
    assert meta[0]["command"].startswith("python ") and "torch" in meta[0]["versions"]
    runs = [r for r in records if r["type"] == "run"]
    assert [(r["pair"], r["seed"]) for r in runs] == [(0, 0), (0, 1)]
    assert all(r["status"] == "done" and len(r["metrics"]) == 1 for r in runs)
    assert {"val_top1", "val_loss", "train_loss"} <= set(runs[0]["metrics"][0])
    presets = _script().preset_runs(built[0])
    assert sorted(presets) == ["baseline", "fbnetv3"]
    assert all(sorted(by_seed) == [0, 1] for by_seed in presets.values())
    trained = presets["fbnetv3"][0]["recipe"]  # the preset under the pool's overrides
    assert (trained["batch_size"], trained["epochs"], trained["resolution"]) == (32, 1, 16)
    assert trained["optimizer"] == "rmsprop"
    # presets first, then the recipe: a partial build can always be compared with baseline
    kinds = [r["type"] for r in records if r["type"] != "meta"]
    assert kinds == ["preset"] * 4 + ["run"] * 2


@pytest.mark.slow
def test_resume_skips_finished_trainings(built, tmp_path):
    out = _copy(built, tmp_path)
    before = out.read_bytes()
    script = _script()
    script.main([*TINY, "--recipes", "1", "--out", str(out), "--results", ""])
    assert out.read_bytes() == before  # nothing left to train: nothing appended
    script.main([*TINY, "--recipes", "2", "--out", str(out), "--results", ""])
    new = _records(out)[len(_records(built[0])) :]
    assert [r["type"] for r in new] == ["meta", "run", "run"]
    assert [(r["pair"], r["seed"]) for r in new[1:]] == [(1, 0), (1, 1)]


@pytest.mark.parametrize(
    ("change", "key"),
    [(["--epochs", "2"], "epochs"), (["--half", "heldout"], "sample_seed"),
     (["--resolution", "24"], "resolution"), (["--channels-last"], "channels_last")],
)  # fmt: skip
def test_refuses_a_file_with_other_settings(built, tmp_path, change, key):
    out = _copy(built, tmp_path)
    before = out.read_bytes()
    with pytest.raises(SystemExit, match=f"other settings .*{key}: "):
        _script().main([*TINY, "--recipes", "1", *change, "--out", str(out), "--results", ""])
    assert out.read_bytes() == before


def test_a_file_from_before_the_flag_counts_as_nchw(built, tmp_path):
    """Pools built before ``--channels-last`` existed trained NCHW: extended without it, not with."""
    out = tmp_path / "pool.jsonl.gz"
    records = _records(built[0])
    for r in records:
        r.pop("channels_last", None)
    with gzip.open(out, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    before = out.read_bytes()
    _script().main([*TINY, "--recipes", "1", "--out", str(out), "--results", ""])
    with pytest.raises(SystemExit, match="channels_last: False in the file, True now"):
        _script().main([*TINY, "--recipes", "1", "--channels-last", "--out", str(out)])
    assert out.read_bytes() == before


def test_summary_renders(built, tmp_path):
    text = built[1].read_text()
    assert "# Recipe pool: test_resnet at 16 px, Sobol seed 0" in text
    assert "| trainings of recipes (failed) | 2 (0) |" in text
    assert "| baseline | 2 |" in text and "| fbnetv3 | 2 |" in text
    assert "--backbone test_resnet --half tune --resolution 16" in text  # the rebuild command
    md = tmp_path / "again.md"
    _script().main([*TINY, "--summary-only", "--out", str(built[0]), "--results", str(md)])
    assert md.read_text() == text  # summary-only trains nothing and says the same


def test_the_search_pool_machinery_reads_it(built):
    """load_pool, PoolSource and PoolEvaluator take the file as an arch pool's."""
    pool = load_pool(built[0])
    assert [p.index for p in pool.pairs] == [0] and sorted(pool.pairs[0].runs) == [0, 1]
    space = fixed_model_space("test_resnet", resolution=16, num_classes=10)
    PoolSource(space, pool)  # same space fingerprint
    pair = pool.pairs[0]
    task = EvalTask(7, pair.arch, pair.recipe, space.recipe_base, "digits:3", 1, None, 0,
                    overrides=dict(space.recipe_overrides))  # fmt: skip
    evaluator = PoolEvaluator(pool, search_seed=0)
    answer = evaluator(task)
    assert answer["status"] == "done" and len(answer["metrics"]) == 1
    assert evaluator.truth(0) == pair.final(1 - evaluator.shown[0])  # the other seed


def test_help_does_no_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        _script().main(["--help"])
    assert exit_.value.code == 0 and "--summary-only" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
