"""FLOPs counted from the spec, checked against hand counts."""

from __future__ import annotations

from harness.data import sample_shape
from harness.flops import forward_flops, train_step_flops
from harness.spec import resolve_task


def test_lenet_by_hand():
    spec = resolve_task("lenet")
    conv1 = 2 * (5 * 5 * 1) * (24 * 24 * 10)
    conv2 = 2 * (5 * 5 * 10) * (8 * 8 * 20)
    fc = 2 * 320 * 10
    assert forward_flops(spec, (28, 28, 1)) == conv1 + conv2 + fc == 934_400
    assert train_step_flops(spec, (28, 28, 1), 64) == 3 * 64 * 934_400


def test_recurrent_and_sequence_layers_by_hand():
    spec = resolve_task("rnn_names")
    gru = 2 * (32 + 64) * (3 * 64) * 20 * 2  # both directions, 20 steps
    assert forward_flops(spec, sample_shape(spec.data)) == gru + 2 * 128 * 18
    text = resolve_task("text_cnn")
    convs = sum(2 * k * 16 * (24 - k + 1) * 8 for k in (3, 4, 5))  # inside the parallel block
    assert forward_flops(text, (24,)) == convs + 2 * 24 * 2
    hello = resolve_task("hello_rnn")
    assert forward_flops(hello, (5, 4)) == 2 * (4 + 4) * 4 * 5
