"""Proof of equivalence: the frameworks compute the same function.

Each framework, mode and dtype is traced in its own process (``python -m
harness.trace``), from the shared start, on the same batches. The harness then
compares every pair of frameworks in numpy, at every layer and every step, against
named tolerances, and says where they first part.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import data, validate
from harness.backend import BACKENDS, BackendInfo, install_hint, missing_packages
from harness.executors import Job
from harness.executors.local import LocalExecutor
from harness.progress import Progress
from harness.results import load_json, write_atomic
from harness.runner import framework_versions, preflight, thread_env
from harness.spec import FLOAT64_RTOL, TaskSpec, task_layers
from harness.trace import Trace, TraceConfig, trace_name

# --------------------------------------------------------------------------- comparing


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Max absolute difference, and that relative to the larger tensor's largest
    magnitude (normwise: a tiny element's rounding does not count as a large error)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = max(
        float(np.max(np.abs(a))) if a.size else 0.0, float(np.max(np.abs(b))) if b.size else 0.0
    )
    return diff, (diff / scale if scale > 0 else diff)


def _worst(pairs: list[tuple[str, float, float]]) -> dict[str, Any]:
    name, max_abs, max_rel = max(pairs, key=lambda p: p[2]) if pairs else ("", 0.0, 0.0)
    return {"max_abs": max_abs, "max_rel": max_rel, "worst": name}


def compare(
    spec: TaskSpec,
    shape: tuple[int, ...],
    a: Trace,
    b: Trace,
    rtol: float,
    steps_rtol: float | None = None,
) -> dict[str, Any]:
    """Compare two frameworks' traces; says the first layer and step where they part.
    The parameters after each step are held to ``steps_rtol`` (default ``rtol``)."""
    steps_rtol = rtol if steps_rtol is None else steps_rtol
    layers = [
        (layer.name, *difference(a[f"forward/{layer.name}"], b[f"forward/{layer.name}"]))
        for layer, _, _ in task_layers(spec, shape)
    ]
    first_layer = next((n for n, _, rel in layers if rel > rtol), None)
    params = sorted(k[5:] for k in a if k.startswith("grad/"))
    grads = [(p, *difference(a[f"grad/{p}"], b[f"grad/{p}"])) for p in params]
    steps, first_step = [], None
    n_steps = sum(1 for k in a if k.endswith("/loss") and k.startswith("step"))
    for i in range(1, n_steps + 1):
        at = [(p, *difference(a[f"step{i}/{p}"], b[f"step{i}/{p}"])) for p in params]
        worst = _worst(at)
        steps.append({"step": i, **worst})
        if first_step is None and worst["max_rel"] > steps_rtol:
            first_step = {"step": i, "param": worst["worst"], "max_rel": worst["max_rel"]}
    output, loss = difference(a["output"], b["output"]), difference(a["loss"], b["loss"])
    result = {
        "forward": {
            "max_abs": output[0],
            "max_rel": output[1],
            "first_layer": first_layer,
            "layers": [{"layer": n, "max_abs": d, "max_rel": r} for n, d, r in layers],
        },
        "loss": {
            "a": float(a["loss"]),
            "b": float(b["loss"]),
            "max_abs": loss[0],
            "max_rel": loss[1],
        },
        "grads": _worst(grads),
        "steps": {
            "count": n_steps,
            "max_rel": max((s["max_rel"] for s in steps), default=0.0),
            "first_step": first_step,
            "per_step": steps,
        },
    }
    worst = max(output[1], loss[1], result["grads"]["max_rel"])
    result["max_rel"] = max(worst, result["steps"]["max_rel"])
    ok = worst <= rtol and result["steps"]["max_rel"] <= steps_rtol and first_layer is None
    result["status"] = "pass" if ok else "fail"
    return result


def tolerance(spec: TaskSpec, dtype: str) -> tuple[float, float, str]:
    """(rtol, steps rtol, why) for a task in a precision."""
    if dtype == "float64":
        return FLOAT64_RTOL, FLOAT64_RTOL, "float64: the frameworks differ by rounding only"
    t = spec.tolerance
    if t.float32_steps is None:
        return t.float32, t.float32, t.why
    return t.float32, t.float32_steps, f"{t.why}; steps: {t.steps_why}"


# --------------------------------------------------------------------------- orchestration


def _pairs(
    frameworks: list[str], modes: list[str]
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Every pair of frameworks in the same mode, then each framework's eager vs graph."""
    pairs = [((a, m), (b, m)) for m in modes for a, b in itertools.combinations(frameworks, 2)]
    if "eager" in modes:
        pairs += [((fw, "eager"), (fw, m)) for fw in frameworks for m in modes if m != "eager"]
    return pairs


