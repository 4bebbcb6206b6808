"""`rosetta check` on every built-in task, every pair of installed frameworks:
same canonical weights + same batches => the same activations at every layer, the
same loss and gradients, and the same parameters after each of 5 optimizer steps.

float64 is the tight check (rounding only, rtol 1e-9), here in eager mode: the three
implementations compute the same function. float32 uses each task's stated tolerance
(its spec's ``tolerance.why``), here in graph mode: the compiled steps (torch.compile,
tf.function, jax.jit) agree with each other as closely as float32 rounding allows.
``rosetta check`` runs both dtypes in both modes and compares each framework's eager
mode with its graph mode too; the suite keeps two of the four to stay within its time
(cold torch.compile of every task in float64 alone took 2 of the suite's 24 minutes).
Each framework runs in its own process, as in a real check.
"""

from __future__ import annotations

import pytest

from harness.api import select_specs
from harness.backend import BACKENDS
from harness.check import run_check
from harness.spec import builtin_tasks
from tests.conftest import installed_backends

STEPS = 5
FRAMEWORKS = installed_backends()
pytestmark = [
    pytest.mark.skipif(len(FRAMEWORKS) < 2, reason="needs two frameworks installed"),
    pytest.mark.slow,
]


def failures(records):
    lines = []
    for r in records:
        if r["status"] == "pass":
            continue
        where = (
            r.get("error")
            or f"max rel {r['max_rel']:.2e} > {r['rtol']:.0e}; "
            f"first layer {r['forward']['first_layer']}, first step {r['steps']['first_step']}"
        )
        lines.append(f"{r['task']} {r['dtype']} {r['a']} vs {r['b']}: {where}")
    return "\n".join(lines)


# three groups of about equal time, so that the suite's two workers share them:
# XLA:CPU's float64 convolution kernel gradients are most of a float64 check's time
# (text_cnn's three conv1d kernels compile for about 10 s each), see docs/known-traps.md
CONV_TASKS = ("lenet", "inception", "resnet")
TASK_GROUPS = {
    "text_cnn": ["text_cnn"],
    "conv": [t for t in builtin_tasks() if t in CONV_TASKS],
    "rest": [t for t in builtin_tasks() if t not in (*CONV_TASKS, "text_cnn")],
}


def test_task_groups_cover_every_builtin_task():
    grouped = [t for tasks in TASK_GROUPS.values() for t in tasks]
    assert sorted(grouped) == sorted(builtin_tasks())


@pytest.mark.parametrize("group", list(TASK_GROUPS))
@pytest.mark.parametrize(
    "modes,dtype",
    [(["eager"], "float64"), (["graph"], "float32")],
    ids=["float64", "float32"],
)
def test_every_task_every_pair_every_step(modes, dtype, group, tmp_path):
    backends = {fw: BACKENDS[fw] for fw in FRAMEWORKS}
    specs = select_specs(TASK_GROUPS[group])
    records = run_check(specs, backends, modes, [dtype], STEPS, tmp_path, progress=False)
    assert {r["task"] for r in records} == set(TASK_GROUPS[group])
    assert all(r["steps"]["count"] == STEPS for r in records if r["status"] != "error")
    assert not failures(records), failures(records)


OPTIMIZERS = {
    "sgd_wd": {"name": "sgd", "learning_rate": 0.02, "momentum": 0.9, "weight_decay": 0.01},
    "adam": {"name": "adam", "learning_rate": 0.001},
    # a large epsilon makes its placement (before or after bias correction) visible
    "adam_wd_eps": {"name": "adam", "learning_rate": 0.001, "epsilon": 1e-3, "weight_decay": 0.01},
}


def test_optimizers_agree_step_by_step(tmp_path):
    ((lenet, source),) = select_specs(["lenet"])
    specs = []
    for name, opt in OPTIMIZERS.items():
        recipe = lenet.recipe.model_copy(update={"optimizer": type(lenet.recipe.optimizer)(**opt)})
        specs.append((lenet.model_copy(update={"name": f"lenet_{name}", "recipe": recipe}), source))
    backends = {fw: BACKENDS[fw] for fw in FRAMEWORKS}
    records = run_check(specs, backends, ["eager"], ["float64"], STEPS, tmp_path, progress=False)
    assert {r["task"] for r in records} == {s.name for s, _ in specs}
    assert not failures(records), failures(records)
