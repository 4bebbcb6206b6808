"""PyTorch traps the generic contract does not catch.

Torch is NCHW with OIHW / [out, in] weights, its ``padding=`` is symmetric, and
its average pooling excludes padding only for that symmetric padding. So the
layouts, the NHWC flatten order and the XLA ``same`` rule (odd pixel after) are
checked here against a plain-numpy forward pass; and torch.compile must trace
the train step once, with dropout on in training and off in predict. A gan's two
steps are checked against the numpy backend in float64 (the recipe's formulas,
the same in every backend: test_recipe_rules.py).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from harness import metrics  # noqa: E402
from harness.backend import Batch, Options  # noqa: E402
from harness.data import sample_shape  # noqa: E402
from harness.data.batching import random_batch  # noqa: E402
from harness.init import canonical_weights  # noqa: E402
from harness.spec import (  # noqa: E402
    TASKS_DIR,
    Optimizer,
    builtin_tasks,
    load_spec,
    masked_inputs,
    param_count,
    param_shapes,
    parse_spec,
    task_layers,
    task_param_count,
    walk,
)
from impls.torch import explain, layers, train  # noqa: E402
from impls.torch.backend import TorchBackend  # noqa: E402
from tests import reference  # noqa: E402
from tests.conftest import tiny_spec  # noqa: E402
from tests.harness.fake_backend import NumpyBackend  # noqa: E402

# float64: rounding only; float32: oneDNN sums in another order than numpy
TOLERANCE = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-5)}

ZOO = [  # every lopsided padding case on a non-square, odd-sized image
    {"name": "c1", "type": "conv2d", "filters": 4, "kernel": 4, "stride": 2, "padding": "same"},
    {"type": "tanh"},
    {"name": "c2", "type": "conv2d", "filters": 3, "kernel": 2, "padding": "same"},
    {"type": "maxpool2d", "size": 2, "padding": "same"},
    {
        "name": "res",
        "type": "residual",
        "body": [{"name": "r1", "type": "conv2d", "filters": 5, "kernel": 3, "padding": "same"}],
        "shortcut": [
            {"name": "r2", "type": "conv2d", "filters": 5, "kernel": 1, "use_bias": False}
        ],
    },
    {
        "name": "par",
        "type": "parallel",
        "branches": [
            [{"type": "avgpool2d", "size": 3, "stride": 2, "padding": "same"}],
            [
                {"type": "avgpool2d", "size": 2, "stride": 1, "padding": "same"},
                {"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"},
            ],
            [
                {
                    "name": "p1",
                    "type": "conv2d",
                    "filters": 2,
                    "kernel": 3,
                    "stride": 2,
                    "padding": "same",
                }
            ],
            [
                {"type": "avgpool2d", "size": 3, "stride": 1, "padding": "same"},  # symmetric pads
                {"type": "maxpool2d", "size": 3, "stride": 1, "padding": "same"},
                {"type": "maxpool2d", "size": 2, "padding": "same"},
            ],
        ],
    },
    {"type": "dropout", "rate": 0.5},
    {"type": "flatten"},
    {"name": "fc", "type": "dense", "units": 3},
]


def zoo_spec(layers_=ZOO):
    return parse_spec(
        {
            "name": "zoo",
            "data": {"dataset": "none"},
            "model": {"input_shape": [9, 7, 2], "layers": layers_},
            "recipe": {
                "loss": "softmax_cross_entropy",
                "batch_size": 4,
                "epochs": 1,
                "optimizer": {"name": "sgd", "learning_rate": 0.1},
            },
        }
    )


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
            x = {
                "relu": lambda v: np.maximum(v, 0),
                "tanh": np.tanh,
                "sigmoid": lambda v: 1 / (1 + np.exp(-v)),
            }[t](x)
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
    # a conv, dropout (train vs eval mode) and the dense layer: compiling the whole zoo
    # cold took 77 s of the suite, and its layers are not what this test is about
    spec = zoo_spec([*ZOO[:2], *ZOO[-3:]])
    be = backend(mode="graph", dtype="float32")
    state = be.build(spec, (9, 7, 2), canonical_weights(spec, (9, 7, 2)))
    rng = np.random.default_rng(3)
    batch = Batch(rng.normal(size=(4, 9, 7, 2)).astype("float32"), rng.integers(0, 3, 4))
    be.train_step(state, batch)
    acts = be.activations(state, batch.x)  # eval mode, eager, no hooks
    assert acts["fc"].dtype == np.float32
    be.train_step(state, batch)  # back in train mode: the same graph, no retrace
    stats = be.stats(state)
    assert (stats["traces"], stats["predict_traces"], stats["recompiles"]) == (1, 0, 0)
    assert not state.model.body.fc._forward_hooks and not state.model.body.fc._forward_pre_hooks
    np.testing.assert_allclose(
        be.activations(state, batch.x)["fc"], be.predict(state, batch.x), rtol=1e-5, atol=1e-5
    )


def test_layouts_round_trip_and_match_torch():
    spec = load_spec(builtin_tasks()["lenet"])
    w = canonical_weights(spec, (28, 28, 1))
    model = layers.build_network(spec.model, (28, 28, 1), torch.float32)
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
    batches = [
        Batch(rng.normal(size=(8, 2)).astype("float32"), rng.integers(0, 2, (8, 1)))
        for _ in range(3)
    ]
    for i in range(6):
        be.train_step(state, batches[i % 3])
        be.predict(state, batches[0].x[:5])  # eval in between must not retrace the step
    stats = be.stats(state)
    assert stats["traces"] == 1 and stats["predict_traces"] == 1
    # Dynamo's own counters agree: two frames (the step's forward + loss, predict),
    # compiled once each, whole
    assert (stats["compiles"], stats["recompiles"], stats["graph_breaks"]) == (2, 0, 0)
    assert stats["graphs"] == 2 and stats["threads"] == torch.get_num_threads()
    eager = backend(dtype="float32")
    state = eager.build(spec, (2,), None)
    eager.train_step(state, batches[0])
    counts = eager.stats(state)
    assert all(counts[k] == 0 for k in ("traces", "compiles", "recompiles", "graph_breaks"))


def test_configure_repeats_and_refuses_a_missing_gpu():
    be = TorchBackend()
    for threads in (1, 2, 0):  # the inter-op setter raises on a second call: guarded
        be.configure(Options(threads=threads))
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            be.configure(Options(device="gpu"))


# ---------------------------------------------------------------- sequences

SEQ_LEN = 7


def recurrent_spec(kind, *, unroll, return_sequences=False):
    """embedding -> a bidirectional recurrent layer -> dense (per step, then a masked
    max, with ``return_sequences``), for token ids [SEQ_LEN]."""
    layers_ = [
        {"name": "emb", "type": "embedding", "vocab": 11, "dim": 3},
        {
            "name": "rec",
            "type": kind,
            "units": 4,
            "bidirectional": True,
            "return_sequences": return_sequences,
            "unroll": unroll,
        },
        {"name": "fc", "type": "dense", "units": 3},
    ]
    if return_sequences:
        layers_.append({"name": "pool", "type": "global_maxpool"})
    return tiny_spec(layers_, "softmax_cross_entropy", [SEQ_LEN])


def token_batch(spec, n=6, seed=0):
    """Random ids padded after random lengths, with an all-padding row (length 0,
    which pack_padded_sequence refuses) and a row without padding."""
    batch = random_batch(spec, (SEQ_LEN,), n, "float64", seed=seed)
    x = batch.x.copy()
    x[1] = 0
    x[2] = np.arange(1, SEQ_LEN + 1)
    return Batch(x, batch.y)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_cells_in_a_loop_equal_the_fused_layer_and_the_reference(kind, return_sequences):
    """unroll (RNNCell/GRUCell/LSTMCell stepped, torch.where on padded steps) and the
    fused layer over a PackedSequence: the same outputs, activations and gradients
    as each other and as tests/reference.py, a length-0 row included (zero state)."""
    results = []
    for unroll in (False, True):
        spec = recurrent_spec(kind, unroll=unroll, return_sequences=return_sequences)
        w = canonical_weights(spec, (SEQ_LEN,), "float64")
        batch = token_batch(spec)
        be = backend()
        state = be.build(spec, (SEQ_LEN,), w)
        acts = be.activations(state, batch.x)
        loss, grads = be.loss_and_grads(state, batch)
        results.append((acts, loss, grads))
        want, want_acts = reference.forward(spec.model, batch.x, w)
        np.testing.assert_allclose(be.predict(state, batch.x), want, rtol=1e-10, atol=1e-12)
        for name, value in want_acts.items():
            np.testing.assert_allclose(acts[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
        # the all-padding row: zero state, zero outputs on every step
        np.testing.assert_array_equal(acts["rec"][1], 0.0)
        assert set(grads) == set(w)
    (acts_f, loss_f, grads_f), (acts_u, loss_u, grads_u) = results
    assert loss_u == pytest.approx(loss_f, rel=1e-12)
    for name in grads_f:
        np.testing.assert_allclose(grads_u[name], grads_f[name], rtol=1e-9, atol=1e-13)


def _numpy_loss(spec, x, y, w):
    logits, _ = reference.forward(spec.model, x, w)
    return metrics.loss("softmax_cross_entropy", logits, y)


GRADIENT_SPECS = {
    # per-step layers on a mask, conv1d shortening it, masked average pooling
    "lstm_conv1d_avg": [
        {"name": "emb", "type": "embedding", "vocab": 9, "dim": 3},
        {"name": "lstm", "type": "lstm", "units": 3, "return_sequences": True},
        {"name": "step", "type": "dense", "units": 4},
        {"type": "tanh"},
        {"name": "conv", "type": "conv1d", "filters": 2, "kernel": 2},
        {"type": "global_avgpool"},
        {"name": "fc", "type": "dense", "units": 3},
    ],
    # a bidirectional GRU's last state, and an RNN unrolled over its sequence output
    "gru_rnn_max": [
        {"name": "emb", "type": "embedding", "vocab": 9, "dim": 3},
        {"name": "gru", "type": "gru", "units": 2, "bidirectional": True, "return_sequences": True},
        {
            "name": "rnn",
            "type": "rnn",
            "units": 3,
            "return_sequences": True,
            "unroll": True,
            "bidirectional": True,
        },
        {"type": "global_maxpool"},
        {"name": "fc", "type": "dense", "units": 3},
    ],
}


@pytest.mark.parametrize("name", list(GRADIENT_SPECS))
def test_gradients_are_finite_differences_of_the_reference(name):
    """Every canonical gradient (layouts included; no frozen bias among them) is the
    derivative of the numpy reference's loss, by central differences in float64."""
    spec = tiny_spec(GRADIENT_SPECS[name], "softmax_cross_entropy", [SEQ_LEN])
    w = canonical_weights(spec, (SEQ_LEN,), "float64")
    batch = token_batch(spec, n=5, seed=3)
    be = backend()
    loss, grads = be.loss_and_grads(be.build(spec, (SEQ_LEN,), w), batch)
    assert loss == pytest.approx(_numpy_loss(spec, batch.x, batch.y, w), rel=1e-10)
    assert set(grads) == set(w)
    rng, eps = np.random.default_rng(0), 1e-6
    for param, g in grads.items():
        for idx in map(tuple, rng.integers(0, g.shape, size=(3, g.ndim))):
            plus, minus = dict(w), dict(w)
            plus[param], minus[param] = w[param].copy(), w[param].copy()
            plus[param][idx] += eps
            minus[param][idx] -= eps
            numeric = (
                _numpy_loss(spec, batch.x, batch.y, plus)
                - _numpy_loss(spec, batch.x, batch.y, minus)
            ) / (2 * eps)
            assert g[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (param, idx)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_the_second_bias_is_frozen_at_zero(kind):
    """torch's bias_hh, which the spec lacks: zero, untrainable, uncounted, unnamed,
    and still zero after training (Adam with weight decay would move a trained zero)."""
    spec = recurrent_spec(kind, unroll=False)
    spec = spec.model_copy(
        update={
            "recipe": spec.recipe.model_copy(
                update={"optimizer": Optimizer(name="adam", learning_rate=0.1, weight_decay=0.1)}
            )
        }
    )
    be = backend()
    state = be.build(spec, (SEQ_LEN,), None)  # torch's own init draws a bias_hh: zeroed
    rnn = state.model.param_layers["rec"].rnn
    frozen = [rnn.bias_hh_l0, rnn.bias_hh_l0_reverse]
    assert all(not b.requires_grad and not b.any() for b in frozen)
    assert be.param_count(state) == param_count(spec.model, (SEQ_LEN,))
    assert set(be.get_weights(state)) == set(param_shapes(spec.model, (SEQ_LEN,)))
    before = be.get_weights(state)
    for _ in range(3):
        be.train_step(state, token_batch(spec))
    assert all(not b.any() for b in frozen)
    assert not np.array_equal(be.get_weights(state)["rec.bias"], before["rec.bias"])


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_unrolled_cells_trace_into_one_graph_with_the_mask(kind):
    """Dynamo traces the unrolled cells with torch.where on the mask without a graph
    break (fullgraph=True raises at one), and the traced graph gives the reference's
    numbers. The "eager" compile backend runs that graph as is: Inductor's compile
    of the same graph is the contract test's business (it costs a minute here)."""
    spec = recurrent_spec(kind, unroll=True, return_sequences=True)
    w = canonical_weights(spec, (SEQ_LEN,), "float64")
    batch = token_batch(spec)
    model = layers.build_network(spec.model, (SEQ_LEN,), torch.float64)
    layers.set_weights(model, w)
    model.eval()
    torch.compiler.reset()
    traced = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        got = traced(torch.as_tensor(batch.x)).numpy()
    want, _ = reference.forward(spec.model, batch.x, w)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


RESHAPES = [  # NHWC order through torch's NCHW: reshape, softmax on channels, pooling
    {"name": "to_image", "type": "reshape", "shape": [2, 3, 4]},
    {"name": "sm", "type": "softmax"},
    {
        "name": "par",
        "type": "parallel",
        "branches": [
            [
                {"name": "to_seq", "type": "reshape", "shape": [6, 4]},
                {
                    "name": "c1",
                    "type": "conv1d",
                    "filters": 3,
                    "kernel": 3,
                    "stride": 2,
                    "padding": "same",
                },  # 6 steps: one pad step, after
                {"name": "t1", "type": "tanh"},
                {"name": "avg", "type": "global_avgpool"},
            ],
            [{"name": "img_max", "type": "global_maxpool"}],
            [{"name": "img_avg", "type": "global_avgpool"}],
            [{"name": "flat", "type": "flatten"}],
        ],
    },
    {"name": "fc", "type": "dense", "units": 3},
]


def test_reshape_softmax_and_pooling_follow_nhwc():
    spec = tiny_spec(RESHAPES, "softmax_cross_entropy", [24])
    w = canonical_weights(spec, (24,), "float64")
    x = np.random.default_rng(4).normal(size=(3, 24))
    be = backend()
    state = be.build(spec, (24,), w)
    acts = be.activations(state, x)
    _, want = reference.forward(spec.model, x, w)
    assert set(acts) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(acts[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_array_equal(acts["fc"], be.predict(state, x))


def test_explain_names_torch_s_sequence_modules():
    spec = load_spec(builtin_tasks()["rnn_names"])
    model = layers.build_network(spec.model, (20,), torch.float32)
    modules = explain._modules_by_name(model)
    masked = masked_inputs(spec.model)
    lines = {n: explain.sequence_line(modules[n], masked[n]) for n in ("embed", "gru")}
    assert lines["embed"] == "torch.nn.Embedding(128, 32); mask = ids != 0"
    assert lines["gru"].startswith(
        "torch.nn.GRU(32, 64, batch_first=True, bidirectional=True) on pack_padded_sequence"
    )
    assert explain.sequence_line(modules["fc"], False) is None


# ---------------------------------------------------------------- gan

GAN = load_spec(TASKS_DIR / "gan.toml")


def gan_spec(**recipe):
    """The gan task with recipe changes (SGD with momentum: the numpy backend's)."""
    optimizer = Optimizer(name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.01)
    update = {"optimizer": optimizer, **recipe}
    return GAN.model_copy(update={"recipe": GAN.recipe.model_copy(update=update)})


def gan_batch(n=16, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return Batch(rng.normal(size=(n, 2)).astype(dtype), None, rng.normal(size=(n, 8)).astype(dtype))


def test_gan_steps_match_the_numpy_backend():
    """Two gan steps in float64: each network's own SGD, the generator's step
    against the updated discriminator; both losses, the gradients at the start,
    activations of both networks and the samples, as tests/harness/fake_backend.py."""
    spec, shape = gan_spec(), (2,)
    w = canonical_weights(spec, shape, "float64")
    be, ref = backend(), NumpyBackend()
    ref.configure(Options())
    state, ref_state = be.build(spec, shape, w), ref.build(spec, shape, w)
    assert be.param_count(state) == task_param_count(spec, shape)
    batch = gan_batch()
    loss, grads = be.loss_and_grads(state, batch)
    ref_loss, ref_grads = ref.loss_and_grads(ref_state, batch)
    assert loss == pytest.approx(ref_loss, rel=1e-12) and set(grads) == set(w)
    for name in w:
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=1e-9, atol=1e-14)
    acts = be.activations(state, batch.z)
    assert list(acts) == [layer.name for layer, _, _ in task_layers(spec, shape)]
    for name, value in ref.activations(ref_state, batch.z).items():
        np.testing.assert_allclose(acts[name], value, rtol=1e-10, atol=1e-14, err_msg=name)
    for seed in (0, 1):
        batch = gan_batch(seed=seed)
        _, losses = be.train_step(state, batch)
        _, ref_losses = ref.train_step(ref_state, batch)
        np.testing.assert_allclose([float(v) for v in losses], ref_losses, rtol=1e-12)
        got, want = be.get_weights(state), ref.get_weights(ref_state)
        for name in w:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(
        be.predict(state, batch.z), ref.predict(ref_state, batch.z), rtol=1e-10
    )


def test_gan_clips_and_penalizes_each_network_on_its_own():
    """l1 and clipping per network, plain SGD: the discriminator moves by its own
    clipped gradient at the start, the generator by its clipped gradient against
    the *updated* discriminator (read off loss_and_grads of a state built from the
    new discriminator and the old generator)."""
    opt = Optimizer(name="sgd", learning_rate=0.1)
    spec, shape = gan_spec(optimizer=opt, l1=0.01, clip_norm=0.05), (2,)
    w = canonical_weights(spec, shape, "float64")
    be, batch = backend(), gan_batch()
    state = be.build(spec, shape, w)
    _, at_start = be.loss_and_grads(state, batch)
    be.train_step(state, batch)
    new = be.get_weights(state)
    discriminator = {n for n in w if n.startswith("d")}
    mixed = {n: (new if n in discriminator else w)[n] for n in w}
    _, against_new = be.loss_and_grads(be.build(spec, shape, mixed), batch)
    for names, g in ((discriminator, at_start), (set(w) - discriminator, against_new)):
        norm = np.sqrt(sum(np.sum(g[n] ** 2) for n in names))
        assert norm > 0.05  # clipping is on
        for n in names:
            want = w[n] - 0.1 * g[n] * (0.05 / norm)
            np.testing.assert_allclose(new[n], want, rtol=1e-12, atol=1e-15, err_msg=n)


def test_gan_graph_mode_compiles_three_functions_once():
    """Graph mode: the generator's forward and each network's objective, compiled
    once each (no retrace over steps, no graph break), the same numbers as eager."""
    spec, shape = gan_spec(), (2,)
    w = canonical_weights(spec, shape)
    results = []
    for mode in ("eager", "graph"):
        be = backend(mode=mode, dtype="float32")
        state = be.build(spec, shape, w)
        for seed in range(4):
            _, losses = be.train_step(state, gan_batch(seed=seed, dtype="float32"))
        results.append((be.get_weights(state), [float(v) for v in losses]))
    stats = be.stats(state)
    assert (stats["traces"], stats["compiles"], stats["recompiles"]) == (3, 3, 0)
    assert stats["graph_breaks"] == 0
    (eager, eager_losses), (graph, graph_losses) = results
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-5)
    for name in w:
        np.testing.assert_allclose(graph[name], eager[name], rtol=1e-4, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------- regularization


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_label_smoothing_takes_every_step_as_a_sample():
    # per-step logits [N, steps, C]: the targets (1 - eps) * onehot + eps / C at each
    # step (the backend-level formula: tests/contract/test_recipe_rules.py)
    eps = 0.2
    rng = np.random.default_rng(1)
    per_step, labels = rng.normal(size=(3, 5, 4)), rng.integers(0, 4, (3, 5))
    got = train.loss_fn("softmax_cross_entropy", eps)(
        torch.as_tensor(per_step), torch.as_tensor(labels)
    )
    targets = (1 - eps) * np.eye(4)[labels] + eps / 4
    want = -np.mean(np.sum(targets * _log_softmax(per_step), -1))
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_explain_shows_both_networks_of_a_gan():
    result = explain.explain(GAN, (2,))
    assert [row["name"] for row in result["layers"]] == [
        layer.name for layer, _, _ in task_layers(GAN, (2,))
    ]
    assert result["param_count"] == result["spec_param_count"] == task_param_count(GAN, (2,))
    assert result["display"][0] == "generator = Model("
    # both objectives' backward: three BCE losses (real, fake, the generator's)
    ops = dict(result["graphs"][0]["ops"])
    assert ops["BinaryCrossEntropyWithLogitsBackward0"] == 3


# ---------------------------------------------------------------- bench and lessons


def test_compile_counter_counts_a_data_dependent_graph_break():
    """Dynamo's counters["graph_break"] misses the break of an ``if`` on a tensor;
    the counting backend sees it on the graph (``compile_subgraph_reason``)."""
    from impls.torch.lessons import _branchy

    torch.compiler.reset()
    counter = train.CompileCounter()
    compiled = torch.compile(_branchy, backend=counter)
    assert compiled(torch.ones(3)).tolist() == [2.0, 2.0, 2.0]
    assert compiled(-torch.ones(3)).tolist() == [-2.0, -2.0, -2.0]
    # the condition's graph (ended by the break), then each branch's resume graph
    assert (counter.count, counter.breaks) == (3, 1)


def test_minimal_loop_runs_both_models_in_both_modes(tmp_path):
    from harness.bench import Measure, paired
    from impls.torch import minimal

    for model in ("mlp", "lenet"):
        for mode in ("eager", "graph"):
            record = minimal.run({"model": model, "batch": 8, "steps": 3, "mode": mode})
            assert record["step_median_s"] > 0 and record["steps"] == 3
    # and once as rosetta bench runs it: in turns with the harness's step, in a process
    result = paired(Measure("lenet", 8, "torch", "eager", 1), tmp_path, "eager", blocks=2, block=3)
    assert len(result.get("minimal_block_s", [])) == 2 and min(result["harness_block_s"]) > 0


def test_shapes_lesson_recompiles_once_then_runs_a_symbolic_batch():
    from impls.torch import lessons

    values = lessons.shapes()
    counts = (values["traces_fixed"], values["traces_varying"], values["traces_remedy"])
    assert counts == (1, 1, 1)  # one static graph, one symbolic; dynamic=True: symbolic at once
    graph = "\n".join(values["graph"])
    assert "(32, 64)" in graph and "gap between the two runs' losses: 0.0e+00" in graph


def test_control_flow_lesson_breaks_the_graph_and_torch_cond_does_not():
    from impls.torch import lessons

    values = lessons.control_flow()
    assert values["positive"] == [2.0, 4.0, 6.0] and values["negative"] == [-2.0, -3.0, -4.0]
    assert values["breaks"] == "1 graph break; 3 graphs" and values["error"] == "-"
    assert values["remedy_negative"] == [-2.0, -3.0, -4.0]
    assert any("fullgraph=True refuses" in line for line in values["graph"])


@pytest.mark.parametrize("task", ["mlp", "lenet"])
def test_spec_counted_flops_match_torch_flop_counter(task):
    # the roofline's FLOPs come from the spec (harness/flops.py); PyTorch's own
    # counter, on one eager training step, counts the same matrix products exactly
    from torch.utils.flop_counter import FlopCounterMode

    from harness.bench import bench_spec
    from harness.flops import train_step_flops

    spec = bench_spec(task, 16)
    shape = sample_shape(spec.data)
    be = backend(dtype="float32")
    state = be.build(spec, shape, canonical_weights(spec, shape, "float32"))
    rng = np.random.default_rng(0)
    batch = Batch(rng.random((16, *shape), dtype=np.float32), rng.integers(0, 10, 16))
    with FlopCounterMode(display=False) as counter:
        be.train_step(state, batch)
    assert counter.get_total_flops() == train_step_flops(spec, shape, 16)