def plan_check(
    specs: list[tuple[TaskSpec, str]],
    frameworks: list[str] | None,
    modes: list[str],
    dtypes: list[str],
    steps: int,
    jobs: int,
    data_dir: str | None = None,
) -> dict[str, BackendInfo]:
    """A check's options and tasks validated before any process starts; returns the
    backends to trace: those named (each installed), or every installed one."""
    if frameworks:
        names = validate.frameworks(frameworks, installed=True)
    else:
        names = [name for name, info in BACKENDS.items() if not missing_packages(info)]
    validate.modes(modes)
    if len(names) < 2 and len(modes) < 2:
        raise validate.UsageError("nothing to compare: name two frameworks, or two modes of one")
    validate.one_of("dtype", dtypes, validate.DTYPES)
    validate.at_least("--steps", steps)
    validate.at_least("--jobs", jobs)
    for spec, source in specs:
        preflight(spec, source, data_dir)
    return {name: BACKENDS[name] for name in names}


TRACE_INDEX = "index.json"  # trace file -> what made it, for --resume
Group = tuple[str, str, str]  # framework, mode, dtype: one trace process


@dataclass
class _Traces:
    """Where each group's traces are, and why the missing ones are missing."""

    dir: Path
    index: dict[str, Any]  # trace file -> _trace_id of what made it
    found: dict[Group, dict[str, str]] = field(default_factory=dict)  # task -> file
    problems: dict[Group, dict[str, str]] = field(default_factory=dict)  # task -> why

    def file(self, group: Group, task: str) -> str | None:
        return self.found.get(group, {}).get(task)

    def why_not(self, group: Group, task: str) -> str:
        return self.problems.get(group, {}).get(task, "not traced")


@dataclass(frozen=True)
class _Check:
    """What one check was asked: tasks, backends, modes, dtypes, steps, data."""

    specs: list[tuple[TaskSpec, str]]
    backends: dict[str, BackendInfo]
    modes: list[str]
    dtypes: list[str]
    steps: int
    data_dir: str | None = None
    timeout_s: float = 1800.0
    extra_paths: tuple[str, ...] = ()

    def groups(self) -> list[Group]:
        return [
            (fw, m, d)
            for fw, info in self.backends.items()
            for m in self.modes
            if m in info.modes
            for d in self.dtypes
        ]

    def made_by(self, spec: TaskSpec, group: Group) -> dict[str, Any]:
        """What a trace of ``spec`` in ``group`` is made from (a resume keeps it if equal)."""
        versions = framework_versions(self.backends[group[0]])
        return {
            "spec_hash": spec.spec_hash(),
            "steps": self.steps,
            "data_dir": self.data_dir,
            "versions": versions,
        }

    def job(self, group: Group, todo: list[TaskSpec], trace_dir: Path, threads: int) -> Job:
        fw, mode, dtype = group
        cfg = TraceConfig(
            framework=fw,
            target=self.backends[fw].target,
            mode=mode,
            dtype=dtype,
            steps=self.steps,
            specs=tuple(todo),
            out_dir=str(trace_dir),
            data_dir=self.data_dir,
            threads=threads,
            extra_paths=self.extra_paths,
        )
        return Job(
            f"check {fw}/{mode}/{dtype}",
            "harness.trace",
            cfg.model_dump_json(),
            thread_env(self.backends[fw], threads),
            self.timeout_s,
        )


def _to_trace(check: _Check, traces: _Traces, group: Group) -> list[TaskSpec]:
    """The tasks of ``group`` with no trace of the same spec, steps and versions yet."""
    kept, todo = {}, []
    for spec, _ in check.specs:
        path = traces.dir / trace_name(spec.name, *group)
        if path.is_file() and traces.index.get(path.name) == check.made_by(spec, group):
            kept[spec.name] = str(path)
        else:
            todo.append(spec)
    traces.found[group] = kept
    return todo


def _take(check: _Check, traces: _Traces, group: Group, todo, result) -> dict:
    """One trace process's result into ``traces``; returns its status for progress."""
    if result.record is None:
        traces.problems[group] = {s.name: result.detail for s in todo}
        return {"status": "failed", "error": result.detail}
    made, errors = result.record["files"], result.record["errors"]
    traces.found[group].update(made)
    traces.problems[group] = errors
    for spec in todo:
        if spec.name in made:
            traces.index[Path(made[spec.name]).name] = check.made_by(spec, group)
    write_atomic(traces.dir / TRACE_INDEX, json.dumps(traces.index, indent=1))
    failed = ", ".join(errors)
    return {
        "status": "failed" if failed else "ok",
        "error": f"failed: {failed}" if failed else None,
    }


