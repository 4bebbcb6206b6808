"""``rosetta explain`` without a framework: the side-by-side text from hand-made
results, the helpers the impls share, and user errors exiting 2."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import BACKENDS
from harness.cli import main
from harness.explain import clip_lines, example_batch, format_explain, op_table
from harness.runner import sibling_module
from harness.spec import builtin_tasks, load_spec, param_count, walk

LENET = load_spec(builtin_tasks()["lenet"])
SHAPE = (28, 28, 1)


def ok_result(count: int, prefix: str) -> dict:
    rows = [
        {"name": layer.name, "framework": f"{prefix}.{layer.type.title()}()"}
        for layer, _, _ in walk(LENET.model.layers, SHAPE)
    ]
    return {
        "status": "ok",
        "version": "9.9",
        "values": {
            "layout": "NHWC",
            "display": ["Model(", "  ...", ")"],
            "display_by": "print(model)",
            "param_count": count,
            "param_count_by": "counting",
            "spec_param_count": param_count(LENET.model, SHAPE),
            "layers": rows,
            "graphs": [op_table("step graph", ["mul"] * 3 + ["add"] * 2 + list("abcdefghij"))],
        },
    }


def error_of(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rosetta: error:") and "Traceback" not in err
    return err


def test_format_maps_every_layer_to_every_framework():
    results = {
        "torch": ok_result(8490, "fwA"),
        "tf": ok_result(8491, "fwB"),
        "jax": {"status": "unavailable", "error": "jax is not installed: pip ...", "version": None},
    }
    text = format_explain(LENET, results, SHAPE)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("conv1 "))
    assert "conv2d(filters=10, kernel=5)" in lines[at]
    # under the spec's line, one line per framework in order; the missing one says so
    assert lines[at + 1].split() == ["torch", "fwA.Conv2D()"]
    assert lines[at + 2].split() == ["tf", "fwB.Conv2D()"]
    assert lines[at + 3].split() == ["jax", "unavailable"]
    assert sum(1 for line in lines if line.strip().startswith("torch  fwA.")) == 8  # every layer
    assert "8,490 by counting; the spec: 8,490 (equal)" in text
    assert "8,491 by counting; the spec: 8,490 (DIFFERENT)" in text
    assert "step graph: 15 ops" in text and "3  mul" in text
    assert "4  (4 other op types)" in text  # 12 types: the top 8 shown, the other 4 summed
    assert "jax: unavailable: jax is not installed" in text


def test_format_indents_block_contents():
    spec = load_spec(builtin_tasks()["resnet"])
    text = format_explain(spec, {}, (28, 28, 1))
    assert "\n  rblock1 " in text and "\n    rblock1_conv1 " in text
    assert "residual(body 3, shortcut identity)" in text


def test_op_table_counts_and_orders():
    table = op_table("g", ["b", "a", "b", "c", "b", "a"], "why")
    assert table == {"title": "g", "total": 6, "ops": [["b", 3], ["a", 2], ["c", 1]], "note": "why"}


def test_clip_lines_says_what_was_cut():
    assert clip_lines("a\nb\n", limit=3) == ["a", "b"]
    assert clip_lines("\n".join("x" * 50), limit=40)[-1] == "... (10 more lines cut)"
    assert len(clip_lines("\n".join("x" * 50), limit=40)) == 41


@pytest.mark.parametrize(
    "task,y_shape,y_dtype",
    [("lenet", (8,), np.int32), ("xor", (8, 1), np.float32), ("linear_regression", (8, 1), None)],
)
def test_example_batch_fits_the_task(task, y_shape, y_dtype):
    spec = load_spec(builtin_tasks()[task])
    from harness import data

    shape = data.sample_shape(spec.data)
    x, y = example_batch(spec, shape)
    assert x.shape == (8, *shape) and x.dtype == np.float32
    assert y.shape == y_shape
    assert y.dtype == (y_dtype or np.float32)


def test_explain_module_sits_beside_the_backend():
    assert sibling_module(BACKENDS["jax"], "explain") == "impls.jax.explain"


def test_unknown_task_exits_2(capsys):
    err = error_of(["explain", "lenett"], capsys)
    assert "unknown task 'lenett'" in err and "lenet" in err


def test_no_task_and_unknown_framework_are_user_errors(capsys):
    assert "name one task" in error_of(["explain"], capsys)
    assert "allowed: torch, tf, jax" in error_of(
        ["explain", "lenet", "--frameworks", "mxnet"], capsys
    )
