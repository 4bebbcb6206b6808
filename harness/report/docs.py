"""The lesson pages in ``docs/``: every measured number in them comes from the
committed reference run (``results/reference/``), never from a hand.

A page is prose written by a person, with two kinds of text kept by this module:

* **cited numbers**: ``0.9713<!--ref run/lenet/torch/graph/metrics.accuracy .4f-->``.
  The marker (invisible once rendered) names where the number lives in the
  reference run and how it is written; the text just before it is the number.
  A key is ``SOURCE/...``:

  - ``run/TASK/FRAMEWORK/MODE/FIELD``: a cell's record (``records.jsonl``);
  - ``summary/TASK/FRAMEWORK/MODE/COLUMN``: the report's table (``report.csv``:
    ``step_median_ms``, ``speedup_vs_eager``, ``break_even_steps``, ...);
  - ``check/TASK/DTYPE/FW.MODE/FW.MODE/FIELD``: an equivalence record (the pair in
    either order);
  - ``lesson/LESSON/FRAMEWORK/FIELD``: a lesson's result (``lessons.jsonl``).

  FIELD is a dotted path (``stats.traces``, ``curve.-1.test_loss``). A segment may
  be ``*`` when the format starts with ``max``, ``min`` or ``count`` (the
  largest, smallest or number of the values matched). The format is a Python
  format spec (``.4f``, ``.1%``, ``.2e``); none gives ``.4g`` for a float.

* **generated blocks**, between ``<!-- begin KIND ARGS -->`` and ``<!-- end -->``:

  - ``measured TASK[,TASK...]``: the reference's summary rows and figures;
  - ``spec TASK``: the task's file, as the harness reads it;
  - ``source PATH NAME ['TEXT']``: one function or class (``Class.method``) of the
    code, or only its first statement or ``case`` whose first line holds TEXT;
  - ``lesson NAME``: a lesson's results in every framework;
  - ``summary``: every task's test metric and step time per framework and mode.

``refresh`` rewrites both from the reference run; ``rosetta docs`` writes the
pages, ``rosetta docs --check`` lists what is stale. ``uncited`` finds numbers in
a page's prose that look measured (decimals, times, percentages, ratios) but cite
nothing: a page must cite them, or put a number that is not a measurement (a
hyper-parameter, a version) in backticks.
"""

from __future__ import annotations

import ast
import json
import math
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.report import tables
from harness.report.render import markdown_table
from harness.report.tables import latest_per_cell
from harness.results import load_records

ROOT = Path(__file__).resolve().parents[2]
DOCS_DIR = ROOT / "docs"
REFERENCE_DIR = ROOT / "results" / "reference"
LESSONS_FILE = "lessons.jsonl"
AGGREGATES = ("max", "min", "count")
TEXT_COLUMNS = {"target", "error", "equivalence", "test_metric", "status"}

# VALUE<!--ref KEY FORMAT?-->: the value is the run of characters just before the
# marker that cannot end or open Markdown markup.
REF = re.compile(
    r"(?P<value>[^\s<>()\[\]|*`]*)<!--ref (?P<key>[^\s>]+?)(?: (?P<fmt>[^>]*?))?\s*-->"
)
BLOCK = re.compile(
    r"(?P<open><!-- begin (?P<kind>\w+)(?: (?P<args>[^>]*?))? -->\n)(?P<body>.*?)"
    r"(?P<close><!-- end -->)",
    re.S,
)
# Numbers that read as measurements: decimals, or a number with a unit of time,
# percent or ratio.
MEASURED = re.compile(
    r"(?<![\w.§])(?:\d+(?:\.\d+)?\s?(?:ms|s|%|x|×|MB|GFLOP/s)(?![\w/])|\d+\.\d+(?:[eE][-+]?\d+)?)"
)


class DocsError(ValueError):
    """A page names something the reference run or the code does not have."""


