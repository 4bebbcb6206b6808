"""TensorFlow/Keras traps the generic contract does not catch.

float64 hyper-parameters (tf.cast of a Python float goes through float32),
the coupled weight decay, Adam's epsilon placement, no retracing in graph
modes, Keras' layouts (flatten order and "same" average pooling), and the
per-layer activations of the equivalence check.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from harness.backend import Batch, Options  # noqa: E402
from harness.data import sample_shape  # noqa: E402
from harness.spec import resolve_task, walk  # noqa: E402
from impls.tf import layers  # noqa: E402
from impls.tf.backend import TFBackend  # noqa: E402
from tests.conftest import tiny_spec  # noqa: E402


def backend(mode="eager", dtype="float64"):
    be = TFBackend()
    be.configure(Options(mode=mode, dtype=dtype))
    return be


def test_float64_sgd_matches_pytorch_rule_exactly():
    # momentum 0.9 and weight decay 0.1 are not float32-representable: a float32
    # detour in Keras' casts would show up as ~1e-9 differences, not ~1e-16
    spec = tiny_spec(
        [{"name": "h", "type": "dense", "units": 3}, {"type": "tanh"},
         {"name": "o", "type": "dense", "units": 2}],
        momentum=0.9, weight_decay=0.1,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    w = {
        "h.kernel": rng.normal(size=(4, 3)), "h.bias": rng.normal(size=3),
        "o.kernel": rng.normal(size=(3, 2)), "o.bias": rng.normal(size=2),
    }  # fmt: skip
    batch = Batch(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)))
    be = backend()
    state, probe = be.build(spec, (4,), w), be.build(spec, (4,), w)
    ref, vel = {k: v.copy() for k, v in w.items()}, {k: 0.0 for k in w}
    for _ in range(4):
        state, _ = be.train_step(state, batch)
        layers.set_weights(probe.model, ref)
        _, grads = be.loss_and_grads(probe, batch)
        for k in ref:  # torch.optim.SGD: coupled decay, then v = m*v + g; p -= lr*v
            vel[k] = 0.9 * vel[k] + grads[k] + 0.1 * ref[k]
            ref[k] = ref[k] - 0.1 * vel[k]
    for k, v in be.get_weights(state).items():
        np.testing.assert_allclose(v, ref[k], rtol=0, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("mode", ["eager", "xla"])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_float64_adam_matches_spec_formula_exactly(mode, weight_decay):
    # the spec's (PyTorch's, optax's) Adam adds eps to sqrt(v_hat); Keras' own Adam
    # adds it before the bias correction, an eps 1/sqrt(1 - b2^t) times larger. With
    # eps = 1e-3 and gradients ~0.1 that misplacement would show at ~1e-2, not 1e-12
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-3
    spec = tiny_spec(
        [{"name": "h", "type": "dense", "units": 3}, {"type": "tanh"},
         {"name": "o", "type": "dense", "units": 2}],
        name="adam", learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps,
        weight_decay=weight_decay,
    )  # fmt: skip
    rng = np.random.default_rng(1)
    w = {
        "h.kernel": rng.normal(size=(4, 3)), "h.bias": rng.normal(size=3),
        "o.kernel": rng.normal(size=(3, 2)), "o.bias": rng.normal(size=2),
    }  # fmt: skip
    batch = Batch(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)))
    be = backend(mode)
    state, probe = be.build(spec, (4,), w), be.build(spec, (4,), w)
    ref = {k: v.copy() for k, v in w.items()}
    m, v = {k: 0.0 for k in w}, {k: 0.0 for k in w}
    for t in range(1, 6):
        state, _ = be.train_step(state, batch)
        layers.set_weights(probe.model, ref)
        _, grads = be.loss_and_grads(probe, batch)
        for k in ref:  # the spec's Adam with coupled L2 decay, as torch.optim.Adam
            g = grads[k] + weight_decay * ref[k]
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            ref[k] = ref[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    for k, p in be.get_weights(state).items():
        np.testing.assert_allclose(p, ref[k], rtol=0, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("task", ["inception", "resnet"])
def test_activations_name_every_layer_and_end_at_predict(task, mode):
    spec = resolve_task(task)
    shape = sample_shape(spec.data)
    be = backend(mode)
    state = be.build(spec, shape, None)
    x = np.random.default_rng(0).normal(size=(3, *shape))
    acts = be.activations(state, x)
    expected = walk(spec.model.layers, shape)
    # blocks and the layers inside them, in walk's order, each with its own shape
    assert list(acts) == [layer.name for layer, _, _ in expected]
    for layer, _, out_shape in expected:
        assert acts[layer.name].shape == (3, *out_shape), layer.name
        assert acts[layer.name].dtype == np.float64, layer.name
    np.testing.assert_allclose(acts[expected[-1][0].name], be.predict(state, x), rtol=1e-12)
    if mode == "graph":  # the compiled training step is left as it was: one trace
        batch = Batch(x, np.zeros(3, np.int32))
        for _ in range(2):
            state, _ = be.train_step(state, batch)
            be.activations(state, x)
        assert be.stats(state)["traces"] == 1


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_graph_modes_trace_once(mode):
    spec = tiny_spec([{"name": "o", "type": "dense", "units": 1}], momentum=0.5)
    be = backend(mode, "float32")
    state = be.build(spec, (2,), None)
    batch = Batch(np.ones((8, 2), np.float32), np.ones((8, 1), np.float32))
    for _ in range(5):
        state, loss = be.train_step(state, batch)
        float(loss)
    assert be.stats(state)["traces"] == 1


def test_flatten_is_nhwc_and_same_avgpool_ignores_padding():
    spec = tiny_spec(
        [{"type": "avgpool2d", "size": 3, "stride": 1, "padding": "same"}, {"type": "flatten"},
         {"name": "o", "type": "dense", "units": 12, "use_bias": False}]
    )  # fmt: skip
    be = backend()
    state = be.build(spec, (2, 2, 3), {"o.kernel": np.eye(12)})
    # per-channel constant images: a mean over real pixels keeps the constant,
    # a mean that counted zero padding would shrink the border pixels
    x = np.broadcast_to(np.arange(1.0, 4.0), (1, 2, 2, 3)).copy()
    out = be.predict(state, x)
    np.testing.assert_array_equal(out, x.reshape(1, -1))  # NHWC order: channels fastest


def test_configure_repeats_and_gpu_check():
    be = TFBackend()
    with warnings.catch_warnings():
        # the runtime may have started already: fixed thread pools only warn
        warnings.simplefilter("ignore")
        for threads in (0, 1, 1, 2):
            be.configure(Options(threads=threads))
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        with pytest.raises(RuntimeError, match="no GPU"):
            be.configure(Options(device="gpu"))