def trace_all(
    check: _Check, out_dir: Path, jobs: int = 1, resume: bool = False, progress: bool = True
) -> _Traces:
    """Trace every framework x mode x dtype: one process each, all tasks in it, up to
    ``jobs`` at once, each on its own cores; with ``resume``, the traces an earlier
    check of the same tasks left in ``out_dir`` are kept."""
    trace_dir = out_dir / "traces"
    trace_dir.mkdir(parents=True, exist_ok=True)
    traces = _Traces(trace_dir, (load_json(trace_dir / TRACE_INDEX) or {}) if resume else {})
    groups = check.groups()
    executor = LocalExecutor(max(1, min(jobs, len(groups))))
    futures = {}
    for group in groups:
        info = check.backends[group[0]]
        if missing_packages(info):
            traces.problems[group] = {s.name: install_hint(info) for s, _ in check.specs}
        elif todo := _to_trace(check, traces, group):
            job = check.job(group, todo, trace_dir, executor.threads)
            futures[group] = (job, todo, executor.submit(job))
    bar = Progress(len(futures), enabled=progress)
    try:
        for group, (job, todo, future) in futures.items():
            result = future.result()
            write_atomic(out_dir / "logs" / f"check-{'-'.join(group)}.log", result.log)
            bar.finished(job.label, _take(check, traces, group, todo, result))
    finally:
        bar.close()
        executor.close()
    return traces


def compare_all(check: _Check, traces: _Traces) -> list[dict[str, Any]]:
    """One record per task x dtype x pair of what was traced."""
    records = []
    for spec, _ in check.specs:
        shape = data.sample_shape(spec.data, check.data_dir)
        for dtype in check.dtypes:
            rtol, steps_rtol, why = tolerance(spec, dtype)
            for (fa, ma), (fb, mb) in _pairs(list(check.backends), check.modes):
                if ma not in check.backends[fa].modes or mb not in check.backends[fb].modes:
                    continue
                rec = {
                    "task": spec.name,
                    "dtype": dtype,
                    "a": f"{fa}/{ma}",
                    "b": f"{fb}/{mb}",
                    "steps_asked": check.steps,
                    "rtol": rtol,
                    "steps_rtol": steps_rtol,
                    "tolerance_why": why,
                }
                groups = [(fa, ma, dtype), (fb, mb, dtype)]
                files = [traces.file(g, spec.name) for g in groups]
                if None in files:
                    why_not = [
                        traces.why_not(g, spec.name)
                        for g, f in zip(groups, files, strict=True)
                        if f is None
                    ]
                    records.append({**rec, "status": "error", "error": "; ".join(why_not)})
                    continue
                with np.load(files[0]) as a, np.load(files[1]) as b:
                    result = compare(spec, shape, dict(a), dict(b), rtol, steps_rtol)
                records.append({**rec, **result})
    return records


def run_check(
    specs: list[tuple[TaskSpec, str]],
    backends: dict[str, Any],
    modes: list[str],
    dtypes: list[str],
    steps: int,
    out_dir: Path,
    data_dir: str | None = None,
    progress: bool = True,
    timeout_s: float = 1800.0,
    extra_paths: tuple[str, ...] = (),
    jobs: int = 1,
    resume: bool = False,
) -> list[dict[str, Any]]:
    """Trace every framework x mode x dtype, then compare every pair; returns one record
    per task x dtype x pair, also written to ``out_dir/equivalence.jsonl``."""
    check = _Check(
        specs, backends, list(modes), list(dtypes), steps, data_dir, timeout_s, tuple(extra_paths)
    )
    traces = trace_all(check, out_dir, jobs, resume, progress)
    records = compare_all(check, traces)
    write_atomic(out_dir / "equivalence.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    return records


def _steps_note(r: dict[str, Any]) -> str:
    steps = r.get("steps_rtol", r["rtol"])
    return "" if steps == r["rtol"] else f", steps {steps:.0e}"


def check_table(records: list[dict[str, Any]]) -> str:
    """One line per task x dtype x pair: the largest relative differences and where."""
    rows = [
        f"{'task':<20} {'dtype':<8} {'pair':<26} {'forward':>9} {'loss':>9} {'grads':>9} "
        f"{'steps':>9}  status"
    ]
    for r in records:
        pair = f"{r['a']} vs {r['b']}"
        if r["status"] == "error":
            rows.append(
                f"{r['task']:<20} {r['dtype']:<8} {pair:<26} error: {r['error'].splitlines()[0][:80]}"
            )
            continue
        where = ""
        if r["status"] == "fail":
            if r["forward"]["first_layer"]:
                where = f" (first at layer {r['forward']['first_layer']})"
            elif r["steps"]["first_step"]:
                fs = r["steps"]["first_step"]
                where = f" (first at step {fs['step']}, {fs['param']})"
        rows.append(
            f"{r['task']:<20} {r['dtype']:<8} {pair:<26} {r['forward']['max_rel']:9.1e} "
            f"{r['loss']['max_rel']:9.1e} {r['grads']['max_rel']:9.1e} {r['steps']['max_rel']:9.1e}  "
            f"{r['status']} (rtol {r['rtol']:.0e}{_steps_note(r)}){where}"
        )
    return "\n".join(rows)
