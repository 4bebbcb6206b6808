"""PyTorch traps the generic contract does not catch.

Torch is NCHW with OIHW / [out, in] weights, its ``padding=`` is symmetric, and
its average pooling excludes padding only for that symmetric padding. So the
layouts, the NHWC flatten order and the XLA ``same`` rule (odd pixel after) are
checked here against a plain-numpy forward pass; and torch.compile must trace
the train step once, with dropout on in training and off in predict.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from harness.backend import Batch, Options  # noqa: E402
from harness.data import sample_shape  # noqa: E402
from harness.init import canonical_weights  # noqa: E402
from harness.spec import builtin_tasks, load_spec, parse_spec, walk  # noqa: E402
from impls.torch import layers  # noqa: E402
from impls.torch.backend import TorchBackend  # noqa: E402

# float64: rounding only; float32: oneDNN sums in another order than numpy
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-5)}

ZOO = [  # every lopsided padding case on a non-square, odd-sized image
    {"name": "c1", "type": "conv2d", "filters": 4, "kernel": 4, "stride": 2, "padding": "same"},
    {"type": "tanh"},
    {"name": "c2", "type": "conv2d", "filters": 3, "kernel": 2, "padding": "same"},
    {"type": "maxpool2d", "size": 2, "padding": "same"},
    {"name": "res", "type": "residual",
     "body": [{"name": "r1", "type": "conv2d", "filters": 5, "kernel": 3, "padding": "same"}],
     "shortcut": [{"name": "r2", "type": "conv2d", "filters": 5, "kernel": 1, "use_bias": False}]},
    {"name": "par", "type": "parallel", "branches": [
        [{"type": "avgpool2d", "size": 3, "stride": 2, "padding": "same"}],
        [{"type": "avgpool2d", "size": 2, "stride": 1, "padding": "same"},
         {"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"}],
        [{"name": "p1", "type": "conv2d", "filters": 2, "kernel": 3, "stride": 2, "padding": "same"}],
        [{"type": "avgpool2d", "size": 3, "stride": 1, "padding": "same"},  # symmetric pads
         {"type": "maxpool2d", "size": 3, "stride": 1, "padding": "same"},
         {"type": "maxpool2d", "size": 2, "padding": "same"}],
    ]},
    {"type": "dropout", "rate": 0.5},
    {"type": "flatten"},
    {"name": "fc", "type": "dense", "units": 3},
]  # fmt: skip


def zoo_spec():
    return parse_spec({
        "name": "zoo",
        "data": {"dataset": "none"},
        "model": {"input_shape": [9, 7, 2], "layers": ZOO},
        "recipe": {"loss": "softmax_cross_entropy", "batch_size": 4, "epochs": 1,
                   "optimizer": {"name": "sgd", "learning_rate": 0.1}},
    })  # fmt: skip


# ---------------------------------------------------------------- numpy reference (NHWC)


def _same(size, k, s):
    total = max((-(-size // s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _windows(x, k, s, padding, value):
    """[N, oh, ow, C, k, k] windows of an NHWC array, padded by the XLA rule."""
    if padding == "same":
        pads = ((0, 0), _same(x.shape[1], k, s), _same(x.shape[2], k, s), (0, 0))
        x = np.pad(x, pads, constant_values=value)
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]


def numpy_forward(layers_, w, x, record=None):
    """The layers' output for NHWC ``x``; every layer's own output goes in ``record``."""
    for layer in layers_:
        t = layer.type
        if t == "conv2d":
            win = _windows(x, layer.kernel, layer.stride, layer.padding, 0.0)
            x = np.einsum("nhwcij,ijco->nhwo", win, w[f"{layer.name}.kernel"])
            x = x + w[f"{layer.name}.bias"] if layer.use_bias else x
        elif t == "dense":
            x = x @ w[f"{layer.name}.kernel"] + w.get(f"{layer.name}.bias", 0.0)
        elif t == "maxpool2d":
            x = _windows(x, layer.size, layer.strides, layer.padding, -np.inf).max(axis=(4, 5))
        elif t == "avgpool2d":
            total = _windows(x, layer.size, layer.strides, layer.padding, 0.0).sum(axis=(4, 5))
            real = _windows(np.ones_like(x), layer.size, layer.strides, layer.padding, 0.0)
            x = total / real.sum(axis=(4, 5))
        elif t == "flatten":
            x = x.reshape(len(x), -1)
        elif t == "residual":
            body = numpy_forward(layer.body, w, x, record)
            x = body + numpy_forward(layer.shortcut, w, x, record)
        elif t == "parallel":
            x = np.concatenate([numpy_forward(b, w, x, record) for b in layer.branches], axis=-1)
        elif t != "dropout":  # dropout is off at inference
            x = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh,
                 "sigmoid": lambda v: 1 / (1 + np.exp(-v))}[t](x)  # fmt: skip
        if record is not None:
            record[layer.name] = x
    return x


# ---------------------------------------------------------------- tests


def backend(mode="eager", dtype="float64"):
    be = TorchBackend()
    be.configure(Options(mode=mode, dtype=dtype))
    return be


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("task", ["lenet", "zoo"])
def test_forward_matches_numpy(task, dtype):
    spec = zoo_spec() if task == "zoo" else load_spec(builtin_tasks()[task])
    shape = tuple(spec.model.input_shape)
    w = canonical_weights(spec, shape, dtype)
    x = np.random.default_rng(0).normal(size=(4, *shape)).astype(dtype)
    be = backend(dtype=dtype)
    got = be.predict(be.build(spec, shape, w), x)
    assert got.dtype == dtype
    rtol, atol = TOLERANCE[dtype]
    np.testing.assert_allclose(got, numpy_forward(spec.model.layers, w, x), rtol=rtol, atol=atol)


@pytest.mark.parametrize("task", ["inception", "resnet", "zoo"])
def test_activations_follow_walk_and_end_in_predict(task):
    spec = zoo_spec() if task == "zoo" else load_spec(builtin_tasks()[task])
    shape = tuple(spec.model.input_shape) if task == "zoo" else sample_shape(spec.data)
    w = canonical_weights(spec, shape, "float64")
    x = np.random.default_rng(2).normal(size=(3, *shape))
    be = backend()
    state = be.build(spec, shape, w)
    acts = be.activations(state, x)
    expected = {layer.name: (3, *out) for layer, _, out in walk(spec.model.layers, shape)}
    assert list(acts) == list(expected)  # walk()'s names, in walk()'s order
    assert {k: a.shape for k, a in acts.items()} == expected
    assert all(a.dtype == np.float64 and a.flags.c_contiguous for a in acts.values())
    # the same modules in the same order as the forward pass: the very same numbers
    np.testing.assert_array_equal(acts[spec.model.layers[-1].name], be.predict(state, x))
    # each layer's own output (NHWC, not torch's NCHW), blocks and their insides alike
    reference: dict[str, np.ndarray] = {}
    numpy_forward(spec.model.layers, w, x, reference)
    assert set(reference) == set(expected)
    for name, want in reference.items():
        np.testing.assert_allclose(acts[name], want, rtol=1e-10, atol=1e-12, err_msg=name)


def test_activations_in_graph_mode_leave_the_compiled_step_alone():
    spec = zoo_spec()
    be = backend(mode="graph", dtype="float32")
    state = be.build(spec, (9, 7, 2), canonical_weights(spec, (9, 7, 2)))
    rng = np.random.default_rng(3)
    batch = Batch(rng.normal(size=(4, 9, 7, 2)).astype("float32"), rng.integers(0, 3, 4))
    be.train_step(state, batch)
    acts = be.activations(state, batch.x)  # eval mode, eager, no hooks
    assert acts["fc"].dtype == np.float32
    be.train_step(state, batch)  # back in train mode: the same graph, no retrace
    assert be.stats(state) == {"traces": 1, "predict_traces": 0}
    assert not state.model.body.fc._forward_hooks and not state.model.body.fc._forward_pre_hooks
    np.testing.assert_allclose(
        be.activations(state, batch.x)["fc"], be.predict(state, batch.x), rtol=1e-5, atol=1e-5
    )


def test_layouts_round_trip_and_match_torch():
    spec = load_spec(builtin_tasks()["lenet"])
    w = canonical_weights(spec, (28, 28, 1))
    model = layers.build_model(spec, (28, 28, 1), torch.float32)
    layers.set_weights(model, w)
    conv, fc = model.param_layers["conv1"], model.param_layers["fc"]
    assert tuple(conv.weight.shape) == (10, 1, 5, 5)  # OIHW
    assert tuple(fc.weight.shape) == (10, 320)  # [out, in]
    np.testing.assert_array_equal(conv.weight[3, 0, 1, 2].item(), w["conv1.kernel"][1, 2, 0, 3])
    got = layers.get_weights(model)
    assert all(np.array_equal(got[k], w[k]) and got[k].flags.c_contiguous for k in w)
    with pytest.raises(ValueError, match="conv1.bias"):
        layers.set_weights(model, {**w, "conv1.bias": np.zeros(1, np.float32)})


def test_dropout_is_seeded_and_active_only_in_training():
    spec = zoo_spec()
    w = canonical_weights(spec, (9, 7, 2), "float64")
    rng = np.random.default_rng(1)
    batch = Batch(rng.normal(size=(4, 9, 7, 2)), rng.integers(0, 3, 4).astype(np.int32))
    losses, grads = [], []
    for _ in range(2):  # two builds from the same seed draw the same masks
        be = backend()
        state = be.build(spec, (9, 7, 2), w)
        grads.append(be.loss_and_grads(state, batch)[0])
        losses.append(float(be.train_step(state, batch)[1]))
    assert losses[0] == losses[1]
    assert losses[0] != pytest.approx(grads[0], abs=1e-6)  # training loss saw dropout


def test_graph_mode_traces_once():
    spec = load_spec(builtin_tasks()["xor"])
    be = backend(mode="graph", dtype="float32")
    state = be.build(spec, (2,), canonical_weights(spec, (2,)))
    rng = np.random.default_rng(0)
    batches = [Batch(rng.normal(size=(8, 2)).astype("float32"), rng.integers(0, 2, (8, 1)))
               for _ in range(3)]  # fmt: skip
    for i in range(6):
        be.train_step(state, batches[i % 3])
        be.predict(state, batches[0].x[:5])  # eval in between must not retrace the step
    assert be.stats(state)["traces"] == 1


def test_configure_repeats_and_refuses_a_missing_gpu():
    be = TorchBackend()
    for threads in (1, 2, 0):  # the inter-op setter raises on a second call: guarded
        be.configure(Options(threads=threads))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            be.configure(Options(device="gpu"))
