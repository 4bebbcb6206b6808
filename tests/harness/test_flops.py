"""FLOPs counted from the spec, checked against hand counts."""

from __future__ import annotations

from harness.data import sample_shape
from harness.flops import forward_flops, layer_flops, train_step_flops
from harness.spec import resolve_task, task_layers


def test_lenet_by_hand():
    spec = resolve_task("lenet")
    conv1 = 2 * (5 * 5 * 1) * (24 * 24 * 10)
    conv2 = 2 * (5 * 5 * 10) * (8 * 8 * 20)
    fc = 2 * 320 * 10
    assert forward_flops(spec, (28, 28, 1)) == conv1 + conv2 + fc == 934_400
    # conv1 sees the data: its input gradient is not needed, so 2x; the rest 3x
    assert train_step_flops(spec, (28, 28, 1), 64) == 64 * (2 * conv1 + 3 * (conv2 + fc))


def test_only_the_layers_after_a_trainable_one_need_their_input_gradient():
    from harness.bench import bench_spec

    mlp = bench_spec("mlp", 128)
    sizes = [784, 512, 256, 128, 64, 10]
    products = [2 * i * o for i, o in zip(sizes, sizes[1:], strict=False)]
    assert forward_flops(mlp, (28, 28, 1)) == sum(products)
    assert train_step_flops(mlp, (28, 28, 1), 128) == 128 * (
        2 * products[0] + 3 * sum(products[1:])
    )
    # text_cnn's embedding is trainable: every convolution after it needs its input's
    text = resolve_task("text_cnn")
    assert train_step_flops(text, (24,), 1) == 3 * forward_flops(text, (24,))
    # inception's branches each start from the block's input, after a trainable stem
    inc = resolve_task("inception")
    shape = sample_shape(inc.data)
    first = next(layer_flops(la, i, o) for la, i, o in task_layers(inc, shape) if la.has_params)
    assert train_step_flops(inc, shape, 1) == 3 * forward_flops(inc, shape) - first


def test_recurrent_and_sequence_layers_by_hand():
    spec = resolve_task("rnn_names")
    gru = 2 * (32 + 64) * (3 * 64) * 20 * 2  # both directions, 20 steps
    assert forward_flops(spec, sample_shape(spec.data)) == gru + 2 * 128 * 18
    text = resolve_task("text_cnn")
    convs = sum(2 * k * 16 * (24 - k + 1) * 8 for k in (3, 4, 5))  # inside the parallel block
    assert forward_flops(text, (24,)) == convs + 2 * 24 * 2
    hello = resolve_task("hello_rnn")
    assert forward_flops(hello, (5, 4)) == 2 * (4 + 4) * 4 * 5
