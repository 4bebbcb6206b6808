"""JAX/Flax traps the generic contract does not catch.

Flax's average pooling counts padding unless told otherwise; "same" padding
must put the odd pixel after; the x64 flag is global, so a float32 run after a
float64 one must still stay float32 everywhere; the state is pure; jax.jit traces once;
``activations`` names every layer of ``walk`` and ends in what predict gives.
A gan's two steps match the numpy reference; jit compiles the step once (Adam's
step count must be committed to the device); per-step label smoothing and
Optax's exact clipping follow the spec (the recipe's formulas every backend
shares: test_recipe_rules.py). The fast max pool (a reshape and a max with its
own gradient) gives reduce_window's outputs and gradients bit for bit, ties
included; the bench's minimal loop runs.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("flax")
pytest.importorskip("optax")

import jax  # noqa: E402
from flax import nnx  # noqa: E402

from harness import data  # noqa: E402
from harness.backend import Batch, Options  # noqa: E402
from harness.spec import Parallel, Residual, builtin_tasks, load_spec, walk  # noqa: E402
from impls.jax import layers, train  # noqa: E402
from impls.jax.backend import JaxBackend  # noqa: E402
from tests.conftest import tiny_spec  # noqa: E402


def backend(mode="eager", dtype="float64"):
    be = JaxBackend()
    be.configure(Options(mode=mode, dtype=dtype))
    return be


MLP = [
    {"name": "h", "type": "dense", "units": 3},
    {"type": "tanh"},
    {"type": "dropout", "rate": 0.5},
    {"name": "o", "type": "dense", "units": 2},
]


def mlp_case(dropout=True, **optimizer):
    rng = np.random.default_rng(0)
    w = {
        "h.kernel": rng.normal(size=(4, 3)),
        "h.bias": rng.normal(size=3),
        "o.kernel": rng.normal(size=(3, 2)),
        "o.bias": rng.normal(size=2),
    }
    mlp = [layer for layer in MLP if dropout or layer["type"] != "dropout"]
    return tiny_spec(mlp, **optimizer), w, Batch(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)))


def test_same_padding_and_average_pooling_follow_the_spec():
    # 3x3 input, 2x2 ones kernel, stride 2, "same": one pixel of padding, after
    spec = tiny_spec(
        [
            {
                "name": "c",
                "type": "conv2d",
                "filters": 1,
                "kernel": 2,
                "stride": 2,
                "padding": "same",
                "use_bias": False,
            },
            {"type": "flatten"},
        ],
        input_shape=[3, 3, 1],
    )
    backend(dtype="float64")  # x64 on; build_network refuses float64 without it
    model = layers.build_networks(spec, (3, 3, 1), "float64")["model"]
    layers.set_weights(model, {"c.kernel": np.ones((2, 2, 1, 1))})
    x = np.arange(9.0).reshape(1, 3, 3, 1)
    np.testing.assert_array_equal(model(x, deterministic=True), [[0 + 1 + 3 + 4, 2 + 5, 6 + 7, 8]])
    # averages of ones are ones only if the padded zeros are left out of the count
    pooled = layers.avg_pool(np.ones((1, 5, 5, 2), np.float32), (3, 3), (2, 2), "SAME")
    np.testing.assert_array_equal(pooled, np.ones((1, 3, 3, 2)))
    assert pooled.dtype == np.float32


def test_float32_stays_float32_after_a_float64_run():
    backend(dtype="float64")  # switches jax_enable_x64 on for the whole process
    spec, w, batch = mlp_case(name="adam", weight_decay=0.01)
    be = backend("graph", "float32")
    state = be.build(spec, (4,), {k: v.astype(np.float32) for k, v in w.items()})
    batch32 = Batch(batch.x.astype(np.float32), batch.y.astype(np.float32))
    state, loss = be.train_step(state, batch32)
    floats = [a for a in jax.tree.leaves((state.params, state.opt_state)) if a.dtype.kind == "f"]
    assert {a.dtype for a in floats} == {np.dtype(np.float32)}
    assert loss.dtype == np.float32
    assert be.predict(state, batch32.x).dtype == np.float32


def test_losses_match_their_formulas():
    rng = np.random.default_rng(1)
    out, y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    np.testing.assert_allclose(train.loss_fn("mse")(out, y), np.mean((out - y) ** 2), rtol=1e-12)
    z, t = rng.normal(size=(6, 1)), rng.integers(0, 2, (6, 1)).astype(float)
    bce = -np.mean(t * np.log(1 / (1 + np.exp(-z))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-z))))
    np.testing.assert_allclose(train.loss_fn("binary_cross_entropy")(z, t), bce, rtol=1e-12)
    labels = rng.integers(0, 3, 6).astype(np.int32)
    logp = out - np.log(np.exp(out).sum(1, keepdims=True))
    np.testing.assert_allclose(
        train.loss_fn("softmax_cross_entropy")(out, labels),
        -logp[np.arange(6), labels].mean(),
        rtol=1e-12,
    )


def test_state_is_pure_and_dropout_only_trains():
    spec, w, batch = mlp_case()
    be = backend()
    state = be.build(spec, (4,), w)
    _, loss_a = be.train_step(state, batch)
    _, loss_b = be.train_step(state, batch)  # the same state again: the same key, mask, loss
    assert float(loss_a) == float(loss_b)
    eval_loss, _ = be.loss_and_grads(state, batch)
    assert float(loss_a) != eval_loss  # dropout was on in the step, off in loss_and_grads
    np.testing.assert_array_equal(be.predict(state, batch.x), be.predict(state, batch.x))
    for k, v in be.get_weights(state).items():
        np.testing.assert_array_equal(v, w[k])


def test_graph_mode_traces_once_and_matches_eager():
    spec, w, batch = mlp_case(momentum=0.5)
    losses = {}
    for mode in ("eager", "graph"):
        be = backend(mode)
        state = be.build(spec, (4,), w)
        losses[mode] = []
        for _ in range(4):
            state, loss = be.train_step(state, batch)
            losses[mode].append(float(loss))
    assert be.stats(state)["traces"] == 1
    # same keys, same dropout masks: jit changes only the rounding
    np.testing.assert_allclose(losses["graph"], losses["eager"], rtol=1e-12)


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize("task", ["inception", "resnet"])
def test_activations_name_every_layer_and_end_in_predict(task, mode):
    spec = load_spec(builtin_tasks()[task])
    shape = data.sample_shape(spec.data)
    be = backend(mode, "float32")
    state = be.build(spec, shape, None)
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    acts = be.activations(state, x)
    # walk's names, in walk's order, with walk's shapes behind the batch axis
    want = [(layer.name, (3, *out)) for layer, _, out in walk(spec.model.layers, shape)]
    assert [(name, a.shape) for name, a in acts.items()] == want
    assert {a.dtype for a in acts.values()} == {np.dtype(np.float32)}
    # a block's value is its own output, made of its inner layers' outputs
    prev = x
    for layer in spec.model.layers:
        if isinstance(layer, Residual):
            short = acts[layer.shortcut[-1].name] if layer.shortcut else prev
            np.testing.assert_allclose(acts[layer.name], acts[layer.body[-1].name] + short)
        elif isinstance(layer, Parallel):
            ends = [acts[branch[-1].name] for branch in layer.branches]
            np.testing.assert_array_equal(acts[layer.name], np.concatenate(ends, axis=-1))
        prev = acts[layer.name]
    out = be.predict(state, x)
    if mode == "eager":  # the same ops in the same order: the same bits
        np.testing.assert_array_equal(prev, out)
    else:  # two jitted programs may fuse differently
        np.testing.assert_allclose(prev, out, rtol=1e-5, atol=1e-6)
    assert be.stats(state)["traces"] == 0  # nothing ran, or was traced, on the train path


def test_activations_turn_dropout_off():
    spec, w, batch = mlp_case()
    be = backend()
    state = be.build(spec, (4,), w)
    acts = be.activations(state, batch.x)
    assert list(acts) == ["h", "tanh_1", "dropout_1", "o"]
    np.testing.assert_array_equal(acts["dropout_1"], acts["tanh_1"])
    np.testing.assert_array_equal(acts["o"], be.predict(state, batch.x))


# --------------------------------------------------------------------------- sequences


def seq_spec(kind, bidirectional, unroll, steps=6):
    """Ids -> a recurrent layer both ways (all steps, pooled; the last state) in parallel."""
    rec = {"type": kind, "units": 3, "bidirectional": bidirectional, "unroll": unroll}
    return tiny_spec(
        [
            {"name": "embed", "type": "embedding", "vocab": 7, "dim": 2},
            {
                "name": "both",
                "type": "parallel",
                "branches": [
                    [
                        {"name": "seq", **rec, "return_sequences": True},
                        {"name": "top", "type": "global_maxpool"},
                    ],
                    [{"name": "last", **rec}],
                ],
            },
            {"name": "fc", "type": "dense", "units": 2},
        ],
        loss="softmax_cross_entropy",
        input_shape=[steps],
    )


# rows of 6, 3, 1, 0 and 2 real steps, padded at the end
IDS = np.array(
    [[1, 2, 3, 4, 5, 6], [3, 1, 4, 0, 0, 0], [5, 0, 0, 0, 0, 0], [0] * 6, [2, 6, 0, 0, 0, 0]],
    dtype=np.int32,
)


@pytest.mark.parametrize("kind,bidirectional", [("rnn", False), ("gru", True), ("lstm", True)])
def test_unrolled_loop_and_scan_match_the_reference_with_an_empty_row(kind, bidirectional):
    from harness.init import canonical_weights
    from tests import reference

    spec = seq_spec(kind, bidirectional, unroll=False)
    weights = canonical_weights(spec, (6,), dtype="float64")
    want, want_acts = reference.forward(spec.model, IDS, weights)
    got = {}
    for unroll in (False, True):
        be = backend("graph", "float64")
        state = be.build(seq_spec(kind, bidirectional, unroll), (6,), weights)
        got[unroll] = be.activations(state, IDS)
        np.testing.assert_allclose(be.predict(state, IDS), want, rtol=1e-9, atol=1e-12)
        for name, value in want_acts.items():
            np.testing.assert_allclose(
                got[unroll][name], value, rtol=1e-9, atol=1e-12, err_msg=name
            )
    np.testing.assert_allclose(got[True]["last"], got[False]["last"], rtol=1e-12, atol=1e-15)
    # the row without a real step: zero state, zero outputs, and 0 from the masked max
    for name in ("seq", "top", "last"):
        for run in got.values():
            np.testing.assert_array_equal(run[name][3], 0.0, err_msg=name)


def _count(fn, *args, primitive="scan"):
    from impls.jax.explain import _primitives

    return _primitives(jax.make_jaxpr(fn)(*args).jaxpr).count(primitive)


def test_scanned_gru_is_one_scan_and_the_unrolled_one_is_none():
    counts = {}
    for unroll in (False, True):
        spec = tiny_spec(
            [
                {"name": "embed", "type": "embedding", "vocab": 7, "dim": 2},
                {"name": "gru", "type": "gru", "units": 3, "unroll": unroll},
            ],
            input_shape=[6],
        )
        backend(dtype="float32")
        model = layers.build_networks(spec, (6,), "float32")["model"]
        counts[unroll] = (
            _count(lambda x, m=model: m(x, deterministic=True), IDS),
            _count(lambda x, m=model: m(x, deterministic=True), IDS, primitive="dot_general"),
        )
    assert counts[False] == (1, 2)  # the scan body holds the two matmuls once
    assert counts[True] == (0, 2 * 6)  # six copies of the cell, one per step


def test_eager_mode_compiles_the_scan_once():
    # lax.scan is one primitive: outside jit it is compiled, and nnx.RNN makes a new body
    # on every call; layers._scanned jits it so that eager steps reuse one executable
    be = backend("eager", "float32")
    state = be.build(seq_spec("gru", True, unroll=False), (6,), None)
    batch = Batch(IDS, np.arange(5, dtype=np.int32) % 2)
    state, _ = be.train_step(state, batch)
    compiled = layers._scanned._cache_size()
    for _ in range(3):
        state, loss = be.train_step(state, batch)
    assert layers._scanned._cache_size() == compiled
    assert np.isfinite(float(loss))


def test_conv1d_same_padding_puts_the_odd_step_after():
    from tests import reference

    spec = tiny_spec(
        [
            {
                "name": "c",
                "type": "conv1d",
                "filters": 2,
                "kernel": 4,
                "stride": 2,
                "padding": "same",
            },
            {"type": "flatten"},
        ],
        input_shape=[5, 3],
    )
    rng = np.random.default_rng(0)
    w = {"c.kernel": rng.normal(size=(4, 3, 2)), "c.bias": rng.normal(size=2)}
    x = rng.normal(size=(2, 5, 3))
    be = backend("eager", "float64")
    out = be.predict(be.build(spec, (5, 3), w), x)
    np.testing.assert_allclose(out, reference.forward(spec.model, x, w)[0], rtol=1e-12)


def test_masked_global_pools_and_unpadded_embedding():
    x = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2) - 5.0
    mask = np.array([[True, True, False], [False, False, False]])
    np.testing.assert_array_equal(layers.global_max_pool(x, mask), [[-3, -2], [0, 0]])
    np.testing.assert_array_equal(layers.global_avg_pool(x, mask), [[-4, -3], [0, 0]])
    np.testing.assert_array_equal(layers.global_max_pool(x), x.max(axis=1))
    # an embedding with padding = false starts no mask: id 0 is a token like any other
    spec = tiny_spec(
        [
            {"name": "e", "type": "embedding", "vocab": 3, "dim": 2, "padding": False},
            {"name": "r", "type": "rnn", "units": 2},
        ],
        input_shape=[3],
    )
    backend(dtype="float32")
    model = layers.build_networks(spec, (3,), "float32")["model"]
    ids = np.array([[1, 0, 0], [1, 0, 2]], np.int32)
    out = np.asarray(model(ids, deterministic=True))
    assert not np.allclose(out[0], 0) and not np.allclose(out[0], out[1])


# --------------------------------------------------------------------------- gan


def gan_spec(**optimizer):
    """The gan task with another optimizer (the numpy reference has SGD only)."""
    from harness.spec import TASKS_DIR, Optimizer

    spec = load_spec(TASKS_DIR / "gan.toml")
    recipe = spec.recipe.model_copy(update={"optimizer": Optimizer(**optimizer)})
    return spec.model_copy(update={"recipe": recipe})


def gan_batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(rng.normal(size=(n, 2)), None, rng.normal(size=(n, 8)))


def test_gan_steps_match_the_numpy_reference():
    # SGD with momentum and coupled decay: the discriminator's step, then the
    # generator's against the updated discriminator, each with its own velocity
    from harness.init import canonical_weights
    from tests.harness.fake_backend import NumpyBackend

    spec = gan_spec(name="sgd", learning_rate=0.05, momentum=0.9, weight_decay=0.01)
    weights = canonical_weights(spec, (2,), "float64")
    ref, be = NumpyBackend(), backend("graph", "float64")
    ref_state, state = ref.build(spec, (2,), weights), be.build(spec, (2,), weights)
    want_loss, want_grads = ref.loss_and_grads(ref_state, gan_batch())
    loss, grads = be.loss_and_grads(state, gan_batch())
    assert loss == pytest.approx(want_loss, rel=1e-12) and set(grads) == set(want_grads)
    for k, g in grads.items():
        np.testing.assert_allclose(g, want_grads[k], rtol=1e-9, atol=1e-14, err_msg=k)
    for step in range(3):
        ref_state, want = ref.train_step(ref_state, gan_batch(seed=step))
        state, got = be.train_step(state, gan_batch(seed=step))
        np.testing.assert_allclose([float(v) for v in got], want, rtol=1e-12)
    want_w = ref.get_weights(ref_state)
    for k, v in be.get_weights(state).items():
        np.testing.assert_allclose(v, want_w[k], rtol=1e-9, atol=1e-14, err_msg=k)
    # predict is the generator; activations run both networks, generator first
    z = gan_batch().z
    acts = be.activations(state, z)
    assert list(acts) == [layer.name for layer in (*spec.model.layers, *spec.discriminator.layers)]
    np.testing.assert_array_equal(acts["g_out"], be.predict(state, z))
    np.testing.assert_allclose(
        acts["d_out"],
        ref._forward(ref_state, acts["g_out"], layers=ref_state["d_layers"])[0],
        rtol=1e-12,
    )


def test_graph_mode_compiles_the_gan_step_once_and_counts_it():
    # Adam: its step count leaves optax's init uncommitted; unless the backend puts
    # it on the device, the second step compiles again (with no new trace)
    be = backend("graph", "float32")
    state = be.build(gan_spec(name="adam", learning_rate=1e-3), (2,), None)
    batch = gan_batch()
    batch = Batch(batch.x.astype(np.float32), None, batch.z.astype(np.float32))
    for _ in range(3):
        state, (d_loss, g_loss) = be.train_step(state, batch)
    stats = be.stats(state)
    assert (stats["traces"], stats["compiles"], stats["recompiles"]) == (1, 1, 0)
    assert isinstance(stats["threads"], int) and stats["threads"] >= 1
    assert np.isfinite(float(d_loss)) and np.isfinite(float(g_loss))


# --------------------------------------------------------------------------- regularization


def test_label_smoothing_takes_every_step_as_a_sample():
    # per-step logits [N, steps, C] beside [N, C] (the backend-level formula:
    # tests/contract/test_recipe_rules.py)
    rng = np.random.default_rng(2)
    for shape in ((6, 4), (3, 5, 4)):
        logits = rng.normal(size=shape)
        labels = rng.integers(0, 4, shape[:-1]).astype(np.int32)
        targets = 0.8 * np.eye(4)[labels] + 0.2 / 4
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        want = -(targets * logp).sum(-1).mean()
        got = train.loss_fn("softmax_cross_entropy", label_smoothing=0.2)(logits, labels)
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_clip_by_global_norm_scales_by_the_exact_factor():
    # no epsilon in the norm (torch's clip_grad_norm_ divides by norm + 1e-6)
    from harness.spec import Optimizer

    g = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0, 12.0]])}  # global norm 13
    tx = train.make_optimizer(Optimizer(name="sgd", learning_rate=1.0), clip_norm=6.5)
    updates, _ = tx.update(g, tx.init(g))
    for k in g:
        np.testing.assert_allclose(-np.asarray(updates[k]), g[k] * 0.5, rtol=1e-15, atol=0)
    tx = train.make_optimizer(Optimizer(name="sgd", learning_rate=1.0), clip_norm=13.5)
    updates, _ = tx.update(g, tx.init(g))
    for k in g:  # under the bound: unchanged
        np.testing.assert_array_equal(-np.asarray(updates[k]), g[k])


@pytest.mark.parametrize(
    "size,strides,padding,hw",
    [
        (2, 2, "VALID", 8),
        (3, 3, "VALID", 8),
        (2, 2, "SAME", 6),
        (2, 2, "SAME", 5),
        (3, 2, "VALID", 7),
    ],
)
def test_max_pool_matches_reduce_window_bit_for_bit_ties_included(size, strides, padding, hw):
    # integers 0..2: most windows tie; the gradient goes to the first maximum, row-major
    backend(dtype="float64")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, (2, hw, hw, 3)).astype(np.float64)
    args = ((size, size), (strides, strides), padding)

    def pools(pool):
        y, vjp = jax.vjp(lambda x: pool(x, *args), x)
        g = np.random.default_rng(1).standard_normal(y.shape)  # the same for both
        return y, vjp(g)[0], jax.jit(jax.grad(lambda x: (pool(x, *args) * g).sum()))(x)

    for ours, theirs in zip(pools(layers.max_pool), pools(nnx.max_pool), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_minimal_loop_runs_both_models_in_every_mode(tmp_path):
    from harness.bench import Measure, paired
    from impls.jax import minimal

    for model in ("mlp", "lenet"):
        losses = []
        for mode in ("eager", "graph", "functional"):
            record = minimal.run({"model": model, "batch": 8, "steps": 3, "mode": mode})
            assert record["step_median_s"] > 0 and record["steps"] == 3
            losses.append(record["last_loss"])
        # the tutorials' nnx step, eager or under nnx.jit, and the functional one under
        # jax.jit train the same model the same way
        np.testing.assert_allclose(losses, losses[0], rtol=1e-5)
    # and once as rosetta bench runs it: in turns with the harness's step, in a process
    result = paired(Measure("mlp", 8, "jax", "graph", 1), tmp_path, "functional", blocks=2, block=3)
    assert len(result.get("minimal_block_s", [])) == 2 and min(result["harness_block_s"]) > 0


def test_shapes_lesson_compiles_once_per_shape_and_twice_with_buckets():
    from impls.jax import lessons

    values = lessons.shapes()
    # 32 compiled already; 17, 24 and 40 are new shapes; buckets 32 and 64 serve them all
    assert (values["traces_fixed"], values["traces_varying"], values["traces_remedy"]) == (1, 3, 2)
    assert values["seconds_varying"] > 0 and values["seconds_remedy"] > 0
    graph = "\n".join(values["graph"])
    assert "plain step: 4 compiled" in graph and "padded step: 2 compiled" in graph
    # masking the padded rows out leaves the loss as it was, up to float32 rounding
    gap = float(graph.rsplit("losses: ", 1)[1])
    assert gap < 1e-5


def test_control_flow_lesson_is_refused_and_lax_cond_is_not():
    from impls.jax import lessons

    values = lessons.control_flow()
    assert (
        values["outcome"].startswith("refused: ") and "ConcretizationTypeError" in values["outcome"]
    )
    assert values["positive"] == values["negative"] == "-"
    assert values["breaks"] == "0 breaks; 2 traces, 2 refused"
    assert values["remedy_negative"] == [-2.0, -3.0, -4.0]
    # one cond equation holds both branches (f32 or f64: another test may have enabled x64)
    conds = [line for line in values["graph"] if "] = cond[" in line]
    assert len(conds) == 1, values["graph"]
    assert any("mul" in line for line in values["graph"]) and any(
        "sub" in line for line in values["graph"]
    )


@pytest.mark.parametrize("task", ["mlp", "lenet"])
def test_spec_counted_flops_match_xla_cost_analysis(task):
    # XLA's cost analysis of the compiled train step counts every operation, the
    # element-wise ones and the optimizer's too; the spec counts the matrix products
    # (harness/flops.py), which must be nearly all of it
    from harness.bench import bench_spec
    from harness.flops import train_step_flops
    from harness.init import canonical_weights

    spec = bench_spec(task, 16)
    shape = data.sample_shape(spec.data)
    be = backend("graph", "float32")
    state = be.build(spec, shape, canonical_weights(spec, shape, "float32"))
    rng = np.random.default_rng(0)
    x, y = rng.random((16, *shape), dtype=np.float32), rng.integers(0, 10, 16).astype(np.int32)
    compiled = state.train_step.lower(state.params, state.opt_state, state.key, x, y).compile()
    xla = compiled.cost_analysis()["flops"]
    counted = train_step_flops(spec, shape, 16)
    assert counted <= xla <= 1.10 * counted, (counted, xla)  # measured: 3-6% more
