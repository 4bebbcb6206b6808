"""The gan recipe kind: its spec, data, noise, metrics, and a run through the real
runner with the numpy backend."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from harness import data
from harness.backend import Batch
from harness.init import canonical_weights
from harness.metrics import energy_distance, gan_metrics, reached
from harness.recipes import GanRecipe
from harness.spec import (
    SpecError,
    check_model,
    parse_spec,
    resolve_task,
    task_param_count,
)
from tests.harness.fake_backend import NumpyBackend
from tests.harness.test_runner import cell, run_one

GAN = resolve_task("gan")


def gan_dict(**changes):
    d = GAN.model_dump(mode="json", exclude_none=True)
    d.update(changes)
    return d


def test_gan_spec_has_two_networks_with_distinct_names():
    shape = data.sample_shape(GAN.data)
    assert check_model(GAN, shape) == (2,)
    assert task_param_count(GAN, shape) == (8 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2) + (
        2 * 64 + 64 + 64 * 64 + 64 + 64 + 1
    )
    weights = canonical_weights(GAN, shape)
    assert "d1.kernel" in weights and "g1.kernel" in weights


@pytest.mark.parametrize(
    "changes,words",
    [
        ({"discriminator": None}, "needs a \\[discriminator\\]"),
        ({"recipe": {**gan_dict()["recipe"], "loss": "mse"}}, "must be 'binary_cross_entropy'"),
        ({"model": {"layers": [{"type": "dense", "units": 2}]}}, "input_shape = \\[latent size\\]"),
    ],
)
def test_gan_spec_errors_say_what_is_wrong(changes, words):
    d = gan_dict(**changes)
    if d.get("discriminator") is None:
        d.pop("discriminator", None)
    with pytest.raises(SpecError, match=words):
        parse_spec(d, "gan.toml")


def test_discriminator_must_end_in_one_logit():
    d = gan_dict()
    d["discriminator"]["layers"][-1]["units"] = 2
    with pytest.raises(SpecError, match="one logit"):
        check_model(parse_spec(d), (2,))


def test_unnamed_layers_of_the_two_networks_do_not_clash():
    d = gan_dict()
    for net in ("model", "discriminator"):
        d[net]["layers"] = [{k: v for k, v in la.items() if k != "name"} for la in d[net]["layers"]]
    spec = parse_spec(d)
    assert spec.discriminator.layers[0].name == "d_dense_1"
    assert spec.model.layers[0].name == "dense_1"


def test_ring_metrics_count_modes_quality_and_distance():
    ds = data.load(GAN.data)
    modes = ds.info["modes"]
    real = gan_metrics(ds.x_test, ds.x_test, modes)
    # in 2-d, 1 - exp(-9/2) = 98.9% of a Gaussian lies within 3 sigma
    assert real["modes_covered"] == 8 and real["quality"] > 0.98
    assert real["energy_distance"] == pytest.approx(0.0, abs=1e-12)
    one_mode = np.asarray(modes["centres"][:1]) + 0.01 * np.random.default_rng(0).normal(
        size=(500, 2)
    )
    collapsed = gan_metrics(one_mode, ds.x_test, modes)
    assert collapsed["modes_covered"] == 1 and collapsed["quality"] == 1.0
    assert collapsed["energy_distance"] > 0.5
    assert gan_metrics(np.full((10, 2), np.nan), ds.x_test, modes)["modes_covered"] == 0
    assert reached("modes_covered", 7, 6) and not reached("energy_distance", 0.3, 0.1)


def test_energy_distance_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    assert energy_distance(a, b) < 0.05 < energy_distance(a, b + 1.0)


def test_noise_is_seeded_per_step_and_the_same_for_every_framework():
    ds = data.load(GAN.data)
    one, two = GanRecipe(GAN, ds, "float32"), GanRecipe(GAN, ds, "float32")
    b1, b2 = next(one.batches(0)), next(two.batches(0))
    np.testing.assert_array_equal(b1.z, b2.z)
    assert b1.y is None and b1.z.shape == (64, 8) and b1.x.shape == (64, 2)
    assert not np.array_equal(b1.z, next(one.batches(1)).z)
    assert not np.array_equal(b1.z, one.z_eval[:64])


def test_numpy_gan_gradients_match_finite_differences():
    shape = (2,)
    backend = NumpyBackend()
    weights = canonical_weights(GAN, shape, "float64")
    rng = np.random.default_rng(0)
    batch = Batch(rng.normal(size=(4, 2)), None, rng.normal(size=(4, 8)))
    state = backend.build(GAN, shape, weights)
    _, grads = backend.loss_and_grads(state, batch)

    def losses(w):
        s = backend.build(GAN, shape, w)
        d_loss, _, generator = backend._gan_grads(s, batch)
        return d_loss, generator()[0]

    for name, which in (("d2.kernel", 0), ("g1.kernel", 1), ("g_out.bias", 1)):
        w_plus = {k: v.copy() for k, v in weights.items()}
        w_minus = {k: v.copy() for k, v in weights.items()}
        w_plus[name].flat[3 % w_plus[name].size] += 1e-6
        w_minus[name].flat[3 % w_minus[name].size] -= 1e-6
        numeric = (losses(w_plus)[which] - losses(w_minus)[which]) / 2e-6
        assert grads[name].flat[3 % grads[name].size] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_gan_runs_through_the_runner(tmp_path):
    short = GAN.model_copy(update={"recipe": GAN.recipe.model_copy(update={"epochs": 4})})
    r = run_one(replace(cell("xor"), spec=short, source="gan.toml"), tmp_path)
    assert r["status"] == "ok", r["error"]
    point = r["curve"][-1]
    assert {"train_loss", "train_g_loss", "test_modes_covered", "test_quality"} <= set(point)
    assert r["param_count"] == r["param_count_spec"]
    samples = r["layer_outputs"]
    assert len(samples["values"]) == 500 and set(samples["labels"]) <= set(range(8))
