"""Task specs: validation, naming, shape inference and parameter counts, errors."""

from __future__ import annotations

import pytest

from harness.data import sample_shape
from harness.init import canonical_weights
from harness.spec import (
    SpecError,
    builtin_tasks,
    check_model,
    load_spec,
    output_shape,
    param_count,
    param_shapes,
    parse_spec,
    resolve_task,
)

BASE = {
    "name": "t",
    "data": {"dataset": "digits28"},
    "model": {"input_shape": [28, 28, 1], "layers": []},
    "recipe": {
        "loss": "softmax_cross_entropy",
        "optimizer": {"name": "sgd", "learning_rate": 0.1},
        "batch_size": 8,
        "epochs": 1,
    },
}


def spec_with(layers, **model):
    return parse_spec({**BASE, "model": {**BASE["model"], **model, "layers": layers}}, "my.toml")


def test_every_builtin_task_loads_and_infers_shapes():
    for name in builtin_tasks():
        spec = resolve_task(name)
        shape = sample_shape(spec.data)
        assert len(check_model(spec, shape)) in (1, 2)  # [outputs] or [steps, classes]
        assert param_count(spec.model, shape) > 0


def test_every_builtin_task_states_how_far_apart_its_frameworks_may_end():
    for name in builtin_tasks():
        tol = resolve_task(name).tolerance
        assert tol.final is not None and tol.final_why, name


def test_a_final_tolerance_needs_its_why():
    with pytest.raises(SpecError, match="final_why"):
        parse_spec({**BASE, "tolerance": {"final": 0.01}}, "my.toml")


def test_course_parameter_counts():
    # counted by hand from the course's PyTorch modules
    assert param_count(resolve_task("lenet").model) == (25 * 10 + 10) + (250 * 20 + 20) + (
        320 * 10 + 10
    )
    incept = resolve_task("inception")
    assert output_shape(incept.model) == (10,)
    assert param_shapes(incept.model)["fc.kernel"] == (
        1408,
        10,
    )  # 88 channels x 4 x 4, as the course
    assert param_shapes(resolve_task("resnet").model)["fc.kernel"] == (512, 10)
    assert param_count(resolve_task("softmax_mlp").model, (28, 28, 1)) == 575050  # the course's


def test_unnamed_layers_get_unique_names():
    spec = spec_with(
        [
            {"type": "flatten"},
            {"type": "dense", "units": 4},
            {"type": "relu"},
            {"type": "dense", "units": 3},
            {"name": "dense_3", "type": "dense", "units": 2},
        ]
    )
    names = [layer.name for layer in spec.model.layers]
    assert names == ["flatten_1", "dense_1", "relu_1", "dense_2", "dense_3"]


def test_duplicate_names_rejected():
    with pytest.raises(SpecError, match="used twice"):
        spec_with(
            [
                {"type": "flatten"},
                {"name": "a", "type": "dense", "units": 4},
                {"name": "a", "type": "dense", "units": 4},
            ]
        )


def test_same_padding_and_strides():
    spec = spec_with(
        [
            {"type": "conv2d", "filters": 3, "kernel": 4, "stride": 2, "padding": "same"},
            {"type": "maxpool2d", "size": 3, "stride": 2, "padding": "same"},
            {"type": "flatten"},
            {"type": "dense", "units": 2},
        ]
    )
    assert param_shapes(spec.model)["dense_1.kernel"] == (7 * 7 * 3, 2)


def test_unknown_layer_type_names_field_and_allowed():
    with pytest.raises(SpecError) as err:
        spec_with([{"type": "flatten"}, {"type": "dense", "units": 4}, {"type": "convolution"}])
    text = str(err.value)
    assert "my.toml" in text and "model.layers[2]" in text and "'convolution'" in text
    assert "conv2d" in text  # the allowed types are listed


def test_bad_field_value_named():
    bad = {**BASE, "recipe": {**BASE["recipe"], "loss": "hinge"}}
    with pytest.raises(SpecError, match=r"recipe\.loss.*'hinge'.*softmax_cross_entropy"):
        parse_spec(bad, "my.toml")


def test_conv_on_flat_vector_is_rejected():
    spec = spec_with([{"type": "conv2d", "filters": 2, "kernel": 3}], input_shape=[30])
    with pytest.raises(SpecError, match=r"conv2d.*needs an image.*\[30\]"):
        check_model(spec, (30,))


def test_input_shape_must_match_data():
    spec = spec_with([{"type": "flatten"}, {"type": "dense", "units": 10}])
    with pytest.raises(SpecError, match=r"input_shape \[28, 28, 1\] does not match.*\[8, 8, 1\]"):
        check_model(spec, (8, 8, 1))


def test_residual_shape_mismatch_suggests_projection():
    spec = spec_with(
        [
            {"type": "residual", "body": [{"type": "conv2d", "filters": 4, "kernel": 3}]},
            {"type": "flatten"},
            {"type": "dense", "units": 2},
        ]
    )
    with pytest.raises(SpecError, match="projection"):
        check_model(spec, (28, 28, 1))


def test_malformed_toml_names_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("name = 'x'\n[data\n")
    with pytest.raises(SpecError, match=r"broken\.toml: not valid TOML"):
        load_spec(path)


def test_spec_hash_changes_with_content():
    a = resolve_task("lenet")
    b = a.model_copy(update={"recipe": a.recipe.model_copy(update={"epochs": 3})})
    assert a.spec_hash() == resolve_task("lenet").spec_hash()
    assert a.spec_hash() != b.spec_hash()


def test_canonical_weights_are_seeded_and_laid_out():
    spec = resolve_task("lenet")
    w1 = canonical_weights(spec, (28, 28, 1))
    w2 = canonical_weights(spec, (28, 28, 1))
    assert w1["conv1.kernel"].shape == (5, 5, 1, 10)  # HWIO
    assert w1["fc.kernel"].shape == (320, 10)  # [in, out]
    assert all((w1[k] == w2[k]).all() for k in w1)
    bound = 1 / 25**0.5  # fan_in of conv1 = 5*5*1
    assert abs(w1["conv1.kernel"]).max() <= bound and abs(w1["conv1.bias"]).max() <= bound
    other = spec.model_copy(update={"recipe": spec.recipe.model_copy(update={"seed": 1})})
    assert not (canonical_weights(other, (28, 28, 1))["fc.kernel"] == w1["fc.kernel"]).all()
