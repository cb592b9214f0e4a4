"""The prepared layout, its records and ``meta.json``: what the writer and readers share.

Layout of ``data/prepared/<name>/``::

    train-00000-of-000NN.tfrecord.gz ...   GZIP TFRecord shards (see below)
    test-00000-of-000MM.tfrecord.gz  ...   (when the dataset has a test split)
    meta.json                              dataset, shape, counts, shard_counts, num_classes,
                                           sha256, params (and, for images, report)

Each record is a ``tf.train.Example`` with ``x``: the raw bytes of one uint8 sample
(HWC order for images, length-L 0/1 for masks) and, for labelled data, ``y``: int64.
Records are TFRecord-framed (little-endian uint64 length, masked CRC32C of the length,
the data, masked CRC32C of the data) inside one gzip stream per shard, so TensorFlow
reads them with ``compression_type="GZIP"``.

A split's examples are spread over its shards and a shard may hold fewer than its
neighbours (a skipped image leaves no record), so ``meta.json`` lists every shard's
count (``shard_counts``); ``counts`` is their sum per split.

:func:`read_meta` trusts nothing: ``meta.json`` is read only below a size bound and its
keys, types and values are checked, each failure one ``ValueError`` naming the file.
"""

from __future__ import annotations

import math
import reprlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import tensorflow as tf

from wgan.files import read_json

__all__ = [
    "META_FILE",
    "REPREPARE",
    "MAX_SAMPLE_BYTES",
    "SPLITS",
    "Example",
    "PreparedMeta",
    "shard_name",
    "shard_pattern",
    "encode_example",
    "example_decoder",
    "masked_crc32c",
    "meta_dict",
    "read_meta",
    "to_float",
    "to_uint8",
]

META_FILE = "meta.json"
SPLITS = ("train", "test")
MAX_META_BYTES = 1 << 20  # ours are < 200 kB: an image folder's report lists ≤ 1,000 files
MAX_SAMPLE_BYTES = 1 << 24  # 16 MiB; the largest sample params allow is 3 MiB (1024² RGB)
REPREPARE = "re-run `dvc repro prepare`"

# One sample as the readers of raw data yield it and a record holds it:
# (uint8 array of the dataset's shape, int label or None).
Example = tuple[np.ndarray, int | None]


@dataclass(frozen=True)
class PreparedMeta:
    dataset: str
    shape: tuple[int, ...]
    shard_counts: dict[str, list[int]]
    num_classes: int | None
    sha256: dict[str, str]
    params: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        """Samples per split (meta.json also stores them, for outside tools)."""
        return {split: sum(c) for split, c in self.shard_counts.items()}

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord.gz"


def shard_pattern(split: str) -> str:
    """The glob that matches every :func:`shard_name` of ``split``."""
    return f"{split}-*-of-*.tfrecord.gz"


