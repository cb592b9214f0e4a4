"""1-D binary masks (the WGAN_GP_MASK pickle) -> length-L uint8 0/1 samples.

The pickle holds float32 0/1 masks: an ndarray (N, L) or (N, L, 1), or a list or
tuple of 1-D masks of varying length. Shorter masks are zero-padded to
``data.mask.length``. The file is read only through the restricted unpickler
(:mod:`wgan.datasets.safe_pickle`, which bounds its memory by the file's size),
and wholly, since a pickle cannot be streamed; the samples are then yielded one
at a time from a compact uint8 copy. That copy, N x ``data.mask.length`` bytes, may
take at most :data:`OUTPUT_PER_BYTE` x the file's size (or :data:`OUTPUT_FLOOR`):
a list of many tiny masks, or of one shared mask, cannot make it gigabytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from wgan.config import DataConfig
from wgan.datasets.safe_pickle import MAX_FILE_BYTES, load_pickle
from wgan.datasets.untrusted import RefusedFile, read_regular
from wgan.prepared.format import Example
from wgan.prepared.write import Source

__all__ = ["OUTPUT_FLOOR", "OUTPUT_PER_BYTE", "load"]

_SPLIT_SEED = 0
# float32 masks take 4 bytes a value in the file and 1 in the copy, so masks down to
# 1/256 of data.mask.length (uint8 or bool ones: 1/64) always fit.
OUTPUT_PER_BYTE = 64
OUTPUT_FLOOR = 64 * 2**20


def _rows(obj: object, where: str) -> Sequence[np.ndarray]:
    """The masks of the pickle as a sequence of 1-D arrays (rows of a 2-D array or list items)."""
    if isinstance(obj, np.ndarray):
        if obj.ndim == 3 and obj.shape[2] == 1:
            obj = obj[..., 0]
        if obj.ndim != 2:
            raise ValueError(f"{where}: expected an array (N, L) or (N, L, 1), got {obj.shape}")
        return obj
    if isinstance(obj, list | tuple):
        rows = []
        for i, item in enumerate(obj):
            try:
                rows.append(np.asarray(item))
            except (ValueError, TypeError) as err:  # ragged nesting, mixed types
                raise ValueError(f"{where}: sample {i} is not a 1-D array of 0/1 numbers "
                                 f"({err})") from None
        return rows
    raise ValueError(
        f"{where}: expected an ndarray (N, L) or (N, L, 1) or a list of 1-D masks, "
        f"got {type(obj).__name__}"
    )


def _check_row(row: np.ndarray, i: int, length: int, where: str) -> None:
    if row.ndim != 1 or row.dtype.kind not in "biuf":
        raise ValueError(
            f"{where}: sample {i} is {row.dtype} of shape {row.shape}; each mask must be a "
            "1-D array of 0/1 numbers"
        )
    if len(row) > length:
        raise ValueError(
            f"{where}: sample {i} has length {len(row)} > data.mask.length={length}; "
            "raise data.mask.length or shorten the mask"
        )
    bad = np.flatnonzero((row != 0) & (row != 1))
    if bad.size:
        raise ValueError(
            f"{where}: sample {i} position {bad[0]} has value {row[bad[0]].item()!r}; "
            "masks must contain only 0 and 1"
        )


def _pack(obj: object, length: int, where: str, file_size: int) -> np.ndarray:
    """Validate the unpickled masks and zero-pad them into a (N, ``length``) uint8 array."""
    rows = _rows(obj, where)
    if len(rows) == 0:
        raise ValueError(f"{where}: contains no masks")
    limit = max(OUTPUT_PER_BYTE * file_size, OUTPUT_FLOOR)
    if len(rows) * length > limit:
        raise ValueError(
            f"{where}: {len(rows)} masks padded to data.mask.length={length} would take "
            f"{len(rows) * length} bytes, more than {OUTPUT_PER_BYTE} x the file's "
            f"{file_size} bytes (or {OUTPUT_FLOOR}); if the masks really are that short, "
            "lower data.mask.length")
    out = np.zeros((len(rows), length), dtype=np.uint8)
    for i, row in enumerate(rows):
        _check_row(row, i, length, where)
        out[i, : len(row)] = row
    return out


def _split(masks: np.ndarray, index: np.ndarray) -> Iterator[Example]:
    for i in index:
        yield masks[i], None


def load(cfg: DataConfig, raw_dir: Path) -> Source:
    """Masks from ``cfg.mask.path``, validated now, split by a seeded permutation."""
    path = Path(cfg.mask.path)
    if not os.path.lexists(path):
        raise FileNotFoundError(
            f"mask pickle not found at {path}: put the WGAN_GP_MASK pickle (float32 0/1 "
            "masks) there or set data.mask.path"
        )
    try:
        data = read_regular(path, MAX_FILE_BYTES, "a mask pickle")
    except (RefusedFile, OSError) as err:
        raise ValueError(f"{path}: cannot read the mask pickle ({err}); put a regular file "
                         "there or set data.mask.path") from err
    masks = _pack(load_pickle(data, name=str(path)), cfg.mask.length, str(path), len(data))
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(masks))
    n_test = round(len(masks) * cfg.mask.test_fraction)
    index = {"train": order[n_test:], "test": order[:n_test]}
    index = {s: i for s, i in index.items() if len(i)}
    return Source(
        name="mask",
        shape=(cfg.mask.length,),
        num_classes=None,
        splits={s: _split(masks, i) for s, i in index.items()},
        sha256={path.name: hashlib.sha256(data).hexdigest()},
        size_hints={s: len(i) for s, i in index.items()},
    )
