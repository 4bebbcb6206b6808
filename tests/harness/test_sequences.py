"""The sequence vocabulary in the spec, the text data sets, and the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data
from harness.data import DataError, text
from harness.data.batching import random_batch
from harness.init import canonical_weights
from harness.metrics import accuracy, loss, mean_predictor_mse
from harness.spec import DataSpec, SpecError, check_model, masked_inputs, param_shapes, parse_spec
from tests import reference

BASE = {
    "name": "t",
    "data": {"dataset": "names_generated"},
    "recipe": {
        "loss": "softmax_cross_entropy",
        "optimizer": {"name": "adam", "learning_rate": 0.01},
        "batch_size": 8,
        "epochs": 1,
    },
}
EMBED = {"name": "embed", "type": "embedding", "vocab": 128, "dim": 4}


def seq_spec(layers, steps=20, **recipe):
    return parse_spec(
        {
            **BASE,
            "model": {"input_shape": [steps], "layers": [EMBED, *layers]},
            "recipe": {**BASE["recipe"], **recipe},
        },
        "seq.toml",
    )


def test_recurrent_layouts_follow_the_gate_count():
    spec = seq_spec([{"name": "g", "type": "gru", "units": 3, "bidirectional": True}])
    shapes = param_shapes(spec.model, (20,))
    assert shapes["g.kernel"] == (4, 9) and shapes["g.recurrent_kernel"] == (3, 9)
    assert shapes["g.recurrent_bias"] == (9,) and shapes["g.backward_bias"] == (9,)
    lstm = seq_spec([{"name": "l", "type": "lstm", "units": 3}, {"type": "dense", "units": 2}])
    shapes = param_shapes(lstm.model, (20,))
    assert shapes["l.kernel"] == (4, 12) and "l.recurrent_bias" not in shapes
    assert check_model(lstm, (20,)) == (2,)


def test_masks_follow_the_time_axis_and_stop_at_reductions():
    spec = seq_spec(
        [
            {"name": "r", "type": "rnn", "units": 3, "return_sequences": True},
            {"name": "c", "type": "conv1d", "filters": 2, "kernel": 3},
            {"name": "p", "type": "global_maxpool"},
            {"name": "d", "type": "dense", "units": 2},
        ]
    )
    assert masked_inputs(spec.model) == {
        "embed": False,
        "r": True,
        "c": True,
        "p": True,
        "d": False,
    }


@pytest.mark.parametrize(
    "layers,words",
    [
        ([{"type": "flatten"}, {"type": "dense", "units": 2}], "mix the padded steps"),
        (
            [
                {"type": "conv1d", "filters": 2, "kernel": 3, "padding": "same"},
                {"type": "global_maxpool"},
            ],
            "padding 'valid'",
        ),
        ([{"type": "rnn", "units": 2, "return_sequences": True}], "ends on a padded sequence"),
    ],
)
def test_a_mask_that_cannot_follow_is_an_error(layers, words):
    with pytest.raises(SpecError, match=words):
        check_model(seq_spec(layers), (20,))


def test_per_step_outputs_need_softmax_cross_entropy():
    layers = [{"type": "rnn", "units": 4, "return_sequences": True}]
    spec = parse_spec(
        {
            **BASE,
            "data": {"dataset": "hello"},
            "model": {"layers": layers},
            "recipe": {**BASE["recipe"], "loss": "mse"},
        }
    )
    with pytest.raises(SpecError, match=r"\[steps, classes\]"):
        check_model(spec, (5, 4))


def test_autoencoder_recipe_checks_loss_output_and_recorded_layer():
    with pytest.raises(SpecError, match="must be 'mse'"):
        seq_spec([{"type": "gru", "units": 2}], kind="autoencoder")
    spec = parse_spec(
        {
            **BASE,
            "data": {"dataset": "digits"},
            "model": {
                "layers": [{"type": "flatten"}, {"name": "out", "type": "dense", "units": 10}]
            },
            "recipe": {**BASE["recipe"], "loss": "mse", "kind": "autoencoder", "record_layer": "x"},
        }
    )
    with pytest.raises(SpecError, match=r"must output its input flattened, \[64\]"):
        check_model(spec, (8, 8, 1))


def test_reshape_must_keep_the_count():
    spec = parse_spec(
        {
            **BASE,
            "data": {"dataset": "digits"},
            "model": {"layers": [{"type": "reshape", "shape": [8, 9]}, {"type": "flatten"}]},
        }
    )
    with pytest.raises(SpecError, match="cannot turn shape"):
        check_model(spec, (8, 8, 1))


def test_recurrent_and_embedding_init_follow_torch():
    spec = seq_spec([{"name": "g", "type": "gru", "units": 16}, {"type": "dense", "units": 2}])
    w = canonical_weights(spec, (20,))
    assert np.abs(w["g.recurrent_bias"]).max() <= 0.25 < np.abs(w["embed.embeddings"]).max()
    assert abs(w["embed.embeddings"].std() - 1.0) < 0.1


# --------------------------------------------------------------------------- data


def test_text_tokenization_pads_with_zero_and_counts_cuts():
    x, cut = text.pad([text.char_ids("Ab"), text.char_ids("Abcdef")], 4)
    assert x.tolist() == [[65, 98, 0, 0], [65, 98, 99, 100]] and cut == 1
    vocab = text.word_vocab(["a b b", "c b"], 3)
    assert vocab == {"b": 2} and text.word_ids("B a", vocab) == [2, text.UNKNOWN]


@pytest.mark.parametrize("name", ["names_generated", "sentiment_generated"])
def test_generated_text_sets_are_seeded_padded_and_say_chance(name):
    a, b = data.load(DataSpec(dataset=name)), data.load(DataSpec(dataset=name))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.dtype == np.int32 and a.x_train.min() == 0
    assert (a.x_train[:, 0] > 0).all()  # no empty sequence
    lengths = (a.x_train > 0).sum(axis=1)  # padding only after the text
    assert ((a.x_train > 0) == (np.arange(a.x_train.shape[1]) < lengths[:, None])).all()
    assert 0 < a.info["chance"] < 0.6
    other = data.load(DataSpec(dataset=name, seed=1))
    assert not np.array_equal(a.x_train[:50], other.x_train[:50])


def test_hello_is_the_course_example():
    ds = data.load(DataSpec(dataset="hello"))
    assert ds.x_train.shape == (1, 5, 4) and ds.y_train.tolist() == [[3, 1, 2, 3, 2]]


def test_real_names_files(shared_data):
    ds = data.load(DataSpec(dataset="names"), shared_data / "pytorchzerotoall")
    assert ds.x_train.shape == (13374, 20) and ds.x_test.shape == (6700, 20)
    assert ds.classes == 18 and ds.info["classes"][14] == "Russian"
    assert set(ds.info["files"].values()) == {"verified"}
    assert 0.46 < ds.info["chance"] < 0.47  # Russian names are 47% of the test file


def test_names_files_missing_or_malformed(tmp_path):
    with pytest.raises(DataError, match="names_train.csv.gz"):
        data.load(DataSpec(dataset="names"), tmp_path)
    for part in ("train", "test"):  # plain CSV: no known checksum, read unverified
        (tmp_path / f"names_{part}.csv").write_text('"Smith","English","extra"\n')
    with pytest.raises(DataError, match="two fields"):
        data.load(DataSpec(dataset="names"), tmp_path)


def test_autoencoder_targets_are_the_inputs():
    spec = parse_spec(
        {
            **BASE,
            "data": {"dataset": "digits"},
            "model": {"layers": [{"type": "flatten"}, {"type": "dense", "units": 64}]},
            "recipe": {**BASE["recipe"], "loss": "mse", "kind": "autoencoder"},
        }
    )
    ds = data.load(spec.data)
    x_tr, y_tr, _, y_te = data.arrays(ds, spec.recipe)
    np.testing.assert_array_equal(y_tr, x_tr.reshape(len(x_tr), -1))
    assert 0.5 < mean_predictor_mse(y_tr, y_te) < 1.5  # standardized pixels


def test_per_step_metrics_count_every_step():
    out = np.zeros((2, 3, 4))
    out[..., 1] = 5.0
    y = np.array([[1, 1, 0], [1, 2, 1]])
    assert accuracy("softmax_cross_entropy", out, y) == pytest.approx(4 / 6)
    assert loss("softmax_cross_entropy", out, y) > loss(
        "softmax_cross_entropy", out, np.ones_like(y)
    )


# --------------------------------------------------------------------------- reference


def test_reference_gru_bidirectional_reads_only_real_steps():
    spec = seq_spec(
        [
            {"name": "g", "type": "gru", "units": 3, "bidirectional": True},
            {"name": "fc", "type": "dense", "units": 2},
        ]
    )
    w = canonical_weights(spec, (20,), "float64")
    batch = random_batch(spec, (20,), 5, seed=3)
    out, acts = reference.forward(spec.model, batch.x, w)
    for i in range(5):  # each row alone, cut to its real length, gives the same state
        length = int((batch.x[i] > 0).sum())
        short = seq_spec(spec.model.layers[1:], steps=length)
        alone, _ = reference.forward(short.model, batch.x[i : i + 1, :length], w)
        np.testing.assert_allclose(alone[0], out[i], rtol=1e-12)
    assert acts["g"].shape == (5, 6)


def test_reference_lstm_first_step_by_hand():
    spec = seq_spec([{"name": "l", "type": "lstm", "units": 2}, {"type": "dense", "units": 2}])
    w = canonical_weights(spec, (20,), "float64")
    x = np.array([[7] + [0] * 19])
    _, acts = reference.forward(spec.model, x, w)
    e = w["embed.embeddings"][7]
    g = e @ w["l.kernel"] + w["l.bias"]
    i, gg, o = g[:2], g[4:6], g[6:]
    c = reference.sigmoid(i) * np.tanh(gg)  # c0 = 0, so the forget gate does not matter
    np.testing.assert_allclose(acts["l"][0], reference.sigmoid(o) * np.tanh(c), rtol=1e-12)


class _Bigram:
    """A stand-in language model: the next byte's logits depend on the last byte only."""

    def __init__(self, table):
        self.table = table

    def predict(self, state, x):
        return self.table[x]  # [1, steps, vocab]


