"""A plain numpy forward pass of the spec's sequence vocabulary, in float64.

It is the written-down meaning of the canonical layouts and the masking rules in
harness/spec.py (gate orders, ``reset_after`` GRU, the backward direction over the
real steps only, the mask through conv1d and pooling), so each backend can be
checked against it alone, before any pair of frameworks is compared.
Images (conv2d, pooling) are left to the cross-framework check.
"""

from __future__ import annotations

import numpy as np

from harness import spec as S

Weights = dict[str, np.ndarray]


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _cell(kind: str, x: np.ndarray, state, w: Weights, p: str):
    """One step of a recurrent cell; ``state`` is h, or (h, c) for an lstm."""
    u = w[p + "recurrent_kernel"].shape[0]
    xi = x @ w[p + "kernel"] + w[p + "bias"]
    if kind == "rnn":
        return np.tanh(xi + state @ w[p + "recurrent_kernel"])
    if kind == "gru":
        hh = state @ w[p + "recurrent_kernel"] + w[p + "recurrent_bias"]
        r = sigmoid(xi[:, :u] + hh[:, :u])
        z = sigmoid(xi[:, u : 2 * u] + hh[:, u : 2 * u])
        n = np.tanh(xi[:, 2 * u :] + r * hh[:, 2 * u :])
        return (1 - z) * n + z * state
    h, c = state
    g = xi + h @ w[p + "recurrent_kernel"]
    i, f, gg, o = (g[:, k * u : (k + 1) * u] for k in range(4))
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
    return sigmoid(o) * np.tanh(c), c


def _run_direction(layer, x, mask, w: Weights, prefix: str, reverse: bool):
    n, steps, _ = x.shape
    h = np.zeros((n, layer.units))
    state = (h, h.copy()) if layer.type == "lstm" else h
    outs = np.zeros((n, steps, layer.units))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        new = _cell(layer.type, x[:, t], state, w, prefix)
        keep = mask[:, t][:, None]
        if layer.type == "lstm":
            state = (np.where(keep, new[0], state[0]), np.where(keep, new[1], state[1]))
            out = new[0]
        else:
            state = np.where(keep, new, state)
            out = new
        outs[:, t] = np.where(keep, out, 0.0)
    last = state[0] if layer.type == "lstm" else state
    return outs, last


def recurrent(layer, x: np.ndarray, mask: np.ndarray, w: Weights):
    seqs, lasts = [], []
    for prefix in layer.directions:
        o, last = _run_direction(layer, x, mask, w, f"{layer.name}.{prefix}", prefix != "")
        seqs.append(o)
        lasts.append(last)
    if layer.return_sequences:
        return np.concatenate(seqs, axis=-1)
    return np.concatenate(lasts, axis=-1)


def conv1d(layer, x: np.ndarray, w: Weights) -> np.ndarray:
    k = layer.kernel
    steps = x.shape[1]
    if layer.padding == "same":
        out_len = -(-steps // layer.stride)
        total = max((out_len - 1) * layer.stride + k - steps, 0)
        x = np.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)))
    out_len = (x.shape[1] - k) // layer.stride + 1
    kern = w[f"{layer.name}.kernel"]
    out = np.stack(
        [
            np.einsum("nkc,kcf->nf", x[:, t * layer.stride : t * layer.stride + k], kern)
            for t in range(out_len)
        ],
        axis=1,
    )
    if layer.use_bias:
        out = out + w[f"{layer.name}.bias"]
    return out


def _layers(layers, x: np.ndarray, mask, w: Weights, acts: dict):
    for layer in layers:
        kind = layer.type
        if kind == "embedding":
            mask = (x != 0) if layer.padding else None
            x = w[f"{layer.name}.embeddings"][x]
        elif kind == "dense":
            x = x @ w[f"{layer.name}.kernel"]
            if layer.use_bias:
                x = x + w[f"{layer.name}.bias"]
        elif kind in S.RECURRENT:
            steps = x.shape[1]
            m = mask if mask is not None else np.ones(x.shape[:2], bool)
            x = recurrent(layer, x, m, w)
            if not layer.return_sequences:
                mask = None
            elif mask is None:
                mask = np.ones((len(x), steps), bool)
        elif kind == "conv1d":
            x = conv1d(layer, x, w)
            if mask is not None:  # a window is real when its last step is
                mask = mask[:, layer.kernel - 1 :]
        elif kind in ("global_maxpool", "global_avgpool"):
            flat = x.reshape(len(x), -1, x.shape[-1])
            m = mask if mask is not None else np.ones(flat.shape[:2], bool)
            if kind == "global_maxpool":  # no real step at all gives 0
                x = np.where(m[..., None], flat, -np.inf).max(axis=1)
                x = np.where(m.any(axis=1)[:, None], x, 0.0)
            else:
                # no real step at all gives 0 here too
                x = (flat * m[..., None]).sum(axis=1) / np.maximum(m.sum(axis=1, keepdims=True), 1)
            mask = None
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "sigmoid":
            x = sigmoid(x)
        elif kind == "tanh":
            x = np.tanh(x)
        elif kind == "softmax":
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            x = e / e.sum(axis=-1, keepdims=True)
        elif kind == "dropout":
            pass  # inference
        elif kind == "flatten":
            x = x.reshape(len(x), -1)
        elif kind == "reshape":
            x = x.reshape(len(x), *layer.shape)
        elif kind == "parallel":
            outs = [_layers(b, x, mask, w, acts) for b in layer.branches]
            x = np.concatenate([o for o, _ in outs], axis=-1)
            mask = outs[0][1]
        elif kind == "residual":
            body, m = _layers(layer.body, x, mask, w, acts)
            short, _ = _layers(layer.shortcut, x, mask, w, acts)
            x, mask = body + short, m
        else:
            raise NotImplementedError(f"the numpy reference has no {kind} layer")
        acts[layer.name] = x
    return x, mask


def forward(model: S.ModelSpec, x: np.ndarray, w: Weights) -> tuple[np.ndarray, dict]:
    """Model outputs and every layer's output (by name), float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    if not np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float64)
    acts: dict[str, np.ndarray] = {}
    out, _ = _layers(model.layers, x, None, w, acts)
    return out, acts
