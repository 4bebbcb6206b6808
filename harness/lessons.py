"""Lessons: the course's small examples, run in every framework and shown side by side.

A lesson is one function of the same name in each ``impls/<fw>/lessons.py``
that returns plain JSON values. ``run_lesson`` runs it in each framework in
its own process (``python -m harness.lessons``, the worker below), because two
frameworks in one process fight over threads and one's crash would take the
other down; ``format_lesson`` lays the results out column by column.
"""

from __future__ import annotations

import importlib
import json
import textwrap
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.backend import BACKENDS
from harness.worker import WorkerConfig, emit, read_config

Result = dict[str, Any]  # {"status": "ok" | "failed" | "unavailable", "error", "version", "values"}

DEFAULT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Lesson:
    """One course example; ``function`` is its name in every ``impls/<fw>/lessons.py``."""

    name: str
    title: str
    source: str  # where the notes make the point
    computation: str  # what every framework computes, in one line
    function: str
    rows: tuple[tuple[str, str], ...]  # (label, key of the function's result) per table row
    explanation: str  # the framework-free part; each backend declares its own (declare.py)


LESSONS: dict[str, Lesson] = {
    "autograd": Lesson(
        name="autograd",
        title="Autograd: one gradient call, and two",
        source="notes 000 §2.4",
        computation="x = ones(2, 2); y = x + 2; z = y * y; t = mean(z); dt/dx, asked once and twice",
        function="autograd",
        rows=(
            ("y = x + 2", "y"),
            ("z = y * y", "z"),
            ("t = mean(z)", "t"),
            ("dt/dx, 1 call", "grad_once"),
            ("dt/dx, 2 calls", "grad_twice"),
            ("2 calls give", "twice_means"),
        ),
        explanation=(
            "One call gives the derivative: dt/dx = 2 (x + 2) / 4 = 1.5 at x = 1. The notes "
            "print 3, which is what two backward calls give in PyTorch (a notebook cell run "
            "twice, say)."
        ),
    ),
    "shapes": Lesson(
        name="shapes",
        title="Static graphs and changing shapes: what retraces, what it costs, the remedy",
        source="notes 000 ch. 4 (static vs dynamic graphs)",
        computation=(
            "a 64-128-10 MLP's training step in graph mode: 10 batches of 32, then batches of "
            "32, 17, 32, 24, 40, 17 (a last partial batch, odd sizes), then the same with the "
            "framework's remedy"
        ),
        function="shapes",
        rows=(
            ("traces, fixed batch", "traces_fixed"),
            ("traces, varying batches", "traces_varying"),
            ("seconds, varying batches", "seconds_varying"),
            ("remedy", "remedy"),
            ("traces with the remedy", "traces_remedy"),
            ("seconds with the remedy", "seconds_remedy"),
        ),
        explanation=(
            "A graph is traced for the shapes it first sees. The harness itself drops the "
            "last partial batch (recipe.drop_last) and pads sequences to one length, so a "
            "run never retraces."
        ),
    ),
    "control_flow": Lesson(
        name="control_flow",
        title="Python control flow on data inside a compiled step",
        source="notes 000 ch. 4 (static vs dynamic graphs)",
        computation=(
            "f(x) = x * 2 if sum(x) > 0 else x - 1, written with a Python if on the data, "
            "compiled by each framework's graph mode, called on a positive and a negative x"
        ),
        function="control_flow",
        rows=(
            ("what the graph mode does", "outcome"),
            ("f(positive x)", "positive"),
            ("f(negative x)", "negative"),
            ("graph breaks / retraces", "breaks"),
            ("the error, if refused", "error"),
            ("the framework's own way", "remedy"),
            ("its result, f(negative x)", "remedy_negative"),
        ),
        explanation=(
            "Eager code may branch on any value. A compiled graph cannot branch on a value it "
            "does not know when it is built."
        ),
    ),
}


def get_lesson(name: str) -> Lesson:
    """The registry's lesson ``name``.

    Raises:
        UsageError: there is no such lesson; the message names the known ones.
    """
    from harness.validate import UsageError

    if name not in LESSONS:
        raise UsageError(f"unknown lesson {name!r}; known lessons: {', '.join(LESSONS)}")
    return LESSONS[name]


# --------------------------------------------------------------------------- worker


class LessonConfig(WorkerConfig):
    module: str  # impls.<fw>.lessons
    function: str


def main() -> None:
    """Worker: import one framework's lessons module, call one function, emit its result."""
    cfg = read_config(LessonConfig)
    try:
        module = importlib.import_module(cfg.module)
        record = {"status": "ok", "values": getattr(module, cfg.function)()}
    except Exception as err:  # the lesson's failure is its result, shown beside the others
        tail = "".join(traceback.format_exception(err)[-4:])
        record = {"status": "failed", "error": f"{type(err).__name__}: {err}\n{tail}".strip()}
    emit("record", record=record)


# --------------------------------------------------------------------------- running


