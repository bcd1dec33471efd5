"""Detection and segmentation under torchrun: 2 CPU processes on gloo train one tiny run.

The detectors sample proposals at random per process, so two processes cannot
match one bit for bit (the classification test in test_distributed.py holds
that); this test holds what a user relies on: every parameter takes part in
the all-reduce (DDP raises on one that does not), rank 0 alone writes, the
checkpoint records the group size, and ``validate`` reproduces the numbers.
Both tasks train in one launch: the script makes the process group itself, as a
user scripting several runs would, and ``train`` uses it and leaves it open
(the engine's own group set-up under torchrun is test_distributed.py's).
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
import sys
import torch
import torch.distributed as dist
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from fbnetv3_zoo.recipes import Recipe
from fbnetv3_zoo.recipes.engine import train
from test_tasks_training import CASES

sets, out = sys.argv[1:3]
base = Recipe.load("fbnetv3").to_dict()
recipe = Recipe.from_dict({{**base, "epochs": 1, "batch_size": 4, "lr": 0.05}}, source="test")
dist.init_process_group("gloo")
for task, (model, sub, options, _) in sorted(CASES.items()):
    data, run = f"{{sets}}/{{sub}}", f"{{out}}/{{task}}"
    train(model, recipe, data=data, out_dir=run, task=task, task_options=options, progress=False)
    assert dist.is_initialized()  # the caller's group: train leaves it open
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_train_each_task_and_validate_reproduces(tmp_path: Path) -> None:
    from fbnetv3_zoo.recipes import checkpoints as ckpt
    from fbnetv3_zoo.recipes.task_validate import validate_task

    sets, out = write_digits_sets(tmp_path / "digits", TINY), tmp_path / "runs"
    script = tmp_path / "run_train.py"
    script.write_text(textwrap.dedent(SCRIPT.format(tests=str(Path(__file__).parent))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, str(script), str(sets), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "run_train.py", "runs"]
    for task, (_, sub, _, head) in CASES.items():
        run = out / task
        assert torch.load(run / ckpt.STATE_FILE, weights_only=True)["world_size"] == 2
        summary = json.loads((run / "summary.json").read_text())
        assert summary["task"] == task and summary[f"final_{head}"] is not None
        again = validate_task(task, None, str(sets / sub), checkpoint=run / "model.safetensors")
        assert again[head] == summary[f"final_{head}"], task