@dataclass
class Reference:
    """A reference run folder, read once: records, summary, equivalence, lessons."""

    path: Path
    records: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    summary: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    lessons: dict[tuple[str, str], dict] = field(default_factory=dict)
    frame: pd.DataFrame | None = None  # report.csv, as the report's tables take it

    @classmethod
    def load(cls, path: str | Path = REFERENCE_DIR) -> Reference:
        path = Path(path)
        if not (path / "records.jsonl").is_file():
            raise DocsError(
                f"{path} has no records.jsonl: regenerate the reference run with "
                "`rosetta reference` (about an hour on 2 cores)"
            )
        ref = cls(path)
        records, _ = latest_per_cell(load_records(path))
        for r in records:
            if r.get("device", "cpu") == "cpu" and r.get("repeat", 0) == 0:
                ref.records[(r["task"], r["framework"], r["mode"])] = r
        if (path / "report.csv").is_file():
            df = pd.read_csv(path / "report.csv")
            for column in TEXT_COLUMNS & set(df.columns):  # an empty cell is None, not NaN
                df[column] = df[column].astype(object).where(df[column].notna(), None)
            ref.frame = df[df["device"] == "cpu"] if "device" in df else df
            for row in df.to_dict("records"):
                if row.get("device", "cpu") == "cpu":
                    clean = {k: (None if _missing(v) else v) for k, v in row.items()}
                    ref.summary[(row["task"], row["framework"], row["mode"])] = clean
        if (path / "equivalence.jsonl").is_file():
            ref.checks = _jsonl(path / "equivalence.jsonl")
        if (path / LESSONS_FILE).is_file():
            for r in _jsonl(path / LESSONS_FILE):
                ref.lessons[(r["lesson"], r["framework"])] = r
        return ref

    # ----------------------------------------------------------------- lookups

    def values(self, key: str) -> list[Any]:
        """Every value a key names (one, unless it has ``*`` segments)."""
        source, *parts = key.split("/")
        if source == "run":
            return self._lookup(self.records, parts, 3, key)
        if source == "summary":
            return self._lookup(self.summary, parts, 3, key)
        if source == "lesson":
            tables = {
                k: v.get("values", {}) | {"status": v["status"]} for k, v in self.lessons.items()
            }
            return self._lookup(tables, parts, 2, key)
        if source == "check":
            if len(parts) < 5:
                raise DocsError(f"{key}: a check key is check/TASK/DTYPE/FW.MODE/FW.MODE/FIELD")
            task, dtype, a, b, *path = parts
            found = []
            for r in self.checks:
                pair = (r["a"].replace("/", "."), r["b"].replace("/", "."))
                if (
                    _match(task, r["task"])
                    and _match(dtype, r["dtype"])
                    and (
                        (_match(a, pair[0]) and _match(b, pair[1]))
                        or (_match(a, pair[1]) and _match(b, pair[0]))
                    )
                ):
                    found += _walk(r, path)
            if not found:
                raise DocsError(f"{key}: no such equivalence record or field in {self.path}")
            return found
        raise DocsError(f"{key}: unknown source {source!r}; known: run, summary, check, lesson")

    def _lookup(self, table: dict, parts: list[str], n: int, key: str) -> list[Any]:
        if len(parts) <= n:
            raise DocsError(f"{key}: needs {n} names and a field after {key.split('/')[0]}/")
        names, path = parts[:n], parts[n:]
        found = []
        for k, row in table.items():
            if all(_match(p, v) for p, v in zip(names, k, strict=True)):
                found += _walk(row, path)
        if not found:
            raise DocsError(f"{key}: no such cell or field in the reference run at {self.path}")
        return found

    def resolve(self, key: str, fmt: str | None) -> str:
        """A cited number as the page must write it."""
        fmt = (fmt or "").strip()
        agg, _, spec = fmt.partition(" ") if fmt.split(" ")[0] in AGGREGATES else ("", "", fmt)
        values = self.values(key)
        if agg == "count":
            return format(len(values), spec or "d")
        if agg:
            numbers = [v for v in values if isinstance(v, int | float)]
            if not numbers:
                raise DocsError(f"{key}: {agg} needs numbers, found {values[:3]}")
            value = max(numbers) if agg == "max" else min(numbers)
        elif len(values) > 1:
            raise DocsError(f"{key}: matches {len(values)} values; say max, min or count")
        else:
            value = values[0]
        return show(value, spec)

    # ----------------------------------------------------------------- blocks

    def measured(self, tasks: list[str], page_dir: Path) -> str:
        """A task's rows of the reference report's summary table, then its figures."""
        lines = []
        for task in tasks:
            rows = self.frame[self.frame["task"] == task] if self.frame is not None else []
            if len(rows) == 0:
                raise DocsError(f"measured {task}: the reference run has no cell of {task!r}")
            shown = tables.display_table(rows.reset_index(drop=True)).drop(columns="task")
            lines += [f"**{task}** (reference run, `results/reference/`):", ""]
            lines += [markdown_table(shown), ""]
            for name in (f"curves_{task}.png", f"layer_{task}.png"):
                figure = self.path / "figures" / name
                if figure.is_file():
                    rel = _relative(figure, page_dir)
                    lines += [f"![{task}: {name.split('_')[0]}]({rel})", ""]
        return "\n".join(lines)

    def overview(self) -> str:
        """One row per task: its headline test metric and median step time in every
        framework and mode (the README's table)."""
        cells = sorted({(fw, mode) for _, fw, mode in self.summary}, key=_cell_order)
        heads = [f"{fw} {mode}" for fw, mode in cells]
        lines = [
            "| task | metric | " + " | ".join(heads) + " |",
            "|---|---|" + "---|" * len(cells),
        ]
        for task in sorted({t for t, _, _ in self.summary}):
            rows = [self.summary.get((task, fw, mode)) for fw, mode in cells]
            metric = next((r["test_metric"] for r in rows if r and r.get("test_metric")), "")
            shown = []
            for r in rows:
                if r is None:
                    shown.append("")
                elif r["status"] != "ok":
                    shown.append(r["status"])
                else:
                    test = "-" if r.get("test_value") is None else f"{r['test_value']:.4f}"
                    shown.append(f"{test} · {tables.num(r.get('step_median_ms'))} ms")
            lines.append(f"| {task} | {metric} | " + " | ".join(shown) + " |")
        return "\n".join(lines) + "\n"

    def lesson_table(self, name: str) -> str:
        """A lesson's values, one column per framework."""
        results = {fw: r for (n, fw), r in self.lessons.items() if n == name}
        if not results:
            raise DocsError(
                f"lesson {name}: the reference run has no results of it "
                f"(rosetta lesson {name} --out {self.path} records them)"
            )
        from harness.lessons import get_lesson, show_value

        lesson = get_lesson(name)
        heads = [f"{fw} {r.get('version', '')}".strip() for fw, r in results.items()]
        cells = {
            head: [
                _short(show_value(r["values"].get(key, "-")))
                if r["status"] == "ok"
                else r["status"]
                for _, key in lesson.rows
            ]
            for head, r in zip(heads, results.values(), strict=True)
        }
        return markdown_table(pd.DataFrame({"": [label for label, _ in lesson.rows], **cells}))


