"""CIFAR-10 on disk: the python-pickle distribution, read, written and downloaded.

The layout is the one of Krizhevsky's ``cifar-10-python.tar.gz`` and of torchvision's
``CIFAR10(root)`` (``torchvision/datasets/cifar.py``, class ``CIFAR10``)::

    <root>/cifar-10-batches-py/data_batch_1 ... data_batch_5   training, 10,000 images each
    <root>/cifar-10-batches-py/test_batch                      test, 10,000 images
    <root>/cifar-10-batches-py/batches.meta                    {"label_names": [...], ...}

Each batch is a pickled dict with ``data``, a ``uint8`` array of shape ``[n, 3072]`` (each
row the 1,024 red, then green, then blue values of a 32×32 image, row-major) and
``labels``, ``n`` integers in ``0..9``. Reading uses a restricted unpickler that rebuilds
numpy arrays and plain containers only, so a planted file cannot run code.

Where: the environment's ``SWEEPS_DATA_DIR`` wins, then the spec's ``data_dir``, then
``./data`` (the same order as the storage URL: the machine's setting over the file's).
Nothing downloads unless asked (``--download``): :func:`download_cifar10` fetches the
official archive with the standard library, checks its MD5 against torchvision's
``tgz_md5`` before unpacking anything (as torchvision's ``download_and_extract_archive``
does), and unpacks atomically. Files already on disk are checked for their structure, not
their checksums, so CIFAR-format data of your own (or :func:`write_cifar10`'s generated
data) works the same way.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from sweeps.errors import SweepError, SweepUsageError

DATA_DIR_ENV_VAR: Final = "SWEEPS_DATA_DIR"
DEFAULT_DATA_DIR: Final = "data"
FOLDER: Final = "cifar-10-batches-py"
#: torchvision's ``CIFAR10.url``, ``filename`` and ``tgz_md5``.
URL: Final = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE: Final = "cifar-10-python.tar.gz"
ARCHIVE_MD5: Final = "c58f30108f718f92721af3b95e74349a"
TRAIN_FILES: Final = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE: Final = "test_batch"
META_FILE: Final = "batches.meta"
LABEL_NAMES: Final = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SHAPE: Final = (3, 32, 32)
_PIXELS: Final = 3 * 32 * 32


@dataclass(frozen=True)
class Cifar10Arrays:
    """The images (``uint8``, ``[n, 3, 32, 32]``) and labels (``int64``) of both parts."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def data_root(data_dir: str | None) -> Path:
    """The folder that holds (or will hold) ``cifar-10-batches-py``."""
    chosen = os.environ.get(DATA_DIR_ENV_VAR) or data_dir or DEFAULT_DATA_DIR
    return Path(chosen).expanduser().resolve()


def is_present(root: Path) -> bool:
    """Whether every file of the layout exists under ``root``."""
    folder = root / FOLDER
    return all((folder / name).is_file() for name in (*TRAIN_FILES, TEST_FILE))


def missing_message(root: Path) -> str:
    """The one sentence that says how to get the data set into ``root``."""
    return (
        f"CIFAR-10 is not in {root / FOLDER}; download {ARCHIVE} from"
        " https://www.cs.toronto.edu/~kriz/cifar.html and unpack it into"
        f" {root}, point data_dir (spec) or {DATA_DIR_ENV_VAR} at a folder that holds"
        f" {FOLDER}, or pass --download to fetch it (163 MiB)."
    )


