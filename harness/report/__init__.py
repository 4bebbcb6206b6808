"""Reports of a run folder: ``report.html`` (self-contained), ``report.md`` with its
figures in ``figures/``, and ``report.csv`` (the summary table, raw numbers).

Framework-free: numpy, pandas and matplotlib's Agg canvas only.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from harness.report import plots, tables
from harness.report.environment import environment, reproduce, tasks_table
from harness.report.render import Content, Image, to_html, to_markdown
from harness.results import load_records, load_run_info, write_atomic

__all__ = ["build", "write_report"]

Record = dict[str, Any]


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write a run folder's reports next to its records.

    Args:
        run_dir: a folder with ``records.jsonl``; its ``equivalence.jsonl`` (from
            ``rosetta check --out RUN_DIR``) and ``run.json`` are used when present.

    Returns:
        The paths written: ``html``, ``md``, ``csv`` and ``figures`` (the folder).

    Raises:
        FileNotFoundError: the folder has no ``records.jsonl``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "records.jsonl").is_file():
        raise FileNotFoundError(f"{run_dir} has no records.jsonl")
    content, df = build(run_dir)
    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    for image in [*content.curves, content.step_time, content.first_step]:
        if image.png is not None:
            write_atomic(figures / image.name, image.png)
    paths = {
        "html": run_dir / "report.html",
        "md": run_dir / "report.md",
        "csv": run_dir / "report.csv",
        "figures": figures,
    }
    write_atomic(paths["html"], to_html(content))
    write_atomic(paths["md"], to_markdown(content))
    write_atomic(paths["csv"], df.to_csv(index=False))
    return paths


def load_equivalence(run_dir: Path) -> list[Record] | None:
    """``equivalence.jsonl``'s records, or None where ``rosetta check`` wrote none here."""
    path = run_dir / "equivalence.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def build(run_dir: Path) -> tuple[Content, Any]:
    """The report's content and its summary DataFrame, from a run folder's files."""
    records, superseded = tables.latest_per_cell(load_records(run_dir))
    equivalence = load_equivalence(run_dir)
    run_info = load_run_info(run_dir)
    df = tables.summary_table(records, equivalence)
    command, command_note = reproduce(run_info, records)
    counts = Counter(r.get("status", "?") for r in records)
    run_id = (run_info or {}).get("run_id") or next(
        (r["run_id"] for r in records if r.get("run_id")), ""
    )
    notes = []
    if superseded:
        notes.append(
            f"{superseded} earlier records of re-run cells are superseded by their latest."
        )
    agreement = tables.final_agreement(df, final_tolerances(records))
    content = Content(
        title=f"Rosetta run {run_id}".strip(),
        intro=f"{len(records)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()),
        table=tables.display_table(df),
        table_notes=_table_notes(
            equivalence,
            repeated=bool((df["repeats"] > 1).any()),
            shared=any(tables.shared_slots(df)),
        ),
        not_finished=tables.not_finished(records),
        agreement=tables.display_agreement(agreement),
        agreement_note=AGREEMENT_NOTE,
        curves=_curve_images(records),
        step_time=_bar_image(df, "step_time.png", "step_median_ms", "ms per step", True),
        first_step=_bar_image(df, "first_step.png", "first_step_s", "seconds", False),
        environment=environment(records, run_info),
        tasks=tasks_table(records),
        command=command,
        command_note=command_note,
        notes=notes,
        samples=[
            {
                "task": r["task"],
                "cell": f"{r['framework']}/{r['mode']}",
                "prompt": r["sample"]["prompt"],
                "text": r["sample"]["text"],
            }
            for r in records
            if r.get("sample")
        ],
    )
    return content, df


AGREEMENT_NOTE = (
    "From the same weights and the same batches, the frameworks' headline test metrics "
    "after training, per task and mode: spread is the highest minus the lowest, tolerance "
    "the task's stated tolerance.final (its why beside it). float32 rounding differs "
    "between frameworks and grows over training, so the frameworks end near, not on, "
    "each other."
)


def final_tolerances(records: list[Record]) -> dict[str, tuple[float | None, str]]:
    """Task -> (``tolerance.final``, why) from the task files: a built-in task by
    name, else the file the record names, where it can still be read."""
    from harness.spec import SpecError, builtin_tasks, load_spec

    builtin = builtin_tasks()
    out: dict[str, tuple[float | None, str]] = {}
    for r in records:
        task = r["task"]
        if task in out:
            continue
        path = builtin.get(task) or (r.get("task_source") and Path(r["task_source"]))
        try:
            tol = load_spec(path).tolerance if path and Path(path).is_file() else None
        except SpecError:
            tol = None
        out[task] = (tol.final, tol.final_why) if tol is not None else (None, "")
    return out