def _cell_order(cell: tuple[str, str]) -> tuple[int, int]:
    from harness.backend import BACKENDS, MODES

    fw, mode = cell
    frameworks, modes = list(BACKENDS), list(MODES)
    return (
        frameworks.index(fw) if fw in frameworks else len(frameworks),
        modes.index(mode) if mode in modes else len(modes),
    )


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _missing(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _match(pattern: str, value: Any) -> bool:
    return pattern == "*" or pattern == str(value)


def _walk(value: Any, path: list[str]) -> list[Any]:
    """The values a dotted path (``*`` for any key or index) reaches from a value. A
    key with dots in it (``weights.linear.kernel``) is found by joining segments."""
    segments = [part for segment in path for part in segment.split(".")]
    return _walk_segments(value, segments)


def _walk_segments(value: Any, path: list[str]) -> list[Any]:
    if not path:
        return [value]
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if head == "*":
            return [v for item in value.values() for v in _walk_segments(item, rest)]
        for n in range(1, len(path) + 1):
            key = ".".join(path[:n])
            if key in value:
                return _walk_segments(value[key], path[n:])
        return []
    if isinstance(value, list):
        if head == "*":
            return [v for item in value for v in _walk_segments(item, rest)]
        try:
            return _walk_segments(value[int(head)], rest)
        except (ValueError, IndexError):
            return []
    return []


def show(value: Any, spec: str = "") -> str:
    """A value as a page writes it: the format spec, or ``.4g`` for a float."""
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if spec:
        return format(value, spec)
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return format(value, ".4g")


def _short(text: str, limit: int = 120) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _relative(target: Path, start: Path) -> str:
    import os

    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


# --------------------------------------------------------------------------- code


def source_of(path: str, name: str, text: str | None = None, root: Path = ROOT) -> str:
    """The source of one function or class (``Class.method``) of a file; with
    ``text``, only the first statement or ``case`` in it whose first line holds it."""
    file = root / path
    if not file.is_file():
        raise DocsError(f"source {path}: no such file under {root}")
    code = file.read_text()
    nodes: list[ast.AST] = [ast.parse(code)]
    for part in name.split("."):
        found = [
            n
            for parent in nodes
            for n in getattr(parent, "body", [])
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and n.name == part
        ]
        if not found:
            raise DocsError(f"source {path} {name}: {path} has no {part!r} there")
        nodes = found
    lines = code.splitlines()
    node = nodes[0]
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    end = node.end_lineno
    if text is not None:
        for inner in ast.walk(node):
            if isinstance(inner, ast.match_case):
                first, last = inner.pattern.lineno, inner.body[-1].end_lineno
            elif isinstance(inner, ast.stmt) and inner is not node:
                first, last = inner.lineno, inner.end_lineno
            else:
                continue
            if text in lines[first - 1]:
                start, end = first, last
                break
        else:
            raise DocsError(f"source {path} {name}: no statement there starts with {text!r}")
    body = lines[start - 1 : end]
    indent = min(len(line) - len(line.lstrip()) for line in body if line.strip())
    return "\n".join(line[indent:] for line in body)


def spec_text(task: str) -> str:
    """A built-in task's file, as written."""
    from harness.spec import builtin_tasks

    tasks = builtin_tasks()
    if task not in tasks:
        raise DocsError(f"spec {task}: no such built-in task; known: {', '.join(tasks)}")
    return Path(tasks[task]).read_text().strip()


# --------------------------------------------------------------------------- pages


def _block(kind: str, args: str, ref: Reference, page_dir: Path) -> str:
    words = shlex.split(args) if args else []
    if kind == "measured" and len(words) == 1:
        return ref.measured(words[0].split(","), page_dir)
    if kind == "spec" and len(words) == 1:
        return f"```toml\n{spec_text(words[0])}\n```\n"
    if kind == "source" and len(words) in (2, 3):
        lang = "python" if words[0].endswith(".py") else ""
        where = f"`{words[0]}`, `{words[1]}`"
        return f"{where}:\n\n```{lang}\n{source_of(*words)}\n```\n"
    if kind == "lesson" and len(words) == 1:
        return ref.lesson_table(words[0])
    if kind == "summary" and not words:
        return ref.overview()
    raise DocsError(
        f"<!-- begin {kind} {args} -->: known blocks are measured TASK[,TASK], spec TASK, "
        "source PATH NAME ['TEXT'], lesson NAME, summary"
    )


def refresh(
    text: str, ref: Reference, page_dir: Path = DOCS_DIR, errors: list[str] | None = None
) -> str:
    """A page with every generated block and cited number rewritten from the reference.

    Args:
        errors: where given, a block or key the reference run or the code lacks is
            noted here and left as it was; else it raises.

    Raises:
        DocsError: a block or key names what the reference run or the code lacks;
            the message names it.
    """

    def attempt(make, m: re.Match) -> str:
        try:
            return make(m)
        except DocsError as err:
            if errors is None:
                raise
            errors.append(str(err))
            return m[0]

    def block(m: re.Match) -> str:
        body = _block(m["kind"], (m["args"] or "").strip(), ref, page_dir)
        return m["open"] + body.rstrip("\n") + "\n" + m["close"]

    def cite(m: re.Match) -> str:
        return ref.resolve(m["key"], m["fmt"]) + m[0][len(m["value"]) :]

    text = BLOCK.sub(lambda m: attempt(block, m), text)
    return REF.sub(lambda m: attempt(cite, m), text)


def _prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a page's prose: no code, generated blocks, comments,
    link targets or cited numbers."""
    text = BLOCK.sub(lambda m: m["open"] + "\n" * m["body"].count("\n") + m["close"], text)
    text = REF.sub(lambda m: " " * len(m[0]), text)
    text = re.sub(r"```.*?```", lambda m: "\n" * m[0].count("\n"), text, flags=re.S)
    text = re.sub(r"<!--.*?-->", lambda m: "\n" * m[0].count("\n"), text, flags=re.S)
    for number, line in enumerate(text.splitlines(), start=1):
        line = re.sub(r"`[^`]*`", "", line)
        line = re.sub(r"\]\([^)]*\)", "]", line)
        yield number, line


def uncited(text: str) -> list[tuple[int, str]]:
    """(line, number) for each number in the prose that looks measured and cites nothing."""
    return [(n, m[0]) for n, line in _prose(text) for m in MEASURED.finditer(line)]


def pages(docs_dir: Path = DOCS_DIR) -> list[Path]:
    """The pages that cite the reference run or hold generated blocks: ``docs/``
    and the README beside it."""
    found = [*docs_dir.rglob("*.md"), docs_dir.parent / "README.md"]
    return sorted(
        p
        for p in found
        if p.is_file() and ("<!--ref " in (t := p.read_text()) or "<!-- begin " in t)
    )


def problems(page: Path, ref: Reference) -> list[str]:
    """What is wrong with a page: stale text, unknown keys, uncited numbers."""
    text = page.read_text()
    errors: list[str] = []
    fresh = refresh(text, ref, page.parent, errors)
    found = [f"{page}: {err}" for err in errors]
    if fresh != text:
        old, new = text.splitlines(), fresh.splitlines()
        first = next(
            (i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b),
            min(len(old), len(new)),
        )
        found.append(
            f"{page}:{first + 1}: differs from the reference run "
            f"(`rosetta docs` rewrites it): {old[first] if first < len(old) else ''!r}"
        )
    found += [
        f"{page}:{line}: {number!r} looks measured but cites nothing: add "
        "<!--ref KEY--> after it, or put it in backticks if it is not a measurement"
        for line, number in uncited(text)
    ]
    return found
