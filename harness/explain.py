"""``rosetta explain``: one task's model as each framework builds, shows and traces it.

Every ``impls/<fw>/explain.py`` has one function, ``explain(spec, input_shape)``,
that builds the task with its backend and returns plain JSON values: the
framework's own display of the model, its parameter count, one row per spec
layer (``harness.spec.walk`` order) naming the framework's layer and its
arguments, and the graphs one training step builds, counted by op type.
``run_explain`` runs it in each framework in its own process (``python -m
harness.explain``, the worker below), as ``harness.lessons`` does, and
``format_explain`` lays the results side by side.
"""

from __future__ import annotations

import importlib
import traceback
from collections import Counter
from collections.abc import Iterable
from typing import Any

from harness.data.batching import random_batch
from harness.spec import Layer, Residual, Shape, TaskSpec, task_param_count
from harness.worker import WorkerConfig, emit, read_config

Result = dict[str, Any]  # {"status": "ok" | "failed" | "unavailable", "error", "version", "values"}

DEFAULT_TIMEOUT_S = 300.0
DISPLAY_LINES = 40  # a framework's display of a big model is cut here
TOP_OPS = 8  # op types shown per graph; the total counts them all
EXAMPLE_BATCH = 8  # op counts do not depend on the batch size; keep tracing cheap


# --------------------------------------------------------------------------- helpers for impls


def example_batch(spec: TaskSpec, input_shape: Shape, n: int = EXAMPLE_BATCH):
    """A fixed random batch ``(x, y)`` of the shapes and dtypes the task trains on
    (see ``harness.data.batching.random_batch``)."""
    batch = random_batch(spec, input_shape, n)
    return batch.x, batch.y


def clip_lines(text: str, limit: int = DISPLAY_LINES) -> list[str]:
    """``text`` as lines, at most ``limit`` of them; a last line says how many were cut."""
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= limit:
        return lines
    return lines[:limit] + [f"... ({len(lines) - limit} more lines cut)"]


def op_table(title: str, names: Iterable[str], note: str = "") -> dict[str, Any]:
    """A graph's ops counted by type: ``{"title", "total", "ops": [[type, n], ...], "note"}``,
    the types most common first."""
    counts = Counter(names)
    ops = [[name, n] for name, n in counts.most_common()]
    return {"title": title, "total": sum(counts.values()), "ops": ops, "note": note}


# --------------------------------------------------------------------------- worker


class ExplainConfig(WorkerConfig):
    module: str  # impls.<fw>.explain
    spec: TaskSpec
    input_shape: tuple[int, ...]


def main() -> None:
    """Worker: import one framework's explain module, explain the spec, emit the result."""
    cfg = read_config(ExplainConfig)
    try:
        module = importlib.import_module(cfg.module)
        values = module.explain(cfg.spec, cfg.input_shape)
        record = {"status": "ok", "values": values}
    except Exception as err:  # one framework's failure is its column, shown beside the others
        tail = "".join(traceback.format_exception(err)[-4:])
        record = {"status": "failed", "error": f"{type(err).__name__}: {err}\n{tail}".strip()}
    emit("record", record=record)


# --------------------------------------------------------------------------- running


