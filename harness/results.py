"""The result record store: ``records.jsonl`` (one JSON record per cell, appended in
one write and flushed to disk as each cell ends, so a crash keeps what ran),
``summary.csv`` and ``run.json`` (the command and options that started the run),
plus the pandas view and the terminal table. The HTML and Markdown reports live in
:mod:`harness.report`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_DIR = Path("results")
RUN_INFO = "run.json"
LOCK = ".rosetta.lock"
SUMMARY_COLUMNS = [
    "task",
    "framework",
    "mode",
    "device",
    "threads",
    "repeat",
    "status",
    "test_metric",
    "test_value",
    "final_train_loss",
    "first_step_s",
    "step_median_ms",
    "step_iqr_ms",
    "total_s",
    "time_to_target_s",
    "epochs_to_target",
    "param_count",
    "peak_rss_mb",
    "beside",
    "init",
    "seed",
    "spec_hash",
    "error",
]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class RunDirError(ValueError):
    """A run folder that cannot be written or read; the message says which and why."""


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` through a temporary file and a rename: a reader (or a
    kill in the middle) sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class ResultStore:
    """Where one run's files go: ``<out>/records.jsonl``, ``summary.csv``, ``logs/``,
    and ``run.json`` when the run's command is given. While it is open the folder is
    locked: a second run into it is refused, naming the process that holds it.
    ``resume=True`` opens a folder that holds records already and keeps them."""

    def __init__(
        self,
        out_dir: str | Path | None = None,
        run_id: str | None = None,
        command: str | None = None,
        options: dict[str, Any] | None = None,
        resume: bool = False,
    ):
        self.run_id = run_id or new_run_id()
        self.dir = Path(out_dir) if out_dir else RESULTS_DIR / self.run_id
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise RunDirError(
                f"--out {str(self.dir)!r}: cannot create the folder ({err.strerror}); "
                "give a folder you can write to"
            ) from None
        self.records_path = self.dir / "records.jsonl"
        self.summary_path = self.dir / "summary.csv"
        self._lock = self._take_lock(command)
        self.records: list[dict[str, Any]] = []
        if resume and self.records_path.is_file():
            self.records = load_records(self.records_path, repair=True)
        if command is not None:
            self.write_run_info(command, options)

    def _take_lock(self, command: str | None):
        """An exclusive lock on the folder for this process's life (the kernel drops it
        when the process dies, ``kill -9`` included)."""
        path = self.dir / LOCK
        try:
            f = path.open("a+")
        except OSError as err:
            raise RunDirError(f"{self.dir}: cannot write in it ({err.strerror})") from None
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                holder = json.loads(f.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            f.close()
            who = ", ".join(f"{k} {holder[k]}" for k in ("pid", "host", "command") if k in holder)
            raise RunDirError(
                f"{self.dir} is in use by another rosetta process ({who or 'unknown'}): wait "
                "for it to finish, or choose another --out"
            ) from None
        f.seek(0)
        f.truncate()
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
        f.write(json.dumps(holder))
        f.flush()
        return f

    def close(self) -> None:
        """Let the folder go (the lock also goes with the process)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def write_run_info(self, command: str, options: dict[str, Any] | None = None) -> Path:
        """Save the command that starts this run, so the report can say how to repeat it,
        and the options that define its matrix, so that a resume can check them.

        Args:
            command: the full command line, as a shell would take it.
            options: the matrix's options as the command resolved them (JSON values).

        Returns:
            The path of ``run.json``.
        """
        earlier = load_run_info(self.dir) or {}
        info = {
            "run_id": earlier.get("run_id", self.run_id),
            "command": command,
            # relative --spec and --data-dir paths only mean something from here
            "cwd": os.getcwd(),
            "started_at": earlier.get("started_at", time.strftime("%Y-%m-%dT%H:%M:%S")),
        }
        if options is not None:
            info["options"] = options
        if earlier.get("command") and earlier["command"] != command:
            info["resumed"] = [*earlier.get("resumed", []), command]
            info["command"] = earlier["command"]
        path = self.dir / RUN_INFO
        write_atomic(path, json.dumps(info, indent=2) + "\n")
        return path

    def log_path(self, label: str) -> Path:
        return self.dir / "logs" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + ".log")

    def write_log(self, label: str, text: str) -> Path:
        path = self.log_path(label)
        write_atomic(path, text)
        return path

    def add(self, record: dict[str, Any]) -> None:
        """Append one record in one write, on disk before this returns."""
        self.records.append(record)
        line = (json.dumps(record, default=str) + "\n").encode()
        fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        write_atomic(self.summary_path, summary(self.records).to_csv(index=False))


