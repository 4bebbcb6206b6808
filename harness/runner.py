"""The matrix: cells planned from tasks x frameworks x modes x devices, each run in
its own process (framework thread pools fight, and a crash must not take the
run down), with its thread counts set before import and a timeout."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import data
from harness.backend import (
    BACKENDS,
    MODES,
    BackendInfo,
    install_hint,
    missing_packages,
    package_version,
)
from harness.cell import EVENT_PREFIX
from harness.results import ResultStore
from harness.spec import SpecError, TaskSpec, check_model

DEVICES = ("cpu", "gpu", "auto")
DEFAULT_TIMEOUT_S = 900.0


class UsageError(ValueError):
    """A request that cannot work (unknown framework, mode, device, ...)."""


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


def thread_env(threads: int) -> dict[str, str]:
    """Environment that fixes every framework's thread pools before import."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "KERAS_BACKEND": "tensorflow"}
    if threads > 0:
        n = str(threads)
        env.update(
            OMP_NUM_THREADS=n,
            MKL_NUM_THREADS=n,
            TF_NUM_INTRAOP_THREADS=n,
            TF_NUM_INTEROP_THREADS="1",
        )
        # XLA sizes its CPU thread pool from PJRT_NPROC (intra_op_parallelism_threads
        # is not an XLA flag: bare it is ignored, with "--" XLA aborts)
        env["PJRT_NPROC"] = n
        flags = os.environ.get("XLA_FLAGS", "")
        if threads == 1:
            flags += " --xla_cpu_multi_thread_eigen=false"
        env["XLA_FLAGS"] = flags.strip()
    return env


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


def plan(
    specs: Iterable[tuple[TaskSpec, str]],
    frameworks: Iterable[str],
    modes: Iterable[str],
    devices: Iterable[str] = ("cpu",),
    **options: Any,
) -> list[Cell]:
    """Every cell of the matrix; modes a framework lacks (``xla`` outside TF) are skipped.
    Validates everything a user typed, and every spec against its data, before running."""
    frameworks, modes, devices = list(frameworks), list(modes), list(devices)
    for fw in frameworks:
        if fw not in BACKENDS:
            raise UsageError(f"unknown framework {fw!r}; allowed: {', '.join(BACKENDS)}")
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    for dev in devices:
        if dev not in DEVICES:
            raise UsageError(f"unknown device {dev!r}; allowed: {', '.join(DEVICES)}")
    if options.get("init", "shared") not in ("shared", "native"):
        raise UsageError(f"unknown init {options['init']!r}; allowed: shared, native")
    threads = options.pop("threads", 0)
    threads = list(threads) if isinstance(threads, list | tuple) else [threads]
    if any(not isinstance(t, int) or t < 0 for t in threads):
        raise UsageError(f"--threads takes counts >= 0 (0: the framework's default), not {threads}")
    repeats = options.pop("repeats", 1)
    if repeats < 1:
        raise UsageError(f"--repeats must be at least 1, not {repeats}")
    cells = []
    for spec, source in specs:
        try:
            data.preflight(spec.data, options.get("data_dir"))
            check_model(spec, data.sample_shape(spec.data, options.get("data_dir")))
        except SpecError as err:
            raise SpecError(f"{source}: {err}") from None
        for fw in frameworks:
            for mode in modes:
                if mode not in BACKENDS[fw].modes:
                    continue
                for dev in devices:
                    for n in threads:
                        for rep in range(repeats):
                            cells.append(
                                Cell(spec, source, fw, mode, resolve_device(dev), n,
                                     repeat=rep, **options)
                            )  # fmt: skip
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


def _reader(stream, events: queue.Queue) -> None:
    for line in stream:
        events.put(line)
    events.put(None)


@dataclass
class ProcessResult:
    record: dict[str, Any] | None  # the worker's last "record" event
    status: str  # "done", "timeout" or "crashed"
    detail: str  # why, when there is no record


