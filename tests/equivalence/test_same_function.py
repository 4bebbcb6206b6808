"""Same canonical weights + same batch => the same forward output, loss and gradients
in every pair of installed frameworks; then the same parameters after a few
optimizer steps, compared at every step.

Float64 is the tight check (differences are rounding only); float32 has a
looser, stated bound because the frameworks sum in different orders and pick
different convolution kernels (oneDNN, Eigen, XLA).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from harness.backend import BACKENDS, Batch, Options, load_backend
from harness.init import canonical_weights
from harness.spec import builtin_tasks, load_spec
from tests.conftest import installed_backends
from tests.contract.test_contract import fixed_batch, input_shape

TASKS = list(builtin_tasks())
STEPS = 3
# (rtol, atol) per dtype
TOLERANCE = {
    "float64": (1e-9, 1e-12),  # rounding only
    # float32: sums of up to ~1,400 products in another order, different conv kernels
    "float32": (2e-4, 2e-5),
}
PAIRS = list(itertools.combinations(installed_backends(), 2))
pytestmark = pytest.mark.skipif(not PAIRS, reason="needs at least two frameworks installed")


@functools.cache
def outputs(framework: str, task: str, dtype: str):
    """Forward, loss, gradients, and the parameters after each of STEPS steps."""
    spec = load_spec(builtin_tasks()[task])
    shape = input_shape(spec)
    backend = load_backend(BACKENDS[framework].target)
    backend.configure(Options(mode="eager", device="cpu", threads=0, dtype=dtype))
    state = backend.build(spec, shape, canonical_weights(spec, shape, dtype))
    batch = fixed_batch(spec, shape, n=16, dtype=dtype)
    forward = backend.predict(state, batch.x)
    loss, grads = backend.loss_and_grads(state, batch)
    trajectory = []
    for _ in range(STEPS):
        state, _ = backend.train_step(state, Batch(batch.x, batch.y))
        trajectory.append(backend.get_weights(state))
    return forward, loss, grads, trajectory


def _close(a, b, dtype, what):
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "-".join(p))
def test_forward_loss_and_gradients_agree(pair, task, dtype):
    a, b = (outputs(fw, task, dtype) for fw in pair)
    _close(a[0], b[0], dtype, f"{task}: forward output, {pair}")
    _close(a[1], b[1], dtype, f"{task}: loss, {pair}")
    assert a[2].keys() == b[2].keys()
    for name in a[2]:
        _close(a[2][name], b[2][name], dtype, f"{task}: gradient of {name}, {pair}")


@pytest.mark.parametrize(
    "task", [t for t in TASKS if t not in ("inception", "resnet", "softmax_mlp")]
)
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "-".join(p))
def test_optimizer_steps_agree_at_every_step(pair, task):
    a, b = (outputs(fw, task, "float64") for fw in pair)
    for step, (wa, wb) in enumerate(zip(a[3], b[3], strict=True), start=1):
        for name in wa:
            _close(wa[name], wb[name], "float64", f"{task}: {name} after step {step}, {pair}")
