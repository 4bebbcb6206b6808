"""Regularization switches in the recipe, and the harness's image augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data
from harness.data.augment import augment, shift
from harness.recipes import Recipe
from harness.spec import Augment, SpecError, is_weight, parse_spec, resolve_task


def test_shift_moves_pixels_and_fills_zeros():
    img = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    moved = shift(img, 1, -1)
    assert moved[..., 0].tolist() == [[0, 0, 0], [1, 2, 0], [4, 5, 0]]
    np.testing.assert_array_equal(shift(img, 0, 0), img)


def test_augment_is_drawn_from_its_generator():
    x = np.random.default_rng(0).normal(size=(8, 6, 6, 1)).astype(np.float32)
    spec = Augment(shift=2, flip=True)
    a = augment(x, spec, np.random.default_rng(5))
    b = augment(x, spec, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, x) and a.shape == x.shape
    with pytest.raises(ValueError, match="NHWC"):
        augment(x.reshape(8, -1), spec, np.random.default_rng(0))


def test_recipe_batches_are_augmented_the_same_way_every_time():
    lenet = resolve_task("lenet")
    spec = lenet.model_copy(
        update={"recipe": lenet.recipe.model_copy(update={"augment": Augment(shift=2)})}
    )
    ds = data.load(spec.data)
    first = next(Recipe(spec, ds, "float32").batches(0))
    again = next(Recipe(spec, ds, "float32").batches(0))
    plain = next(Recipe(lenet, ds, "float32").batches(0))
    np.testing.assert_array_equal(first.x, again.x)
    np.testing.assert_array_equal(first.y, plain.y)
    assert not np.array_equal(first.x, plain.x)


def test_l1_counts_kernels_and_embeddings_not_biases():
    assert is_weight("fc.kernel") and is_weight("gru.backward_recurrent_kernel")
    assert is_weight("embed.embeddings")
    assert not is_weight("fc.bias") and not is_weight("gru.backward_recurrent_bias")


def test_label_smoothing_needs_class_labels():
    d = resolve_task("linear_regression").model_dump(mode="json", exclude_none=True)
    d["recipe"]["label_smoothing"] = 0.1
    with pytest.raises(SpecError, match="label_smoothing"):
        parse_spec(d, "lin.toml")


def test_adamw_is_an_optimizer():
    d = resolve_task("softmax_mlp").model_dump(mode="json", exclude_none=True)
    d["recipe"]["optimizer"] = {"name": "adamw", "learning_rate": 0.01, "weight_decay": 0.05}
    assert parse_spec(d).recipe.optimizer.name == "adamw"
    d["recipe"]["optimizer"]["name"] = "rmsprop"
    with pytest.raises(SpecError, match="'rmsprop' is not allowed"):
        parse_spec(d, "t.toml")