def run_lesson(
    name: str,
    frameworks: Iterable[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    jobs: int | None = None,
) -> dict[str, Result]:
    """Run lesson ``name`` in each framework, each in a fresh interpreter.

    Args:
        name: a key of ``LESSONS``.
        frameworks: names from ``BACKENDS``; None: all of them, installed or not.
        timeout_s: seconds each framework's process may take.
        jobs: how many frameworks' processes run at once (None: one per core).

    Returns:
        Framework name -> result: ``status`` ("ok", "failed" or "unavailable"),
        ``version`` of the framework, ``values`` (the lesson function's dict) when
        ok, ``error`` (the install hint, or what went wrong) otherwise.

    Raises:
        UsageError: an unknown lesson or framework.
    """
    from harness.executors.local import usable_cores
    from harness.runner import run_in_each_framework, sibling_module

    lesson = get_lesson(name)
    return run_in_each_framework(
        "harness.lessons",
        frameworks,
        lambda info: LessonConfig(module=sibling_module(info, "lessons"), function=lesson.function),
        timeout_s,
        jobs=len(usable_cores()) if jobs is None else jobs,
    )


def save_results(name: str, results: dict[str, Result], out_dir: str | Path) -> Path:
    """Record a lesson's results in ``OUT_DIR/lessons.jsonl``, one line per framework,
    replacing what an earlier run of the same lesson wrote there (the lesson pages in
    ``docs/`` cite the reference run's)."""
    path = Path(out_dir) / "lessons.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    kept = []
    if path.is_file():
        kept = [
            line
            for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("lesson") != name
        ]
    new = [json.dumps({"lesson": name, "framework": fw, **r}) for fw, r in results.items()]
    path.write_text("".join(line + "\n" for line in [*kept, *new]))
    return path


# --------------------------------------------------------------------------- showing


def show_value(value: Any) -> str:
    """A lesson's value as its table shows it (``rosetta lesson`` and the docs)."""
    """A value compactly: 1.5 not 1.50000, [[3, 3], [3, 3]] for a 2x2 of 3.0."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(show_value(v) for v in value) + "]"
    return str(value)


def _table(lesson: Lesson, results: dict[str, Result]) -> list[str]:
    """One row per ``lesson.rows`` entry, one column per framework."""
    heads = [fw + (f" {r['version']}" if r.get("version") else "") for fw, r in results.items()]
    columns = []
    for result in results.values():
        if result["status"] == "ok":
            cells = [show_value(result["values"].get(key, "-")) for _, key in lesson.rows]
        else:
            cells = ["not installed" if result["status"] == "unavailable" else "failed"]
            cells += ["-"] * (len(lesson.rows) - 1)  # why: in the lines beneath the table
        columns.append(cells)
    label_w = max(len(label) for label, _ in lesson.rows) + 2
    widths = [
        max(len(h), *(len(c) for c in col)) + 3 for h, col in zip(heads, columns, strict=True)
    ]
    head = " " * (2 + label_w) + "".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    lines = [head.rstrip()]
    for i, (label, _) in enumerate(lesson.rows):
        cells = "".join(col[i].ljust(w) for col, w in zip(columns, widths, strict=True))
        lines.append(("  " + label.ljust(label_w) + cells).rstrip())
    return lines


def format_lesson(name: str, results: dict[str, Result]) -> str:
    """The lesson's results side by side, then each framework's graph, then why.

    Args:
        name: a key of ``LESSONS``.
        results: what ``run_lesson`` returned (or the same shape, made by hand).

    Returns:
        Plain text: the table (frameworks as columns), the problems (install hints,
        errors), how each framework represents the computation, and the explanation.
    """
    lesson = get_lesson(name)
    out = [f"{lesson.title}  ({lesson.source})", f"  {lesson.computation}", ""]
    out += _table(lesson, results)
    problems = {fw: r for fw, r in results.items() if r["status"] != "ok"}
    if problems:
        out.append("")
        for fw, result in problems.items():
            first, *rest = (result.get("error") or "no result").splitlines()
            out.append(f"  {fw}: {first}")
            out += [f"    {line}" for line in rest[-6:]]
    graphs = {
        fw: r["values"]["graph"]
        for fw, r in results.items()
        if r["status"] == "ok" and r["values"].get("graph")
    }
    if graphs:
        out += ["", "How each framework holds the computation:"]
        for fw, lines in graphs.items():
            out.append(f"  {fw}: " + (lines[0] if lines else ""))
            out += [f"  {line}" for line in lines[1:]]
    out += ["", "Why:", _fill(lesson.explanation, "  ")]
    for fw in results:
        note = dict(BACKENDS[fw].lessons).get(name) if fw in BACKENDS else None
        if note:
            out.append(_fill(f"{fw}: {note}", "    "))
    return "\n".join(out)


def _fill(text: str, indent: str) -> str:
    return textwrap.fill(text, 88, initial_indent="  ", subsequent_indent=indent)


def list_lessons() -> Sequence[str]:
    """One line per lesson: its name and title."""
    return [f"  {lesson.name:<12} {lesson.title}" for lesson in LESSONS.values()]


if __name__ == "__main__":
    main()
