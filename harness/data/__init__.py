"""Data sets as numpy arrays, and the batches every framework sees.

Each data set is a function ``load(params, test_fraction, seed, data_dir)``
returning a :class:`Dataset` (NHWC float32 images or [N, features] float32,
int labels or float targets) plus a cheap ``shape(params)`` that tells the
sample shape without loading, so a spec is validated before anything runs.
A file data set also has a ``check`` that :func:`preflight` runs in the driver,
so a bad file is one error before any cell starts, not one in every cell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.spec import DataSpec


class DataError(ValueError):
    """A data set cannot be loaded; the message says what is missing and how to get it."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray  # int class ids [N], or float targets [N, k]
    x_test: np.ndarray
    y_test: np.ndarray
    classes: int | None  # None for regression
    info: dict[str, Any] = field(default_factory=dict)  # source, split, chance level

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


Loader = Callable[[dict[str, Any], float, int, Path | None], Dataset]
# check(path, params, test_fraction, strict): raises DataError for anything in the files
# that would make a cell fail; strict also refuses a known file name with other contents
Check = Callable[[Path, dict[str, Any], float, bool], None]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    load: Loader
    shape: Callable[[dict[str, Any]], tuple[int, ...]]
    description: str
    needs_dir: bool = False  # a file data set: reads --data-dir
    check: Check | None = None  # raises DataError when files are missing or malformed
    reads_file: bool = False  # --data-file names one file rather than a folder


REGISTRY: dict[str, DatasetInfo] = {}


def register(info: DatasetInfo) -> None:
    REGISTRY[info.name] = info


def _get(name: str) -> DatasetInfo:
    if name not in REGISTRY:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def chosen(spec: DataSpec, data_dir: str | Path | None) -> tuple[str, dict[str, Any]]:
    """The data set a run uses: the file-backed ``real`` one when a directory is given."""
    if data_dir is None:
        return spec.dataset, spec.params
    if spec.real is None:
        if _get(spec.dataset).needs_dir:
            return spec.dataset, spec.params
        raise DataError(
            f"--data-dir was given, but data set {spec.dataset!r} reads no files and the task "
            "names no 'real' data set; drop --data-dir for this task"
        )
    return spec.real, spec.real_params


def sample_shape(spec: DataSpec, data_dir: str | Path | None = None) -> tuple[int, ...]:
    """Shape of one sample (no batch axis), without loading the data."""
    name, params = chosen(spec, data_dir)
    return tuple(_get(name).shape(params))


def preflight(
    spec: DataSpec, data_dir: str | Path | None = None, strict: bool = False
) -> tuple[DatasetInfo, Path | None]:
    """Check the files a run needs: there, readable and in the shape the loader takes
    (``strict``: also the published checksums), so no cell is the first to find out."""
    name, params = chosen(spec, data_dir)
    info = _get(name)
    directory = Path(data_dir) if data_dir is not None else None
    if info.needs_dir and directory is None:
        raise DataError(f"data set {name!r} reads files: give their folder with --data-dir")
    if directory is not None and info.reads_file:
        if not directory.is_file():
            raise DataError(f"data file {str(directory)!r} does not exist ({info.description})")
    elif directory is not None:
        if not directory.is_dir():
            raise DataError(
                f"data directory {str(directory)!r} does not exist ({info.description})"
            )
    if directory is not None and info.check is not None:
        info.check(directory, params, spec.test_fraction, strict)
    return info, directory


def load(spec: DataSpec, data_dir: str | Path | None = None, strict: bool = False) -> Dataset:
    """Load the data set a spec names (the ``real`` one when ``data_dir`` is given).
    ``strict`` refuses a file under a known name whose checksum is not the published one
    (by default it is used as the user's own data, and the info says so)."""
    name, params = chosen(spec, data_dir)
    with reused_reads():  # the loader reads what preflight has just read and checked
        info, directory = preflight(spec, data_dir, strict)
        ds = info.load(params, spec.test_fraction, spec.seed, directory)
    return Dataset(
        ds.x_train, ds.y_train, ds.x_test, ds.y_test, ds.classes, {"dataset": name, **ds.info}
    )


# what files were read as, for the length of one load(): the driver's preflight keeps
# nothing, and a cell reads each file once though both the check and the loader want it
_reads: dict[tuple[str, str, int, int], Any] | None = None


@contextmanager
def reused_reads() -> Iterator[None]:
    global _reads
    outer = _reads
    _reads = {} if outer is None else outer
    try:
        yield
    finally:
        _reads = outer


def read_once(kind: str, path: Path, read: Callable[[Path], Any]) -> Any:
    """``read(path)``, or what it gave before in this load() for the same unchanged file."""
    if _reads is None:
        return read(path)
    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _reads:
        _reads[key] = read(path)
    return _reads[key]


def stratified_split(
    y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, the same class proportions in both, from ``seed``."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(len(idx) * test_fraction))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def inputs(x: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """Model inputs in the run's precision; token ids stay int32."""
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.int32)
    return x.astype(dtype)


def targets(y: np.ndarray, loss: str, dtype: str = "float32") -> np.ndarray:
    """Labels in the form each loss takes: int32 ids ([N], or [N, steps] for one label
    per step), or float [N, k] targets."""
    if loss == "softmax_cross_entropy":
        return y.astype(np.int32).reshape(len(y), -1) if y.ndim > 1 else y.astype(np.int32)
    y = y.astype(dtype)
    return y.reshape(len(y), -1)


def arrays(
    ds: Dataset, recipe, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x_train, y_train, x_test, y_test`` as a run feeds them to every framework;
    an autoencoder's targets are its inputs, flattened."""
    x_tr, x_te = inputs(ds.x_train, dtype), inputs(ds.x_test, dtype)
    if recipe.kind == "autoencoder":
        return x_tr, x_tr.reshape(len(x_tr), -1), x_te, x_te.reshape(len(x_te), -1)
    return (
        x_tr,
        targets(ds.y_train, recipe.loss, dtype),
        x_te,
        targets(ds.y_test, recipe.loss, dtype),
    )


from harness.data import bundled, files, generated, text  # noqa: E402,F401  (register data sets)
