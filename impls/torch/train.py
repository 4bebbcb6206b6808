"""Losses, the optimizer, and the train / predict / gradient steps per mode.

Graph mode follows the torch.compile documentation for training: compile the
model's forward together with the loss, and leave ``loss.backward()`` and
``optimizer.step()`` eager. AOTAutograd traces the backward of the compiled
forward ahead of time, so backward runs Inductor code too. The optimizer stays
eager, as in the torch.compile tutorials (compiling ``optimizer.step()`` is a
separate, CUDA-oriented recipe). Gradient clipping sits between the two, eager too.

A gan trains two networks, each with its own optimizer: three compiled functions
(the generator's forward, the discriminator's objective, the generator's
objective through the discriminator), so that the generator's objective runs
after the discriminator's update and the samples are made once per step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.spec import Optimizer, RecipeSpec

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Step = Callable[[torch.Tensor, torch.Tensor], Any]  # -> loss, or a gan's (d_loss, g_loss)


def softmax_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """``F.cross_entropy`` over int64 class ids; per-step logits ``[N, steps, C]``
    (labels ``[N, steps]``) count every step as a sample. Flattened to ``[-1, C]``
    because F.cross_entropy wants the classes on dim 1 (``[N, C, steps]``).
    ``label_smoothing`` eps: torch's targets are ``(1 - eps) * onehot + eps / C``,
    the spec's (tested against the formula)."""
    flat = logits.reshape(-1, logits.shape[-1])
    return F.cross_entropy(flat, labels.reshape(-1), label_smoothing=label_smoothing)


