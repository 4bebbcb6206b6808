"""The result record store: ``records.jsonl`` (one JSON record per cell, appended
as each cell ends, so a crash keeps what ran), ``summary.csv`` and ``run.json``
(the command that started the run), plus the pandas view and the terminal table.
The HTML and Markdown reports live in :mod:`harness.report`."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import pandas as pd

RESULTS_DIR = Path("results")
RUN_INFO = "run.json"
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
    "init",
    "seed",
    "spec_hash",
    "error",
]


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class ResultStore:
    """Where one run's files go: ``<out>/records.jsonl``, ``summary.csv``, ``logs/``,
    and ``run.json`` when the run's command is given."""

    def __init__(
        self,
        out_dir: str | Path | None = None,
        run_id: str | None = None,
        command: str | None = None,
    ):
        self.run_id = run_id or new_run_id()
        self.dir = Path(out_dir) if out_dir else RESULTS_DIR / self.run_id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.records_path = self.dir / "records.jsonl"
        self.summary_path = self.dir / "summary.csv"
        self.records: list[dict[str, Any]] = []
        if command is not None:
            self.write_run_info(command)

    def write_run_info(self, command: str) -> Path:
        """Save the command that starts this run, so the report can say how to repeat it.

        Args:
            command: the full command line, as a shell would take it.

        Returns:
            The path of ``run.json``.
        """
        info = {
            "run_id": self.run_id,
            "command": command,
            # relative --spec and --data-dir paths only mean something from here
            "cwd": os.getcwd(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        path = self.dir / RUN_INFO
        path.write_text(json.dumps(info, indent=2) + "\n")
        return path

    def log_path(self, label: str) -> Path:
        return self.dir / "logs" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + ".log")

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with self.records_path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
        summary(self.records).to_csv(self.summary_path, index=False)


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a run folder or a records.jsonl file."""
    path = Path(path)
    if path.is_dir():
        path = path / "records.jsonl"
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def load_run_info(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's ``run.json`` (command, run id, cwd), or None where it was not written."""
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        return None
    return json.loads(path.read_text())


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
