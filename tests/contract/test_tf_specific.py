"""TensorFlow/Keras traps the generic contract does not catch.

No retracing in graph modes, Keras' layouts (flatten order and "same" average pooling), the
per-layer activations of the equivalence check, and sequences: Keras' GRU gate
order (z, r, h), its stacked (2, 3*units) bias, unrolled loops, padded rows,
and the explicit masks (impls/tf/layers.py) in every mode; a gan's two updates
in one step (against tests/harness/fake_backend.py), per-step label smoothing,
an unclipped step left bit for bit, and the counters of stats(); the recipe's
formulas every backend shares are in test_recipe_rules.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from harness.backend import Batch, Options  # noqa: E402
from harness.data import sample_shape  # noqa: E402
from harness.data.batching import random_batch  # noqa: E402
from harness.init import canonical_weights  # noqa: E402
from harness.spec import (
    TASKS_DIR,
    Optimizer,
    load_spec,
    resolve_task,
    task_layers,
    task_param_count,
    walk,
)  # noqa: E402
from impls.tf import layers, train  # noqa: E402
from impls.tf.backend import TFBackend  # noqa: E402
from tests import reference  # noqa: E402
from tests.conftest import tiny_spec  # noqa: E402
from tests.harness.fake_backend import NumpyBackend  # noqa: E402


def backend(mode="eager", dtype="float64"):
    be = TFBackend()
    be.configure(Options(mode=mode, dtype=dtype))
    return be


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
        [
            {"type": "avgpool2d", "size": 3, "stride": 1, "padding": "same"},
            {"type": "flatten"},
            {"name": "o", "type": "dense", "units": 12, "use_bias": False},
        ]
    )
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


# --------------------------------------------------------------------------- sequences


def seq_spec(rnn: dict, steps=7, vocab=11, head=()) -> tuple:
    """embedding -> one recurrent layer -> (head) -> dense 3, with int ids [N, steps]."""
    layers_ = [
        {"name": "emb", "type": "embedding", "vocab": vocab, "dim": 4},
        {"name": "rec", "units": 5, **rnn},
        *head,
        {"name": "fc", "type": "dense", "units": 3},
    ]
    if rnn.get("return_sequences") and not head:
        layers_.insert(2, {"name": "pool", "type": "global_maxpool"})
    return tiny_spec(layers_, loss="softmax_cross_entropy", input_shape=[steps]), (steps,)


def padded_ids(n=5, steps=7, vocab=11, seed=0) -> np.ndarray:
    """Token ids padded after random lengths; row 0 is all padding (length 0), row 1 full."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, vocab, size=(n, steps)).astype(np.int32)
    lengths = np.concatenate([[0, steps], rng.integers(1, steps, size=n - 2)])
    x[np.arange(steps) >= lengths[:, None]] = 0
    return x


def test_gru_gate_order_and_stacked_bias_round_trip():
    spec, shape = seq_spec({"type": "gru", "bidirectional": True})
    w = canonical_weights(spec, shape, dtype="float64")
    state = backend().build(spec, shape, w)
    got = layers.get_weights(state.model)
    assert set(got) == set(w)
    for name in w:
        np.testing.assert_array_equal(got[name], w[name], err_msg=name)
    # Keras' columns are z, r, h; canonical r, z, n; bias is [input; recurrent]
    cell = state.model.get_layer("rec").backward_layer.cell
    u = 5
    kernel = cell.kernel.numpy()
    np.testing.assert_array_equal(kernel[:, :u], w["rec.backward_kernel"][:, u : 2 * u])  # z
    np.testing.assert_array_equal(kernel[:, u : 2 * u], w["rec.backward_kernel"][:, :u])  # r
    np.testing.assert_array_equal(kernel[:, 2 * u :], w["rec.backward_kernel"][:, 2 * u :])
    bias = cell.bias.numpy()
    assert bias.shape == (2, 3 * u)
    np.testing.assert_array_equal(bias[1, u : 2 * u], w["rec.backward_recurrent_bias"][:u])


