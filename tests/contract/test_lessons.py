"""The autograd lesson in every installed framework, each in its own process.

One gradient call gives dt/dx = 1.5; a second call adds up to 3 in torch
(``.grad`` accumulates) and gives 1.5 again in TensorFlow and JAX (fresh
gradients). Every value here (1, 3, 9, 1.5) is exact in float32, so the
checks are exact too.
"""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.lessons import run_lesson
from tests.conftest import backend_params, installed_backends

SECOND_CALL = {"torch": (3.0, "accumulated"), "tf": (1.5, "fresh"), "jax": (1.5, "fresh")}
GRAPH_NODES = {  # what each framework's representation of t(x) must name
    "torch": ("MeanBackward0", "MulBackward0", "AddBackward0", "AccumulateGrad"),
    "tf": ("Placeholder", "AddV2", "Mul", "Mean"),
    "jax": ("add", "mul", "reduce_sum", "div"),
}


def full(value: float) -> list[list[float]]:
    return [[value, value], [value, value]]


@pytest.fixture(scope="module")
def results():
    # one run for the module: each framework's process costs seconds to import
    return run_lesson("autograd", installed_backends())


@pytest.mark.parametrize("fw", backend_params())
def test_one_call_gives_one_and_a_half(results, fw):
    assert results[fw]["status"] == "ok", results[fw].get("error")
    values = results[fw]["values"]
    assert (values["y"], values["z"], values["t"]) == (full(3.0), full(9.0), 9.0)
    assert values["grad_once"] == full(1.5)


@pytest.mark.parametrize("fw", backend_params())
def test_second_call_accumulates_only_in_torch(results, fw):
    grad, means = SECOND_CALL[fw]
    values = results[fw]["values"]
    assert values["grad_twice"] == full(grad)
    assert values["twice_means"] == means


@pytest.mark.parametrize("fw", backend_params())
def test_graph_shows_the_computation(results, fw):
    graph = "\n".join(results[fw]["values"]["graph"])
    for node in GRAPH_NODES[fw]:
        assert node in graph, graph


def test_command_end_to_end(capsys):
    if not installed_backends():
        pytest.skip("no framework installed: pip install -e '.[all]'")
    assert main(["lesson", "autograd"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    once = next(line for line in lines if line.startswith("  dt/dx, 1 call"))
    twice = next(line for line in lines if line.startswith("  dt/dx, 2 calls"))
    assert once.count("[[1.5, 1.5], [1.5, 1.5]]") == len(installed_backends())
    if "torch" in installed_backends():
        assert "[[3, 3], [3, 3]]" in twice
    assert twice.count("[[1.5, 1.5], [1.5, 1.5]]") == len(set(installed_backends()) - {"torch"})