# all take logits and average over the batch (torch's default reduction="mean")
_LOSSES: dict[str, LossFn] = {
    "mse": F.mse_loss,
    "binary_cross_entropy": F.binary_cross_entropy_with_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def loss_fn(name: str, label_smoothing: float = 0.0) -> LossFn:
    """The spec's loss as a torch function ``(logits, targets) -> scalar``; the spec
    allows ``label_smoothing`` with softmax cross-entropy only."""
    if label_smoothing:
        return functools.partial(softmax_cross_entropy, label_smoothing=label_smoothing)
    return _LOSSES[name]


def make_optimizer(opt: Optimizer, params) -> torch.optim.Optimizer:
    """torch.optim's optimizer for the spec. SGD's and Adam's ``weight_decay`` is the
    coupled L2 the spec means (added to the gradient), AdamW's the decoupled
    ``p -= lr * weight_decay * p`` (before the Adam update, on the old ``p``, as the
    spec, Keras and Optax do); SGD momentum is the spec's ``v = m*v + g; p -= lr*v``;
    Adam divides by ``sqrt(v_hat) + eps``, the spec's epsilon."""
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.learning_rate, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    # AdamW's weight_decay defaults to 0.01, not 0: always pass the spec's
    adam = torch.optim.AdamW if opt.name == "adamw" else torch.optim.Adam
    return adam(
        params,
        lr=opt.learning_rate,
        betas=(opt.beta1, opt.beta2),
        eps=opt.epsilon,
        weight_decay=opt.weight_decay,
    )


@dataclass
class Net:
    """One network a task trains, with what its objective and its step need."""

    model: nn.Module
    params: list[nn.Parameter]  # trainable (not RNN/LSTM's frozen bias_hh): the optimizer's
    weights: list[nn.Parameter]  # those recipe.l1 counts (harness.spec.is_weight)
    optimizer: torch.optim.Optimizer


def l1_norm(weights: list[nn.Parameter]) -> torch.Tensor:
    """``sum |w|`` over ``weights``; torch's abs has gradient sign(w), 0 at 0."""
    return sum(w.abs().sum() for w in weights)


def add_l1(objective: Callable, l1: float, weights: list[nn.Parameter]) -> Callable:
    """``objective(...) + l1 * sum |w|``; the objective itself when l1 is 0, so a
    recipe without it traces the same graph as before."""
    if not l1:
        return objective

    @functools.wraps(objective)
    def penalized(*args: torch.Tensor) -> torch.Tensor:
        return objective(*args) + l1 * l1_norm(weights)

    return penalized


def clip_by_global_norm_(params: list[nn.Parameter], max_norm: float) -> None:
    """Scale every gradient by ``min(1, max_norm / ||g||)``, ``||g||`` the L2 norm of
    all of them together, in place. The exact factor: ``clip_grad_norm_`` divides by
    ``||g|| + 1e-6``, 1e-6 relative off in float64, beyond the check's 1e-9. A zero
    norm gives ``max_norm / 0 = inf``, clamped to 1; the factor stays a tensor, so
    nothing waits for the device."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norm = torch.sqrt(sum(g.square().sum() for g in grads))
    factor = (max_norm / norm).clamp(max=1.0)
    for g in grads:
        g.mul_(factor)


def apply_gradients(net: Net, value: torch.Tensor, clip_norm: float | None) -> None:
    """One optimizer step of ``net`` down the gradient of ``value``, clipped if asked.
    ``backward(inputs=...)`` fills only this network's ``.grad``: the generator's
    objective runs through the discriminator, whose weights it must not touch."""
    net.optimizer.zero_grad(set_to_none=True)
    value.backward(inputs=net.params)
    if clip_norm is not None:
        clip_by_global_norm_(net.params, clip_norm)
    net.optimizer.step()  # coupled weight decay is added here, after clipping


class CompileCounter:
    """A torch.compile backend that counts the graphs Dynamo hands it, then
    compiles them with Inductor (the documented way to compose backends).
    Its count is the number of traces: it must stay put after the first step.
    ``breaks`` counts the graphs Dynamo ended at a graph break (each graph's
    ``compile_subgraph_reason``): Dynamo's ``counters["graph_break"]`` misses the
    break of a data-dependent branch (``if x.sum() > 0``), logged but not counted."""

    def __init__(self) -> None:
        self.count = 0
        self.breaks = 0
        self._inductor = torch._dynamo.lookup_backend("inductor")

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        self.count += 1
        reason = getattr(gm, "compile_subgraph_reason", None)
        self.breaks += bool(reason is not None and reason.graph_break)
        return self._inductor(gm, example_inputs)


def compile_for_mode(fn: Callable, mode: str, counter: CompileCounter | None = None) -> Callable:
    """``fn`` as is in eager mode; ``torch.compile(fn)`` in graph mode, its graphs
    counted by ``counter`` when one is given."""
    if mode == "eager":
        return fn
    if mode != "graph":
        raise ValueError(f"torch has modes 'eager' and 'graph', not {mode!r}")
    return torch.compile(fn, backend=counter or "inductor")


def objective(net: Net, loss: LossFn, l1: float) -> Callable:
    """``(x, y) -> loss(model(x), y) + l1 * sum |w|``: what the step minimizes."""
    model = net.model

    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss(model(x), y)

    return add_l1(forward_loss, l1, net.weights)


def make_train_step(
    net: Net,
    loss: LossFn,
    recipe: RecipeSpec,
    mode: str,
    counter: CompileCounter | None = None,
) -> Step:
    """``step(x, y) -> loss``: one optimizer step, returning the objective before it.

    Args:
        net: the model (takes NCHW / [N, F] tensors) and its optimizer.
        loss: from ``loss_fn``.
        recipe: its ``l1`` and ``clip_norm``.
        mode: "eager", or "graph" to compile forward + loss with torch.compile.
        counter: the compile backend in graph mode (counts the traces).
    """
    model = net.model
    forward_loss = compile_for_mode(objective(net, loss, recipe.l1), mode, counter)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not model.training:  # predict() leaves it in eval mode; dropout must be on here
            model.train()
        value = forward_loss(x, y)
        apply_gradients(net, value, recipe.clip_norm)
        return value.detach()

    return step


def make_predict(
    model: nn.Module, mode: str, counter: CompileCounter | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``predict(x) -> logits`` in inference mode (dropout off, no autograd).

    In graph mode a batch of a second size (the last, partial evaluation batch)
    retraces once, with a symbolic batch size (Dynamo's automatic dynamic shapes).
    """
    forward = compile_for_mode(model, mode, counter)

    def predict(x: torch.Tensor) -> torch.Tensor:
        if model.training:
            model.eval()
        with torch.inference_mode():
            return forward(x)

    return predict


def make_loss_and_grads(net: Net, loss: LossFn, l1: float) -> Callable:
    """``(x, y, params) -> (loss, grads)``: the objective (l1 included) and its
    gradients w.r.t. ``params`` in eval mode; ``torch.autograd.grad`` returns them
    without touching the parameters' ``.grad``, so the state is unchanged. Eager in
    every mode: a check of the numbers, never timed."""
    forward_loss = objective(net, loss, l1)

    def loss_and_grads(x: torch.Tensor, y: torch.Tensor, params: list):
        net.model.eval()
        value = forward_loss(x, y)
        return value.detach(), torch.autograd.grad(value, params)

    return loss_and_grads


def _bce(logits: torch.Tensor, label: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, label))


