"""Spec layers as torch.nn modules, and canonical <-> torch weight layouts.

Torch is channels-first: the model takes NCHW images (the backend transposes the
harness' NHWC batches once, at the boundary). Inside, two spec conventions need
care: ``flatten`` must flatten in NHWC order, and ``same`` padding follows the
XLA rule (the odd pixel goes after), which torch's symmetric ``padding=`` cannot
express, so an explicit pad layer is added when the padding is lopsided.

Sequences are ``[N, steps, features]`` inside as well (the canonical layout, and
``batch_first=True`` for torch's recurrent layers); only ``conv1d`` transposes to
torch's NCW around its ``nn.Conv1d``. A padded sequence carries a boolean mask
``[N, steps]`` (token id != 0) beside it: every container is a ``Chain`` whose
forward threads ``(x, mask)``; the mask-aware modules (``MaskAware``) take and
return both, every other module takes ``x`` alone and leaves the mask as it is.
Image and vector models have no mask (``None``) and run the same modules as before.

Layouts: canonical conv kernels are HWIO, torch's ``Conv2d.weight`` is OIHW (and
``[kernel, in, filters]`` against ``Conv1d.weight``'s ``[filters, in, kernel]``);
canonical dense and recurrent kernels are ``[in, out]``, torch's ``Linear.weight``
and ``weight_ih``/``weight_hh`` are ``[out, in]``; embeddings agree.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from harness import spec as S
from harness.backend import Weights

Pads = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad's order for 2-d
Mask = torch.Tensor | None  # bool [N, steps]: True on real steps; None: no padding


class MaskAware(nn.Module):
    """A module whose forward is ``(x, mask) -> (x, mask)``: it reads, starts, changes
    or ends the padding mask. Every other module in a Chain gets ``x`` alone."""


def apply(module: nn.Module, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
    """One layer of a Chain: the mask goes only to the modules that read it."""
    if isinstance(module, MaskAware):
        return module(x, mask)
    return module(x), mask


class Chain(nn.Sequential):
    """An nn.Sequential (children named by spec layer name) that threads the mask.
    For images and vectors the mask stays None and this is nn.Sequential's loop."""

    def forward(self, x: torch.Tensor, mask: Mask = None) -> tuple[torch.Tensor, Mask]:
        for module in self:
            x, mask = apply(module, x, mask)
        return x, mask


class Model(nn.Module):
    """The spec's layer graph as one module; ``param_layers`` maps a spec layer
    name to its Conv2d/Linear/Conv1d/Embedding/Recurrent, the link between
    canonical names and torch's."""

    def __init__(self, body: Chain, param_layers: dict[str, nn.Module]):
        super().__init__()
        self.body = body
        # a plain dict on purpose: the modules are already registered inside body
        self.param_layers = param_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a model never ends on a masked sequence (the spec refuses it): drop the mask
        return self.body(x)[0]


class FlattenNHWC(nn.Module):
    """Flattens in NHWC order, the spec's convention, so the dense kernel after it
    is the same matrix in every framework (nn.Flatten would give CHW order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        return torch.flatten(x, 1)


class Reshape(nn.Module):
    """Reshapes each sample in NHWC order (the spec's), so an NCHW image is permuted
    to NHWC first, and an image result is permuted back to NCHW."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)
        x = x.reshape(x.shape[0], *self.shape)
        return x.permute(0, 3, 1, 2) if x.dim() == 4 else x

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)} (NHWC order)"


