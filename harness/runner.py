"""The matrix: cells planned from tasks x frameworks x modes x devices, each run in
its own process (framework thread pools fight, and a crash must not take the run
down) with its thread counts set before import and a timeout, on an executor
(:mod:`harness.executors`); resuming a run folder; and the driver, the one process
that writes the records."""

from __future__ import annotations

import queue
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness import data, validate
from harness.backend import (
    BACKENDS,
    BackendInfo,
    install_hint,
    missing_packages,
    package_version,
)
from harness.cell import CellConfig
from harness.executors import Executor, Job
from harness.results import ResultStore
from harness.spec import SpecError, TaskSpec, check_model
from harness.validate import DEVICES
from harness.worker import ProcessResult, WorkerConfig, run_worker

DEFAULT_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Cell:
    spec: TaskSpec
    source: str  # the task's file, for messages
    framework: str
    mode: str
    device: str = "cpu"
    threads: int = 0
    init: str = "shared"
    dtype: str = "float32"
    data_dir: str | None = None
    strict_data: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    backend: BackendInfo | None = None  # None: the registry's entry for ``framework``
    extra_paths: tuple[str, ...] = field(default_factory=tuple)
    repeat: int = 0  # which of --repeats identical processes this is

    @property
    def label(self) -> str:
        label = f"{self.spec.name}/{self.framework}/{self.mode}/{self.device}"
        if self.threads:
            label += f"/t{self.threads}"
        return label + (f"/r{self.repeat}" if self.repeat else "")

    @property
    def info(self) -> BackendInfo:
        return self.backend or BACKENDS[self.framework]


# OpenMP's and MKL's pools, which several frameworks' kernels use
POOL_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(info: BackendInfo | None, threads: int) -> dict[str, str | None]:
    """Environment that fixes a worker's thread pools before it imports ``info``'s
    framework (as the backend declares them; None: OpenMP's and MKL's alone). With 0
    (the framework's default) the variables a parent set are removed (Ray sets
    OMP_NUM_THREADS in its workers), so that the record's thread count is the truth."""
    env: dict[str, str | None] = dict.fromkeys(POOL_VARS, str(threads) if threads > 0 else None)
    return {**env, **(info.thread_env(threads) if info is not None else {})}


def resolve_device(device: str) -> str:
    """'auto' is the GPU when the machine shows one (nvidia-smi), else the CPU."""
    if device != "auto":
        return device
    try:
        found = (
            subprocess.run(["nvidia-smi", "-L"], capture_output=True, timeout=10).returncode == 0
        )
    except (OSError, subprocess.SubprocessError):
        found = False
    return "gpu" if found else "cpu"


def preflight(spec: TaskSpec, source: str, data_dir: str | None, strict: bool = False) -> None:
    """A task's data files and model checked against each other before any process
    starts; the error names the task's file."""
    try:
        data.preflight(spec.data, data_dir, strict=strict)
        check_model(spec, data.sample_shape(spec.data, data_dir))
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None


def plan(
    specs: Iterable[tuple[TaskSpec, str]],
    frameworks: Iterable[str],
    modes: Iterable[str],
    devices: Iterable[str] = ("cpu",),
    slot_threads: int = 0,
    **options: Any,
) -> list[Cell]:
    """Every cell of the matrix; modes a framework lacks (``xla`` outside TF) are skipped.
    Validates everything a user typed, and every spec against its data, before running.
    A thread count of 0 becomes ``slot_threads`` (a parallel slot's share of the cores)."""
    frameworks = validate.frameworks(frameworks)
    modes = validate.modes(modes)
    devices = validate.one_of("device", devices, DEVICES)
    validate.one_of("init", [options.get("init", "shared")], ("shared", "native"))
    validate.above_zero("--timeout", options.get("timeout_s", DEFAULT_TIMEOUT_S), "seconds")
    threads = options.pop("threads", 0)
    threads = list(threads) if isinstance(threads, list | tuple) else [threads]
    for n in threads:
        validate.at_least("--threads", n, 0)
    threads = list(dict.fromkeys(t or slot_threads for t in threads))
    repeats = validate.at_least("--repeats", options.pop("repeats", 1))
    strict = options.get("strict_data", False)
    cells = []
    for spec, source in specs:
        preflight(spec, source, options.get("data_dir"), strict)
        for fw in frameworks:
            for mode in modes:
                if mode not in BACKENDS[fw].modes:
                    continue
                for dev in devices:
                    for n in threads:
                        for rep in range(repeats):
                            cells.append(
                                Cell(
                                    spec,
                                    source,
                                    fw,
                                    mode,
                                    resolve_device(dev),
                                    n,
                                    repeat=rep,
                                    **options,
                                )
                            )
    return cells


def unavailable_record(cell: Cell, error: str, status: str = "unavailable") -> dict[str, Any]:
    return {
        "task": cell.spec.name,
        "title": cell.spec.title,
        "framework": cell.framework,
        "mode": cell.mode,
        "device": cell.device,
        "status": status,
        "error": error,
        "seed": cell.spec.recipe.seed,
        "spec_hash": cell.spec.spec_hash(),
        "init": cell.init,
        "dtype": cell.dtype,
        "threads": cell.threads,
        "curve": [],
    }