def run_explain(
    spec: TaskSpec,
    frameworks: Iterable[str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    data_dir: str | None = None,
) -> dict[str, Result]:
    """Explain ``spec`` in each framework, each in a fresh interpreter.

    Args:
        spec: the task (a built-in or a user's file).
        frameworks: names from ``BACKENDS``; None: all of them, installed or not.
        timeout_s: seconds each framework's process may take.
        data_dir: where real data files are, when the task's shape depends on them.

    Returns:
        Framework name -> result: ``status`` ("ok", "failed" or "unavailable"),
        ``version``, ``values`` (what ``explain`` returned) when ok, ``error`` otherwise.

    Raises:
        UsageError: an unknown framework.
        SpecError: the model does not fit its data set's samples.
    """
    from harness import data
    from harness.runner import run_in_each_framework, sibling_module
    from harness.spec import check_model

    shape = data.sample_shape(spec.data, data_dir)
    check_model(spec, shape)
    return run_in_each_framework(
        "harness.explain",
        frameworks,
        lambda info: ExplainConfig(
            module=sibling_module(info, "explain"), spec=spec, input_shape=shape
        ),
        timeout_s,
    )


# --------------------------------------------------------------------------- showing


_BLOCK_FIELDS = {"name", "type", "body", "shortcut", "branches"}


def spec_label(layer: Layer) -> str:
    """A spec layer as its type and the arguments the file set, e.g. ``conv2d(filters=10, kernel=5)``."""
    args = layer.model_dump(exclude_defaults=True, exclude=_BLOCK_FIELDS)
    shown = [f"{key}={value!r}" for key, value in args.items()]
    if isinstance(layer, Residual):
        shown.append(f"body {len(layer.body)}, shortcut {len(layer.shortcut) or 'identity'}")
    elif layer.type == "parallel":
        shown.append(f"{len(layer.branches)} branches")
    return f"{layer.type}({', '.join(shown)})"


def _spec_rows(layers: Iterable[Layer], depth: int = 0) -> list[tuple[str, str]]:
    """(indented name, spec label) per layer, in ``harness.spec.walk``'s order."""
    rows = []
    for layer in layers:
        rows.append(("  " * depth + layer.name, spec_label(layer)))
        for seq in layer.children():
            rows += _spec_rows(seq, depth + 1)
    return rows


def _heading(fw: str, result: Result) -> str:
    version = f" {result['version']}" if result.get("version") else ""
    layout = result.get("values", {}).get("layout")
    return f"{fw}{version}" + (f" ({layout})" if layout else "")


def _mapping(spec: TaskSpec, results: dict[str, Result]) -> list[str]:
    """One block per spec layer: the spec's line, then each framework's layer under it
    (stacked rather than side by side: the class strings are too long for columns)."""
    rows = _spec_rows(spec.model.layers)
    if spec.discriminator is not None:  # a gan: the generator's rows, then the judge's
        rows += _spec_rows(spec.discriminator.layers)
    width = max((len(fw) for fw in results), default=0)
    lines = []
    for i, (name, label) in enumerate(rows):
        lines.append(f"  {name}  {label}")
        for fw, result in results.items():
            if result["status"] != "ok":
                text = result["status"]
            else:
                mapped = result["values"]["layers"]
                text = mapped[i]["framework"] if i < len(mapped) else "?"
            lines.append(f"      {fw:<{width}}  {text}")
    return lines


def _graph(graph: dict[str, Any]) -> list[str]:
    lines = [f"    {graph['title']}: {graph['total']} ops"]
    top = graph["ops"][:TOP_OPS]
    lines += [f"      {n:>5}  {name}" for name, n in top]
    rest = graph["ops"][TOP_OPS:]
    if rest:
        lines.append(f"      {sum(n for _, n in rest):>5}  ({len(rest)} other op types)")
    if graph.get("note"):
        lines.append(f"      note: {graph['note']}")
    return lines


def _framework(fw: str, result: Result, spec_count: int) -> list[str]:
    """One framework's section: problem, or display, parameter counts and op tables."""
    head = _heading(fw, result)
    if result["status"] != "ok":
        first, *rest = (result.get("error") or "no result").splitlines()
        return [f"{head}: {result['status']}: {first}", *(f"    {line}" for line in rest[-6:])]
    values = result["values"]
    same = "equal" if values["param_count"] == spec_count else "DIFFERENT"
    lines = [
        head,
        f"  parameters: {values['param_count']:,} by {values['param_count_by']}; "
        f"the spec: {spec_count:,} ({same})",
        f"  the model as {fw} shows it ({values['display_by']}):",
    ]
    lines += [f"    {line}" for line in values["display"]]
    lines.append("  one training step's graphs, ops by type:")
    for graph in values["graphs"]:
        lines += _graph(graph)
    return lines


def format_explain(spec: TaskSpec, results: dict[str, Result], input_shape: Shape) -> str:
    """The explanation as text: the mapping table, then each framework's section.

    Args:
        spec: the task explained.
        results: what ``run_explain`` returned (or the same shape, made by hand).
        input_shape: one sample's shape, for the spec's parameter count.

    Returns:
        Plain text: title, one row per spec layer with one column per framework, then
        per framework its display of the model, parameter counts and op-count tables.
    """
    title = f"{spec.name}: {spec.title}" if spec.title else spec.name
    spec_count = task_param_count(spec, input_shape)
    out = [title, "", "Spec layer -> each framework's layer (from the built model):"]
    out += _mapping(spec, results)
    for fw, result in results.items():
        out += ["", *_framework(fw, result, spec_count)]
    return "\n".join(out)


if __name__ == "__main__":
    main()
