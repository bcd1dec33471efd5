"""Detection and segmentation under torchrun: 2 CPU processes on gloo train one tiny run.

The detectors sample proposals at random per process, so two processes cannot
match one bit for bit (the classification test in test_distributed.py holds
that); this test holds what a user relies on: every parameter takes part in
the all-reduce (DDP raises on one that does not), rank 0 alone writes, the
checkpoint records the group size, and ``validate`` reproduces the numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_tasks_training import CASES, TINY

from fbnetv3_zoo.tasks import write_digits_sets

pytest.importorskip("pycocotools")

SCRIPT = """
import json, sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes.engine import train
from test_tasks_training import CASES

task, data, out = sys.argv[1:4]
model, _, options, _ = CASES[task]
base = Recipe.load("fbnetv3").to_dict()
recipe = Recipe.from_dict({{**base, "epochs": 1, "batch_size": 4, "lr": 0.05}}, source="test")
train(model, recipe, data=data, out_dir=out, task=task, task_options=options, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(CASES))
def test_two_processes_train_a_task_and_validate_reproduces(task: str, tmp_path: Path) -> None:
    """One torchrun launch per task (the engine leaves the process group when a run ends)."""
    from fbnetv3_zoo.recipes import checkpoints as ckpt
    from fbnetv3_zoo.recipes.task_validate import validate_task

    sets, out = write_digits_sets(tmp_path / "digits", TINY), tmp_path / "run"
    sub, head = CASES[task][1], CASES[task][3]
    script = tmp_path / "run_train.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), task, str(sets / sub), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "run", "run_train.py"]
    assert torch.load(out / ckpt.STATE_FILE, weights_only=True)["world_size"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == task and summary[f"final_{head}"] is not None
    again = validate_task(task, None, str(sets / sub), checkpoint=out / "model.safetensors")
    assert again[head] == summary[f"final_{head}"]
