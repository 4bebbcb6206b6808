"""Every installed backend against the recipe's formulas, in float64: label
smoothing, the l1 term, exact gradient clipping, SGD's and Adam's coupled decay,
AdamW's decoupled one, and the matmul the bench times. One formula and one tolerance for all; what only one
framework has stays in its ``test_<fw>_specific.py``."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import BACKENDS, Batch, Options, load_backend
from harness.init import canonical_weights
from harness.spec import Optimizer, is_weight
from tests.conftest import backend_params, tiny_spec

# float64 throughout: a float32 detour in any framework's casts shows at ~1e-9
RTOL, ATOL = 1e-12, 1e-14
DENSE = [
    {"name": "h", "type": "dense", "units": 5},
    {"type": "tanh"},
    {"name": "out", "type": "dense", "units": 3},
]


def backend(framework, mode="eager", dtype="float64"):
    be = load_backend(BACKENDS[framework].target)
    be.configure(Options(mode=mode, device="cpu", dtype=dtype))
    return be


def mode_params():
    for fw in backend_params():
        name = fw.values[0]
        for mode in BACKENDS[name].modes:
            yield pytest.param(name, mode, marks=fw.marks, id=f"{name}-{mode}")


def dense_spec(optimizer=None, **recipe):
    spec = tiny_spec(DENSE, "softmax_cross_entropy", [4])
    update = {"optimizer": optimizer, **recipe} if optimizer else recipe
    return spec.model_copy(update={"recipe": spec.recipe.model_copy(update=update)})


def dense_batch(seed=0):
    rng = np.random.default_rng(seed)
    return Batch(rng.normal(size=(6, 4)), rng.integers(0, 3, 6).astype(np.int32))


def _log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _close(got: dict, want: dict, what: str = "") -> None:
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=RTOL, atol=ATOL, err_msg=f"{what} {k}")


@pytest.mark.parametrize("framework", backend_params())
def test_label_smoothing_is_the_formula(framework):
    # targets (1 - eps) * onehot + eps / C
    eps = 0.2
    spec = dense_spec(label_smoothing=eps)
    w = canonical_weights(spec, (4,), "float64")
    be, batch = backend(framework), dense_batch()
    state = be.build(spec, (4,), w)
    logits = be.predict(state, batch.x)
    targets = (1 - eps) * np.eye(3)[batch.y] + eps / 3
    want = -np.mean(np.sum(targets * _log_softmax(logits), -1))
    assert float(be.loss_and_grads(state, batch)[0]) == pytest.approx(want, rel=RTOL)


@pytest.mark.parametrize("framework", backend_params())
def test_l1_adds_its_term_and_the_sign_of_the_kernels(framework):
    # loss + l1 * sum |w| over kernels only; d|w|/dw is sign(w), 0 at w = 0 (where
    # jax.grad(jnp.abs) gives 1)
    l1 = 0.03
    plain, penalized = dense_spec(), dense_spec(l1=l1)
    w = canonical_weights(plain, (4,), "float64")
    w["h.kernel"][0, 0] = 0.0
    be, batch = backend(framework), dense_batch()
    loss0, g0 = be.loss_and_grads(be.build(plain, (4,), w), batch)
    loss1, g1 = be.loss_and_grads(be.build(penalized, (4,), w), batch)
    kernels = [k for k in w if is_weight(k)]
    assert kernels == ["h.kernel", "out.kernel"]
    term = l1 * sum(np.abs(w[k]).sum() for k in kernels)
    assert float(loss1) == pytest.approx(float(loss0) + term, rel=RTOL)
    _close(g1, {k: g0[k] + (l1 * np.sign(w[k]) if k in kernels else 0.0) for k in w})
    assert g1["h.kernel"][0, 0] == g0["h.kernel"][0, 0]


@pytest.mark.parametrize("clip_norm", [1e-3, 1e3])
@pytest.mark.parametrize("framework,mode", list(mode_params()))
def test_clipping_takes_the_exact_factor_after_l1_and_before_weight_decay(
    framework, mode, clip_norm
):
    # one SGD step: p -= lr * (g * min(1, c / ||g||) + wd * p), g the objective's
    # gradient (l1 in it), ||g|| over every parameter; torch's clip_grad_norm_
    # (c / (||g|| + 1e-6)) and Keras' global_clipnorm are not this exact
    lr, wd = 0.1, 0.2
    sgd = Optimizer(name="sgd", learning_rate=lr, weight_decay=wd)
    spec = dense_spec(sgd, l1=0.01, clip_norm=clip_norm)
    w = canonical_weights(spec, (4,), "float64")
    be, batch = backend(framework, mode), dense_batch()
    state = be.build(spec, (4,), w)
    _, grads = be.loss_and_grads(state, batch)
    state, _ = be.train_step(state, batch)
    norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    factor = min(1.0, clip_norm / norm)
    assert (factor < 1) == (clip_norm < 1)
    _close(be.get_weights(state), {k: w[k] - lr * (grads[k] * factor + wd * w[k]) for k in w})


def _steps(framework, mode, spec, rule, steps=3):
    """``steps`` training steps of the backend against ``rule(k, p, g, t)``, the
    parameter ``k``'s new value from its value, its gradient and the step number."""
    w = canonical_weights(spec, (4,), "float64")
    be = backend(framework, mode)
    state = be.build(spec, (4,), w)
    p = {k: v.copy() for k, v in w.items()}
    for t in range(1, steps + 1):
        batch = dense_batch(t)
        _, grads = be.loss_and_grads(state, batch)  # no dropout: the step's gradients
        state, _ = be.train_step(state, batch)
        p = {k: rule(k, p[k], grads[k], t) for k in p}
        _close(be.get_weights(state), p, f"step {t}")


