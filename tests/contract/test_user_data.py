"""A user's own data set in a format Rosetta reads: IDX files under the MNIST names,
other digits in them. Every framework trains on it, and the records name it user data."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

import harness
from harness.results import load_records
from tests.conftest import backend_params

FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return gzip.compress(header + arr.astype(np.uint8).tobytes(), mtime=0)


@pytest.fixture(scope="module")
def own_digits(tmp_path_factory):
    """200 images of 28x28: a bright square whose place is the class, over noise."""
    folder = tmp_path_factory.mktemp("own_digits")
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10
    images = rng.integers(0, 60, size=(200, 28, 28))
    for image, c in zip(images, labels, strict=True):
        row, col = divmod(int(c), 5)
        image[4 + 10 * row : 12 + 10 * row, 2 + 5 * col : 6 + 5 * col] = 255
    (folder / FILES[0]).write_bytes(idx(images))
    (folder / FILES[1]).write_bytes(idx(labels))
    return folder


@pytest.mark.parametrize("framework", backend_params())
def test_lenet_trains_on_ones_own_idx_files_and_says_so(framework, own_digits, tmp_path):
    df = harness.run(
        tasks=["lenet"],
        frameworks=[framework],
        modes=["eager"],
        data_dir=str(own_digits),
        epochs=1,
        out=tmp_path / "run",
        progress=False,
    )
    records = load_records(df.attrs["run_dir"])
    assert [r["status"] for r in records] == ["ok"], [r.get("error") for r in records]
    info = records[0]["data"]
    assert info["files"] == dict.fromkeys(FILES, "user data")
    assert info["sha256"] == {
        name: hashlib.sha256((own_digits / name).read_bytes()).hexdigest() for name in FILES
    }
    assert "160 train / 40 held-back test" in info["split"]
