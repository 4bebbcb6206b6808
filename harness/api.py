"""The Python API (for notebooks and scripts); the CLI is a thin layer over it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.backend import BACKENDS
from harness.results import ResultStore, summary
from harness.runner import DEFAULT_TIMEOUT_S, Cell, plan, run_matrix
from harness.spec import ALL_TASKS, DEFAULT_TASKS, TaskSpec, builtin_tasks, load_spec, resolve_task

DEFAULT_MODES = ("eager", "graph")


def select_specs(
    tasks: Sequence[str] | None = None,
    spec_files: Sequence[str | Path] = (),
    epochs: int | None = None,
) -> list[tuple[TaskSpec, str]]:
    """Task specs by built-in name or file: ``DEFAULT_TASKS`` when nothing is named,
    every built-in task for the name ``"all"``."""
    builtin = builtin_tasks()
    names = list(tasks or [])
    if not names and not spec_files:
        names = list(DEFAULT_TASKS)
    if ALL_TASKS in names:
        names = [*builtin, *(n for n in names if n != ALL_TASKS and n not in builtin)]
    chosen = []
    for name in names:
        source = str(builtin.get(name, name))
        chosen.append((resolve_task(name), source))
    chosen += [(load_spec(p), str(p)) for p in spec_files]
    if epochs is not None:
        chosen = [
            (s.model_copy(update={"recipe": s.recipe.model_copy(update={"epochs": epochs})}), src)
            for s, src in chosen
        ]
    return chosen


def cells(
    tasks: Sequence[str] | None = None,
    frameworks: Sequence[str] | None = None,
    modes: Sequence[str] = DEFAULT_MODES,
    devices: Sequence[str] = ("cpu",),
    spec_files: Sequence[str | Path] = (),
    data_dir: str | None = None,
    init: str = "shared",
    threads: int | Sequence[int] = 0,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    epochs: int | None = None,
    repeats: int = 1,
) -> list[Cell]:
    """The matrix's cells, validated (specs against their data) before anything runs.
    ``threads`` may list several counts (a sweep); ``repeats`` runs each cell in that
    many separate processes, to measure how much timings vary between processes."""
    return plan(
        select_specs(tasks, spec_files, epochs),
        frameworks or list(BACKENDS),
        modes,
        devices,
        data_dir=data_dir,
        init=init,
        threads=threads,
        timeout_s=timeout_s,
        repeats=repeats,
    )


def run(*, out: str | Path | None = None, progress: bool = True, **selection) -> pd.DataFrame:
    """Run a matrix and return its summary table as a DataFrame.

    Takes the keyword arguments of :func:`cells` (tasks, frameworks, modes, devices,
    spec_files, data_dir, init, threads, timeout_s, epochs, repeats). Records are written to
    ``results/<run-id>/`` (or ``out``); ``df.attrs["run_dir"]`` says where.
    """
    store = ResultStore(out)
    records = run_matrix(cells(**selection), store, progress=progress)
    df = summary(records)
    df.attrs["run_dir"] = str(store.dir)
    return df
