"""Floating-point operations of a training step, counted from the spec alone.

Only the matrix products are counted (dense, convolutions, recurrent gates), at
2 FLOPs per multiply-add: they are nearly all of the work, and what a matmul's
peak FLOP/s is measured on. The backward pass computes, for every forward
product, one product for the gradient of its weights and one for the gradient of
its input; the input gradient is skipped where no trainable layer comes before
(the first dense of an MLP, the first convolution of a CNN), as every framework's
autodiff skips it. So a step is 3x the forward pass but for those layers, 2x.
Element-wise work, pooling and the optimizer's update are left out: small next
to the products for the models measured here. A gan's step, which runs the
discriminator three times, is under-counted.
"""

from __future__ import annotations

import math

from harness.spec import GATES, RECURRENT, Layer, Shape, TaskSpec, networks, task_layers

TRAIN_FACTOR = 3  # forward + input gradient + weight gradient
FIRST_FACTOR = 2  # forward + weight gradient: no trainable layer needs the input's


def layer_flops(layer: Layer, in_shape: Shape, out_shape: Shape) -> int:
    """Forward FLOPs of one layer for one sample (its blocks' insides counted apart)."""
    kind = layer.type
    if kind == "dense":
        steps = math.prod(in_shape[:-1])  # per-step dense on [steps, features]
        return 2 * steps * in_shape[-1] * layer.units
    if kind == "conv2d":
        k = layer.kernel
        return 2 * k * k * in_shape[2] * out_shape[0] * out_shape[1] * layer.filters
    if kind == "conv1d":
        return 2 * layer.kernel * in_shape[1] * out_shape[0] * layer.filters
    if kind in RECURRENT:
        g = GATES[kind] * layer.units
        per_step = 2 * (in_shape[1] + layer.units) * g
        return per_step * in_shape[0] * len(layer.directions)
    return 0


def forward_flops(spec: TaskSpec, data_shape: Shape) -> int:
    """Forward FLOPs for one sample, every network of the task."""
    return sum(layer_flops(layer, i, o) for layer, i, o in task_layers(spec, tuple(data_shape)))


def train_step_flops(spec: TaskSpec, data_shape: Shape, batch_size: int) -> int:
    """FLOPs of one training step at ``batch_size`` (see the module's docstring)."""
    total = 0
    for _, model, shape in networks(spec, tuple(data_shape)):
        total += _train_flops(model.layers, shape, trainable_before=False)[0]
    return batch_size * total


def _train_flops(layers, shape: Shape, trainable_before: bool) -> tuple[int, bool]:
    """Per-sample training FLOPs of a layer sequence, and whether a trainable layer
    is in it or before it. A block's branches all start from the block's input."""
    total = 0
    for layer in layers:
        out_shape = layer.out_shape(shape)
        flops = layer_flops(layer, shape, out_shape)
        total += flops * (TRAIN_FACTOR if trainable_before else FIRST_FACTOR)
        after = trainable_before or bool(layer.param_shapes(shape))
        for seq in layer.children():
            inner, has = _train_flops(seq, shape, trainable_before)
            total, after = total + inner, after or has
        trainable_before, shape = after, out_shape
    return total, trainable_before