def sibling_module(info: BackendInfo, name: str) -> str:
    """A module beside a backend: (``impls.torch.backend:...``, "lessons") -> ``impls.torch.lessons``."""
    return f"{info.target.partition(':')[0].rpartition('.')[0]}.{name}"


def run_in_each_framework(
    worker: str,
    frameworks: Iterable[str] | None,
    cfg_for: Callable[[BackendInfo], WorkerConfig],
    timeout_s: float,
    jobs: int = 1,
) -> dict[str, dict[str, Any]]:
    """Run ``python -m worker`` once per framework, each in a fresh interpreter, up to
    ``jobs`` at once (each on its own cores).

    Returns framework -> result: the worker's record (``status`` "ok" with ``values``, or
    "failed" with ``error``), or "unavailable" with the install hint; plus ``version``.
    Raises UsageError for an unknown framework, before anything runs.
    """
    from harness.executors.local import LocalExecutor

    names = validate.frameworks(BACKENDS if frameworks is None else frameworks)
    results: dict[str, dict[str, Any]] = {}
    futures = {}
    executor = LocalExecutor(max(1, min(jobs, len(names))))
    try:
        for fw in names:
            info = BACKENDS[fw]
            missing = missing_packages(info)
            if missing:
                hint = install_hint(info) + f" (missing: {', '.join(missing)})"
                results[fw] = {"status": "unavailable", "error": hint, "version": None}
                continue
            cfg = cfg_for(info).model_dump_json()
            futures[fw] = executor.submit(
                Job(fw, worker, cfg, thread_env(BACKENDS[fw], executor.threads), timeout_s)
            )
        for fw, future in futures.items():
            run = future.result()
            result = run.record or {"status": "failed", "error": run.detail}
            results[fw] = {**result, "version": package_version(BACKENDS[fw].packages[0])}
    finally:
        executor.close()
    return {fw: results[fw] for fw in names}


# --------------------------------------------------------------------------- cells as jobs


def config_for(cell: Cell, run_id: str) -> CellConfig:
    """The cell's worker config, validated here so that nothing invalid reaches a worker."""
    return CellConfig(
        spec=cell.spec,
        source=cell.source,
        framework=cell.framework,
        target=cell.info.target,
        mode=cell.mode,
        device=cell.device,
        threads=cell.threads,
        init=cell.init,
        dtype=cell.dtype,
        data_dir=cell.data_dir,
        strict_data=cell.strict_data,
        run_id=run_id,
        extra_paths=cell.extra_paths,
    )


def job_for(cell: Cell, run_id: str) -> Job:
    env = {**thread_env(cell.info, cell.threads), "ROSETTA_CELL": cell.label}
    return Job(
        cell.label,
        "harness.cell",
        config_for(cell, run_id).model_dump_json(),
        env,
        cell.timeout_s,
        gpus=1 if cell.device == "gpu" else 0,
    )


def record_from(cell: Cell, result: ProcessResult) -> dict[str, Any]:
    """The cell's record from what its process gave, whatever happened to it."""
    if result.record is not None:
        return result.record
    status = "timeout" if result.status == "timeout" else "failed"
    return unavailable_record(cell, result.detail, status=status)


def run_cell_process(
    cell: Cell, run_id: str, log_path: Path, on_event: Callable[[dict], None] = lambda e: None
) -> dict[str, Any]:
    """Run one cell in a fresh interpreter, here and now; returns its record."""
    missing = missing_packages(cell.info)
    if missing:
        return unavailable_record(
            cell, install_hint(cell.info) + f" (missing: {', '.join(missing)})"
        )
    job = job_for(cell, run_id)
    result = run_worker(job.module, job.config, job.env, job.timeout_s, log_path, on_event)
    return record_from(cell, result)


# --------------------------------------------------------------------------- resume

# what makes two cells the same measurement: a record with this key is that cell's
KEY_FIELDS = (
    "task",
    "spec_hash",
    "framework",
    "mode",
    "device",
    "dtype",
    "init",
    "threads",
    "repeat",
)
FINISHED = ("ok", "failed", "timeout", "diverged")  # statuses a resume does not run again
RERUN = {"none": (), "failed": ("failed", "timeout", "diverged")}


def framework_versions(info: BackendInfo) -> dict[str, str | None]:
    """The installed versions of a backend's packages, read without importing them."""
    return {p: package_version(p) for p in info.packages}


def cell_key(cell: Cell) -> tuple:
    return (
        cell.spec.name,
        cell.spec.spec_hash(),
        cell.framework,
        cell.mode,
        cell.device,
        cell.dtype,
        cell.init,
        cell.threads,
        cell.repeat,
    )


def record_key(record: dict[str, Any]) -> tuple:
    return tuple(record.get(k, 0 if k in ("threads", "repeat") else None) for k in KEY_FIELDS)


