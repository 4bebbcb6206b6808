"""What the run ran on, what it ran, and the command that runs it again."""

from __future__ import annotations

import shlex
from typing import Any

import pandas as pd

from harness.report.tables import target_text
from harness.spec import builtin_tasks

Record = dict[str, Any]


def _values(records: list[Record], key: str) -> str:
    seen = [r[key] for r in records if r.get(key) not in (None, "")]
    unique = list(dict.fromkeys(str(v) for v in seen))
    return ", ".join(unique) if unique else "?"


def _first(records: list[Record], key: str) -> str:
    seen = sorted(str(r[key]) for r in records if r.get(key))
    return seen[0] if seen else "?"


def environment(records: list[Record], run_info: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Name-value pairs: python, platform, framework versions, threads, precision, init.

    Args:
        records: the run's cell records (cells that never started carry few fields).
        run_info: ``run.json``'s content, or None.

    Returns:
        Pairs in display order; a field that differs between cells lists every value.
    """
    versions: dict[str, str] = {}
    for r in records:
        versions.update(r.get("versions") or {})
    threads = _values(records, "threads")
    pairs = [
        ("run id", _values(records, "run_id")),
        ("started", (run_info or {}).get("started_at") or _first(records, "started_at")),
        ("python", _values(records, "python")),
        ("platform", _values(records, "platform")),
        ("frameworks", ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "?"),
        ("devices", _values(records, "device_name")),
        ("threads per cell", "framework default" if threads == "0" else threads),
        ("precision", _values(records, "dtype")),
        ("initial weights", _values(records, "init")),
    ]
    if run_info and run_info.get("cwd"):
        pairs.append(("run from", run_info["cwd"]))
    return pairs


def tasks_table(records: list[Record]) -> pd.DataFrame:
    """One row per task: what it trains on, for how long, and its target."""
    rows: dict[str, dict[str, Any]] = {}
    for r in records:
        # a cell that never loaded its data knows less about the task: keep the fullest
        if r["task"] in rows and not r.get("data"):
            continue
        data = r.get("data") or {}
        target = r.get("target")
        rows[r["task"]] = {
            "task": r["task"],
            "title": r.get("title") or "",
            "data": data.get("source", data.get("dataset", "-")),
            "split": data.get("split", "-"),
            "epochs": r.get("epochs", "-"),
            "batch size": r.get("batch_size", "-"),
            "target": target_text(target) or "-",
        }
    return pd.DataFrame(list(rows.values()))


def reproduce(run_info: dict[str, Any] | None, records: list[Record]) -> tuple[str, str]:
    """The command that repeats the run, and a note on where it came from."""
    if run_info and run_info.get("command"):
        where = run_info.get("cwd")
        return run_info[
            "command"
        ], f"as recorded in run.json{f', run from {where}' if where else ''}"
    return reconstructed_command(records), (
        "reconstructed from the records (this run has no run.json): "
        "--epochs and --timeout overrides, if any were given, are not known"
    )


def reconstructed_command(records: list[Record]) -> str:
    """A ``rosetta run`` command for the records' tasks, frameworks, modes and settings."""
    builtin = builtin_tasks()

    def unique(key: str) -> list[str]:
        return list(dict.fromkeys(str(r[key]) for r in records if r.get(key) is not None))

    tasks, specs = [], []
    for r in records:
        source = r.get("task_source")
        # a built-in task's source is its name or its file, a user's task file any other path
        if r["task"] in builtin and source in (None, r["task"], str(builtin[r["task"]])):
            tasks.append(r["task"])
        elif source:
            specs.append(source)
    argv = ["rosetta", "run"]
    if tasks:
        argv += ["--tasks", ",".join(dict.fromkeys(tasks))]
    for spec in dict.fromkeys(specs):
        argv += ["--spec", spec]
    for flag, key in (("--frameworks", "framework"), ("--modes", "mode"), ("--devices", "device")):
        argv += [flag, ",".join(unique(key))]
    for flag, key in (("--init", "init"), ("--threads", "threads"), ("--data-dir", "data_dir")):
        if len(unique(key)) == 1:
            argv += [flag, unique(key)[0]]
    return shlex.join(argv)
