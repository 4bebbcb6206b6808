"""The three backends read as one idea in three dialects: ``layers.py``, ``train.py``
and ``backend.py`` define the same public names in the same order, and a name
only some of them define says here why (read from the source, no framework
imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.backend import Backend

IMPLS = Path(__file__).resolve().parents[2] / "impls"
ALL = ("torch", "tf", "jax")

# (name, the backends that define it, why the others do not); in file order
LAYERS = [
    ("Pads", ("torch",), "F.pad takes explicit pads; Keras and Flax pad 'same' themselves"),
    ("Mask", ("torch",), "the padding mask's type; Keras and Flax carry it untyped"),
    ("MaskAware", ("torch",), "marks the modules whose forward takes the mask"),
    ("PaddingMask", ("tf",), "Keras' mask is an explicit tensor of the functional graph"),
    ("ShiftMask", ("tf",), "a valid conv1d shortens the explicit mask"),
    ("MaskedGlobalPooling", ("tf",), "Keras' global poolings ignore a mask"),
    ("Stack", ("jax",), "nnx.Sequential neither names its layers nor passes the mask"),
    ("apply", ("torch", "jax"), "Keras' functional graph wires the layers once, at build"),
    ("Chain", ("torch",), "nn.Sequential that threads the mask"),
    ("Model", ("torch",), "the network's root module; Keras has keras.Model, Flax the Stack"),
    ("FlattenNHWC", ("torch",), "nn.Flatten flattens NCHW; Keras and Flax are NHWC"),
    ("Reshape", ("torch",), "reshapes in NHWC order around NCHW images"),
    ("Residual", ("torch", "jax"), "Keras adds the two branches with a layers.Add"),
    ("Parallel", ("torch", "jax"), "Keras concatenates with a layers.Concatenate"),
    ("flatten", ("jax",), "Flax has no flatten layer"),
    ("reshape", ("jax",), "Flax has no reshape layer"),
    ("AvgPoolSame", ("torch",), "torch's avg_pool2d has no 'same' padding"),
    ("avg_pool", ("jax",), "Flax's avg_pool counts padding in the divisor"),
    ("max_pool", ("jax",), "nnx.max_pool's gradient runs as a slow loop on XLA:CPU"),
    ("global_max_pool", ("jax",), "Flax has no global pooling that reads a mask"),
    ("global_avg_pool", ("jax",), "Flax has no global pooling that reads a mask"),
    ("TokenEmbedding", ("torch",), "nn.Embedding does not start the padding mask"),
    ("Embed", ("jax",), "nnx.Embed does not start the padding mask"),
    ("SequenceConv", ("torch",), "nn.Conv1d is channels-first and does not shorten the mask"),
    ("GlobalPool", ("torch",), "torch's adaptive pools know no padding mask"),
    ("SimpleCell", ("jax",), "Flax's cells cannot hold the canonical parameters"),
    ("GRUCell", ("jax",), "Flax's cells cannot hold the canonical parameters"),
    ("LSTMCell", ("jax",), "Flax's cells cannot hold the canonical parameters"),
    ("stepped", ("jax",), "the cell in a Python loop, beside the scanned one"),
    ("Recurrent", ("torch", "jax"), "Keras' RNN layers take the mask and directions themselves"),
    ("same_pads", ("torch",), "torch pads 'same' by hand (see Pads)"),
    ("input_dtype", ("tf",), "keras.Input needs its dtype: int32 token ids or the run's"),
    ("build_network", ALL, None),
    ("build_networks", ALL, None),
    ("activations", ("torch", "jax"), "Keras reads them through a second functional model"),
    ("activation_model", ("tf",), "that second model, built once per network"),
    ("activation_to_canonical", ("torch",), "torch's images are NCHW; the canonical is NHWC"),
    ("Path", ("jax",), "a Flax parameter's place in the state tree"),
    ("Layout", ("torch",), "torch's kernels are OIHW / [out, in], not the canonical layout"),
    ("Binding", ("torch", "tf"), "Flax's parameters are canonical already: a path is enough"),
    ("swap_gru_gates", ("tf",), "Keras' GRU orders its gates z, r, h; the canonical r, z, n"),
    ("bindings", ALL, None),
    ("to_canonical", ALL, None),
    ("from_canonical", ("torch",), "Keras' Binding carries its own; Flax needs none"),
    ("get_weights", ALL, None),
    ("set_weights", ALL, None),
    ("penalized", ("tf",), "one Keras variable may hold two canonical parameters"),
    ("check_concrete", ("jax",), "only Flax builds abstractly (nnx.eval_shape)"),
]

TRAIN = [
    ("LossFn", ("torch", "jax"), "Keras' losses are keras.losses.Loss objects"),
    ("Traces", ("jax",), "JAX keeps no trace count: the jitted functions count their own"),
    ("Step", ("torch", "tf"), "JAX's steps take and return the whole state, no one signature"),
    ("softmax_cross_entropy", ("torch",), "F.cross_entropy wants the classes on dim 1"),
    ("SmoothedCrossentropy", ("tf",), "Keras smooths one-hot targets; the labels are class ids"),
    ("loss_fn", ALL, None),
    ("SpecAdam", ("tf",), "Keras' Adam adds epsilon before the bias correction"),
    ("make_optimizer", ALL, None),
    ("Net", ALL, None),
    ("l1_norm", ALL, None),
    ("add_l1", ALL, None),
    ("dense", ("tf",), "an embedding's gradient comes as tf.IndexedSlices"),
    ("clip_by_global_norm_", ("torch",), "in place, as torch names it; Optax clips in the chain"),
    ("clip_by_global_norm", ("tf",), "Keras' global_clipnorm rounds twice more"),
    ("apply_gradients", ("torch", "tf"), "Optax's update runs inside JAX's pure step"),
    ("CompileCounter", ("torch",), "the torch.compile backend that counts graphs"),
    ("compile_for_mode", ALL, None),
    ("objective", ALL, None),
    ("make_train_step", ALL, None),
    ("make_predict", ALL, None),
    ("make_loss_and_grads", ALL, None),
    ("make_activations", ("jax",), "JAX jits them in graph mode; torch and TF walk eagerly"),
    ("gan_objectives", ALL, None),
    ("make_gan_train_step", ALL, None),
    ("make_gan_loss_and_grads", ALL, None),
    ("dynamo_counts", ("torch",), "Dynamo's own counters"),
    ("tracing_count", ("tf",), "tf.function's own counter"),
    ("compiles", ("jax",), "JAX's compile events"),
]

PREFIX = {"torch": "Torch", "tf": "TF", "jax": "Jax"}
BACKEND = [
    ("{}State", ALL, None),
    ("{}Backend", ALL, None),
    ("pool_threads", ALL, None),
]
# public members of a Backend class beyond the Protocol's, and why
BACKEND_EXTRA = {"jax": {"device": "the jax.Device the options name, found once"}}

TABLES = {"layers": LAYERS, "train": TRAIN, "backend": BACKEND}


def top_level_names(path: Path) -> list[str]:
    """The names a module defines at its top level (not imports), in order."""
    names = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def public(path: Path) -> list[str]:
    return [name for name in top_level_names(path) if not name.startswith("_")]


@pytest.mark.parametrize("module", sorted(TABLES))
@pytest.mark.parametrize("fw", ALL)
def test_backend_modules_define_the_listed_names_in_order(fw, module):
    expected = [name.format(PREFIX[fw]) for name, fws, _ in TABLES[module] if fw in fws]
    assert public(IMPLS / fw / f"{module}.py") == expected


@pytest.mark.parametrize("module", sorted(TABLES))
def test_every_difference_says_why(module):
    for name, fws, why in TABLES[module]:
        assert set(fws) <= set(ALL), name
        assert (why is None) == (set(fws) == set(ALL)), f"{name}: a reason iff not all three"


def _methods(cls: ast.ClassDef) -> list[str]:
    return [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize("fw", ALL)
def test_backend_classes_keep_the_protocol_order(fw):
    tree = ast.parse((IMPLS / fw / "backend.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("Backend")]
    protocol = [name for name in vars(Backend) if not name.startswith("_")]
    methods = [m for m in _methods(cls) if not m.startswith("_")]
    assert [m for m in methods if m in protocol] == [m for m in protocol if m in methods]
    assert set(protocol) <= set(methods)
    assert set(methods) - set(protocol) == set(BACKEND_EXTRA.get(fw, {}))


def test_shared_private_helpers_have_one_name():
    # the builders' two helpers: one spec layer, and a run of layers
    for fw in ALL:
        names = top_level_names(IMPLS / fw / "layers.py")
        assert {"_layer", "_sequence"} <= set(names), fw


def test_shared_types_come_from_the_harness():
    for fw in ALL:
        for module in TABLES:
            assert "Weights" not in top_level_names(IMPLS / fw / f"{module}.py"), (fw, module)