def masked_crc32c(data: bytes) -> bytes:
    """TFRecord's masked CRC32C of ``data`` (4 bytes, little-endian): rotated and offset,
    since a CRC of data that holds CRCs is weak."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def encode_example(x: np.ndarray, y: int | None) -> bytes:
    """One record: the serialised ``tf.train.Example`` of a sample and its label."""
    feature = {"x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()]))}
    if y is not None:
        feature["y"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y)]))
    # deterministic: protobuf may write the map's keys in a per-process order, which
    # would make identical data hash differently in DVC (and re-run every later stage).
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def example_decoder(shape: tuple[int, ...], with_labels: bool):
    """The inverse of :func:`encode_example` as a ``tf.data`` map function: record ->
    uint8 sample of ``shape`` (and its int64 label, ``with_labels``)."""
    spec = {"x": tf.io.FixedLenFeature([], tf.string)}
    if with_labels:
        spec["y"] = tf.io.FixedLenFeature([], tf.int64)

    def decode(record):
        parsed = tf.io.parse_single_example(record, spec)
        x = tf.reshape(tf.io.decode_raw(parsed["x"], tf.uint8), shape)
        return (x, parsed["y"]) if with_labels else x

    return decode


def meta_dict(meta: PreparedMeta, report: dict[str, Any]) -> dict[str, Any]:
    """The contents of ``meta.json``, in its key order; :func:`read_meta` reads it back."""
    out = {
        "dataset": meta.dataset,
        "shape": list(meta.shape),
        "counts": meta.counts,
        "shard_counts": meta.shard_counts,
        "num_classes": meta.num_classes,
        "sha256": meta.sha256,
        "params": meta.params,
    }
    if report:
        out["report"] = report
    return out


def read_meta(prepared_dir: str | Path) -> PreparedMeta:
    """Read and check ``meta.json``; a missing one means the directory is not (fully)
    prepared.

    Raises:
      FileNotFoundError: if there is no ``meta.json``.
      ValueError: naming ``meta.json``, if it is over 1 MiB, not JSON, or a key is
        missing, unknown, mistyped or out of range (``counts`` must be the sums of
        ``shard_counts``; shapes are ``[H, W, C]`` with C 1 or 3, or ``[L]``).
    """
    path = Path(prepared_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {prepared_dir} is not a prepared dataset; run `dvc repro prepare`"
        )
    raw = read_json(path, MAX_META_BYTES, REPREPARE)
    if isinstance(raw, dict) and "shard_counts" not in raw:
        raise ValueError(f"{path} has no shard_counts: {prepared_dir} was written by an older "
                         "version of prepare; re-run `dvc repro prepare`")
    try:
        return _parsed_meta(raw)
    except ValueError as err:
        raise ValueError(f"{path}: {err}; {REPREPARE}") from None


_short = reprlib.Repr()
_short.maxlist = _short.maxdict = 6
_short.maxstring = _short.maxother = _short.maxlong = 40

_KEYS = ("dataset", "shape", "counts", "shard_counts", "num_classes", "sha256", "params")


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0  # not bool, not float


def _parsed_meta(raw: Any) -> PreparedMeta:
    """``meta.json``'s value as a :class:`PreparedMeta`; ``ValueError`` says what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {_short.repr(raw)}")
    missing = [k for k in _KEYS if k not in raw]
    unknown = [k for k in raw if k not in (*_KEYS, "report")]
    if missing or unknown:
        raise ValueError(f"missing keys {missing}" if missing else f"unknown keys {unknown}")

    def bad(key: str, expected: str) -> ValueError:
        return ValueError(f"{key!r} must be {expected}, not {_short.repr(raw[key])}")

    if not isinstance(raw["dataset"], str) or not raw["dataset"]:
        raise bad("dataset", "a name")
    shape = raw["shape"]
    if not (isinstance(shape, list) and len(shape) in (1, 3)
            and all(_count(n) and n > 0 for n in shape) and (len(shape) == 1 or shape[2] in (1, 3))
            and math.prod(shape) <= MAX_SAMPLE_BYTES):
        raise bad("shape", f"[H, W, C] (C 1 or 3) or [L] of positive integers, at most "
                           f"{MAX_SAMPLE_BYTES} bytes a sample")
    shard_counts = raw["shard_counts"]
    if not (isinstance(shard_counts, dict) and "train" in shard_counts
            and all(split in SPLITS and isinstance(c, list) and c and all(map(_count, c))
                    and sum(c) > 0 for split, c in shard_counts.items())):
        raise bad("shard_counts", "a non-empty list of sample counts per shard for "
                                  "'train' (and 'test'), each split's sum above 0")
    counts = {split: sum(c) for split, c in shard_counts.items()}
    if raw["counts"] != counts:
        raise bad("counts", f"the sums of 'shard_counts', {counts}")
    if raw["num_classes"] is not None and not (_count(raw["num_classes"])
                                               and raw["num_classes"] > 0):
        raise bad("num_classes", "a positive integer or null")
    sha256 = raw["sha256"]
    if not (isinstance(sha256, dict) and all(isinstance(v, str) for v in sha256.values())):
        raise bad("sha256", "an object of file name: hash")
    for key in ("params", "report"):
        if not isinstance(raw.get(key, {}), dict):
            raise bad(key, "an object")
    return PreparedMeta(dataset=raw["dataset"], shape=tuple(shape),
                        num_classes=raw["num_classes"], sha256=sha256, params=raw["params"],
                        shard_counts=shard_counts)


def to_float(x: tf.Tensor, is_image: bool) -> tf.Tensor:
    """uint8 -> float32: images to [-1, 1], masks (already 0/1) to {0., 1.}."""
    x = tf.cast(x, tf.float32)
    return x / 127.5 - 1.0 if is_image else x


def to_uint8(x: np.ndarray, is_image: bool) -> np.ndarray:
    """Inverse of :func:`to_float` for generator outputs: clip, scale and round."""
    x = np.asarray(x, dtype=np.float32)
    if is_image:
        return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return (x >= 0.5).astype(np.uint8)