def gan_objectives(g: Net, d: Net, l1: float) -> tuple[Callable, Callable, Callable]:
    """A gan's three functions, each network's l1 term in its own objective:

    - ``generate(z)``: the generator's samples;
    - ``d_objective(x, fake)``: ``mean BCE(D(x), 1) + mean BCE(D(fake), 0)``, fed
      detached samples, so it reaches the discriminator only;
    - ``g_objective(fake)``: ``mean BCE(D(fake), 1)`` (non-saturating), with D as it
      is when called: after its update in the step.
    """
    generator, discriminator = g.model, d.model

    def generate(z: torch.Tensor) -> torch.Tensor:
        return generator(z)

    def d_objective(x: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return _bce(discriminator(x), 1.0) + _bce(discriminator(fake), 0.0)

    def g_objective(fake: torch.Tensor) -> torch.Tensor:
        return _bce(discriminator(fake), 1.0)

    return generate, add_l1(d_objective, l1, d.weights), add_l1(g_objective, l1, g.weights)


def make_gan_train_step(
    g: Net,
    d: Net,
    recipe: RecipeSpec,
    mode: str,
    counter: CompileCounter | None = None,
) -> Step:
    """``step(x, z) -> (d_loss, g_loss)``: the discriminator's step on real ``x`` and
    the samples of noise ``z``, then the generator's against the updated
    discriminator, on the same samples (made once, so a generator with dropout
    gives both steps the same ones). Each loss is taken before its own update.

    In graph mode the three functions of ``gan_objectives`` are compiled apart (one
    graph each, all counted by ``counter``): one compiled function cannot hold
    both, because the generator's objective must see the discriminator's update,
    which runs eagerly between them.
    """
    generate, d_objective, g_objective = (
        compile_for_mode(fn, mode, counter) for fn in gan_objectives(g, d, recipe.l1)
    )

    def step(x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for net in (g, d):
            if not net.model.training:
                net.model.train()
        fake = generate(z)
        d_loss = d_objective(x, fake.detach())
        apply_gradients(d, d_loss, recipe.clip_norm)
        # the discriminator's parameters changed in place: this forward sees the new ones
        g_loss = g_objective(fake)
        apply_gradients(g, g_loss, recipe.clip_norm)
        return d_loss.detach(), g_loss.detach()

    return step


def make_gan_loss_and_grads(g: Net, d: Net, l1: float) -> Callable:
    """``(x, z, g_params, d_params) -> (d_loss, d_grads, g_grads)`` at the current
    weights, in eval mode: the discriminator's objective, its gradients w.r.t.
    ``d_params``, and the generator objective's w.r.t. ``g_params`` (through the
    same, not updated, discriminator)."""
    generate, d_objective, g_objective = gan_objectives(g, d, l1)

    def loss_and_grads(x: torch.Tensor, z: torch.Tensor, g_params, d_params):
        g.model.eval()
        d.model.eval()
        fake = generate(z)
        d_loss = d_objective(x, fake.detach())
        d_grads = torch.autograd.grad(d_loss, d_params)
        g_grads = torch.autograd.grad(g_objective(fake), g_params)
        return d_loss.detach(), d_grads, g_grads

    return loss_and_grads


# --------------------------------------------------------------------------- counters


def dynamo_counts() -> dict[str, int]:
    """Dynamo's process-wide counts so far (the backend reports them since build):

    - ``compiles``: frames Dynamo compiled (``counters["frames"]["ok"]``): a
      function's first compile, its recompiles, and the frame resumed after each
      graph break;
    - ``recompiles``: compiles of a frame compiled before (its guards failed: a new
      shape, dtype, grad mode or module state), from Dynamo's per-frame compile
      counter (``FRAME_COMPILE_COUNTER``; internal, so 0 if a torch lacks it);
    - ``graph_breaks``: the breaks Dynamo counted while compiling
      (``counters["graph_break"]``, one count per break per compile; not the break
      of a data-dependent branch, which ``CompileCounter.breaks`` counts);
    - ``graphs``: FX graphs it handed to a compile backend (``unique_graphs``).
    """
    counters = torch._dynamo.utils.counters
    per_frame = getattr(torch._dynamo.convert_frame, "FRAME_COMPILE_COUNTER", {})
    return {
        "compiles": counters["frames"]["ok"],
        "recompiles": sum(n - 1 for n in per_frame.values() if n > 1),
        "graph_breaks": sum(counters["graph_break"].values()),
        "graphs": counters["stats"]["unique_graphs"],
    }