def load_records(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """Records from a run folder or a records.jsonl file. A last line cut off (a kill
    or a full disk during its write) is skipped, with a warning on stderr; ``repair``
    also removes it from the file, so that the next record starts on a line of its own.

    Raises:
        RunDirError: a line before the last is not a record.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "records.jsonl"
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number < len(lines) - 1 or raw.endswith(b"\n"):
                raise RunDirError(
                    f"{path}: line {number} is not a JSON record; remove it (or the file) "
                    "to use the folder"
                ) from None
            print(
                f"rosetta: warning: {path}: the last line ({len(line)} bytes) was cut off "
                "before its end (an interrupted write) and is skipped",
                file=sys.stderr,
            )
            if repair:
                with path.open("r+b") as f:
                    f.truncate(len(raw) - len(line))
    return records


def load_json(path: Path) -> Any:
    """A JSON file's content, or None where there is no such file.

    Raises:
        RunDirError: the file is not JSON.
    """
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunDirError(f"{path}: not a JSON file ({err}); remove it to go on") from None


def load_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``run.json`` (command, run id, cwd), or None where it was not written."""
    return load_json(Path(run_dir) / RUN_INFO)


def _headline(record: dict[str, Any]) -> tuple[str | None, float | None]:
    metrics = record.get("metrics") or {}
    target = (record.get("target") or {}).get("metric")
    for name in (target, "accuracy", "mse", "loss"):
        if name in metrics:
            return name, metrics[name]
    return None, None


def summary(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per cell with the headline numbers (times in seconds, steps in ms)."""
    rows = []
    for r in records:
        metric, value = _headline(r)
        median, iqr = r.get("step_median_s"), r.get("step_iqr_s")
        error = r.get("error")
        rows.append(
            {
                **{k: r.get(k) for k in SUMMARY_COLUMNS},
                "threads": r.get("threads", 0),
                "repeat": r.get("repeat", 0),
                "beside": r.get("beside", 0),
                "test_metric": metric,
                "test_value": value,
                "step_median_ms": None if median is None else 1000 * median,
                "step_iqr_ms": None if iqr is None else 1000 * iqr,
                "error": error.splitlines()[0] if error else None,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """All scalar fields of every record, nested ones flattened (``metrics.accuracy``)."""
    flat = [{k: v for k, v in r.items() if k not in ("curve", "weights")} for r in records]
    return pd.json_normalize(flat)


def curves(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Per-epoch learning curves of every cell, long format."""
    rows = [
        {"task": r["task"], "framework": r["framework"], "mode": r["mode"], **p}
        for r in records
        for p in r.get("curve", [])
    ]
    return pd.DataFrame(rows)


def table(records: list[dict[str, Any]]) -> str:
    """The terminal table: task x framework x mode -> status and the headline numbers."""
    df = summary(records)
    if df.empty:
        return "(no cells)"
    show = pd.DataFrame(
        {
            "task": df["task"],
            "framework": df["framework"],
            "mode": df["mode"],
            "status": df["status"],
            "test metric": [
                f"{m} {v:.4f}" if m else "-"
                for m, v in zip(df["test_metric"], df["test_value"], strict=True)
            ],
            "first step s": df["first_step_s"].map(_fmt(3)),
            "step ms (median)": df["step_median_ms"].map(_fmt(3)),
            "total s": df["total_s"].map(_fmt(1)),
        }
    )
    return show.to_string(index=False)


def _fmt(digits: int):
    return lambda v: "-" if v is None or pd.isna(v) else f"{v:.{digits}f}"