def _table_notes(
    equivalence: list[Record] | None, repeated: bool = False, shared: bool = False
) -> list[str]:
    notes = [
        "test metric: the headline metric on the test split after the last epoch.",
        "to target: training seconds (evaluation excluded) and epochs until the test metric "
        "first met the task's target.",
        "first step: the first train step's seconds, which include tracing and compiling.",
        "step ms: the median of the steady-state steps (after the first and the warm-up), "
        "with their interquartile range.",
        "graph speed-up: the eager mode's median step over this mode's, same task, framework "
        "and device; above 1 means faster than eager.",
        "break-even steps: how many steps a graph mode needs before its faster steps have "
        "paid for its costlier first (compiling) step, compared with eager; never: its steps "
        "are not faster.",
    ]
    if shared:
        notes.append(
            "†: timed while other cells ran beside it on the same machine (--jobs above 1, "
            "or several slots of a Ray node): they shared its memory bandwidth and caches, "
            "so its step time is not the machine's alone."
        )
    if repeated:
        notes.append(
            "repeat spread: the range (slowest - fastest) of the median step times of a "
            "cell's repeats, each in its own process, over their median; the row's timings "
            "are the medians over the repeats."
        )
    if equivalence is None:
        notes.append(
            "equivalence: not shown, this folder has no equivalence.jsonl "
            "(rosetta check --out RUN_DIR writes one)."
        )
    else:
        notes.append(
            "equivalence: pass when every rosetta check comparison involving the framework "
            "(either side, any mode and precision) passed for the task."
        )
    return notes


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _curve_images(records: list[Record]) -> list[Image]:
    images = []
    for task in dict.fromkeys(r["task"] for r in records):
        task_records = [r for r in records if r["task"] == task]
        fig = plots.learning_curves(task_records)
        png = None if fig is None else plots.png(fig)
        caption = _curve_caption(task_records, drawn=fig is not None)
        images.append(Image(f"curves_{_slug(task)}.png", task, caption, png))
        scatter = plots.layer_scatter(task_records)
        if scatter is not None:
            images.append(
                Image(
                    f"layer_{_slug(task)}.png",
                    f"{task}: recorded layer",
                    "Each test sample's output of the layer the recipe records (an "
                    "autoencoder's 2-d code), coloured by the sample's class: classes that "
                    "form clusters were told apart without their labels.",
                    plots.png(scatter),
                )
            )
    return images


def _curve_caption(task_records: list[Record], drawn: bool) -> str:
    missing = ", ".join(
        f"{r['framework']}/{r['mode']} ({r['status']})" for r in task_records if not r.get("curve")
    )
    if not drawn:
        return f"No cell of this task trained an epoch: {missing}."
    caption = (
        "Thin faint lines: the value at each epoch; thick lines: their exponentially "
        f"weighted mean (pandas ewm, alpha={plots.EWM_ALPHA:g}). Colour: framework; "
        "line style: mode."
    )
    baselines = next((r["baselines"] for r in task_records if r.get("baselines")), {})
    for name, value in baselines.items():
        caption += f" Dashed red line: {name.replace('_', ' ')} = {value:.4g}, the bar to clear."
    if all(r.get("init") == "shared" for r in task_records):
        caption += (
            " Every cell starts from the same weights and sees the same batches, so "
            "frameworks that compute the same function draw coinciding lines (the last "
            "drawn lies on top)."
        )
    return caption + (f" No curve for: {missing}." if missing else "")


def _bar_image(df, name: str, value: str, ylabel: str, steps: bool) -> Image:
    if steps:
        title = "Steady-state step time (median)"
        caption = (
            "Median milliseconds per training step after the first step and the warm-up, "
            "per framework and mode; whiskers span the interquartile range, centred on the "
            "median (the records keep the IQR, not its quartiles). Each panel has its own scale."
        )
    else:
        title = "First step (trace + compile)"
        caption = (
            "Seconds of the first training step, which includes tracing and compiling in "
            "graph modes. Each panel has its own scale."
        )
    fig = plots.bar_facets(df, value, ylabel, title, iqr="step_iqr_ms" if steps else None)
    if fig is None:
        return Image(name, "", "No cells.", None)
    return Image(name, "", caption + " Cells that did not finish are named in red.", plots.png(fig))
