"""Proof of equivalence: the frameworks compute the same function.

Each framework runs in its own process (``python -m harness.check``), from
the shared start, on the same batches, and saves what it computed: every
layer's activation, the loss, every parameter's gradient, and the parameters
after each of N optimizer steps. The harness then compares every pair of
frameworks in numpy, at every layer and every step, against named
tolerances, and says where they first part.
"""

from __future__ import annotations

import itertools
import json
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from harness import data
from harness.backend import Backend, Batch, Options, load_backend
from harness.init import canonical_weights
from harness.recipes import recipe_for
from harness.spec import FLOAT64_RTOL, Dropout, TaskSpec, map_layers, task_layers
from harness.worker import WorkerConfig, emit, read_config

Trace = dict[str, np.ndarray]  # "forward/<layer>", "loss", "grad/<param>", "step<i>/<param>"


def without_dropout(spec: TaskSpec) -> TaskSpec:
    """Dropout masks cannot match across frameworks: the check switches them off
    (in every network of the task)."""

    def off(layer):
        return layer.model_copy(update={"rate": 0.0}) if isinstance(layer, Dropout) else layer

    update = {"model": spec.model.model_copy(update={"layers": map_layers(spec.model.layers, off)})}
    if spec.discriminator is not None:
        d = spec.discriminator
        update["discriminator"] = d.model_copy(update={"layers": map_layers(d.layers, off)})
    return spec.model_copy(update=update)


def check_batches(spec: TaskSpec, ds: data.Dataset, dtype: str) -> Iterator[Batch]:
    """The training batches in the runner's order, epoch after epoch."""
    recipe = recipe_for(spec, ds, dtype)
    for epoch in itertools.count():
        yield from recipe.batches(epoch)


def trace(backend: Backend, spec: TaskSpec, dtype: str, steps: int, data_dir=None) -> Trace:
    """Everything one framework computes for the check, in canonical names."""
    spec = without_dropout(spec)
    ds = data.load(spec.data, data_dir)
    shape = ds.sample_shape
    state = backend.build(spec, shape, canonical_weights(spec, shape, dtype))
    stream = check_batches(spec, ds, dtype)
    first = next(stream)
    inputs = first.x if first.z is None else first.z  # a gan's forward starts from noise
    out: Trace = {f"forward/{k}": v for k, v in backend.activations(state, inputs).items()}
    out["output"] = backend.predict(state, inputs)
    loss, grads = backend.loss_and_grads(state, first)
    out["loss"] = np.asarray(loss)
    out.update({f"grad/{k}": v for k, v in grads.items()})
    batch = first
    for step in range(1, steps + 1):
        state, step_loss = backend.train_step(state, batch)
        # a gan's step returns (discriminator loss, generator loss)
        losses = step_loss if isinstance(step_loss, tuple | list) else (step_loss,)
        out[f"step{step}/loss"] = np.asarray([float(v) for v in losses])
        out.update({f"step{step}/{k}": v for k, v in backend.get_weights(state).items()})
        batch = next(stream)
    return out


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


# --------------------------------------------------------------------------- worker


class CheckConfig(WorkerConfig):
    """One check process: one framework, mode and dtype, several tasks."""

    framework: str
    target: str
    mode: str
    dtype: Literal["float32", "float64"]
    steps: int = Field(ge=1)
    specs: tuple[TaskSpec, ...]
    out_dir: str
    data_dir: str | None = None
    device: str = "cpu"
    threads: int = 0


def trace_name(task: str, framework: str, mode: str, dtype: str) -> str:
    return f"{task}-{framework}-{mode}-{dtype}.npz"


def main() -> None:
    """Worker: one framework, one mode, one dtype, several tasks; saves one .npz each."""
    cfg = read_config(CheckConfig)
    out_dir = Path(cfg.out_dir)
    files, errors = {}, {}
    backend = load_backend(cfg.target)
    backend.configure(Options(cfg.mode, cfg.device, cfg.threads, cfg.dtype))
    for spec in cfg.specs:
        try:
            t = trace(backend, spec, cfg.dtype, cfg.steps, cfg.data_dir)
            path = out_dir / trace_name(spec.name, cfg.framework, cfg.mode, cfg.dtype)
            np.savez(path, **t)
            files[spec.name] = str(path)
        except Exception as err:  # one task's failure is that task's status
            errors[spec.name] = f"{type(err).__name__}: {err}\n" + "".join(
                traceback.format_exception(err)[-4:]
            )
        emit("task", task=spec.name, ok=spec.name in files)
    emit("record", record={"files": files, "errors": errors})


if __name__ == "__main__":
    main()


# --------------------------------------------------------------------------- orchestration


