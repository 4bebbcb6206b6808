"""Spec layers as torch.nn modules, and canonical <-> torch weight layouts.

Torch is channels-first: the model takes NCHW images (the backend transposes the
harness' NHWC batches once, at the boundary). Inside, two spec conventions need
care: ``flatten`` must flatten in NHWC order, and ``same`` padding follows the
XLA rule (the odd pixel goes after), which torch's symmetric ``padding=`` cannot
express, so an explicit pad layer is added when the padding is lopsided.

Layouts: canonical conv kernels are HWIO, torch's ``Conv2d.weight`` is OIHW;
canonical dense kernels are ``[in, out]``, torch's ``Linear.weight`` is ``[out, in]``.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from harness import spec as S

Weights = dict[str, np.ndarray]
Pads = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad's order for 2-d


class Net(nn.Module):
    """The spec's layer graph as one module; ``param_layers`` maps a spec layer
    name to its Conv2d/Linear, the link between canonical names and torch's."""

    def __init__(self, body: nn.Sequential, param_layers: dict[str, nn.Module]):
        super().__init__()
        self.body = body
        # a plain dict on purpose: the modules are already registered inside body
        self.param_layers = param_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FlattenNHWC(nn.Module):
    """Flattens in NHWC order, the spec's convention, so the dense kernel after it
    is the same matrix in every framework (nn.Flatten would give CHW order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return torch.flatten(x, 1)


class Residual(nn.Module):
    """``body(x) + shortcut(x)``; an empty shortcut Sequential is the identity."""

    def __init__(self, body: nn.Sequential, shortcut: nn.Sequential):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class Parallel(nn.Module):
    """Branches on the same input, concatenated on the channel axis (dim 1 in NCHW)."""

    def __init__(self, branches: list[nn.Sequential]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class AvgPoolSame(nn.Module):
    """Average pooling with lopsided ``same`` padding that divides by the number of
    real pixels in each window. nn.AvgPool2d's ``count_include_pad=False`` does
    this only for its own symmetric padding, so the zero-padded average is
    rescaled by the precomputed fraction of real pixels per window."""

    def __init__(self, size: int, stride: int, pads: Pads, in_hw: tuple[int, int], **factory):
        super().__init__()
        self.pad = nn.ZeroPad2d(pads)
        self.pool = nn.AvgPool2d(size, stride)
        ones = torch.ones(1, 1, *in_hw, **factory)
        self.register_buffer("real_fraction", self.pool(self.pad(ones)), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.pad(x)) / self.real_fraction


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one axis under the XLA ``same`` rule."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(layer, in_shape: S.Shape, kernel: int, stride: int) -> Pads:
    if layer.padding == "valid":
        return (0, 0, 0, 0)
    top, bottom = same_pads(in_shape[0], kernel, stride)
    left, right = same_pads(in_shape[1], kernel, stride)
    return (left, right, top, bottom)


def _symmetric(pads: Pads) -> tuple[int, int] | None:
    """torch's ``padding=(h, w)`` when the pads allow it, else None."""
    left, right, top, bottom = pads
    return (top, left) if left == right and top == bottom else None


def _conv(layer: S.Conv2D, in_shape: S.Shape, factory: dict) -> tuple[nn.Module, nn.Conv2d]:
    pads = _pads(layer, in_shape, layer.kernel, layer.stride)
    sym = _symmetric(pads)
    conv = nn.Conv2d(
        in_shape[2], layer.filters, layer.kernel, layer.stride,
        padding=sym or 0, bias=layer.use_bias, **factory,
    )  # fmt: skip
    if sym is not None:
        return conv, conv
    return nn.Sequential(OrderedDict(pad=nn.ZeroPad2d(pads), conv=conv)), conv


def _pool(layer: S.MaxPool2D | S.AvgPool2D, in_shape: S.Shape, factory: dict) -> nn.Module:
    size, stride = layer.size, layer.strides
    pads = _pads(layer, in_shape, size, stride)
    sym = _symmetric(pads)
    if isinstance(layer, S.MaxPool2D):
        if sym is not None:  # MaxPool2d pads with -inf itself
            return nn.MaxPool2d(size, stride, padding=sym)
        return nn.Sequential(nn.ConstantPad2d(pads, -math.inf), nn.MaxPool2d(size, stride))
    if sym is not None:
        return nn.AvgPool2d(size, stride, padding=sym, count_include_pad=False)
    return AvgPoolSame(size, stride, pads, in_shape[:2], **factory)


_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