class Residual(MaskAware):
    """``body(x) + shortcut(x)``; an empty shortcut Chain is the identity. A sequence
    keeps the body's mask (the spec's rule)."""

    def __init__(self, body: Chain, shortcut: Chain):
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def chains(self) -> list[Chain]:
        return [self.body, self.shortcut]

    def forward(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
        return self.merge([self.body(x, mask), self.shortcut(x, mask)])

    @staticmethod
    def merge(outs: list[tuple[torch.Tensor, Mask]]) -> tuple[torch.Tensor, Mask]:
        (body, mask), (short, _) = outs
        return body + short, mask


class Parallel(MaskAware):
    """Branches on the same input, concatenated on the channel axis: dim 1 for NCHW
    images (and vectors), the last dim for sequences ``[N, steps, features]``."""

    def __init__(self, branches: list[Chain], dim: int):
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.dim = dim

    def chains(self) -> list[Chain]:
        return list(self.branches)

    def forward(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
        return self.merge([branch(x, mask) for branch in self.branches])

    def merge(self, outs: list[tuple[torch.Tensor, Mask]]) -> tuple[torch.Tensor, Mask]:
        # the branches agree on every axis but the channels, so on the mask too
        return torch.cat([x for x, _ in outs], dim=self.dim), outs[0][1]


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


# --------------------------------------------------------------------------- sequences


class TokenEmbedding(MaskAware):
    """``nn.Embedding`` over int32 token ids (torch takes IntTensor or LongTensor
    indices, so no cast), starting the mask where id 0 is padding (``padding``;
    unpadded windows of a language model start none). No ``padding_idx``: the
    canonical row 0 is a weight like any other, and padded steps keep its vector
    (the mask, not zeros, keeps them out of every result)."""

    def __init__(self, vocab: int, dim: int, padding: bool, factory: dict):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim, **factory)
        self.padding = padding

    def forward(self, ids: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
        return self.embedding(ids), (ids != 0 if self.padding else None)


class SequenceConv(MaskAware):
    """``conv1d`` on ``[N, steps, features]``: transposed to torch's NCW around an
    ``nn.Conv1d``, with an explicit pad when ``same`` padding is lopsided (the odd
    step after, as for conv2d). A valid window is real when its last step is (the
    spec only lets stride-1 valid convolutions read a mask), so the mask loses its
    first ``kernel - 1`` steps."""

    def __init__(self, layer: S.Conv1D, in_shape: S.Shape, factory: dict):
        super().__init__()
        steps, channels = in_shape
        before, after = (0, 0)
        if layer.padding == "same":
            before, after = same_pads(steps, layer.kernel, layer.stride)
        self.pads = (before, after) if before != after else None
        self.conv = nn.Conv1d(
            channels,
            layer.filters,
            layer.kernel,
            layer.stride,
            padding=before if self.pads is None else 0,
            bias=layer.use_bias,
            **factory,
        )
        self.trim = layer.kernel - 1

    def forward(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
        x = x.transpose(1, 2)  # NWC -> NCW
        if self.pads is not None:
            x = F.pad(x, self.pads)
        x = self.conv(x).transpose(1, 2)
        return x, (mask[:, self.trim :] if mask is not None else None)


class GlobalPool(MaskAware):
    """Max or mean over every axis but the channels: H and W of an NCHW image, the
    steps of a sequence, where only real steps count. A sequence with no real step
    pools to 0 (the max of nothing, and the mean over a count clamped to 1)."""

    def __init__(self, kind: str, image: bool):
        super().__init__()
        self.kind = kind  # "max" or "avg"
        self.dims = (2, 3) if image else (1,)

    def forward(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
        if mask is None:
            return (x.amax(self.dims) if self.kind == "max" else x.mean(self.dims)), None
        keep = mask.unsqueeze(-1)
        if self.kind == "max":
            # amax splits the gradient between equal maxima, as TF's and JAX's max do
            top = x.masked_fill(~keep, -math.inf).amax(1)
            return torch.where(keep.any(1), top, 0.0), None
        total = torch.where(keep, x, 0.0).sum(1)
        return total / keep.sum(1).clamp(min=1), None

    def extra_repr(self) -> str:
        return f"{self.kind}, dims={self.dims}"


_FUSED = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}
_CELLS = {"rnn": nn.RNNCell, "gru": nn.GRUCell, "lstm": nn.LSTMCell}


class Recurrent(MaskAware):
    """``rnn``/``gru``/``lstm``: torch's fused ``nn.RNN``/``GRU``/``LSTM``
    (``batch_first=True``), fed a ``PackedSequence`` when the input is padded, or,
    with ``unroll``, its ``nn.RNNCell``/``GRUCell``/``LSTMCell`` stepped in a Python
    for loop that keeps the state on padded steps with ``torch.where``.

    Torch's RNN and LSTM have two bias vectors (``bias_ih`` and ``bias_hh``) where
    the spec has one: ``bias_ih`` holds the canonical bias and ``bias_hh`` is zeroed
    and frozen (``requires_grad=False``), so the function, its gradients and the
    trainable parameter count are the spec's. GRU's two biases are both canonical
    (``bias``, ``recurrent_bias``): the ``reset_after`` GRU torch computes.
    """

    def __init__(self, layer: S.RNN | S.GRU | S.LSTM, in_features: int, factory: dict):
        super().__init__()
        self.kind, self.units = layer.type, layer.units
        self.directions = layer.directions  # ("",) or ("", "backward_")
        self.return_sequences, self.unroll = layer.return_sequences, layer.unroll
        if layer.unroll:  # one cell per direction
            cell = _CELLS[layer.type]
            self.cells = nn.ModuleList(
                [cell(in_features, layer.units, **factory) for _ in self.directions]
            )
        else:
            self.rnn = _FUSED[layer.type](
                in_features,
                layer.units,
                batch_first=True,
                bidirectional=layer.bidirectional,
                **factory,
            )
        if layer.type != "gru":
            for d in range(len(self.directions)):
                frozen = self._torch_params(d)["bias_hh"]
                with torch.no_grad():
                    frozen.zero_()
                frozen.requires_grad_(False)

    def _torch_params(self, direction: int) -> dict[str, nn.Parameter]:
        """One direction's ``weight_ih, weight_hh, bias_ih, bias_hh``; the fused
        layer names them ``weight_ih_l0`` and ``weight_ih_l0_reverse`` for the backward."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        if self.unroll:
            return {n: getattr(self.cells[direction], n) for n in names}
        suffix = "_l0_reverse" if direction else "_l0"
        return {n: getattr(self.rnn, n + suffix) for n in names}

    def bindings(self, name: str) -> dict[str, Binding]:
        """Canonical name -> (torch parameter, layout); frozen biases have none."""
        out: dict[str, Binding] = {}
        for d, prefix in enumerate(self.directions):
            p = self._torch_params(d)
            out[f"{name}.{prefix}kernel"] = (p["weight_ih"], "transpose")
            out[f"{name}.{prefix}recurrent_kernel"] = (p["weight_hh"], "transpose")
            out[f"{name}.{prefix}bias"] = (p["bias_ih"], "same")
            if self.kind == "gru":
                out[f"{name}.{prefix}recurrent_bias"] = (p["bias_hh"], "same")
        return out

    def forward(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, Mask]:
        seq, last = self._unrolled(x, mask) if self.unroll else self._fused(x, mask)
        if self.return_sequences:
            return seq, mask
        return last, None

    # Dynamo refuses torch's fused RNN modules ("Dynamo does not support RNN, GRU, or
    # LSTM") and skips pack_padded_sequence, whose output size depends on the lengths'
    # values: in graph mode this is one deliberate graph break, run eagerly, with the
    # layers before and after it compiled
    @torch.compiler.disable
    def _fused(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, torch.Tensor]:
        if mask is None:
            seq, state = self.rnn(x)
        else:
            # packing assumes the real steps come first, as the harness pads after;
            # it refuses length 0, so an all-padding row runs one step, zeroed below
            lengths = mask.sum(1)
            packed = pack_padded_sequence(
                x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
            )
            seq, state = self.rnn(packed)
            seq, _ = pad_packed_sequence(seq, batch_first=True, total_length=x.shape[1])
        h = state[0] if self.kind == "lstm" else state  # [directions, N, units], unsorted
        last = torch.cat(list(h), dim=-1)  # [forward, backward]
        if mask is not None:
            seq = torch.where(mask.unsqueeze(-1), seq, 0.0)
            last = torch.where(mask.any(1, keepdim=True), last, 0.0)
        return seq, last

    def _unrolled(self, x: torch.Tensor, mask: Mask) -> tuple[torch.Tensor, torch.Tensor]:
        steps = x.shape[1]
        seqs, lasts = [], []
        for d, cell in enumerate(self.cells):
            h = x.new_zeros(x.shape[0], self.units)
            state = (h, h) if self.kind == "lstm" else h
            outs: list[torch.Tensor] = [h] * steps
            # the backward direction walks the padded tail first, keeping its zero state
            for t in range(steps - 1, -1, -1) if d else range(steps):
                new = cell(x[:, t], state)
                out = new[0] if self.kind == "lstm" else new
                if mask is not None:
                    keep = mask[:, t, None]
                    if self.kind == "lstm":
                        new = tuple(
                            torch.where(keep, a, b) for a, b in zip(new, state, strict=True)
                        )
                    else:
                        new = torch.where(keep, new, state)
                    out = torch.where(keep, out, 0.0)
                state, outs[t] = new, out
            seqs.append(torch.stack(outs, dim=1))
            lasts.append(state[0] if self.kind == "lstm" else state)
        return torch.cat(seqs, dim=-1), torch.cat(lasts, dim=-1)


# --------------------------------------------------------------------------- building


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
        in_shape[2],
        layer.filters,
        layer.kernel,
        layer.stride,
        padding=sym or 0,
        bias=layer.use_bias,
        **factory,
    )
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


def _channel_dim(shape: S.Shape) -> int:
    """The channel axis of a batch whose samples have canonical ``shape``: 1 for
    NCHW images, the last for vectors and ``[N, steps, features]`` sequences."""
    return 1 if len(shape) == 3 else -1


def _layer(layer, in_shape: S.Shape, registry: dict, factory: dict) -> nn.Module:
    """One spec layer as a module; layers with parameters are added to ``registry``."""
    if isinstance(layer, S.Dense):  # nn.Linear applies per step to [N, steps, features]
        module = nn.Linear(in_shape[-1], layer.units, bias=layer.use_bias, **factory)
        registry[layer.name] = module
        return module
    if isinstance(layer, S.Conv2D):
        module, registry[layer.name] = _conv(layer, in_shape, factory)
        return module
    if isinstance(layer, S.Conv1D):
        module = SequenceConv(layer, in_shape, factory)
        registry[layer.name] = module.conv
        return module
    if isinstance(layer, S.Embedding):
        module = TokenEmbedding(layer.vocab, layer.dim, layer.padding, factory)
        registry[layer.name] = module.embedding
        return module
    if isinstance(layer, S.RNN | S.GRU | S.LSTM):
        module = registry[layer.name] = Recurrent(layer, in_shape[-1], factory)
        return module
    if isinstance(layer, S.MaxPool2D | S.AvgPool2D):
        return _pool(layer, in_shape, factory)
    if isinstance(layer, S.GlobalMaxPool | S.GlobalAvgPool):
        kind = "max" if isinstance(layer, S.GlobalMaxPool) else "avg"
        return GlobalPool(kind, image=len(in_shape) == 3)
    if isinstance(layer, S.Flatten):
        return FlattenNHWC()
    if isinstance(layer, S.Reshape):
        return Reshape(layer.shape)
    if isinstance(layer, S.Softmax):  # over the channels: dim 1 of an NCHW image
        return nn.Softmax(dim=_channel_dim(in_shape))
    if isinstance(layer, S.Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, S.Residual):
        body = _sequence(layer.body, in_shape, registry, factory)
        return Residual(body, _sequence(layer.shortcut, in_shape, registry, factory))
    if isinstance(layer, S.Parallel):
        branches = [_sequence(b, in_shape, registry, factory) for b in layer.branches]
        return Parallel(branches, _channel_dim(layer.out_shape(in_shape)))
    return _ACTIVATIONS[layer.type]()


def _sequence(layers, shape: S.Shape, registry: dict, factory: dict) -> Chain:
    modules = OrderedDict()
    for layer in layers:
        modules[layer.name] = _layer(layer, shape, registry, factory)
        shape = layer.out_shape(shape)
    return Chain(modules)


def build_network(
    model: S.ModelSpec,
    input_shape: S.Shape,
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> Model:
    """One network of a task with torch's default initializers, in ``dtype`` on
    ``device`` (RNN and LSTM ``bias_hh`` zeroed and frozen, see ``Recurrent``).

    Args:
        model: the network's layers (``spec.model``, or a gan's ``spec.discriminator``).
        input_shape: one sample's shape, NHWC, [features] or [steps] token ids
            (the network itself takes NCHW images).
        dtype: parameter and compute dtype.
        device: where the parameters live (CPU when None).
    """
    registry: dict[str, nn.Module] = {}
    factory = {"dtype": dtype, "device": device}
    body = _sequence(model.layers, tuple(input_shape), registry, factory)
    return Model(body, registry)


def build_networks(
    spec: S.TaskSpec,
    input_shape: S.Shape,
    dtype: torch.dtype,
    device: torch.device | None = None,
) -> dict[str, Model]:
    """Every network the task trains, keyed by role (``harness.spec.networks``),
    each as ``build_network`` builds it; the caller seeds torch first."""
    return {
        role: build_network(model, shape, dtype, device)
        for role, model, shape in S.networks(spec, tuple(input_shape))
    }


def activations(model: Model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every spec layer's output for ``x`` (NCHW / [N, F] / token ids), keyed by
    layer name in ``harness.spec.walk`` order: a block, then the layers of its body
    and shortcut (or of its branches). Walks the same modules ``Model.forward`` runs,
    eagerly and in the same order of operations, threading the mask the same way,
    and leaves nothing installed on the model; the caller picks train or eval mode
    and the autograd context."""
    outputs: dict[str, torch.Tensor] = {}
    _record(model.body, x, None, outputs)
    return outputs


def _record(seq: Chain, x: torch.Tensor, mask: Mask, outputs: dict) -> tuple[torch.Tensor, Mask]:
    # the children of every Chain _sequence built are named by spec layer name
    for name, module in seq.named_children():
        if isinstance(module, Residual | Parallel):
            outputs[name] = x  # placeholder: keeps walk()'s order, block before its layers
            outs = [_record(chain, x, mask, outputs) for chain in module.chains()]
            x, mask = module.merge(outs)
        else:
            x, mask = apply(module, x, mask)
        outputs[name] = x
    return x, mask


def activation_to_canonical(tensor: torch.Tensor) -> np.ndarray:
    """An activation as a canonical numpy array (a copy): NCHW images -> NHWC;
    sequences are ``[N, steps, features]`` already."""
    array = tensor.detach().cpu().numpy()
    if array.ndim == 4:
        array = array.transpose(0, 2, 3, 1)
    return np.array(array, order="C", copy=True)


# --------------------------------------------------------------------------- weights

# layout -> (torch to canonical, canonical to torch), as numpy axis permutations
_TO_CANONICAL = {
    "same": None,  # biases, embeddings
    "transpose": (1, 0),  # Linear / weight_ih / weight_hh [out, in] <-> [in, out]
    "oihw": (2, 3, 1, 0),  # Conv2d OIHW -> HWIO
    "oiw": (2, 1, 0),  # Conv1d [filters, in, kernel] <-> [kernel, in, filters]
}
_FROM_CANONICAL = {"same": None, "transpose": (1, 0), "oihw": (3, 2, 0, 1), "oiw": (2, 1, 0)}
_KERNEL_LAYOUT = {nn.Linear: "transpose", nn.Conv2d: "oihw", nn.Conv1d: "oiw"}


# how a torch parameter's layout relates to the canonical one (see _TO_CANONICAL)
Layout = str
Binding = tuple[nn.Parameter, Layout]


def bindings(model: Model) -> dict[str, Binding]:
    """Canonical name -> (torch parameter, layout), in layer order; trainable only."""
    out: dict[str, Binding] = {}
    for name, module in model.param_layers.items():
        if isinstance(module, Recurrent):
            out.update(module.bindings(name))
        elif isinstance(module, nn.Embedding):
            out[f"{name}.embeddings"] = (module.weight, "same")
        else:
            out[f"{name}.kernel"] = (module.weight, _KERNEL_LAYOUT[type(module)])
            if module.bias is not None:
                out[f"{name}.bias"] = (module.bias, "same")
    return out


def to_canonical(tensor: torch.Tensor, layout: Layout) -> np.ndarray:
    """A torch parameter (or its gradient) as a canonical numpy array (a copy)."""
    array = tensor.detach().cpu().numpy()
    axes = _TO_CANONICAL[layout]
    if axes is not None:
        array = array.transpose(axes)
    return np.array(array, order="C", copy=True)


def from_canonical(array: np.ndarray, layout: Layout) -> torch.Tensor:
    """A canonical numpy array in torch's layout (same dtype; the caller casts)."""
    axes = _FROM_CANONICAL[layout]
    if axes is not None:
        array = array.transpose(axes)
    return torch.from_numpy(np.ascontiguousarray(array))


def _task_bindings(networks: Model | dict[str, Model]) -> dict[str, Binding]:
    """``bindings`` of one network, or of all a task trains (a gan's generator and
    discriminator: the spec keeps their layer names distinct)."""
    out: dict[str, Binding] = {}
    for model in [networks] if isinstance(networks, Model) else networks.values():
        out.update(bindings(model))
    return out


def get_weights(networks: Model | dict[str, Model]) -> Weights:
    """Current parameters of a model or of a task's networks, canonical names and
    layouts, in the networks' dtype."""
    return {name: to_canonical(p, layout) for name, (p, layout) in _task_bindings(networks).items()}


def set_weights(networks: Model | dict[str, Model], weights: Weights) -> None:
    """Load canonical weights exactly into a model, or into a task's networks (by
    role); names and shapes must match the networks'."""
    params = _task_bindings(networks)
    if set(weights) != set(params):
        missing, extra = sorted(set(params) - set(weights)), sorted(set(weights) - set(params))
        raise KeyError(f"weights do not match the model: missing {missing}, unexpected {extra}")
    with torch.no_grad():
        for name, (param, layout) in params.items():
            value = np.asarray(weights[name])
            # copy_ would broadcast a wrong shape silently; check before transposing,
            # which would fail with numpy's less telling message
            if value.ndim != param.dim():
                raise ValueError(f"{name}: torch shape {tuple(param.shape)}, got {value.shape}")
            value = from_canonical(value, layout)
            if value.shape != param.shape:
                raise ValueError(
                    f"{name}: torch shape {tuple(param.shape)}, got {tuple(value.shape)}"
                )
            param.copy_(value)