def test_sampler_is_seeded_and_follows_the_probabilities():
    from harness.recipes import generate

    table = np.full((text.BYTE_VOCAB, text.BYTE_VOCAB), -30.0)
    table[:, ord("a") + 1] = 0.0
    table[ord("a") + 1, :] = -30.0
    table[ord("a") + 1, ord("b") + 1] = 0.0  # after "a" always "b", else always "a"
    prompt = text.byte_ids(b"xyz")
    first = generate(_Bigram(table), None, prompt, 6, 1.0, seed=0)
    assert first["text"] == "ababab" and first["prompt"] == "xyz"
    noisy = np.random.default_rng(0).normal(size=table.shape)
    a = generate(_Bigram(noisy), None, prompt, 40, 0.8, seed=1)
    b = generate(_Bigram(noisy.copy()), None, prompt, 40, 0.8, seed=1)
    c = generate(_Bigram(noisy), None, prompt, 40, 0.8, seed=2)
    assert a == b and a["text"] != c["text"]


def test_language_model_windows_and_entropy_baseline(tmp_path):
    ds = data.load(DataSpec(dataset="chars_generated"))
    np.testing.assert_array_equal(ds.x_train[:, 1:], ds.y_train[:, :-1])  # next character
    assert ds.x_train.min() >= 1  # no padding id in a language model's windows
    h = ds.info["baselines"]["unigram_entropy_loss"]
    assert 2.5 < h < np.log(30)
    f = tmp_path / "poem.txt"
    f.write_text("Ünïcode text, " * 40, encoding="utf-8")
    spec = DataSpec(dataset="chars_generated", real="text_file", params={"steps": 16})
    real = data.load(spec.model_copy(update={"real_params": {"steps": 16}}), f)
    assert real.x_train.shape[1] == 16 and "Ünïcode" in text.decode(real.x_train.reshape(-1))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match="not UTF-8"):
        data.load(spec, tmp_path / "bin.txt")
