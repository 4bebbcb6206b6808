"""Shared fixtures: installed backends, built-in tasks, the shared data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

# the backends' declarations load here; impls.tf's sets Keras's backend before any
# test imports keras
from harness.backend import BACKENDS, missing_packages
from harness.spec import TaskSpec, parse_spec

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config, items):
    """The long tests first: xdist (``--dist load --maxschedchunk 1``) hands the
    collection out in order, one test at a time, so both workers start on them and
    the short ones fill in around them, instead of one long test running on alone
    at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def installed_backends() -> list[str]:
    return [name for name, info in BACKENDS.items() if not missing_packages(info)]


def backend_params() -> list:
    """One pytest param per backend; a missing framework skips, saying how to install it."""
    params = []
    for name, info in BACKENDS.items():
        marks = []
        if missing_packages(info):
            marks.append(
                pytest.mark.skip(reason=f"{name} not installed: pip install -e '.[{info.extra}]'")
            )
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (CI has it beside the checkout)")
    return SHARED_DATA


def tiny_spec(model_layers, loss="mse", input_shape=None, **optimizer) -> TaskSpec:
    """A one-off spec for backend-specific tests (its data set is never loaded)."""
    model = {"layers": model_layers}
    if input_shape is not None:
        model["input_shape"] = input_shape
    return parse_spec(
        {
            "name": "tiny",
            "data": {"dataset": "none"},
            "model": model,
            "recipe": {
                "loss": loss,
                "optimizer": {"name": "sgd", "learning_rate": 0.1, **optimizer},
                "batch_size": 8,
                "epochs": 1,
            },
        }
    )