def _layer(layer, in_shape: S.Shape, registry: dict, factory: dict) -> nn.Module:
    """One spec layer as a module; layers with parameters are added to ``registry``."""
    if isinstance(layer, S.Dense):
        module = nn.Linear(in_shape[0], layer.units, bias=layer.use_bias, **factory)
        registry[layer.name] = module
        return module
    if isinstance(layer, S.Conv2D):
        module, registry[layer.name] = _conv(layer, in_shape, factory)
        return module
    if isinstance(layer, S.MaxPool2D | S.AvgPool2D):
        return _pool(layer, in_shape, factory)
    if isinstance(layer, S.Flatten):
        return FlattenNHWC()
    if isinstance(layer, S.Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, S.Residual):
        body = _sequence(layer.body, in_shape, registry, factory)
        return Residual(body, _sequence(layer.shortcut, in_shape, registry, factory))
    if isinstance(layer, S.Parallel):
        return Parallel([_sequence(b, in_shape, registry, factory) for b in layer.branches])
    return _ACTIVATIONS[layer.type]()


def _sequence(layers, shape: S.Shape, registry: dict, factory: dict) -> nn.Sequential:
    modules = OrderedDict()
    for layer in layers:
        modules[layer.name] = _layer(layer, shape, registry, factory)
        shape = layer.out_shape(shape)
    return nn.Sequential(modules)


def build_model(
    spec: S.TaskSpec, input_shape: S.Shape, dtype: torch.dtype, device: torch.device | None = None
) -> Net:
    """The spec's model with torch's default initializers, in ``dtype`` on ``device``.

    Args:
        spec: the task; only ``spec.model`` is used.
        input_shape: one sample's shape, NHWC or [features] (the model itself takes NCHW).
        dtype: parameter and compute dtype.
        device: where the parameters live (CPU when None).
    """
    registry: dict[str, nn.Module] = {}
    factory = {"dtype": dtype, "device": device}
    body = _sequence(spec.model.layers, tuple(input_shape), registry, factory)
    return Net(body, registry)


def layer_outputs(model: Net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every spec layer's output for ``x`` (NCHW / [N, F]), keyed by layer name in
    ``harness.spec.walk`` order: a block, then the layers of its body and shortcut
    (or of its branches). Walks the same modules ``Net.forward`` runs, eagerly and
    in the same order of operations, and leaves nothing installed on the model;
    the caller picks train or eval mode and the autograd context."""
    outputs: dict[str, torch.Tensor] = {}
    _sequence_outputs(model.body, x, outputs)
    return outputs


def _sequence_outputs(seq: nn.Sequential, x: torch.Tensor, outputs: dict) -> torch.Tensor:
    # the children of every Sequential _sequence built are named by spec layer name
    for name, module in seq.named_children():
        if isinstance(module, Residual):
            outputs[name] = x  # placeholder: keeps walk()'s order, block before its layers
            body = _sequence_outputs(module.body, x, outputs)
            x = body + _sequence_outputs(module.shortcut, x, outputs)
        elif isinstance(module, Parallel):
            outputs[name] = x
            x = torch.cat([_sequence_outputs(b, x, outputs) for b in module.branches], dim=1)
        else:
            x = module(x)
        outputs[name] = x
    return x


def activation_to_canonical(tensor: torch.Tensor) -> np.ndarray:
    """An activation as a canonical numpy array (a copy): NCHW images -> NHWC."""
    array = tensor.detach().cpu().numpy()
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1)
    return np.array(array, order="C", copy=True)


def canonical_params(model: Net) -> dict[str, nn.Parameter]:
    """The model's parameters under their canonical names, in layer order."""
    params = {}
    for name, module in model.param_layers.items():
        params[f"{name}.kernel"] = module.weight
        if module.bias is not None:
            params[f"{name}.bias"] = module.bias
    return params


def to_canonical(tensor: torch.Tensor) -> np.ndarray:
    """A torch parameter (or its gradient) as a canonical numpy array (a copy)."""
    array = tensor.detach().cpu().numpy()
    if array.ndim == 4:  # OIHW -> HWIO
        array = array.transpose(2, 3, 1, 0)
    elif array.ndim == 2:  # [out, in] -> [in, out]
        array = array.T
    return np.array(array, order="C", copy=True)


def from_canonical(array: np.ndarray) -> torch.Tensor:
    """A canonical numpy array in torch's layout (same dtype; the caller casts)."""
    if array.ndim == 4:  # HWIO -> OIHW
        array = array.transpose(3, 2, 0, 1)
    elif array.ndim == 2:
        array = array.T
    return torch.from_numpy(np.ascontiguousarray(array))


def set_weights(model: Net, weights: Weights) -> None:
    """Load canonical weights exactly; names and shapes must match the model's."""
    params = canonical_params(model)
    if set(weights) != set(params):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise KeyError(f"weights do not match the model: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, param in params.items():
            value = from_canonical(np.asarray(weights[name]))
            # copy_ would broadcast a wrong shape silently
            if value.shape != param.shape:
                raise ValueError(
                    f"{name}: torch shape {tuple(param.shape)}, got {tuple(value.shape)}"
                )
            param.copy_(value)


def get_weights(model: Net) -> Weights:
    """Current parameters, canonical names and layouts, in the model's dtype."""
    return {name: to_canonical(p) for name, p in canonical_params(model).items()}
