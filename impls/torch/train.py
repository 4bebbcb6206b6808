"""Losses, the optimizer, and the train / predict / gradient steps per mode.

Graph mode follows the torch.compile documentation for training: compile the
model's forward together with the loss, and leave ``loss.backward()`` and
``optimizer.step()`` eager. AOTAutograd traces the backward of the compiled
forward ahead of time, so backward runs Inductor code too. The optimizer stays
eager, as in the torch.compile tutorials (compiling ``optimizer.step()`` is a
separate, CUDA-oriented recipe).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from harness.spec import Optimizer

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def softmax_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy`` over int64 class ids; per-step logits ``[N, steps, C]``
    (labels ``[N, steps]``) count every step as a sample. Flattened to ``[-1, C]``
    because F.cross_entropy wants the classes on dim 1 (``[N, C, steps]``)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


# all take logits and average over the batch (torch's default reduction="mean")
_LOSSES: dict[str, LossFn] = {
    "mse": F.mse_loss,
    "binary_cross_entropy": F.binary_cross_entropy_with_logits,
    "softmax_cross_entropy": softmax_cross_entropy,
}


def loss_fn(name: str) -> LossFn:
    """The spec's loss as a torch function ``(logits, targets) -> scalar``."""
    return _LOSSES[name]


def make_optimizer(opt: Optimizer, params) -> torch.optim.Optimizer:
    """torch.optim's optimizer for the spec; its ``weight_decay`` is the coupled L2
    the spec means (added to the gradient), and its SGD momentum is the spec's
    ``v = m*v + g; p -= lr*v``."""
    if opt.name == "sgd":
        return torch.optim.SGD(
            params, lr=opt.learning_rate, momentum=opt.momentum, weight_decay=opt.weight_decay
        )
    return torch.optim.Adam(
        params,
        lr=opt.learning_rate,
        betas=(opt.beta1, opt.beta2),
        eps=opt.epsilon,
        weight_decay=opt.weight_decay,
    )


class CompileCounter:
    """A torch.compile backend that counts the graphs Dynamo hands it, then
    compiles them with Inductor (the documented way to compose backends).
    Its count is the number of traces: it must stay put after the first step."""

    def __init__(self) -> None:
        self.count = 0
        self._inductor = torch._dynamo.lookup_backend("inductor")

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):
        self.count += 1
        return self._inductor(gm, example_inputs)


def compile_for_mode(fn: Callable, mode: str, counter: CompileCounter | None = None) -> Callable:
    """``fn`` as is in eager mode; ``torch.compile(fn)`` in graph mode, its graphs
    counted by ``counter`` when one is given."""
    if mode == "eager":
        return fn
    if mode != "graph":
        raise ValueError(f"torch has modes 'eager' and 'graph', not {mode!r}")
    return torch.compile(fn, backend=counter or "inductor")


def make_train_step(
    model: nn.Module,
    loss: LossFn,
    optimizer: torch.optim.Optimizer,
    mode: str,
    counter: CompileCounter | None = None,
) -> Step:
    """``step(x, y) -> loss``: one optimizer step, returning the loss before it.

    Args:
        model: takes NCHW / [N, F] tensors.
        loss: from ``loss_fn``.
        optimizer: over ``model``'s parameters.
        mode: "eager", or "graph" to compile forward + loss with torch.compile.
        counter: the compile backend in graph mode (counts the traces).
    """

    def forward_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return loss(model(x), y)

    forward_loss = compile_for_mode(forward_loss, mode, counter)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not model.training:  # predict() leaves it in eval mode; dropout must be on here
            model.train()
        optimizer.zero_grad(set_to_none=True)
        value = forward_loss(x, y)
        value.backward()
        optimizer.step()
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


def loss_and_grads(
    model: nn.Module, loss: LossFn, x: torch.Tensor, y: torch.Tensor, params: list[nn.Parameter]
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Loss and its gradients w.r.t. ``params`` in eval mode; ``torch.autograd.grad``
    returns them without touching the parameters' ``.grad``, so the state is unchanged.
    Eager in every mode: a check of the numbers, never timed."""
    model.eval()
    value = loss(model(x), y)
    return value.detach(), torch.autograd.grad(value, params)