@pytest.mark.parametrize("framework,mode", list(mode_params()))
def test_sgd_with_momentum_couples_its_weight_decay(framework, mode):
    # torch.optim.SGD's rule: g += wd*p; v = m*v + g; p -= lr*v (0.9 and 0.1 are not
    # float32 numbers)
    lr, mom, wd = 0.1, 0.9, 0.1
    spec = dense_spec(Optimizer(name="sgd", learning_rate=lr, momentum=mom, weight_decay=wd))
    vel: dict = {}

    def rule(k, p, g, t):
        vel[k] = mom * vel.get(k, 0.0) + g + wd * p
        return p - lr * vel[k]

    _steps(framework, mode, spec, rule, steps=4)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("framework,mode", list(mode_params()))
def test_adam_adds_epsilon_after_the_bias_correction(framework, mode, weight_decay):
    # the spec's Adam (torch.optim.Adam's, Optax's), L2 decay coupled into g; Keras'
    # own Adam adds eps before the bias correction, 1/sqrt(1 - b2^t) times larger,
    # which with eps = 1e-3 would show at ~1e-2
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-3
    opt = Optimizer(
        name="adam", learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=weight_decay
    )
    m: dict = {}
    v: dict = {}

    def rule(k, p, g, t):
        g = g + weight_decay * p
        m[k] = b1 * m.get(k, 0.0) + (1 - b1) * g
        v[k] = b2 * v.get(k, 0.0) + (1 - b2) * g * g
        return p - lr * (m[k] / (1 - b1**t)) / (np.sqrt(v[k] / (1 - b2**t)) + eps)

    _steps(framework, mode, dense_spec(opt), rule, steps=5)


@pytest.mark.parametrize("framework,mode", list(mode_params()))
def test_adamw_decays_every_parameter_apart_from_the_gradient(framework, mode):
    # torch.optim.AdamW's rule: p -= lr*wd*p on every parameter (biases too), beside
    # Adam's lr * m_hat / (sqrt(v_hat) + eps); wd = 0.5 and b1 = 0.8 are not float32
    # numbers, so a float32 detour would show
    lr, b1, b2, eps, wd = 0.01, 0.8, 0.95, 1e-3, 0.5
    opt = Optimizer(
        name="adamw", learning_rate=lr, beta1=b1, beta2=b2, epsilon=eps, weight_decay=wd
    )
    m: dict = {}
    v: dict = {}

    def rule(k, p, g, t):
        m[k] = b1 * m.get(k, 0.0) + (1 - b1) * g
        v[k] = b2 * v.get(k, 0.0) + (1 - b2) * g**2
        m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
        return p - lr * wd * p - lr * m_hat / (np.sqrt(v_hat) + eps)

    _steps(framework, mode, dense_spec(opt), rule)


@pytest.mark.parametrize("framework,mode", list(mode_params()))
def test_matmul_flops_is_a_rate(framework, mode):
    flops = backend(framework, mode, "float32").matmul_flops(64, repeats=3)
    assert 1e6 < flops < 1e16  # 2 n^3 / seconds: between a megaflop and ten petaflops
