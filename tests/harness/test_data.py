"""Data sets, splits, batches: deterministic, shaped as specs expect, clear errors."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from harness import data
from harness.data import files
from harness.data.batching import batches, epoch_order, padded_chunks
from harness.data.files import SHA256, read_idx
from harness.spec import DataSpec

MNIST = DataSpec(dataset="digits28", real="mnist", seed=0)
IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def write_idx(path: Path, arr: np.ndarray) -> Path:
    raw = idx_bytes(arr)
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return path


def mnist_folder(folder: Path, n: int = 60, images: str = IMAGES, labels: str = LABELS) -> Path:
    """IDX files under the MNIST names holding other digits: n random 28x28 images."""
    rng = np.random.default_rng(1)
    write_idx(folder / images, rng.integers(0, 256, size=(n, 28, 28)))
    write_idx(folder / labels, np.arange(n) % 10)
    return folder


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


def test_known_names_with_other_contents_are_the_users_data(tmp_path):
    mnist_folder(tmp_path)
    ds = data.load(MNIST, tmp_path)
    assert len(ds.x_train) + len(ds.x_test) == 60 and ds.x_train.shape[1:] == (28, 28, 1)
    assert ds.info["files"] == {IMAGES: "user data", LABELS: "user data"}
    assert ds.info["sha256"] == {n: digest(tmp_path / n) for n in (IMAGES, LABELS)}
    assert ds.info["sha256"][IMAGES] != SHA256[IMAGES]


def test_strict_data_refuses_other_contents_under_a_known_name(tmp_path):
    mnist_folder(tmp_path)
    want = f"{IMAGES} has SHA-256 {digest(tmp_path / IMAGES)}, not the published"
    for step in (data.preflight, data.load):
        with pytest.raises(data.DataError, match=want) as err:
            step(MNIST, tmp_path, strict=True)
        assert SHA256[IMAGES] in str(err.value) and "drop --strict-data" in str(err.value)
        assert "\n" not in str(err.value)


def test_files_without_a_known_checksum_are_unverified_with_their_sha256(tmp_path):
    mnist_folder(tmp_path, images=IMAGES[:-3], labels=LABELS[:-3])  # unpacked: no checksum
    ds = data.load(MNIST, tmp_path, strict=True)
    assert set(ds.info["files"].values()) == {"unverified (no known checksum)"}
    assert ds.info["sha256"][LABELS[:-3]] == digest(tmp_path / LABELS[:-3])


def test_the_published_mnist_files_are_verified_also_when_strict(shared_data):
    data.preflight(MNIST, shared_data / "mnist", strict=True)
    ds = data.load(MNIST, shared_data / "mnist", strict=True)
    assert ds.info["files"] == {IMAGES: "verified", LABELS: "verified"}
    assert ds.info["sha256"] == {n: SHA256[n] for n in (IMAGES, LABELS)}


def _truncated(folder: Path) -> None:
    raw = idx_bytes(np.zeros((60, 28, 28)))
    (folder / IMAGES).write_bytes(gzip.compress(raw[:-100]))


def _cut_gzip(folder: Path) -> None:
    (folder / IMAGES).write_bytes((folder / IMAGES).read_bytes()[:-50])


@pytest.mark.parametrize(
    "spoil, file, match",
    [
        (_truncated, IMAGES, "is truncated: its header promises 47040 values"),
        (_cut_gzip, IMAGES, "cannot be unpacked as gzip"),
        (lambda d: write_idx(d / LABELS, np.arange(59) % 10), LABELS, "59 labels for the 60"),
        (lambda d: (d / IMAGES).write_bytes(gzip.compress(b"hello")), IMAGES, "not an IDX"),
        (lambda d: (d / IMAGES).write_bytes(b"hello, not gzip"), IMAGES, "unpacked as gzip"),
        (lambda d: write_idx(d / LABELS, np.zeros((60, 1))), LABELS, "labels .* must have 1"),
        (lambda d: write_idx(d / IMAGES, np.zeros((60, 32, 32))), IMAGES, "32x32 pixels"),
        (lambda d: write_idx(d / LABELS, np.arange(60) % 11), LABELS, "label 10; .* 0 to 9"),
        # one image per class: the stratified split leaves none to test
        (lambda d: mnist_folder(d, 10), LABELS, "its 10 samples .* leave 10 to train and 0"),
        (
            lambda d: (d / IMAGES).write_bytes(
                gzip.compress(idx_bytes(np.zeros((60, 28, 28))) + b"x")
            ),
            IMAGES,
            "1 bytes after the 47040 values",
        ),
    ],
)
def test_preflight_finds_bad_idx_files(tmp_path, spoil, file, match):
    mnist_folder(tmp_path)
    data.preflight(MNIST, tmp_path)  # the folder is good before it is spoiled
    spoil(tmp_path)
    with pytest.raises(data.DataError, match=match) as err:
        data.preflight(MNIST, tmp_path)
    assert str(err.value).startswith(str(tmp_path / file)) and "\n" not in str(err.value)


def test_full_mnist_layout_checks_the_training_pair_too(tmp_path):
    mnist_folder(tmp_path)
    mnist_folder(tmp_path, 30, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    ds = data.load(MNIST, tmp_path)
    assert (len(ds.x_train), len(ds.x_test)) == (30, 60) and "official split" in ds.info["split"]
    assert ds.info["files"]["train-images-idx3-ubyte"] == "unverified (no known checksum)"
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(31) % 10)
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte has 31 labels"):
        data.preflight(MNIST, tmp_path)


def test_load_reads_each_file_once_and_preflight_keeps_nothing(tmp_path, monkeypatch):
    mnist_folder(tmp_path)
    calls = []
    parse = files._parse_idx
    monkeypatch.setattr(files, "_parse_idx", lambda p: calls.append(p.name) or parse(p))
    data.load(MNIST, tmp_path)
    assert sorted(calls) == [IMAGES, LABELS]  # preflight's reads, reused by the loader
    data.preflight(MNIST, tmp_path)
    data.preflight(MNIST, tmp_path)
    assert len(calls) == 6 and data._reads is None


TEXT = DataSpec(dataset="chars_generated", real="text_file", real_params={"steps": 16})


@pytest.mark.parametrize(
    "raw, match",
    [
        (b"text\x00with a NUL byte" * 10, "holds NUL bytes: it is a binary file, not UTF-8 text"),
        ("caf\u00e9 ".encode("latin-1") * 20, r"is not UTF-8 text \(byte 0xe9 at offset 3\)"),
        (b"", "is empty"),
        (b"short text " * 3, "has 33 bytes, too few for a window of 16 characters"),
    ],
)
def test_preflight_refuses_a_data_file_that_is_not_long_utf8_text(tmp_path, raw, match):
    path = tmp_path / "corpus.txt"
    path.write_bytes(raw)
    with pytest.raises(data.DataError, match=match) as err:
        data.preflight(TEXT, path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_a_text_file_records_its_sha256(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("Ünïcode text, " * 40, encoding="utf-8")
    ds = data.load(TEXT, path)
    assert ds.info["files"] == {"corpus.txt": "unverified (no known checksum)"}
    assert ds.info["sha256"] == {"corpus.txt": digest(path)}


NAMES = DataSpec(dataset="names")


@pytest.mark.parametrize(
    "train, match",
    [
        (b"Smith,English\nJones\n", "row 2 is 'Jones'; expected rows of two fields"),
        (b"Smith,English\n,Scottish\n", "row 2 is ',Scottish'; expected rows of two fields"),
        (b"Smith,English\nM\xfcller,German\n", "is not UTF-8 text"),
        (b"\n\n", "has no rows"),
    ],
)
def test_preflight_refuses_names_files_with_bad_rows(tmp_path, train, match):
    (tmp_path / "names_train.csv").write_bytes(train)
    (tmp_path / "names_test.csv").write_bytes(b"Smith,English\n")
    with pytest.raises(data.DataError, match=match) as err:
        data.preflight(NAMES, tmp_path)
    assert str(err.value).startswith(str(tmp_path / "names_train.csv"))


def test_names_test_countries_must_be_training_ones(tmp_path):
    (tmp_path / "names_train.csv").write_text("Smith,English\n")
    (tmp_path / "names_test.csv").write_text("Rossi,Italian\n")
    with pytest.raises(data.DataError, match=r"countries \['Italian'\] are not in the training"):
        data.preflight(NAMES, tmp_path)


DIABETES = DataSpec(dataset="breast_cancer", real="diabetes")
ROW = "0.1,-0.2,0.3,-0.4,0.5,-0.6,0.7,-0.8"


@pytest.mark.parametrize(
    "rows, match",
    [
        ([f"{ROW},1", f"{ROW},x"], "line 2 holds a field that is not a number"),
        ([f"{ROW},1", "1,2,3"], "line 2 has 3 fields; expected rows of 8 numbers and a 0/1"),
        ([f"{ROW},1", f"{ROW},2"], "line 2 has .* a label that is not 0 or 1"),
        ([f"{ROW},1", f"{ROW},0"], "leave 2 to train and 0 to test"),
    ],
)
def test_preflight_refuses_a_bad_diabetes_csv(tmp_path, rows, match):
    path = tmp_path / "diabetes.csv.gz"
    path.write_bytes(gzip.compress("\n".join(rows).encode()))
    with pytest.raises(data.DataError, match=match):
        data.preflight(DIABETES, tmp_path)


def test_a_diabetes_csv_of_ones_own_is_user_data(tmp_path):
    path = tmp_path / "diabetes.csv.gz"
    path.write_bytes(gzip.compress("\n".join(f"{ROW},{i % 2}" for i in range(20)).encode()))
    ds = data.load(DIABETES, tmp_path)
    assert ds.info["files"] == {"diabetes.csv.gz": "user data"}
    assert ds.info["sha256"] == {"diabetes.csv.gz": digest(path)}
    with pytest.raises(data.DataError, match="diabetes.csv.gz has SHA-256"):
        data.preflight(DIABETES, tmp_path, strict=True)


def test_idx_reader_round_trip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + np.array([2, 3, 4], dtype=">u4").tobytes() + arr.tobytes()
    (tmp_path / "a-idx3-ubyte").write_bytes(raw)
    assert np.array_equal(read_idx(tmp_path / "a-idx3-ubyte"), arr)


def test_real_mnist_t10k_layout(shared_data):
    ds = data.load(MNIST, shared_data / "mnist")
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