def _pairs(
    frameworks: list[str], modes: list[str]
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Every pair of frameworks in the same mode, then each framework's eager vs graph."""
    pairs = [((a, m), (b, m)) for m in modes for a, b in itertools.combinations(frameworks, 2)]
    if "eager" in modes:
        pairs += [((fw, "eager"), (fw, m)) for fw in frameworks for m in modes if m != "eager"]
    return pairs


TRACE_INDEX = "index.json"  # trace file -> what made it, for --resume


def _trace_id(spec: TaskSpec, steps: int, data_dir: str | None, info) -> dict[str, Any]:
    from harness.runner import framework_versions

    return {"spec_hash": spec.spec_hash(), "steps": steps, "data_dir": data_dir,
            "versions": framework_versions(info)}  # fmt: skip


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
    """Trace every framework x mode x dtype (one process each, all tasks in it, up to
    ``jobs`` processes at once, each on its own cores), then compare every pair; returns
    one record per task x dtype x pair, also written to ``out_dir/equivalence.jsonl``.
    ``resume`` keeps the traces an earlier check of the same tasks left in ``out_dir``."""
    from harness.backend import install_hint, missing_packages
    from harness.executors import Job
    from harness.executors.local import LocalExecutor
    from harness.progress import Progress
    from harness.results import load_json, write_atomic
    from harness.runner import thread_env

    trace_dir = out_dir / "traces"
    trace_dir.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = (load_json(trace_dir / TRACE_INDEX) or {}) if resume else {}
    found: dict[tuple[str, str, str], dict[str, str]] = {}  # (fw, mode, dtype) -> task -> file
    problems: dict[tuple[str, str, str], dict[str, str]] = {}
    groups = [
        (fw, m, d)
        for fw, info in backends.items()
        for m in modes
        if m in info.modes
        for d in dtypes
    ]
    executor = LocalExecutor(max(1, min(jobs, len(groups))))
    futures = {}
    for fw, mode, dtype in groups:
        info = backends[fw]
        if missing_packages(info):
            problems[(fw, mode, dtype)] = {s.name: install_hint(info) for s, _ in specs}
            continue
        kept, todo = {}, []
        for spec, _ in specs:
            path = trace_dir / trace_name(spec.name, fw, mode, dtype)
            made = index.get(path.name)
            if path.is_file() and made == _trace_id(spec, steps, data_dir, info):
                kept[spec.name] = str(path)
            else:
                todo.append(spec)
        found[(fw, mode, dtype)] = kept
        if not todo:
            continue
        cfg = CheckConfig(
            framework=fw, target=info.target, mode=mode, dtype=dtype, steps=steps,
            specs=tuple(todo), out_dir=str(trace_dir), data_dir=data_dir,
            threads=executor.threads, extra_paths=tuple(extra_paths),
        )  # fmt: skip
        job = Job(f"check {fw}/{mode}/{dtype}", "harness.check", cfg.model_dump_json(),
                  thread_env(executor.threads), timeout_s)  # fmt: skip
        futures[(fw, mode, dtype)] = (job, todo, executor.submit(job))
    bar = Progress(len(futures), enabled=progress)
    try:
        for group, (job, todo, future) in futures.items():
            result = future.result()
            write_atomic(out_dir / "logs" / f"check-{'-'.join(group)}.log", result.log)
            if result.record is None:
                problems[group] = {s.name: result.detail for s in todo}
                bar.finished(job.label, {"status": "failed", "error": result.detail})
                continue
            made = result.record["files"]
            found[group].update(made)
            problems[group] = result.record["errors"]
            info = backends[group[0]]
            for spec in todo:
                if spec.name in made:
                    index[Path(made[spec.name]).name] = _trace_id(spec, steps, data_dir, info)
            write_atomic(trace_dir / TRACE_INDEX, json.dumps(index, indent=1))
            failed = ", ".join(result.record["errors"])
            bar.finished(job.label, {"status": "failed" if failed else "ok",
                                     "error": f"failed: {failed}" if failed else None})  # fmt: skip
    finally:
        bar.close()
        executor.close()
    records = []
    for spec, _ in specs:
        shape = data.sample_shape(spec.data, data_dir)
        for dtype in dtypes:
            rtol, steps_rtol, why = tolerance(spec, dtype)
            for (fa, ma), (fb, mb) in _pairs(list(backends), modes):
                if ma not in backends[fa].modes or mb not in backends[fb].modes:
                    continue
                rec = {
                    "task": spec.name,
                    "dtype": dtype,
                    "a": f"{fa}/{ma}",
                    "b": f"{fb}/{mb}",
                    "steps_asked": steps,
                    "rtol": rtol,
                    "steps_rtol": steps_rtol,
                    "tolerance_why": why,
                }
                files = [
                    found.get((f, m, dtype), {}).get(spec.name) for f, m in ((fa, ma), (fb, mb))
                ]
                if None in files:
                    why_not = [
                        problems.get((f, m, dtype), {}).get(spec.name, "not traced")
                        for (f, m), p in zip(((fa, ma), (fb, mb)), files, strict=True)
                        if p is None
                    ]
                    records.append({**rec, "status": "error", "error": "; ".join(why_not)})
                    continue
                with np.load(files[0]) as a, np.load(files[1]) as b:
                    result = compare(spec, shape, dict(a), dict(b), rtol, steps_rtol)
                    records.append({**rec, **result})
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
