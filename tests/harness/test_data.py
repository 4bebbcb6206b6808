"""Data sets, splits, batches: deterministic, shaped as specs expect, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from harness import data
from harness.data.batching import batches, epoch_order, padded_chunks
from harness.data.files import read_idx
from harness.spec import DataSpec


def test_house_prices_is_the_course_line():
    ds = data.load(DataSpec(dataset="house_prices", params={"n": 50, "noise": 1.0}))
    assert ds.x_train.shape == (40, 1) and ds.x_test.shape == (10, 1)
    assert ds.x_test[0, 0] > ds.x_train[-1, 0]  # the test set is the last points
    slope = np.polyfit(ds.x_train[:, 0], ds.y_train[:, 0], 1)[0]
    assert abs(slope - 1) < 0.05


def test_digits28_keeps_classes_and_layout():
    ds = data.load(DataSpec(dataset="digits28", seed=3))
    assert ds.x_train.shape[1:] == (28, 28, 1) and ds.x_train.dtype == np.float32
    assert len(ds.x_train) + len(ds.x_test) == 1797
    assert abs(ds.x_train.mean()) < 1e-3  # standardized on the training part
    # the border stays background, as in MNIST
    assert np.allclose(ds.x_train[:, :4], ds.x_train[0, 0, 0, 0])
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 30  # stratified


def test_splits_are_deterministic_and_seeded():
    a = data.load(DataSpec(dataset="breast_cancer", seed=0))
    b = data.load(DataSpec(dataset="breast_cancer", seed=0))
    c = data.load(DataSpec(dataset="breast_cancer", seed=1))
    assert np.array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_test, c.y_test) or not np.array_equal(a.x_test, c.x_test)


def test_epoch_order_depends_on_seed_and_epoch_only():
    assert np.array_equal(epoch_order(100, 0, 1), epoch_order(100, 0, 1))
    assert not np.array_equal(epoch_order(100, 0, 1), epoch_order(100, 0, 2))
    assert sorted(epoch_order(100, 5, 0)) == list(range(100))


def test_batches_drop_last_and_padded_chunks():
    x, y = np.arange(10)[:, None].astype(np.float32), np.arange(10)
    got = list(batches(x, y, 4, np.arange(10), drop_last=True))
    assert [len(b.x) for b in got] == [4, 4]
    assert [len(b.x) for b in batches(x, y, 4, np.arange(10), drop_last=False)] == [4, 4, 2]
    chunks = list(padded_chunks(x, 4))
    assert [c.shape[0] for c, _ in chunks] == [4, 4, 4] and [r for _, r in chunks] == [4, 4, 2]


def test_targets_follow_the_loss():
    y = np.array([0, 1, 1])
    assert data.targets(y, "softmax_cross_entropy").dtype == np.int32
    assert data.targets(y, "binary_cross_entropy").shape == (3, 1)


def test_missing_data_dir_says_what_to_put_there(tmp_path):
    spec = DataSpec(dataset="digits28", real="mnist")
    with pytest.raises(data.DataError, match="does not exist"):
        data.load(spec, tmp_path / "nowhere")
    with pytest.raises(data.DataError, match="t10k-images-idx3-ubyte"):
        data.load(spec, tmp_path)


def test_data_dir_for_a_task_without_real_data():
    with pytest.raises(data.DataError, match="drop --data-dir"):
        data.load(DataSpec(dataset="xor"), "/tmp")


def test_checksum_mismatch_is_reported(tmp_path):
    (tmp_path / "diabetes.csv.gz").write_bytes(b"not the file")
    with pytest.raises(data.DataError, match="SHA-256"):
        data.load(DataSpec(dataset="breast_cancer", real="diabetes"), tmp_path)


def test_idx_reader_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes() + arr.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)


def test_real_mnist_t10k_layout(shared_data):
    ds = data.load(DataSpec(dataset="digits28", real="mnist", seed=0), shared_data / "mnist")
    assert ds.x_train.shape == (8000, 28, 28, 1) and ds.x_test.shape == (2000, 28, 28, 1)
    assert "10k test set" in ds.info["split"]
    assert set(ds.info["files"].values()) == {"verified"}


def test_mnist_averaged_down_for_a_model_of_8x8_digits(shared_data):
    spec = DataSpec(dataset="digits", real="mnist", real_params={"size": 8}, seed=0)
    assert data.sample_shape(spec, shared_data / "mnist") == (8, 8, 1)
    ds = data.load(spec, shared_data / "mnist")
    assert ds.x_train.shape == (8000, 8, 8, 1) and ds.x_test.shape == (2000, 8, 8, 1)
    assert "averaged down to 8x8" in ds.info["split"]
    assert abs(float(ds.x_train.mean())) < 1e-3  # standardized after averaging
    with pytest.raises(data.DataError, match="size must be a whole number"):
        data.sample_shape(DataSpec(dataset="digits", real="mnist", real_params={"size": 40}), ".")


def test_block_mean_averages_the_centre_in_whole_blocks():
    from harness.data.files import block_mean

    images = np.arange(2 * 7 * 7, dtype=float).reshape(2, 7, 7)
    out = block_mean(images, 3)  # k = 2: the centre 6x6 starting at 0, in 2x2 blocks
    assert out.shape == (2, 3, 3)
    assert out[0, 0, 0] == np.mean(images[0, 0:2, 0:2])
    assert out[1, 2, 1] == np.mean(images[1, 4:6, 2:4])
    assert np.array_equal(block_mean(images, 7), images)


def test_real_diabetes(shared_data):
    ds = data.load(
        DataSpec(dataset="breast_cancer", real="diabetes"), shared_data / "pytorchzerotoall"
    )
    assert ds.x_train.shape[1] == 8 and len(ds.x_train) + len(ds.x_test) == 759


def test_bundled_tables_match_scikit_learns_loaders():
    from sklearn.datasets import load_breast_cancer, load_digits

    from harness.data.bundled import load_breast_cancer_arrays, load_digits_arrays

    images, labels = load_digits_arrays()
    d = load_digits()
    assert np.array_equal(images, d.images) and np.array_equal(labels, d.target)
    features, y = load_breast_cancer_arrays()
    b = load_breast_cancer()
    assert np.array_equal(features, b.data) and np.array_equal(y, b.target)
