"""Floating-point operations of a training step, counted from the spec alone.

Only the matrix products are counted (dense, convolutions, recurrent gates), at
2 FLOPs per multiply-add: they are nearly all of the work, and what a matmul's
peak FLOP/s is measured on. A training step is counted as 3x the forward pass:
the backward pass computes, for every forward product, one product for the
gradient of its input and one for its weights. (The first layer's input
gradient is not needed, so this slightly over-counts; element-wise work,
pooling and the optimizer's update are left out, so it also under-counts.
Both are small next to the products for the models measured here.)
"""

from __future__ import annotations

import math

from harness.spec import GATES, RECURRENT, Layer, Shape, TaskSpec, task_layers

TRAIN_FACTOR = 3  # forward + input gradient + weight gradient


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
    """FLOPs of one training step at ``batch_size`` (see the module's docstring; a
    gan's step, which runs the discriminator three times, is under-counted)."""
    return TRAIN_FACTOR * batch_size * forward_flops(spec, data_shape)
