"""Cells as Ray tasks on an existing Ray cluster (``--executor ray``).

Each job is a Ray task that claims one ``rosetta_slot`` (a custom resource every node
that runs cells advertises, usually 1, so two timed cells never share a node), no Ray
CPU and ``job.gpus`` GPUs, and is never retried: a crashed cell is its status. On its
node the task runs the worker exactly as the local executor does (``run_worker``) and
streams its events back, then the :class:`~harness.worker.ProcessResult` with the
record and the log: no shared filesystem is assumed. The nodes need the same rosetta
installed as the driver.

Only this module imports Ray, and only the runner imports this module (lazily).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

try:
    import ray
except ImportError as err:  # the extra is not installed: say how, not a traceback
    from harness.validate import UsageError

    raise UsageError(
        "--executor ray needs Ray: pip install -e '.[ray]' (on every node of the cluster too)"
    ) from err

from harness.executors import Job
from harness.worker import ProcessResult

SLOT = "rosetta_slot"
START_NODES = (
    "start one with `ray start --head --resources='{\"rosetta_slot\": 0}'` and add the "
    "machines that run cells with `ray start --address=HEAD:6379 "
    "--resources='{\"rosetta_slot\": 1}'` (see the README)"
)
CONNECT_TIMEOUT_S = 5.0  # ray.init retries an unreachable address for minutes
NO_SLOT_GRACE_S = 10.0  # a cluster with no slot left for so long fails its queued jobs


def _environ_at_start() -> dict[str, str] | None:
    """This process's environment as it was exec'd (Linux), before Ray's worker changed
    its copy; None where the platform cannot tell."""
    try:
        with open("/proc/self/environ", "rb") as f:
            raw = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def cell_env(job_env: dict[str, str | None]) -> dict[str, str | None]:
    """The environment changes for the worker that runs a job on a Ray node: ``job_env``
    on top of the node's own environment, with what Ray's worker added to it undone
    (``OMP_NUM_THREADS=1`` for a task without CPUs, its ``PYTHONBREAKPOINT``): the cell's
    thread settings are the job's, and the node's as ``ray start`` got them otherwise."""
    start = _environ_at_start()
    undo: dict[str, str | None] = {}
    if start is None:
        undo["OMP_NUM_THREADS"] = None  # the one that matters; cannot tell who set it
    else:
        for key, value in os.environ.items():
            if start.get(key) != value:
                undo[key] = start.get(key)
    # CUDA_VISIBLE_DEVICES is Ray's to set: it names the GPUs the task was given
    undo.pop("CUDA_VISIBLE_DEVICES", None)
    return {**undo, **job_env}


def run_on_node(module: str, config: str, env: dict[str, str | None], timeout_s: float):
    """The Ray task (a generator): yields ("event", event) for each of the worker's
    events, the first a "started" event saying where it runs, then ("result", fields of
    the ProcessResult)."""
    from harness import worker  # the node's own rosetta, imported where the task runs

    context = ray.get_runtime_context()
    extra = {
        "node": socket.gethostname(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_id": context.get_node_id(),
        "slot": None,
        "cores": None,
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES") or None,
        "started": time.time(),
    }
    yield "event", {"event": "started", **extra}
    events: queue.Queue = queue.Queue()
    done = object()
    box: dict[str, ProcessResult] = {}

    def run() -> None:
        # this thread lives as long as the worker does: the worker dies with it
        try:
            box["result"] = worker.run_worker(
                module, config, cell_env(env), timeout_s, None, events.put
            )
        finally:
            events.put(done)

    threading.Thread(target=run, name="rosetta-cell", daemon=True).start()
    while (event := events.get()) is not done:
        yield "event", event
    if "result" not in box:  # run_worker raised (it should not): say so, not "lost"
        result = ProcessResult(None, "crashed", "the Ray task could not start the worker")
    else:
        result = box["result"]
    result.extra = {**extra, "ended": time.time()}
    yield "result", dataclasses.asdict(result)


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _check_reachable(address: str) -> None:
    """Fail fast on an address nobody listens at (ray.init would retry for minutes)."""
    from harness.validate import UsageError

    if "://" in address:
        return  # ray:// (Ray Client) and the like: ray.init's own checks
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:  # a private helper; without it, leave it to ray.init
        return
    try:
        # resolves "auto" (RAY_ADDRESS, the last `ray start` here) and a localhost
        # address to the node address Ray binds
        resolved = canonicalize_bootstrap_address_or_die(address)
        host, _, port = resolved.rpartition(":")
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError, ConnectionError) as err:
        raise UsageError(
            f"cannot reach a Ray cluster at {address}: {_first_line(err)}; {START_NODES}"
        ) from None


@dataclasses.dataclass
class _Running:
    job: Job
    future: Future
    stream: Any = None  # the task's ObjectRefGenerator
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # from "started"


class RayExecutor:
    """Sends jobs to the Ray cluster at ``address`` ("auto" or None: the one this
    machine is part of, as ``ray.init`` finds it). Never starts a cluster."""

    name = "ray"
    threads = 0  # a slot is a whole node: each framework's own default

    def __init__(self, address: str | None = None):
        from harness.validate import UsageError

        self.address = address or "auto"
        _check_reachable(self.address)
        try:
            ray.init(
                address=self.address,
                log_to_driver=False,  # the worker's output comes back in its result
                logging_level=logging.WARNING,
                namespace="rosetta",
            )
        except Exception as err:
            raise UsageError(
                f"cannot reach a Ray cluster at {self.address}: {_first_line(err)}; {START_NODES}"
            ) from None
        self.slots = int(ray.cluster_resources().get(SLOT, 0))
        if self.slots < 1:
            ray.shutdown()
            raise UsageError(
                f"the Ray cluster at {self.address} has no node that runs cells (none "
                f"advertises a {SLOT!r} resource): start them with `ray start "
                f"--address=HEAD:PORT --resources='{{\"{SLOT}\": 1}}'`"
            )
        self._task = ray.remote(run_on_node)
        self._lock = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._closed = threading.Event()
        self._watch = threading.Thread(target=self._watch_slots, daemon=True)
        self._watch.start()

    # ------------------------------------------------------------------ submission

    def submit(
        self, job: Job, on_event: Callable[[dict], None] = lambda e: None
    ) -> Future[ProcessResult]:
        future: Future[ProcessResult] = Future()
        future.set_running_or_notify_cancel()
        if self._closed.is_set():
            future.set_result(ProcessResult(None, "cancelled", "the run was stopped"))
            return future
        if job.gpus and not self._fits_gpus(job.gpus):
            future.set_result(
                self._lost_result(
                    job,
                    None,
                    (
                        f"no node of the Ray cluster has {job.gpus} GPU(s) and a {SLOT}: start one "
                        f"with `ray start --address=HEAD:PORT --num-gpus=1 "
                        f"--resources='{{\"{SLOT}\": 1}}'`"
                    ),
                    prefix=False,
                )
            )
            return future
        entry = _Running(job, future)
        with self._lock:
            self._running[id(entry)] = entry
            # no Ray CPU: the slot is the claim; never retried: a crash is the status
            entry.stream = self._task.options(
                num_cpus=0,
                num_gpus=job.gpus,
                resources={SLOT: 1},
                max_retries=0,
                name=f"rosetta {job.label}",
            ).remote(job.module, job.config, dict(job.env), job.timeout_s)
        threading.Thread(
            target=self._follow, args=(entry, on_event), name="rosetta-ray", daemon=True
        ).start()
        return future

    def _fits_gpus(self, gpus: int) -> bool:
        return any(
            node.get("Alive")
            and node["Resources"].get(SLOT, 0) >= 1
            and node["Resources"].get("GPU", 0) >= gpus
            for node in ray.nodes()
        )

    def _follow(self, entry: _Running, on_event: Callable[[dict], None]) -> None:
        """Reads one task's stream until its result; resolves its future whatever
        happens."""
        result = None
        try:
            for kind, payload in _items(entry.stream):
                if kind == "result":
                    result = ProcessResult(**payload)
                    continue
                if payload.get("event") == "started":
                    entry.extra = {k: v for k, v in payload.items() if k != "event"}
                try:
                    on_event(payload)
                except Exception:  # a progress display's bug must not lose the cell
                    pass
            if result is None:
                result = self._lost_result(entry.job, entry, "the task ended with no result")
        except ray.exceptions.TaskCancelledError:
            extra = {**entry.extra, "ended": time.time()}
            result = ProcessResult(None, "cancelled", "the run was stopped", extra=extra)
        except ray.exceptions.RayTaskError as err:
            # the task itself raised on the node: rosetta missing or another version there
            result = self._lost_result(
                entry.job,
                entry,
                (
                    "the Ray task failed on its node before the cell's worker ran (is the "
                    f"same rosetta installed there?): {_first_line(err.cause or err)}"
                ),
                prefix=False,
            )
        except Exception as err:  # NodeDiedError, WorkerCrashedError, ObjectLostError, ...
            result = self._lost_result(entry.job, entry, _first_line(err))
        self._resolve(entry, result)

    def _lost_result(
        self, job: Job, entry: _Running | None, why: str, prefix: bool = True
    ) -> ProcessResult:
        if prefix:
            why = f"the Ray node running it died (or lost its worker): {why}"
        extra = {
            "node": None,
            "node_ip": None,
            "node_id": None,
            "slot": None,
            "cores": None,
            "gpu": None,
            "started": None,
        }
        if entry is not None:
            extra.update(entry.extra)
        extra["ended"] = time.time()
        return ProcessResult(None, "lost", why, "", 0.0, extra)

    def _resolve(self, entry: _Running, result: ProcessResult) -> None:
        with self._lock:
            self._running.pop(id(entry), None)
            if entry.future.done():
                return
            entry.future.set_result(result)

    # ------------------------------------------------------------------ watching

    def _watch_slots(self) -> None:
        """Ray keeps a task that no live node can take waiting forever: when the last
        node with a slot has gone, fail the jobs still waiting after a grace period."""
        since = None
        while not self._closed.wait(2.0):
            with self._lock:
                waiting = [e for e in self._running.values() if not e.extra]
            if not waiting:
                since = None
                continue
            try:
                slots = ray.cluster_resources().get(SLOT, 0)
            except Exception:
                continue
            if slots >= 1:
                since = None
                continue
            since = since or time.monotonic()
            if time.monotonic() - since < NO_SLOT_GRACE_S:
                continue
            for entry in waiting:
                why = f"no node of the Ray cluster offers a {SLOT} any more"
                self._resolve(entry, self._lost_result(entry.job, entry, why, prefix=False))
                _cancel(entry.stream)

    def close(self) -> None:
        """Cancel what has not finished (killing its worker on its node), disconnect."""
        self._closed.set()
        with self._lock:
            entries = list(self._running.values())
        for entry in entries:
            _cancel(entry.stream)
        deadline = time.monotonic() + 10.0
        for entry in entries:
            try:
                entry.future.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                pass
        for entry in entries:  # never leave a caller waiting on a future
            self._resolve(entry, ProcessResult(None, "cancelled", "the run was stopped"))
        self._watch.join(timeout=5.0)
        ray.shutdown()


def _items(stream) -> Iterator[tuple[str, Any]]:
    for ref in stream:
        yield ray.get(ref)


def _cancel(stream) -> None:
    try:
        ray.cancel(stream, force=True)
    except Exception:  # already finished, or the cluster is gone: nothing left to stop
        pass
