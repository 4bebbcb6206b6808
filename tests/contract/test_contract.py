"""Every installed backend, every built-in task, every mode: the Backend contract.

Builds with the canonical weights, counts the spec's parameters, gives them
back unchanged, predicts the right shape, and lowers the loss on a fixed batch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import data
from harness.backend import BACKENDS, Options, load_backend
from harness.data.batching import random_batch
from harness.init import canonical_weights
from harness.spec import RECURRENT, builtin_tasks, load_spec, output_shape, task_param_count, walk
from tests import reference
from tests.conftest import backend_params

TASKS = list(builtin_tasks())


def input_shape(spec):
    # the data set's sample shape, known without loading it
    return data.sample_shape(spec.data)


def fixed_batch(spec, shape, n=32, dtype="float32"):
    return random_batch(spec, shape, n, dtype, seed=1)


def make(framework, mode, dtype="float32"):
    backend = load_backend(BACKENDS[framework].target)
    backend.configure(Options(mode=mode, device="cpu", threads=0, dtype=dtype))
    return backend


# Graph modes on every task are exercised by tests/equivalence (the three frameworks'
# compiled steps agree layer by layer and step by step, in float32); here
# they run on one task of each kind, which keeps the suite's compile time in bounds.
COMPILED_TASKS = {
    "graph": ("lenet", "rnn_names", "gan"),  # a CNN, a masked GRU, the two-network step
    "xla": ("lenet",),
}


def cells():
    for fw in backend_params():
        name = fw.values[0]
        for mode in BACKENDS[name].modes:
            for task in TASKS:
                if mode in COMPILED_TASKS and task not in COMPILED_TASKS[mode]:
                    continue
                yield pytest.param(name, mode, task, marks=fw.marks, id=f"{name}-{mode}-{task}")


@pytest.mark.parametrize("framework,mode,task", list(cells()))
def test_backend_contract(framework, mode, task):
    spec = load_spec(builtin_tasks()[task])
    shape = input_shape(spec)
    weights = canonical_weights(spec, shape)
    backend = make(framework, mode)
    state = backend.build(spec, shape, weights)

    assert backend.param_count(state) == task_param_count(spec, shape)
    got = backend.get_weights(state)
    assert set(got) == set(weights)
    for name, w in weights.items():
        np.testing.assert_array_equal(got[name], w, err_msg=name)

    batch = fixed_batch(spec, shape)
    gan = spec.recipe.kind == "gan"
    # a gan predicts with its generator, from noise, samples of the data's shape
    out = backend.predict(state, batch.z if gan else batch.x)
    want = shape if gan else output_shape(spec.model, shape)
    assert out.shape == (len(batch.x), *want)
    assert np.all(np.isfinite(out))

    losses = []
    for _ in range(8):
        state, loss = backend.train_step(state, batch)
        # a gan's step returns (discriminator loss, generator loss): the two networks
        # pull against each other, so only the discriminator's must fall on a fixed batch
        losses.append(float(loss[0] if gan else loss))
    backend.sync(state)
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"loss did not fall on a fixed batch: {losses}"
    moved = backend.get_weights(state)
    assert any(not np.array_equal(moved[k], weights[k]) for k in weights)


@pytest.mark.parametrize("framework", backend_params())
def test_native_init_differs_from_canonical(framework):
    spec = load_spec(builtin_tasks()["lenet"])
    shape = input_shape(spec)
    backend = make(framework, "eager")
    state = backend.build(spec, shape, None)
    native = backend.get_weights(state)
    canonical = canonical_weights(spec, shape)
    assert {k: v.shape for k, v in native.items()} == {k: v.shape for k, v in canonical.items()}
    assert not np.allclose(native["conv1.kernel"], canonical["conv1.kernel"])


@pytest.mark.parametrize("framework", backend_params())
def test_float64_build_keeps_precision(framework):
    spec = load_spec(builtin_tasks()["multi_feature_mlp"])
    shape = input_shape(spec)
    weights = canonical_weights(spec, shape, dtype="float64")
    backend = make(framework, "eager", dtype="float64")
    state = backend.build(spec, shape, weights)
    got = backend.get_weights(state)
    assert got["linear1.kernel"].dtype == np.float64
    np.testing.assert_array_equal(got["linear1.kernel"], weights["linear1.kernel"])
    out = backend.predict(state, fixed_batch(spec, shape, dtype="float64").x)
    assert out.dtype == np.float64


@pytest.mark.parametrize("framework", backend_params())
def test_loss_and_grads_leave_state_unchanged(framework):
    spec = load_spec(builtin_tasks()["lenet"])
    shape = input_shape(spec)
    weights = canonical_weights(spec, shape)
    backend = make(framework, "eager")
    state = backend.build(spec, shape, weights)
    batch = fixed_batch(spec, shape)
    loss, grads = backend.loss_and_grads(state, batch)
    assert math.isfinite(loss)
    assert {k: g.shape for k, g in grads.items()} == {k: w.shape for k, w in weights.items()}
    for name, w in backend.get_weights(state).items():
        np.testing.assert_array_equal(w, weights[name])


SEQUENCE_TASKS = [
    t
    for t in TASKS
    if any(
        layer.type in (*RECURRENT, "conv1d")
        for layer, _, _ in walk(
            load_spec(builtin_tasks()[t]).model.layers, input_shape(load_spec(builtin_tasks()[t]))
        )
    )
]


def sequence_cells():
    # eager only: tests/equivalence holds every graph mode to its eager mode
    for fw in backend_params():
        for mode in ("eager",):
            for task in SEQUENCE_TASKS:
                yield pytest.param(
                    fw.values[0], mode, task, marks=fw.marks, id=f"{fw.values[0]}-{mode}-{task}"
                )


@pytest.mark.parametrize("framework,mode,task", list(sequence_cells()))
def test_sequence_model_matches_numpy_reference(framework, mode, task):
    """float64 outputs and every layer's activations equal tests/reference.py's, which
    writes down the canonical gate orders and masking rules."""
    spec = load_spec(builtin_tasks()[task])
    shape = input_shape(spec)
    weights = canonical_weights(spec, shape, dtype="float64")
    backend = make(framework, mode, dtype="float64")
    state = backend.build(spec, shape, weights)
    x = fixed_batch(spec, shape, n=6, dtype="float64").x
    want, want_acts = reference.forward(spec.model, x, weights)
    np.testing.assert_allclose(backend.predict(state, x), want, rtol=1e-9, atol=1e-12)
    acts = backend.activations(state, x)
    for name, value in want_acts.items():
        np.testing.assert_allclose(acts[name], value, rtol=1e-9, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("framework,mode,task", list(sequence_cells()))
def test_padding_changes_no_logit(framework, mode, task):
    """The same ids with 6 more padding steps (a model built for the longer input, same
    weights) give the same logits: padded steps never enter a result."""
    spec = load_spec(builtin_tasks()[task])
    first = spec.model.layers[0]
    if first.type != "embedding" or not first.padding:
        pytest.skip("the task's sequences are not padded")
    shape = input_shape(spec)
    weights = canonical_weights(spec, shape)
    x = fixed_batch(spec, shape, n=8).x
    longer = spec.model_copy(
        update={"model": spec.model.model_copy(update={"input_shape": (shape[0] + 6,)})}
    )
    outs = []
    for s, xs in ((spec, x), (longer, np.pad(x, ((0, 0), (0, 6))))):
        backend = make(framework, mode)
        outs.append(backend.predict(backend.build(s, (xs.shape[1],), weights), xs))
    np.testing.assert_allclose(outs[1], outs[0], rtol=0, atol=1e-5)
