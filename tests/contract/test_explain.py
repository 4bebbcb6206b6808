"""``explain`` in every installed framework for every built-in task, called in-process
(the subprocess path is the lessons' and is tested there): the framework's own
parameter count equals the spec's, one mapping row per spec layer, graphs with ops."""

from __future__ import annotations

import functools
import importlib

import pytest

from harness import data
from harness.spec import builtin_tasks, load_spec, task_layers, task_param_count
from tests.conftest import backend_params

TASKS = list(builtin_tasks())


@functools.cache
def explained(framework: str, task: str) -> tuple:
    # built once per pair, shared by the tests below: building and tracing costs seconds
    spec = load_spec(builtin_tasks()[task])
    shape = data.sample_shape(spec.data)
    module = importlib.import_module(f"impls.{framework}.explain")
    return spec, shape, module.explain(spec, shape)


def cells():
    for fw in backend_params():
        for task in TASKS:
            yield pytest.param(fw.values[0], task, marks=fw.marks, id=f"{fw.values[0]}-{task}")


@pytest.mark.parametrize("framework,task", list(cells()))
def test_parameter_count_is_the_spec_s(framework, task):
    spec, shape, values = explained(framework, task)
    # a gan's count is both networks'
    assert values["param_count"] == task_param_count(spec, shape) == values["spec_param_count"]


@pytest.mark.parametrize("framework,task", list(cells()))
def test_one_mapping_row_per_spec_layer(framework, task):
    spec, shape, values = explained(framework, task)
    names = [layer.name for layer, _, _ in task_layers(spec, shape)]
    assert [row["name"] for row in values["layers"]] == names
    assert all(row["framework"] for row in values["layers"])


@pytest.mark.parametrize("framework,task", list(cells()))
def test_graphs_count_ops_and_display_shows_the_model(framework, task):
    spec, shape, values = explained(framework, task)
    assert values["graphs"]
    for graph in values["graphs"]:
        assert graph["total"] > 0
        assert graph["total"] == sum(n for _, n in graph["ops"])
    assert 0 < len(values["display"]) <= 41  # 40 lines and the "cut" line at most
    assert values["layout"] in ("NCHW", "NHWC")


@pytest.mark.parametrize("framework", backend_params())
def test_lenet_names_the_framework_classes(framework):
    expected = {
        "torch": ("torch.nn.Conv2d(1, 10, kernel_size=(5, 5)", "ConvolutionBackward0"),
        "tf": ("keras.layers.Conv2D(filters=10, kernel_size=(5, 5))", "Conv2D"),
        "jax": ("flax.nnx.Conv(in_features=1, out_features=10", "conv_general_dilated"),
    }[framework]
    _, _, values = explained(framework, "lenet")
    assert values["layers"][0]["framework"].startswith(expected[0])
    ops = {name for graph in values["graphs"] for name, _ in graph["ops"]}
    assert expected[1] in ops
