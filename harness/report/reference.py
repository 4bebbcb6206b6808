"""The reference run the lessons cite (``results/reference/``): what makes it, in order,
and what a fresh one replaces."""

from __future__ import annotations

import shutil
from pathlib import Path

# what the steps write; a fresh reference run starts without them
FILES = (
    "records.jsonl",
    "summary.csv",
    "run.json",
    "equivalence.jsonl",
    "lessons.jsonl",
    "report.html",
    "report.md",
    "report.csv",
)
FOLDERS = ("logs", "figures", "traces")


def clear(out: Path) -> None:
    """Remove an earlier reference run's output from ``out`` (nothing else in it)."""
    for name in FILES:
        (out / name).unlink(missing_ok=True)
    for folder in FOLDERS:
        shutil.rmtree(out / folder, ignore_errors=True)


def steps(out: Path, quiet: bool = False) -> list[list[str]]:
    """The rosetta commands that make the reference run in ``out``, in order."""
    q = ["--quiet"] if quiet else []
    return [
        ["run", "--tasks", "all", "--out", str(out), *q],
        ["check", "--tasks", "all", "--out", str(out), *q],
        ["lesson", "--all", "--out", str(out)],
        ["report", str(out)],
        ["docs", "--reference", str(out)],
    ]
