"""One timing layer (issue 38): every loop that reads a clock lives in ``latency/timing.py``.

A second harness drifts from the first (GC on in one, off in the other; wall clock
against thread CPU time; two ONNX Runtime session setups), so a loop that calls
``time.perf_counter`` / ``time.thread_time`` / ``time.process_time`` /
``time.monotonic`` anywhere else in the package fails here.  Reading a clock once around
a whole job (how long a search took) is not a timing loop.  The benchmark scripts are not
checked: they time whole jobs per item (a training's CPU seconds, a lowering, an ETA);
the latency and inference tables they print come from this layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLOCKS = {"perf_counter", "thread_time", "process_time", "monotonic", "perf_counter_ns"}
TIMING = REPO / "fbnetv3_zoo" / "latency" / "timing.py"


def clock_loops(path: Path) -> list[str]:
    """'path:line' of every for/while loop whose body reads one of ``CLOCKS``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.For | ast.While):
            continue
        body = [n for stmt in node.body for n in ast.walk(stmt)]
        if isinstance(node, ast.While):
            body += list(ast.walk(node.test))
        if any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in CLOCKS
            for n in body
        ):
            where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
            found.append(f"{where}:{node.lineno}")
    return found


def test_no_timing_loop_outside_the_timing_layer():
    files = [
        p
        for folder in ("fbnetv3_zoo", "search", "recipes")
        for p in (REPO / folder).rglob("*.py")
        if p != TIMING
    ]
    assert [hit for p in files for hit in clock_loops(p)] == []


def test_the_check_sees_a_timing_loop(tmp_path):
    loop = tmp_path / "loop.py"
    loop.write_text("import time\nfor _ in range(3):\n    t = time.perf_counter()\n")
    once = tmp_path / "once.py"
    once.write_text("import time\nt = time.perf_counter()\nfor _ in range(3):\n    pass\n")
    assert len(clock_loops(loop)) == 1
    assert clock_loops(once) == []
    assert clock_loops(TIMING)  # the layer itself has them


def test_one_onnx_writer():
    """Every ONNX file comes from ``export.write_onnx``: one exporter, one opset (issue 38)."""
    writer = REPO / "fbnetv3_zoo" / "deploy" / "export.py"
    calls = []
    for folder in ("fbnetv3_zoo", "search", "recipes", "benchmarks"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "export"
                    and ast.unparse(node.func.value) == "torch.onnx"
                ):
                    calls.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert len(calls) == 1 and calls[0].startswith(str(writer.relative_to(REPO))), calls