def require_present(root: Path) -> None:
    """Raise :class:`SweepUsageError` with :func:`missing_message` unless the data is there."""
    if not is_present(root):
        raise SweepUsageError(missing_message(root))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers, nothing that could run code."""

    ALLOWED: Final = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images ``[n, 3, 32, 32]`` and labels of one batch file.

    Raises:
        SweepUsageError: the file is not a CIFAR-10 batch (the message names it and why).
    """
    try:
        with path.open("rb") as stream:
            # latin1: the official files were pickled by Python 2 (torchvision does the same).
            content = _ArraysOnly(stream, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise SweepUsageError(f"{path} is not a readable CIFAR-10 batch ({exc}).") from None
    if not isinstance(content, dict):
        raise SweepUsageError(f"{path} is not a CIFAR-10 batch: it holds no dict.")
    content = {k.decode() if isinstance(k, bytes) else k: v for k, v in content.items()}
    if "data" not in content or "labels" not in content:
        raise SweepUsageError(f"{path} is not a CIFAR-10 batch: it has no 'data' and 'labels'.")
    data = np.asarray(content["data"])
    labels = np.asarray(content["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise SweepUsageError(
            f"{path}: 'data' must be uint8 of shape [n, {_PIXELS}], got {data.dtype}"
            f" {list(data.shape)}."
        )
    if labels.shape != (data.shape[0],) or (
        labels.size and not 0 <= labels.min() <= labels.max() <= 9
    ):
        raise SweepUsageError(f"{path}: 'labels' must be {data.shape[0]} integers in 0..9.")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def load_cifar10(root: Path) -> Cifar10Arrays:
    """Both parts of the data set under ``root`` (cached per process).

    Raises:
        SweepUsageError: the data is missing (:func:`missing_message`) or malformed.
    """
    require_present(root)
    folder = root / FOLDER
    stamp = tuple((folder / name).stat().st_mtime_ns for name in (*TRAIN_FILES, TEST_FILE))
    return _load(folder, stamp)


@lru_cache(maxsize=2)
def _load(folder: Path, stamp: tuple[int, ...]) -> Cifar10Arrays:
    parts = [read_batch(folder / name) for name in TRAIN_FILES]
    test_images, test_labels = read_batch(folder / TEST_FILE)
    return Cifar10Arrays(
        train_images=np.concatenate([images for images, _ in parts]),
        train_labels=np.concatenate([labels for _, labels in parts]),
        test_images=test_images,
        test_labels=test_labels,
    )


# --- writing CIFAR-format data -------------------------------------------------------------


def _write_batch(path: Path, images: np.ndarray, labels: np.ndarray, label: str) -> None:
    content = {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": np.ascontiguousarray(images, dtype=np.uint8).reshape(-1, _PIXELS),
        "filenames": [f"image_{i:05d}.png" for i in range(len(labels))],
    }
    with path.open("wb") as stream:
        pickle.dump(content, stream, protocol=2)


def write_cifar10(root: Path, arrays: Cifar10Arrays) -> Path:
    """Write ``arrays`` in CIFAR-10's own layout under ``root``; returns the batches' folder.

    The training images are split over the five ``data_batch_*`` files as evenly as
    possible, as in the official archive (10,000 each for 50,000).
    """
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(arrays.train_labels)), len(TRAIN_FILES))
    for number, (name, index) in enumerate(zip(TRAIN_FILES, chunks, strict=True), start=1):
        label = f"training batch {number} of {len(TRAIN_FILES)}"
        _write_batch(folder / name, arrays.train_images[index], arrays.train_labels[index], label)
    _write_batch(folder / TEST_FILE, arrays.test_images, arrays.test_labels, "testing batch 1 of 1")
    meta = {
        "label_names": list(LABEL_NAMES),
        "num_cases_per_batch": int(max(len(c) for c in chunks)),
        "num_vis": _PIXELS,
    }
    with (folder / META_FILE).open("wb") as stream:
        pickle.dump(meta, stream, protocol=2)
    return folder


def random_cifar10(n_train: int, n_test: int, seed: int = 0) -> Cifar10Arrays:
    """Uniformly random images and labels of CIFAR-10's shapes (for tests and benchmarks)."""
    rng = np.random.default_rng(seed)
    return Cifar10Arrays(
        train_images=rng.integers(0, 256, (n_train, *IMAGE_SHAPE), dtype=np.uint8),
        train_labels=rng.integers(0, 10, n_train).astype(np.int64),
        test_images=rng.integers(0, 256, (n_test, *IMAGE_SHAPE), dtype=np.uint8),
        test_labels=rng.integers(0, 10, n_test).astype(np.int64),
    )


# --- downloading ---------------------------------------------------------------------------

Opener = Callable[[str], IO[bytes]]


def download_cifar10(
    root: Path,
    *,
    url: str = URL,
    md5: str = ARCHIVE_MD5,
    opener: Opener | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch the archive from ``url``, check its MD5, unpack ``cifar-10-batches-py`` in ``root``.

    torchvision's ``CIFAR10.download`` does the same (``download_and_extract_archive`` with
    ``md5=tgz_md5``). Nothing is unpacked from an archive whose MD5 differs, and the folder
    appears only complete (unpacked beside it, then renamed). Does nothing when the data
    is already there. Returns the batches' folder.

    Raises:
        SweepError: the download failed, or the archive's MD5 or contents are wrong.
    """
    folder = root / FOLDER
    if is_present(root):
        return folder
    root.mkdir(parents=True, exist_ok=True)
    open_url = opener or (lambda address: urllib.request.urlopen(address, timeout=timeout))
    with tempfile.TemporaryDirectory(dir=root, prefix=".cifar10-download-") as scratch:
        archive = Path(scratch) / ARCHIVE
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with open_url(url) as response, archive.open("wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise SweepError(f"downloading {url} failed: {exc}.") from None
        if digest.hexdigest() != md5:
            raise SweepError(
                f"the archive downloaded from {url} has MD5 {digest.hexdigest()}, not the"
                f" official {md5}; nothing was unpacked (try again, or unpack it yourself)."
            )
        unpacked = Path(scratch) / "unpacked"
        try:
            with tarfile.open(archive, "r:gz") as tar:
                tar.extractall(unpacked, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise SweepError(f"the archive from {url} cannot be unpacked: {exc}.") from None
        if not is_present(unpacked):
            raise SweepError(f"the archive from {url} holds no complete {FOLDER} folder.")
        os.replace(unpacked / FOLDER, folder)
    return folder


__all__ = [
    "ARCHIVE_MD5",
    "DATA_DIR_ENV_VAR",
    "FOLDER",
    "URL",
    "Cifar10Arrays",
    "data_root",
    "download_cifar10",
    "is_present",
    "load_cifar10",
    "missing_message",
    "random_cifar10",
    "read_batch",
    "require_present",
    "write_cifar10",
]