def test_gru_gradients_come_back_in_canonical_gate_order():
    # a central difference on an r-gate and a z-gate entry of each GRU tensor: with
    # Keras' z, r, h columns returned unpermuted, the two would trade places
    spec, shape = seq_spec({"type": "gru"})
    w = canonical_weights(spec, shape, dtype="float64")
    be = backend()
    state = be.build(spec, shape, w)
    x = padded_ids()
    batch = Batch(x, np.arange(len(x), dtype=np.int32) % 3)
    _, grads = be.loss_and_grads(state, batch)
    assert {k: g.shape for k, g in grads.items()} == {k: v.shape for k, v in w.items()}
    eps = 1e-6
    for name in ("rec.kernel", "rec.recurrent_kernel", "rec.bias", "rec.recurrent_bias"):
        for col in (1, 6):  # r gate (units 0..4), z gate (5..9)
            idx = (0, col) if w[name].ndim == 2 else (col,)
            losses = []
            for sign in (1, -1):
                moved = {k: v.copy() for k, v in w.items()}
                moved[name][idx] += sign * eps
                layers.set_weights(state.model, moved)
                losses.append(be.loss_and_grads(state, batch)[0])
            numeric = (losses[0] - losses[1]) / (2 * eps)
            np.testing.assert_allclose(grads[name][idx], numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_unroll_matches_loop_and_reference_with_padding(kind, return_sequences):
    rnn = {"type": kind, "bidirectional": True, "return_sequences": return_sequences}
    x = padded_ids()
    outs = []
    for unroll in (False, True):
        spec, shape = seq_spec({**rnn, "unroll": unroll})
        w = canonical_weights(spec, shape, dtype="float64")
        be = backend()
        state = be.build(spec, shape, w)
        acts = be.activations(state, x)
        outs.append(acts["rec"])
        _, ref = reference.forward(spec.model, x, w)
        np.testing.assert_allclose(acts["rec"], ref["rec"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-12, atol=1e-14)
    # the all-padding row: a zero state (and zero outputs at every step)
    np.testing.assert_array_equal(outs[0][0], 0.0)
    if return_sequences:  # padded steps output zeros, in both directions
        assert np.all(outs[0][x == 0] == 0.0)


def test_lstm_loaded_forget_bias_is_kept():
    # Keras' unit_forget_bias=True sets the forget gate's bias to 1 at initialization;
    # a loaded canonical bias must come back as loaded
    spec, shape = seq_spec({"type": "lstm"})
    w = canonical_weights(spec, shape)
    w["rec.bias"][:] = 0.0
    state = backend("eager", "float32").build(spec, shape, w)
    np.testing.assert_array_equal(layers.get_weights(state.model)["rec.bias"], 0.0)
    native = backend("eager", "float32").build(spec, shape, None)
    np.testing.assert_array_equal(layers.get_weights(native.model)["rec.bias"][5:10], 1.0)


def test_masked_pooling_softmax_and_shifted_conv_mask():
    # a row of 2 real steps through conv1d kernel 3 has no real window: max 0; the
    # softmax after a return_sequences GRU is a plain softmax (keras.layers.Softmax
    # takes the GRU's Keras mask and raises); the mean divides by real steps only
    spec = tiny_spec(
        [
            {"name": "emb", "type": "embedding", "vocab": 11, "dim": 4},
            {
                "name": "convs",
                "type": "parallel",
                "branches": [
                    [
                        {"name": "c", "type": "conv1d", "filters": 3, "kernel": 3},
                        {"type": "tanh"},
                        {"name": "mx", "type": "global_maxpool"},
                    ],
                    [
                        {"name": "g", "type": "gru", "units": 3, "return_sequences": True},
                        {"name": "d", "type": "dense", "units": 3},
                        {"name": "sm", "type": "softmax"},
                        {"name": "av", "type": "global_avgpool"},
                    ],
                ],
            },
            {"name": "fc", "type": "dense", "units": 2},
        ],
        loss="softmax_cross_entropy",
        input_shape=[6],
    )
    w = canonical_weights(spec, (6,), dtype="float64")
    x = padded_ids(n=4, steps=6)
    x[2, 2:] = 0
    for mode in ("eager", "graph"):
        be = backend(mode)
        state = be.build(spec, (6,), w)
        acts = be.activations(state, x)
        _, ref = reference.forward(spec.model, x, w)
        for name, value in ref.items():
            np.testing.assert_allclose(acts[name], value, rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_array_equal(acts["mx"][[0, 2]], 0.0)
        np.testing.assert_array_equal(acts["av"][0], 0.0)  # no real step: 0, not 0/0
        assert np.all(np.isfinite(be.predict(state, x)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_xla_sequence_model_matches_reference_and_traces_once(dtype):
    spec, shape = seq_spec(
        {"type": "lstm", "bidirectional": True, "return_sequences": True},
        head=[
            {"name": "conv", "type": "conv1d", "filters": 4, "kernel": 2},
            {"name": "pool", "type": "global_avgpool"},
        ],
    )
    w = canonical_weights(spec, shape, dtype=dtype)
    be = backend("xla", dtype)
    state = be.build(spec, shape, w)
    x = padded_ids(n=8)
    x[0, 0] = 3  # one real step: conv kernel 2 has no real window, the mean is 0
    want, _ = reference.forward(spec.model, x, w)
    tol = 1e-12 if dtype == "float64" else 1e-5
    out = be.predict(state, x)
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(out[0], w["fc.bias"], rtol=tol)  # pooled zeros -> bias
    batch = random_batch(spec, shape, 8, dtype)
    losses = [float(be.train_step(state, batch)[1]) for _ in range(3)]
    assert losses[-1] < losses[0]
    assert be.stats(state)["traces"] == 1


def test_per_step_unrolled_rnn_float_input_trains_in_graph_mode():
    spec = resolve_task("hello_rnn")
    shape = sample_shape(spec.data)
    w = canonical_weights(spec, shape, dtype="float64")
    be = backend("graph")
    state = be.build(spec, shape, w)
    assert not any("mask" in layer.name for layer in state.model.layers)  # no embedding
    batch = random_batch(spec, shape, 4, "float64")
    want, _ = reference.forward(spec.model, batch.x, w)
    np.testing.assert_allclose(be.predict(state, batch.x), want, rtol=1e-12)
    loss, _ = be.loss_and_grads(state, batch)
    logits = want - want.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, batch.y[..., None].astype(int), -1)
    np.testing.assert_allclose(loss, -picked.mean(), rtol=1e-12)  # mean over N and steps


def test_adam_on_embedding_is_dense_with_repeated_tokens():
    # an embedding's gradient is tf.IndexedSlices, one slice per token occurrence;
    # applied slice by slice, Adam's v would get g1^2 + g2^2 for a token seen twice
    # instead of (g1 + g2)^2, and absent rows would skip the moments' decay
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    spec = tiny_spec(
        [
            {"name": "emb", "type": "embedding", "vocab": 6, "dim": 2},
            {"type": "global_avgpool"},
            {"name": "o", "type": "dense", "units": 2},
        ],
        loss="softmax_cross_entropy",
        input_shape=[4],
        name="adam",
        learning_rate=lr,
    )
    w = canonical_weights(spec, (4,), dtype="float64")
    batch = Batch(np.array([[1, 1, 2, 0], [2, 1, 1, 1]], np.int32), np.array([0, 1], np.int32))
    be = backend()
    state, probe = be.build(spec, (4,), w), be.build(spec, (4,), w)
    ref = {k: v.copy() for k, v in w.items()}
    m, v = {k: 0.0 for k in w}, {k: 0.0 for k in w}
    for t in range(1, 4):
        state, _ = be.train_step(state, batch)
        layers.set_weights(probe.model, ref)
        _, grads = be.loss_and_grads(probe, batch)
        for k in ref:
            m[k] = b1 * m[k] + (1 - b1) * grads[k]
            v[k] = b2 * v[k] + (1 - b2) * grads[k] ** 2
            ref[k] = ref[k] - lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)
    np.testing.assert_allclose(
        be.get_weights(state)["emb.embeddings"], ref["emb.embeddings"], rtol=0, atol=1e-13
    )


# --------------------------------------------------------------------------- gan


def sgd_gan(**optimizer):
    """The gan task with SGD + momentum (what tests/harness/fake_backend.py steps)."""
    gan = load_spec(TASKS_DIR / "gan.toml")
    opt = {"name": "sgd", "learning_rate": 0.05, "momentum": 0.9, **optimizer}
    recipe = gan.recipe.model_copy(update={"optimizer": Optimizer(**opt)})
    return gan.model_copy(update={"recipe": recipe})


@pytest.mark.parametrize("mode", ["eager", "graph", "xla"])
def test_float64_gan_steps_match_numpy_backend(mode):
    # the discriminator's step, then the generator's through the *updated*
    # discriminator with the same noise; two optimizers with their own momentum
    spec = sgd_gan(weight_decay=0.01)
    w = canonical_weights(spec, (2,), dtype="float64")
    rng = np.random.default_rng(0)
    batches = [Batch(rng.normal(size=(16, 2)), None, rng.normal(size=(16, 8))) for _ in range(3)]
    be, ref = backend(mode), NumpyBackend()
    state, ref_state = be.build(spec, (2,), w), ref.build(spec, (2,), w)
    assert be.param_count(state) == task_param_count(spec, (2,))
    loss, grads = be.loss_and_grads(state, batches[0])
    ref_loss, ref_grads = ref.loss_and_grads(ref_state, batches[0])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    assert set(grads) == set(w)
    for k, g in grads.items():
        np.testing.assert_allclose(g, ref_grads[k], rtol=1e-9, atol=1e-15, err_msg=k)
    for batch in batches:
        state, losses = be.train_step(state, batch)
        ref_state, ref_losses = ref.train_step(ref_state, batch)
        np.testing.assert_allclose([float(v) for v in losses], ref_losses, rtol=1e-12)
    for k, p in be.get_weights(state).items():
        np.testing.assert_allclose(p, ref_state["params"][k], rtol=1e-9, atol=1e-15, err_msg=k)
    z = batches[0].z
    acts = be.activations(state, z)
    assert list(acts) == [layer.name for layer, _, _ in task_layers(spec, (2,))]
    np.testing.assert_allclose(acts["g_out"], be.predict(state, z), rtol=1e-12)
    judged, _ = ref._forward(ref_state, ref.predict(ref_state, z), layers=ref_state["d_layers"])
    np.testing.assert_allclose(acts["d_out"], judged, rtol=1e-9)  # D on G(z)
    if mode != "eager":  # both updates in one tf.function, traced once
        assert be.stats(state)["traces"] == 1


# --------------------------------------------------------------------------- regularization


def mlp_spec(loss="mse", outputs=2, **recipe):
    """4 -> dense 3 -> tanh -> dense ``outputs``, with recipe fields (l1, clip_norm,
    label_smoothing) and an optimizer dict under ``optimizer``."""
    spec = tiny_spec(
        [
            {"name": "h", "type": "dense", "units": 3},
            {"type": "tanh"},
            {"name": "o", "type": "dense", "units": outputs},
        ],
        loss=loss,
    )
    opt = Optimizer(**recipe.pop("optimizer", {"name": "sgd", "learning_rate": 0.1}))
    return spec.model_copy(
        update={"recipe": spec.recipe.model_copy(update={**recipe, "optimizer": opt})}
    )


def mlp_weights(seed=1, outputs=2):
    rng = np.random.default_rng(seed)
    return {
        "h.kernel": rng.normal(size=(4, 3)),
        "h.bias": rng.normal(size=3),
        "o.kernel": rng.normal(size=(3, outputs)),
        "o.bias": rng.normal(size=outputs),
    }


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_label_smoothing_takes_every_step_as_a_sample(dtype):
    # per-step logits [N, steps, C], in the loss's own dtype (the backend-level
    # formula: tests/contract/test_recipe_rules.py)
    eps, classes = 0.1, 5
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 4, classes)) * 3
    y = rng.integers(0, classes, size=logits.shape[:-1])
    loss = train.loss_fn("softmax_cross_entropy", dtype, label_smoothing=eps)
    got = float(loss(y.astype(np.int32), logits.astype(dtype)))
    shifted = logits - logits.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    targets = (1 - eps) * np.eye(classes)[y] + eps / classes
    want = -(targets * logp).sum(-1).mean()
    np.testing.assert_allclose(got, want, rtol=1e-14 if dtype == "float64" else 1e-6)


def test_an_unclipped_step_is_bit_for_bit_the_plain_one():
    # under the bound the factor is exactly 1 (Keras' global_clipnorm would scale by
    # 49 * (1/49) = 1 - 2**-53); the clipped factor: tests/contract/test_recipe_rules.py
    lr, wd, clip_norm = 0.1, 0.2, 49.0
    opt = {"name": "sgd", "learning_rate": lr, "weight_decay": wd}
    spec = mlp_spec(clip_norm=clip_norm, optimizer=opt)
    w = mlp_weights()
    batch = Batch(np.random.default_rng(5).normal(size=(8, 4)), np.ones((8, 2)))
    be = backend("graph")
    state = be.build(spec, (4,), w)
    _, grads = be.loss_and_grads(state, batch)
    assert np.sqrt(sum((g**2).sum() for g in grads.values())) < clip_norm
    state, _ = be.train_step(state, batch)
    for k, p in be.get_weights(state).items():
        np.testing.assert_array_equal(p, w[k] - lr * (grads[k] + wd * w[k]), err_msg=k)


# --------------------------------------------------------------------------- counters


@pytest.mark.parametrize("mode", ["eager", "graph"])
def test_stats_count_traces_and_threads(mode):
    spec = tiny_spec([{"name": "o", "type": "dense", "units": 1}])
    be = backend(mode, "float32")
    state = be.build(spec, (2,), None)
    batch = Batch(np.ones((8, 2), np.float32), np.ones((8, 1), np.float32))
    for _ in range(4):
        state, loss = be.train_step(state, batch)
        float(loss)
    be.predict(state, batch.x)
    stats = be.stats(state)
    assert stats["traces"] == (1 if mode == "graph" else 0)
    assert stats["predict_traces"] == (1 if mode == "graph" else 0)
    assert stats["loss_and_grads_traces"] == 0
    assert isinstance(stats["threads"], int) and stats["threads"] >= 1
    assert stats["threads_by"]


# --------------------------------------------------------------------------- minimal loop


def test_minimal_loop_runs_as_bench_worker(tmp_path):
    # the worker protocol end to end: Keras' fit in turns with the harness's graph step,
    # in its own process, the config from stdin, the matmul timed after each turn
    from harness.bench import Measure, paired

    m = Measure("mlp", 16, "tf", "graph", threads=1)
    result = paired(m, tmp_path, "fit", matmul_sizes=(64,), blocks=2, block=3)
    assert len(result.get("minimal_block_s", [])) == 2, result
    assert min(result["harness_block_s"]) > 0 and min(result["matmul_flops"]) > 0


@pytest.mark.parametrize(
    ("model", "mode"), [("mlp", "eager"), ("lenet", "eager"), ("lenet", "graph"), ("mlp", "fit")]
)
def test_minimal_loop_steps_every_model_and_mode(model, mode):
    from impls.tf import minimal

    record = minimal.run({"model": model, "batch": 16, "steps": 8, "mode": mode})
    assert record["step_median_s"] > 0 and record["steps"] == 8
    assert record["steady_steps"] == 2  # 8 steps: the first, 5 warm-up, 2 timed


def test_the_graph_matmul_traces_once_per_size():
    # the bench worker calls it after every turn
    b = backend("graph", "float32")
    for n in (64, 64, 32):
        b.matmul_flops(n, repeats=2)
    assert b._matmul.experimental_get_tracing_count() == 2


def test_explain_shows_both_networks_of_a_gan():
    from harness.spec import TASKS_DIR, load_spec, task_layers, task_param_count
    from impls.tf import explain

    gan = load_spec(TASKS_DIR / "gan.toml")
    result = explain.explain(gan, (2,))
    assert [row["name"] for row in result["layers"]] == [
        layer.name for layer, _, _ in task_layers(gan, (2,))
    ]
    assert result["param_count"] == result["spec_param_count"] == task_param_count(gan, (2,))
    assert result["display"][0] == "generator:"
    assert any(line == "discriminator:" for line in result["display"])
    # one graph for both updates: three sigmoid cross-entropies (real, fake, the generator's)
    assert dict(result["graphs"][0]["ops"])["Log1p"] == 3


# --------------------------------------------------------------------------- lessons


def test_shapes_lesson_counts_traces():
    from impls.tf import lessons

    values = lessons.shapes()
    # batch 32 traced already; 17, 24 and 40 are new; a None batch axis traces once
    assert (values["traces_fixed"], values["traces_varying"], values["traces_remedy"]) == (1, 3, 1)
    assert values["seconds_varying"] > 0 and values["seconds_remedy"] > 0


def test_control_flow_lesson_is_converted_to_cond():
    from impls.tf import lessons

    values = lessons.control_flow()
    assert "tf.cond" in values["outcome"] and values["error"] == "-"
    assert values["positive"] == [2.0, 4.0, 6.0]
    assert values["negative"] == values["remedy_negative"] == [-2.0, -3.0, -4.0]
    assert values["breaks"] == "0 breaks; 1 trace"


def test_spec_counted_flops_match_tensorflow_profiler_on_the_mlp():
    # TF's graph profiler counts the traced train step's float operations, the
    # element-wise ones and the optimizer's too; the spec counts the matrix products
    # (harness/flops.py), which must be nearly all of it. (Its convolution-gradient
    # statistics count by another formula, so LeNet is checked by torch and JAX.)
    import tensorflow as tf

    from harness.bench import bench_spec
    from harness.flops import train_step_flops

    spec = bench_spec("mlp", 16)
    shape = sample_shape(spec.data)
    be = backend("graph", "float32")
    state = be.build(spec, shape, canonical_weights(spec, shape, "float32"))
    rng = np.random.default_rng(0)
    batch = Batch(rng.random((16, *shape), dtype=np.float32), rng.integers(0, 10, 16))
    graph = state.train_fn.get_concrete_function(*be._tensors(state, batch)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    counted = train_step_flops(spec, shape, 16)
    total = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    assert counted <= total <= 1.10 * counted, (counted, total)  # measured: 4% more
