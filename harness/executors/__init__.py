"""Where worker processes run: the seam between the driver (which plans cells and alone
writes records, logs and reports) and the machines that run them.

An executor takes a :class:`Job` (a worker module, its typed config, its environment, a
timeout) and returns a future of the worker's :class:`~harness.worker.ProcessResult`,
whose ``extra`` says where it ran (slot, cores, GPU, node, start and end). ``local``
runs jobs in parallel slots on this machine; ``ray`` sends each to a Ray cluster.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from harness.worker import ProcessResult

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class Job:
    """One worker process to run somewhere."""

    label: str  # for progress and errors, e.g. "lenet/torch/eager/cpu"
    module: str  # run as ``python -m module``, e.g. "harness.cell"
    config: str  # the worker's config as JSON (a WorkerConfig's model_dump_json())
    env: dict[str, str | None] = field(default_factory=dict)  # None unsets a variable
    timeout_s: float = 900.0
    gpus: int = 0  # GPUs the job needs (0 or 1)


class Executor(Protocol):
    name: str
    slots: int  # how many jobs may run at once (for Ray: at submission time)
    threads: int  # threads a cell gets by default in a slot (0: the framework's choice)

    def submit(
        self, job: Job, on_event: Callable[[dict], None] = lambda e: None
    ) -> Future[ProcessResult]:
        """Start ``job`` when a slot is free; ``on_event`` gets the worker's events (where
        the executor can pass them on) and a ``{"event": "started", "slot": ...}`` when the
        job leaves the queue, from any thread."""

    def close(self) -> None:
        """Stop: kill what still runs, drop what has not started."""


def make_executor(
    name: str = "local", jobs: int = 1, address: str | None = None, gpus: bool = False
) -> Executor:
    """The executor a run names: ``local`` with ``jobs`` slots (one GPU each when
    ``gpus``), or ``ray`` on the cluster at ``address`` (``auto``: the one this machine
    belongs to)."""
    from harness.validate import UsageError

    if name == "local":
        from harness.executors.local import LocalExecutor

        if address is not None:
            raise UsageError("--address goes with --executor ray; the local executor needs none")
        return LocalExecutor(jobs, gpus)
    if name == "ray":
        if jobs != 1:
            raise UsageError(
                f"--jobs {jobs} is for the local executor; with --executor ray every node "
                "runs as many cells at once as it has rosetta_slot resources"
            )
        from harness.executors.ray_cluster import RayExecutor

        return RayExecutor(address)
    raise UsageError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")
