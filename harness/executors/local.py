"""Parallel slots on this machine: each slot owns a disjoint set of cores (the worker is
pinned to them before it imports anything, and its thread counts are its share) and,
with GPUs, one GPU (``CUDA_VISIBLE_DEVICES``)."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from harness.executors import Job
from harness.worker import ProcessResult, kill, run_worker


@dataclass(frozen=True)
class Slot:
    index: int
    cores: tuple[int, ...] | None  # None: not pinned (one slot has the whole machine)
    gpu: str | None  # the CUDA device index it owns; None: what the machine shows


def usable_cores() -> list[int]:
    """The cores this process may run on (its affinity, e.g. a container's share)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def gpu_count() -> int:
    """GPUs ``nvidia-smi -L`` lists; 0 where there is none or no driver."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in out.stdout.splitlines())


def make_slots(jobs: int, gpus: bool, cores: list[int], gpu_total: int) -> list[Slot]:
    """``jobs`` slots of equal, disjoint core sets (the cores that do not divide evenly
    stay idle, so that every slot's cells run with the same thread count); one GPU each
    when ``gpus``. Raises ValueError when the machine has too few."""
    from harness.validate import UsageError, at_least

    at_least("--jobs", jobs)
    if gpus and jobs > 1 and jobs > gpu_total:
        raise UsageError(
            f"--jobs {jobs} with --devices gpu needs {jobs} GPUs (one per slot); this machine "
            f"shows {gpu_total}: use --jobs {max(gpu_total, 1)}"
        )
    if jobs == 1:
        return [Slot(0, None, None)]
    if jobs > len(cores):
        raise UsageError(
            f"--jobs {jobs} needs {jobs} cores (each slot owns at least one); this process "
            f"may use {len(cores)}: use --jobs {len(cores)} or fewer"
        )
    share = len(cores) // jobs
    return [
        Slot(i, tuple(cores[i * share : (i + 1) * share]), str(i) if gpus else None)
        for i in range(jobs)
    ]


class LocalExecutor:
    """Runs jobs on this machine, at most one per slot at a time."""

    name = "local"

    def __init__(self, jobs: int = 1, gpus: bool = False):
        self._slots = make_slots(jobs, gpus, usable_cores(), gpu_count() if gpus else 0)
        self.slots = len(self._slots)
        cores = self._slots[0].cores
        self.threads = 0 if cores is None else len(cores)
        self._free: queue.Queue[Slot] = queue.Queue()
        for slot in self._slots:
            self._free.put(slot)
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="rosetta-slot")
        self._running: set[subprocess.Popen] = set()
        self._closed = threading.Event()

    def submit(
        self, job: Job, on_event: Callable[[dict], None] = lambda e: None
    ) -> Future[ProcessResult]:
        return self._pool.submit(self._run, job, on_event)

    def _run(self, job: Job, on_event: Callable[[dict], None]) -> ProcessResult:
        slot = self._free.get()
        try:
            if self._closed.is_set():
                return ProcessResult(None, "cancelled", "the run was stopped before it started")
            env = dict(job.env)
            if slot.gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = slot.gpu
            extra = {
                "node": socket.gethostname(),
                "slot": slot.index,
                "cores": list(slot.cores) if slot.cores else None,
                "gpu": slot.gpu,
                "started": time.time(),
            }
            on_event({"event": "started", **extra})
            # the worker runs from this thread, which lives until the worker ends: the
            # kernel kills the worker when the thread that started it dies
            result = run_worker(
                job.module,
                job.config,
                env,
                job.timeout_s,
                None,
                on_event,
                slot.cores,
                self._running,
            )
            result.extra = {**extra, "ended": time.time()}
            return result
        finally:
            self._free.put(slot)

    def close(self) -> None:
        self._closed.set()
        for proc in list(self._running):
            kill(proc)
        self._pool.shutdown(wait=True, cancel_futures=True)