def same_versions(record: dict[str, Any], installed: dict[str, str | None]) -> bool:
    """Whether a record was made with the framework versions installed now (the record
    names the imported module's version, which may carry a local tag: 2.13.0+cpu)."""
    had = record.get("versions") or {}
    for package, version in installed.items():
        if package in had and version is not None:
            if str(had[package]).split("+")[0] != version.split("+")[0]:
                return False
    return True


def still_to_run(
    cells: list[Cell], records: list[dict[str, Any]], rerun: str = "none"
) -> list[Cell]:
    """The cells of a resumed matrix that have no finished record with their key and the
    versions installed now; ``rerun="failed"`` also those whose record failed, timed out
    or diverged."""
    skip = {s for s in FINISHED if s not in RERUN[rerun]}
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault(record_key(r), []).append(r)
    todo = []
    for cell in cells:
        versions = framework_versions(cell.info)
        done = [
            r
            for r in by_key.get(cell_key(cell), [])
            if r.get("status") in skip and same_versions(r, versions)
        ]
        if not done:
            todo.append(cell)
    return todo


# --------------------------------------------------------------------------- the driver


def run_matrix(
    cells: list[Cell],
    store: ResultStore,
    progress: bool = True,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run the cells on ``executor`` (one local slot by default) and write each record as
    soon as it exists: this process alone writes the records and the logs. Returns the
    records in the cells' order. Ctrl-C stops the workers; what finished is kept."""
    from harness.executors.local import LocalExecutor
    from harness.progress import Progress

    own = executor is None
    executor = executor or LocalExecutor(1)
    events: queue.Queue = queue.Queue()
    records: dict[int, dict[str, Any]] = {}
    bar = Progress(len(cells), enabled=progress)
    placement = Placement()
    unavailable: dict[int, dict[str, Any]] = {}

    def flush() -> None:
        # an unavailable cell's record goes in after the cells planned before it, so that
        # one slot writes the records in the matrix's order
        for i in sorted(unavailable):
            if all(j in records for j in range(i)):
                records[i] = _finish(store, cells[i], unavailable.pop(i), {}, bar, i)

    try:
        for i, cell in enumerate(cells):
            missing = missing_packages(cell.info)
            if missing:
                hint = install_hint(cell.info) + f" (missing: {', '.join(missing)})"
                unavailable[i] = unavailable_record(cell, hint)
                continue
            future = executor.submit(job_for(cell, store.run_id), partial(_post, events, i))
            future.add_done_callback(partial(_post_done, events, i))
        flush()
        while len(records) < len(cells):
            kind, i, payload = events.get()
            if kind == "event" and payload["event"] == "started":
                placement.started(i, payload)
                bar.started(i, cells[i].label)
            elif kind == "event":
                bar.event(i, payload)
            elif kind == "done":
                result = payload
                store.write_log(cells[i].label, result.log)
                extra = {**result.extra, "beside": placement.finished(i, result.extra)}
                record = record_from(cells[i], result)
                records[i] = _finish(store, cells[i], record, extra, bar, i)
                flush()
    finally:
        bar.close()
        if own or len(records) < len(cells):
            executor.close()
    return [records[i] for i in range(len(cells))]


def _post(events: queue.Queue, i: int, event: dict) -> None:
    events.put(("event", i, event))


def _post_done(events: queue.Queue, i: int, future) -> None:
    try:
        result = future.result()
    except BaseException as err:  # an executor's own failure is that cell's
        result = ProcessResult(None, "crashed", f"the executor failed: {err!r}")
    events.put(("done", i, result))


def _finish(store, cell: Cell, record: dict[str, Any], extra: dict, bar, i: int) -> dict:
    record["run_id"] = store.run_id
    record["task_source"] = cell.source
    record["repeat"] = cell.repeat
    if cell.data_dir:
        record["data_dir"] = cell.data_dir
    for key in ("node", "slot", "cores", "gpu", "beside"):
        if key in extra:
            record[key] = extra[key]
    store.add(record)
    bar.finished(cell.label, record, i)
    return record


class Placement:
    """Which cells ran at the same time on the same node: a record says how many others
    ran beside it (they shared its memory bandwidth and caches while it was timed)."""

    def __init__(self) -> None:
        self.running: dict[int, dict[str, Any]] = {}  # started, not yet finished
        self.seen: dict[int, set[int]] = {}
        self.done: dict[int, dict[str, Any]] = {}

    def started(self, i: int, where: dict[str, Any]) -> None:
        self.seen[i] = set()
        for j, other in self.running.items():
            if other.get("node") == where.get("node"):
                self.seen[i].add(j)
                self.seen[j].add(i)
        self.running[i] = where

    def finished(self, i: int, where: dict[str, Any]) -> int:
        """How many other cells ran beside cell ``i`` on its node (for executors that say
        when a cell started only in its result, those that had finished by then)."""
        self.running.pop(i, None)
        seen = self.seen.setdefault(i, set())
        start, end = where.get("started"), where.get("ended")
        for j, other in self.done.items():
            if other.get("node") != where.get("node") or None in (start, end):
                continue
            if other.get("started", end) < end and other.get("ended", start) > start:
                seen.add(j)
                self.seen.setdefault(j, set()).add(i)
        self.done[i] = where
        return len(seen)
