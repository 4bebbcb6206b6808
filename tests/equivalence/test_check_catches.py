"""The check can fail: a real backend with a deliberate slip (a conv kernel loaded
with height and width swapped) is caught, and the report names that layer."""

from __future__ import annotations

import numpy as np
import pytest

from harness.backend import BACKENDS, Options, load_backend
from harness.check import compare
from harness.data import sample_shape
from harness.spec import FLOAT64_RTOL, resolve_task
from harness.trace import trace
from tests.conftest import installed_backends

pytestmark = pytest.mark.skipif(len(installed_backends()) < 2, reason="needs two frameworks")


class SwappedKernel:
    """Wraps a backend; loads ``conv2.kernel`` transposed in its two spatial axes."""

    def __init__(self, inner):
        self.inner = inner

    def build(self, spec, shape, weights):
        weights = {**weights, "conv2.kernel": np.swapaxes(weights["conv2.kernel"], 0, 1).copy()}
        return self.inner.build(spec, shape, weights)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def make(framework):
    backend = load_backend(BACKENDS[framework].target)
    backend.configure(Options(mode="eager", dtype="float64"))
    return backend


def test_swapped_conv_kernel_is_named():
    good, bad = installed_backends()[:2]
    spec = resolve_task("lenet")
    a = trace(make(good), spec, "float64", 2)
    b = trace(SwappedKernel(make(bad)), spec, "float64", 2)
    result = compare(spec, sample_shape(spec.data), a, b, FLOAT64_RTOL)
    assert result["status"] == "fail"
    assert result["forward"]["first_layer"] == "conv2"
    layers = {x["layer"]: x["max_rel"] for x in result["forward"]["layers"]}
    assert layers["conv1"] <= FLOAT64_RTOL  # the layers before it still agree
    assert result["steps"]["first_step"]["step"] == 1
