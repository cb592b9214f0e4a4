"""CIFAR-10, 32x32x3 uint8 with labels 0-9, read straight from the official tarball.

``<raw_dir>/cifar-10-python.tar.gz`` is downloaded when absent. Members are read
in place (never extracted), and an archive with an absolute or ``..`` member name
is refused outright, since it cannot be the official release. The batches are
Python 2 pickles, so they go through the restricted unpickler with
``encoding="bytes"`` (a member over its size cap is refused before it is read); each
row holds 1024 red, then green, then blue values.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

from wgan.config import DataConfig
from wgan.datasets.download import fetch
from wgan.datasets.safe_pickle import MAX_FILE_BYTES, load_pickle
from wgan.files import sha256_file
from wgan.prepared.format import Example
from wgan.prepared.write import Source

__all__ = ["URL", "SHA256", "ARCHIVE", "MEMBERS", "load"]

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# The site publishes only md5 c58f30108f718f92721af3b95e74349a; this sha256 of the
# same file is the one keras.datasets.cifar10 verifies.
SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE = "cifar-10-python.tar.gz"
MEMBERS = {
    "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    "test": ("cifar-10-batches-py/test_batch",),
}
SHAPE = (32, 32, 3)
_SIZES = {"train": 50_000, "test": 10_000}


def _check_archive(path: Path) -> None:
    """Refuse unsafe member names and missing batches before any data is read."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ValueError(
            f"{path}: not a readable .tar.gz ({err}); delete it and download again"
        ) from err
    for name in members:
        if name.startswith("/") or ".." in PurePosixPath(name).parts:
            raise ValueError(
                f"{path}: refusing archive member {name!r} (absolute path or '..'); this is "
                f"not the official CIFAR-10 archive, replace it with {URL}"
            )
    for name in (n for names in MEMBERS.values() for n in names):
        if name not in members or not members[name].isfile():
            raise ValueError(
                f"{path}: member {name!r} is missing or not a regular file; "
                f"replace the archive with {URL}"
            )
        if members[name].size > MAX_FILE_BYTES:  # the official ones are 31 MB
            raise ValueError(
                f"{path}: member {name!r} is {members[name].size} bytes, more than the "
                f"{MAX_FILE_BYTES}-byte cap for a pickle; replace the archive with {URL}"
            )


def _batch_arrays(batch: object, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``b"data"`` (N, 3072) channel-planar rows -> (N, 32, 32, 3) HWC, plus labels."""
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{where}: expected a dict with keys b'data' and b'labels', got {keys}")
    x, y = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or y.shape != (len(x),):
        raise ValueError(
            f"{where}: expected b'data' uint8 (N, 3072) and b'labels' (N,), got "
            f"{x.dtype} {x.shape} and {y.shape}"
        )
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{where}: labels must be 0-9, found {y.min()}..{y.max()}")
    return np.ascontiguousarray(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)), y


def _split(path: Path, split: str) -> Iterator[Example]:
    with tarfile.open(path, "r:gz") as tar:
        for name in MEMBERS[split]:
            where = f"{path}:{name}"
            with tar.extractfile(name) as f:
                x, y = _batch_arrays(load_pickle(f, encoding="bytes", name=where), where)
            for image, label in zip(x, y, strict=True):
                yield image, int(label)


def load(cfg: DataConfig, raw_dir: Path) -> Source:
    """CIFAR-10 from ``<raw_dir>/cifar-10-python.tar.gz``, downloading it when absent.

    An archive already in place is used as is (its sha256 goes into the metadata).
    """
    path = raw_dir / ARCHIVE
    if not path.exists():
        fetch(URL, path, SHA256, "CIFAR-10")
    _check_archive(path)
    return Source(
        name="cifar10",
        shape=SHAPE,
        num_classes=10,
        splits={s: _split(path, s) for s in MEMBERS},
        sha256={path.name: sha256_file(path)},
        size_hints=dict(_SIZES),
    )
