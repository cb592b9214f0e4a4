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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "META_FILE",
    "Example",
    "PreparedMeta",
    "shard_name",
    "shard_pattern",
    "encode_example",
    "example_decoder",
    "meta_dict",
    "read_meta",
    "to_float",
    "to_uint8",
]

META_FILE = "meta.json"

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
    """Read ``meta.json``; a missing one means the directory is not (fully) prepared."""
    path = Path(prepared_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {prepared_dir} is not a prepared dataset; run `dvc repro prepare`"
        )
    raw = json.loads(path.read_text())
    if "shard_counts" not in raw:
        raise ValueError(f"{path} has no shard_counts: {prepared_dir} was written by an older "
                         "version of prepare; re-run `dvc repro prepare`")
    return PreparedMeta(
        dataset=raw["dataset"],
        shape=tuple(raw["shape"]),
        num_classes=raw["num_classes"],
        sha256=raw["sha256"],
        params=raw["params"],
        shard_counts=raw["shard_counts"],
    )


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