def run_worker(
    module: str,
    cfg: dict[str, Any],
    env: dict[str, str],
    timeout_s: float,
    log_path: Path,
    on_event: Callable[[dict], None] = lambda e: None,
) -> ProcessResult:
    """Run ``python -m module`` with ``cfg`` as JSON on stdin, in its own process
    group; pass its events on, keep its other output in ``log_path``, kill it at the
    deadline. Never raises for what the worker does."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1"},
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    proc.stdin.write(json.dumps(cfg))
    proc.stdin.close()
    deadline = time.monotonic() + timeout_s
    record, tail = None, []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                why = f"no result within {timeout_s:.0f} s (raise it with --timeout)"
                return ProcessResult(None, "timeout", why)
            if line is None:
                break
            if line.startswith(EVENT_PREFIX):
                event = json.loads(line[len(EVENT_PREFIX) :])
                if event["event"] == "record":
                    record = event["record"]
                else:
                    on_event(event)
            else:
                log.write(line)
                tail = (tail + [line.rstrip()])[-20:]
    code = proc.wait()
    if record is not None:
        return ProcessResult(record, "done", "")
    why = f"the process exited with code {code} before writing a record"
    if code < 0:
        why += f" (killed by signal {-code})"
    return ProcessResult(None, "crashed", why + ":\n" + "\n".join(tail[-10:]))


def sibling_module(info: BackendInfo, name: str) -> str:
    """A module beside a backend: (``impls.torch.backend:...``, "lessons") -> ``impls.torch.lessons``."""
    return f"{info.target.partition(':')[0].rpartition('.')[0]}.{name}"


def run_in_each_framework(
    worker: str,
    frameworks: Iterable[str] | None,
    cfg_for: Callable[[BackendInfo], dict[str, Any]],
    timeout_s: float,
) -> dict[str, dict[str, Any]]:
    """Run ``python -m worker`` once per framework, each in a fresh interpreter.

    Returns framework -> result: the worker's record (``status`` "ok" with ``values``, or
    "failed" with ``error``), or "unavailable" with the install hint; plus ``version``.
    Raises UsageError for an unknown framework, before anything runs.
    """
    names = list(BACKENDS) if frameworks is None else list(frameworks)
    for fw in names:
        if fw not in BACKENDS:
            raise UsageError(f"unknown framework {fw!r}; allowed: {', '.join(BACKENDS)}")
    results: dict[str, dict[str, Any]] = {}
    for fw in names:
        info = BACKENDS[fw]
        missing = missing_packages(info)
        if missing:
            hint = install_hint(info) + f" (missing: {', '.join(missing)})"
            results[fw] = {"status": "unavailable", "error": hint, "version": None}
            continue
        # the log only matters while reading a crash; run_worker puts its tail in `detail`
        with tempfile.TemporaryDirectory(prefix="rosetta-") as tmp:
            run = run_worker(worker, cfg_for(info), thread_env(0), timeout_s, Path(tmp) / "log")
        result = run.record or {"status": "failed", "error": run.detail}
        results[fw] = {**result, "version": package_version(info.packages[0])}
    return results


def run_cell_process(
    cell: Cell, run_id: str, log_path: Path, on_event: Callable[[dict], None] = lambda e: None
) -> dict[str, Any]:
    """Run one cell in a fresh interpreter; returns its record, whatever happens."""
    missing = missing_packages(cell.info)
    if missing:
        return unavailable_record(
            cell, install_hint(cell.info) + f" (missing: {', '.join(missing)})"
        )
    cfg = {
        "spec": cell.spec.model_dump(mode="json"),
        "source": cell.source,
        "framework": cell.framework,
        "target": cell.info.target,
        "mode": cell.mode,
        "device": cell.device,
        "threads": cell.threads,
        "init": cell.init,
        "dtype": cell.dtype,
        "data_dir": cell.data_dir,
        "run_id": run_id,
        "extra_paths": list(cell.extra_paths),
    }
    result = run_worker(
        "harness.cell", cfg, thread_env(cell.threads), cell.timeout_s, log_path, on_event
    )
    if result.record is not None:
        return result.record
    status = "timeout" if result.status == "timeout" else "failed"
    return unavailable_record(cell, result.detail, status=status)


def run_matrix(
    cells: list[Cell], store: ResultStore, progress: bool = True
) -> list[dict[str, Any]]:
    """Run every cell in turn, saving each record as soon as it exists."""
    from tqdm.auto import tqdm

    records = []
    bar = tqdm(cells, disable=not progress, unit="cell", dynamic_ncols=True)
    for cell in bar:
        bar.set_description(cell.label)

        def show(event: dict, bar=bar) -> None:
            if event["event"] == "epoch":
                shown = {
                    "epoch": f"{event['epoch']}/{event['epochs']}",
                    "loss": f"{event['train_loss']:.4g}",
                }
                for key in [k for k in event if k.startswith("test_")][:2]:
                    shown[key[5:]] = f"{event[key]:.4g}"
                bar.set_postfix(shown, refresh=True)

        record = run_cell_process(cell, store.run_id, store.log_path(cell.label), show)
        record["run_id"] = store.run_id
        record["task_source"] = cell.source
        record["repeat"] = cell.repeat
        if cell.data_dir:
            record["data_dir"] = cell.data_dir
        store.add(record)
        records.append(record)
        if progress:
            bar.write(f"{cell.label}: {record['status']}" + _brief(record))
    return records


def _brief(record: dict[str, Any]) -> str:
    m = record.get("metrics") or {}
    parts = [f"{k} {v:.4g}" for k, v in m.items()]
    if record.get("error") and record["status"] != "ok":
        parts.append(record["error"].splitlines()[0][:200])
    return (" (" + ", ".join(parts) + ")") if parts else ""
