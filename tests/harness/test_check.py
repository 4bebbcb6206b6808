"""The equivalence check's comparison, driven by numpy backends: it passes on the
same function and fails, naming the layer and step, on a deliberately wrong one."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.backend import BackendInfo, Options
from harness.check import compare, difference, run_check
from harness.spec import FLOAT64_RTOL, resolve_task
from harness.trace import trace
from tests.harness.fake_backend import DropsBiasBackend, NumpyBackend

ROOT = str(Path(__file__).resolve().parents[2])
FAKE = BackendInfo(
    "fake", "tests.harness.fake_backend:NumpyBackend", ("numpy",), "", ("eager", "graph")
)
BROKEN = BackendInfo(
    "broken", "tests.harness.fake_backend:DropsBiasBackend", ("numpy",), "", ("eager",)
)


def numpy_trace(backend_cls, task="xor", steps=4):
    backend = backend_cls()
    backend.configure(Options(dtype="float64"))
    return trace(backend, resolve_task(task), "float64", steps)


def test_difference_is_normwise_relative():
    assert difference(np.array([1.0, 1e-12]), np.array([1.0, 2e-12])) == (1e-12, 1e-12)
    assert difference(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert difference(np.zeros(2), np.zeros(3))[1] == float("inf")


def test_same_function_passes_at_every_step():
    spec = resolve_task("xor")
    a, b = numpy_trace(NumpyBackend), numpy_trace(NumpyBackend)
    result = compare(spec, (2,), a, b, FLOAT64_RTOL)
    assert result["status"] == "pass" and result["max_rel"] == 0.0
    assert result["steps"]["count"] == 4 and len(result["steps"]["per_step"]) == 4
    assert [x["layer"] for x in result["forward"]["layers"]] == ["hidden", "tanh_1", "out"]


def test_a_dropped_bias_is_caught_and_the_layer_named():
    spec = resolve_task("xor")
    result = compare(
        spec, (2,), numpy_trace(NumpyBackend), numpy_trace(DropsBiasBackend), FLOAT64_RTOL
    )
    assert result["status"] == "fail"
    assert result["forward"]["first_layer"] == "hidden"
    assert result["steps"]["first_step"]["step"] == 1


def test_a_late_divergence_is_located_at_its_step():
    spec = resolve_task("xor")
    a, b = numpy_trace(NumpyBackend), numpy_trace(NumpyBackend)
    b["step3/out.kernel"] = b["step3/out.kernel"] * (1 + 1e-6)
    result = compare(spec, (2,), a, b, FLOAT64_RTOL)
    assert result["status"] == "fail" and result["forward"]["first_layer"] is None
    assert result["steps"]["first_step"] == {
        "step": 3,
        "param": "out.kernel",
        "max_rel": result["steps"]["first_step"]["max_rel"],
    }


def test_run_check_in_processes_writes_records(tmp_path):
    records = run_check(
        [(resolve_task("xor"), "xor")],
        {"fake": FAKE, "broken": BROKEN},
        ["eager", "graph"],
        ["float64"],
        3,
        tmp_path,
        progress=False,
        extra_paths=(ROOT,),
    )
    by_pair = {(r["a"], r["b"]): r for r in records}
    assert by_pair[("fake/eager", "broken/eager")]["status"] == "fail"
    assert by_pair[("fake/eager", "broken/eager")]["forward"]["first_layer"] == "hidden"
    assert by_pair[("fake/eager", "fake/graph")]["status"] == "pass"
    assert (tmp_path / "equivalence.jsonl").read_text().count("\n") == len(records)


def test_a_steps_tolerance_loosens_the_steps_only():
    spec = resolve_task("xor")
    a, b = numpy_trace(NumpyBackend), numpy_trace(NumpyBackend)
    b["step2/out.kernel"] = b["step2/out.kernel"] * (1 + 1e-6)
    assert compare(spec, (2,), a, b, 1e-9, steps_rtol=1e-5)["status"] == "pass"
    b["grad/out.kernel"] = b["grad/out.kernel"] * (1 + 1e-6)  # gradients keep the tight one
    assert compare(spec, (2,), a, b, 1e-9, steps_rtol=1e-5)["status"] == "fail"


def test_a_steps_tolerance_needs_its_reason():
    import pytest

    from harness.spec import SpecError, parse_spec

    d = resolve_task("xor").model_dump(mode="json", exclude_none=True)
    d["tolerance"]["float32_steps"] = 1e-4
    with pytest.raises(SpecError, match="steps_why"):
        parse_spec(d, "xor.toml")
