"""The worker protocol every Rosetta subprocess speaks (cell, check, bench, lessons,
explain): one typed config in as JSON on stdin, events out as JSON lines on stdout
starting with ``EVENT_PREFIX``, the last of them the ``record``. Anything else the
process prints is the framework's own logging, kept as the worker's log.

Both sides live here: the worker's (``read_config``, ``emit``) and the driver's
(``run_worker``), so the two cannot drift apart.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

EVENT_PREFIX = "@@rosetta "
LOG_LIMIT = 4 << 20  # characters of a worker's log kept in memory (the newest)


class WorkerConfig(BaseModel):
    """Base of every worker's config: frozen, and a field nobody declared is an error
    (a driver and a worker of different versions fail loudly, not with a default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    extra_paths: tuple[str, ...] = ()  # put first on sys.path (tests' fake backends)


C = TypeVar("C", bound=WorkerConfig)


def emit(kind: str, **payload: Any) -> None:
    print(EVENT_PREFIX + json.dumps({"event": kind, **payload}, default=str), flush=True)


def read_config(model: type[C]) -> C:
    """The worker's first step: read and validate its config, and put the config's extra
    paths on ``sys.path``."""
    cfg = model.model_validate_json(sys.stdin.read())
    sys.path[:0] = list(cfg.extra_paths)
    return cfg


# --------------------------------------------------------------------------- driver side


@dataclass
class ProcessResult:
    record: dict[str, Any] | None  # the worker's last "record" event
    status: str  # "done", "timeout" or "crashed"
    detail: str  # why, when there is no record
    log: str = ""  # what the worker printed besides its events
    seconds: float = 0.0  # wall time of the process
    extra: dict[str, Any] = field(default_factory=dict)  # the executor's: slot, cores, node


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


# Run first in the worker's process, before it execs ``python -m module`` (same pid).
# On Linux the kernel kills the worker when the thread that started it dies (kill -9 of
# rosetta included, even inside a long compile that never returns to Python), and the
# pinning holds from the interpreter's first import on (numpy's and the frameworks'
# thread pools size themselves from it). A forked watchdog blocks on a pipe whose other
# end only the driver holds: when the driver closes it or dies, the watchdog kills the
# worker's whole process group, so what the worker started (torch's compile workers
# look for their parent once a minute) goes too.
TRAMPOLINE = """
import os, sys
module, parent, cpus, fd = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    if os.getppid() != parent:  # the driver died before the prctl
        os._exit(1)
    if cpus:
        os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])
if os.fork() == 0:
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):  # the driver reads the worker's output until every holder is gone
        os.dup2(null, std)
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os.killpg(0, 9)
    os._exit(0)
os.close(fd)
os.execv(sys.executable, [sys.executable, "-m", module])
"""


def child_env(env: dict[str, str | None]) -> dict[str, str]:
    """This process's environment with ``env`` applied (None unsets a variable)."""
    out = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in env.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def run_worker(
    module: str,
    cfg: WorkerConfig | dict[str, Any] | str,
    env: dict[str, str | None],
    timeout_s: float,
    log_path: Path | None = None,
    on_event: Callable[[dict], None] = lambda e: None,
    cpus: tuple[int, ...] | None = None,
    running: set | None = None,
) -> ProcessResult:
    """Run ``python -m module`` with ``cfg`` as JSON on stdin, in its own process group
    (pinned to ``cpus`` when given, before it imports anything); pass its events on, keep
    its other output (returned, and written to ``log_path`` when given), kill it at the
    deadline. While it runs, its Popen is in ``running``, so that a driver told to stop
    can kill it. Never raises for what the worker does."""
    if isinstance(cfg, BaseModel):
        text = cfg.model_dump_json()
    else:
        text = cfg if isinstance(cfg, str) else json.dumps(cfg)
    started = time.monotonic()
    pinned = ",".join(str(c) for c in cpus or ())
    watch, hold = os.pipe()  # the watchdog reads `watch`; only this process holds `hold`
    try:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-c", TRAMPOLINE, module, str(os.getpid()), pinned, str(watch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env(env),
            text=True,
            start_new_session=True,
            pass_fds=(watch,),
        )
    finally:
        os.close(watch)
    if running is not None:
        running.add(proc)
    try:
        return _follow(proc, text, started + timeout_s, timeout_s, log_path, on_event, started)
    finally:
        os.close(hold)  # the watchdog ends the worker's leftovers, then itself
        if running is not None:
            running.discard(proc)


def kill(proc: subprocess.Popen) -> None:
    """Kill a worker and every process it started (its process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _follow(proc, text, deadline, timeout_s, log_path, on_event, started) -> ProcessResult:
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        proc.stdin.write(text)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # it died at once; its exit code and output say why
    record, kept, size = None, collections.deque(), 0
    status, detail = "done", ""
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            kill(proc)
            proc.wait()
            status = "timeout"
            detail = f"no result within {timeout_s:.0f} s (raise it with --timeout)"
            break
        if line is None:
            break
        if line.startswith(EVENT_PREFIX):
            try:
                event = json.loads(line[len(EVENT_PREFIX) :])
            except json.JSONDecodeError:
                kept.append(line)  # a line cut short by a crash: keep it as output
                continue
            if event.get("event") == "record":
                record = event["record"]
            else:
                on_event(event)
        else:
            kept.append(line)
            size += len(line)
            while size > LOG_LIMIT and len(kept) > 1:
                size -= len(kept.popleft())
    log = "".join(kept)
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(log)
    seconds = time.monotonic() - started
    if status == "timeout":
        return ProcessResult(None, status, detail, log, seconds)
    code = proc.wait()
    if record is not None:
        return ProcessResult(record, "done", "", log, seconds)
    why = f"the process exited with code {code} before writing a record"
    if code < 0:
        why += f" (killed by signal {-code})"
    tail = [line.rstrip() for line in log.splitlines()[-10:]]
    return ProcessResult(None, "crashed", why + ":\n" + "\n".join(tail), log, seconds)
