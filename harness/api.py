"""The Python API (for notebooks and scripts); the CLI is a thin layer over it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness import validate
from harness.backend import BACKENDS
from harness.executors import make_executor
from harness.results import ResultStore, load_run_info, summary
from harness.runner import DEFAULT_TIMEOUT_S, Cell, plan, run_matrix, still_to_run
from harness.spec import ALL_TASKS, DEFAULT_TASKS, TaskSpec, builtin_tasks, load_spec, resolve_task
from harness.validate import UsageError

DEFAULT_MODES = ("eager", "graph")


def select_specs(
    tasks: Sequence[str] | None = None,
    spec_files: Sequence[str | Path] = (),
    epochs: int | None = None,
) -> list[tuple[TaskSpec, str]]:
    """Task specs by built-in name or file: ``DEFAULT_TASKS`` when nothing is named,
    every built-in task for the name ``"all"``."""
    if epochs is not None:
        validate.at_least("--epochs", epochs)
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
    strict_data: bool = False,
    slot_threads: int = 0,
) -> list[Cell]:
    """The matrix's cells, validated (specs against their data) before anything runs.
    ``threads`` may list several counts (a sweep); ``repeats`` runs each cell in that
    many separate processes, to measure how much timings vary between processes;
    ``slot_threads`` is what a thread count of 0 becomes (a parallel slot's share)."""
    return plan(
        select_specs(tasks, spec_files, epochs),
        frameworks or list(BACKENDS),
        modes,
        devices,
        slot_threads=slot_threads,
        data_dir=data_dir,
        init=init,
        threads=threads,
        timeout_s=timeout_s,
        repeats=repeats,
        strict_data=strict_data,
    )


# the options that say which cells a run holds; a resume must not change them
MATRIX_OPTIONS = (
    "tasks",
    "spec_files",
    "frameworks",
    "modes",
    "devices",
    "data_dir",
    "init",
    "threads",
    "epochs",
    "repeats",
    "strict_data",
)


def resumed_options(run_dir: str | Path, given: dict) -> dict:
    """The matrix options of the run in ``run_dir`` with what ``given`` adds; raises
    UsageError naming every option ``given`` sets to another value than that run had."""
    info = load_run_info(run_dir)
    if info is None or "options" not in info:
        raise UsageError(
            f"--resume {str(run_dir)!r}: no run.json with the run's options there; give a "
            "folder written by `rosetta run` (results/<run-id>/)"
        )
    stored = info["options"]
    differ = [
        f"{name} {given[name]!r} (the run had {stored.get(name)!r})"
        for name in MATRIX_OPTIONS
        if name in given and _same(given[name]) != _same(stored.get(name))
    ]
    if differ:
        raise UsageError(
            f"--resume {str(run_dir)!r}: the run there used other options: {'; '.join(differ)}; "
            "resume with the run's own options (leave them out), or use another --out"
        )
    return {k: stored[k] for k in MATRIX_OPTIONS if k in stored}


def _same(value):
    return list(value) if isinstance(value, list | tuple) else value


def run(
    *,
    out: str | Path | None = None,
    progress: bool = True,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    resume: bool = False,
    rerun: str = "none",
    command: str | None = None,
    **selection,
) -> pd.DataFrame:
    """Run a matrix and return its summary table as a DataFrame.

    Takes the keyword arguments of :func:`cells` (tasks, frameworks, modes, devices,
    spec_files, data_dir, init, threads, timeout_s, epochs, repeats, strict_data), and
    where to run: ``jobs`` local slots, or ``executor="ray"`` at ``address``. Records
    are written to ``results/<run-id>/`` (or ``out``); ``df.attrs["run_dir"]`` says
    where. ``resume=True`` (with ``out``) runs only the cells of the folder's matrix that
    have no finished record, ``rerun="failed"`` also the failed ones.
    """
    campaign = start(out, jobs, executor, address, resume, command, **selection)
    try:
        records = campaign.run(progress, rerun)
    finally:
        campaign.close()
    df = summary(records)
    df.attrs["run_dir"] = str(campaign.store.dir)
    return df


class Campaign:
    """A matrix with its executor and its folder, validated and ready: nothing has run
    yet, and every bad option or data file has already been refused."""

    def __init__(self, matrix: list[Cell], store: ResultStore, runner) -> None:
        self.matrix, self.store, self.executor = matrix, store, runner

    def run(self, progress: bool = True, rerun: str = "none") -> list[dict]:
        todo = still_to_run(self.matrix, self.store.records, rerun)
        if len(todo) < len(self.matrix):
            print(
                f"rosetta: resuming: {len(self.matrix) - len(todo)} of {len(self.matrix)} "
                f"cells have records already; running {len(todo)}",
                flush=True,
            )
        return run_matrix(todo, self.store, progress=progress, executor=self.executor)

    def close(self) -> None:
        self.executor.close()
        self.store.close()


def start(
    out: str | Path | None = None,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    resume: bool = False,
    command: str | None = None,
    **selection,
) -> Campaign:
    """Validate a run's options, plan its cells, open its folder and its executor."""
    if resume and out is None:
        raise UsageError("resume needs the run folder (--resume RUN_DIR)")
    if resume:
        selection = {**selection, **resumed_options(out, selection)}
    devices = selection.get("devices", ("cpu",))
    runner = make_executor(executor, jobs, address, gpus="gpu" in devices)
    try:
        matrix = cells(slot_threads=runner.threads, **selection)
        if not matrix:
            raise UsageError(
                "nothing to run: none of the chosen frameworks offers the chosen modes"
            )
        options = {k: selection.get(k) for k in MATRIX_OPTIONS}
        options["threads"] = sorted({c.threads for c in matrix})
        if resume:
            had = (load_run_info(out) or {}).get("options", {}).get("threads")
            if had is not None and list(had) != options["threads"]:
                raise UsageError(
                    f"--resume {str(out)!r}: its cells ran with {had} threads, these would "
                    f"run with {options['threads']} (--jobs {jobs} gives each slot its share "
                    "of the cores): resume with the run's --jobs, or give --threads"
                )
            options["threads"] = had
        store = ResultStore(out, command=command, options=options, resume=resume)
    except BaseException:
        runner.close()
        raise
    return Campaign(matrix, store, runner)
