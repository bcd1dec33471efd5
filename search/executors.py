"""Where candidates are trained: in this process (default) or as Ray tasks.

An executor takes a list of tasks and yields a :class:`FinishedTrial` per task
in completion order, so the search loop can store each one the moment it
arrives.  The evaluator itself returns a plain dict (it may run on another
machine); the executor checks it and types it here, on the driver's side.
Ray is imported only when the Ray executor is chosen; the core search never
needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fbnetv3_zoo.search.config import EXECUTORS
from fbnetv3_zoo.search.finished import FinishedTrial
from fbnetv3_zoo.search.trainer import EvalTask

from fbnetv3_zoo.errors import UserError
from fbnetv3_zoo.optional import require

Evaluator = Callable[[EvalTask], dict[str, Any]]


class LocalExecutor:
    """Runs tasks one after another in this process."""

    name = "local"

    def map(self, fn: Evaluator, tasks: list[EvalTask]) -> Iterator[FinishedTrial]:
        for task in tasks:
            yield FinishedTrial.from_result(task, fn(task))

    def close(self) -> None:
        pass


class RayExecutor:
    """One Ray task per candidate with its own CPU/GPU request, retried once if its worker dies."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        _check_reachable(address)
        ray = require("ray", "the ray executor (--executor ray)")
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False)
            kwargs.update(init_kwargs or {})
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, TimeoutError) as err:
                raise UserError(
                    f"cannot reach a Ray cluster at address {address!r}: {err} (start one with 'ray start --head', or use --executor local)"
                ) from None
            self.started = True
        self.options = dict(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=1)

    def map(self, fn: Evaluator, tasks: list[EvalTask]) -> Iterator[FinishedTrial]:
        remote = self.ray.remote(**self.options)(_call)  # Ray wraps functions, not instances
        pending = {remote.remote(fn, task): task for task in tasks}
        while pending:
            done, _ = self.ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    result = self.ray.get(ref)
                except self.ray.exceptions.RayError as err:  # worker lost twice, task cancelled
                    yield FinishedTrial.failure(task, f"ray: {err}")
                    continue
                yield FinishedTrial.from_result(task, result)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False


def _call(fn: Evaluator, task: EvalTask) -> dict[str, Any]:
    """``fn(task)`` on a Ray worker: ``fn`` may be a function or an ``Objective`` instance."""
    return fn(task)


def _check_reachable(address: str | None, timeout: float = 3.0) -> None:
    """Fail fast on a ``host:port`` nobody listens on (Ray itself retries for a minute)."""
    if not address or address == "auto" or address.startswith(("ray://", "local")):
        return
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot reach a Ray cluster at address {address!r}: {err} (start one with 'ray start --head', or use --executor local)"
        ) from None


def make_executor(
    name: str,
    address: str | None = None,
    cpus_per_trial: float = 1.0,
    gpus_per_trial: float = 0.0,
    init_kwargs: dict[str, Any] | None = None,
) -> LocalExecutor | RayExecutor:
    """An executor by name; the error lists the valid names."""
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address, cpus_per_trial, gpus_per_trial, init_kwargs)
    raise UserError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")
