"""The prepared-data format: the one contract between ``prepare`` and every later stage.

Layout of ``data/prepared/<name>/``::

    train-00000-of-000NN.tfrecord.gz ...   GZIP TFRecord shards
    test-00000-of-000MM.tfrecord.gz  ...   (when the dataset has a test split)
    meta.json                              dataset, shape, counts, num_classes, sha256, params

Each record is a ``tf.train.Example`` with ``x``: the raw bytes of one uint8 sample
(HWC order for images, length-L 0/1 for masks) and, for labelled data, ``y``: int64.

Writes are atomic: shards and ``meta.json`` go to a hidden temporary sibling that is
renamed into place only when complete, so a killed prepare leaves nothing that looks
finished. Readers use :func:`read_meta` and :func:`make_dataset` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

__all__ = [
    "Example",
    "Source",
    "PreparedMeta",
    "shard_name",
    "write_prepared",
    "read_meta",
    "make_dataset",
    "read_numpy",
    "to_float",
    "to_uint8",
]

META_FILE = "meta.json"
_OPTIONS = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1)

Example = tuple[np.ndarray, int | None]


@dataclass
class Source:
    """What a dataset reader hands to :func:`write_prepared`.

    ``splits`` maps a split name to an iterable of ``(uint8 sample, label or None)``;
    it is consumed once, streaming, so readers never hold a whole dataset.
    ``size_hints`` (expected counts) only chooses the number of shards.
    """

    name: str
    shape: tuple[int, ...]
    num_classes: int | None
    splits: dict[str, Iterable[Example]]
    sha256: dict[str, str]
    size_hints: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PreparedMeta:
    dataset: str
    shape: tuple[int, ...]
    counts: dict[str, int]
    num_classes: int | None
    sha256: dict[str, str]
    params: dict[str, Any]

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def shard_name(split: str, index: int, count: int) -> str:
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord.gz"


def _serialize(x: np.ndarray, y: int | None) -> bytes:
    feature = {"x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()]))}
    if y is not None:
        feature["y"] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y)]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_split(
    directory: Path, split: str, examples: Iterable[Example], shape: tuple[int, ...], shards: int
) -> int:
    """Round-robin examples over ``shards`` files; return how many were written."""
    with contextlib.ExitStack() as stack:
        writers = [
            stack.enter_context(
                tf.io.TFRecordWriter(str(directory / shard_name(split, i, shards)), _OPTIONS)
            )
            for i in range(shards)
        ]
        count = 0
        for x, y in examples:
            if x.dtype != np.uint8 or x.shape != shape:
                raise ValueError(
                    f"{split} sample {count}: expected uint8 of shape {shape}, "
                    f"got {x.dtype} of shape {x.shape}"
                )
            writers[count % shards].write(_serialize(x, y))
            count += 1
    return count


def write_prepared(source: Source, out_dir: str | Path, shards: int, params: dict) -> PreparedMeta:
    """Write ``source`` in the prepared format to ``out_dir``, atomically.

    Each split gets ``min(shards, size_hint)`` shards. On any error the temporary
    directory is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        counts = {}
        for split, examples in source.splits.items():
            n_shards = max(1, min(shards, source.size_hints.get(split, shards)))
            counts[split] = _write_split(tmp, split, examples, source.shape, n_shards)
            if counts[split] == 0:
                raise ValueError(f"{source.name}: split {split!r} has no usable samples")
        meta = PreparedMeta(
            dataset=source.name,
            shape=tuple(source.shape),
            counts=counts,
            num_classes=source.num_classes,
            sha256=source.sha256,
            params=params,
        )
        (tmp / META_FILE).write_text(json.dumps(_meta_dict(meta, source.report), indent=2))
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _meta_dict(meta: PreparedMeta, report: dict[str, Any]) -> dict[str, Any]:
    out = {
        "dataset": meta.dataset,
        "shape": list(meta.shape),
        "counts": meta.counts,
        "num_classes": meta.num_classes,
        "sha256": meta.sha256,
        "params": meta.params,
    }
    if report:
        out["report"] = report
    return out


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` with ``tmp`` using renames, never a half-written directory."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_meta(prepared_dir: str | Path) -> PreparedMeta:
    """Read ``meta.json``; a missing one means the directory is not (fully) prepared."""
    path = Path(prepared_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {prepared_dir} is not a prepared dataset; run `dvc repro prepare`"
        )
    raw = json.loads(path.read_text())
    return PreparedMeta(
        dataset=raw["dataset"],
        shape=tuple(raw["shape"]),
        counts=raw["counts"],
        num_classes=raw["num_classes"],
        sha256=raw["sha256"],
        params=raw["params"],
    )


def _shard_files(prepared_dir: Path, split: str) -> list[str]:
    files = sorted(str(p) for p in prepared_dir.glob(f"{split}-*-of-*.tfrecord.gz"))
    if not files:
        raise FileNotFoundError(f"{prepared_dir}: no {split!r} shards ({split}-*.tfrecord.gz)")
    return files


def _decoder(shape: tuple[int, ...], with_labels: bool):
    spec = {"x": tf.io.FixedLenFeature([], tf.string)}
    if with_labels:
        spec["y"] = tf.io.FixedLenFeature([], tf.int64)

    def decode(record):
        parsed = tf.io.parse_single_example(record, spec)
        x = tf.reshape(tf.io.decode_raw(parsed["x"], tf.uint8), shape)
        return (x, parsed["y"]) if with_labels else x

    return decode


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


def make_dataset(
    prepared_dir: str | Path,
    split: str,
    batch_size: int,
    *,
    shuffle: bool = True,
    repeat: bool = True,
    seed: int = 0,
    with_labels: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    drop_remainder: bool = True,
    cache: bool = True,
) -> tf.data.Dataset:
    """A float ``tf.data`` pipeline over one split.

    Interleaves the shards in parallel, decodes, scales (images to [-1, 1], masks
    to {0, 1}), shuffles, batches and prefetches. With ``input_context`` (from
    ``strategy.distribute_datasets_from_function``) ``batch_size`` is the global
    batch: the files are sharded per input pipeline (worker) and each pipeline
    batches its per-replica share. Decoded uint8 samples are cached in memory
    when ``cache`` so later epochs skip the gzip and parse work.
    """
    prepared_dir = Path(prepared_dir)
    meta = read_meta(prepared_dir)
    files = _shard_files(prepared_dir, split)
    per_batch = batch_size
    ds = tf.data.Dataset.from_tensor_slices(files)
    if input_context is not None:
        per_batch = input_context.get_per_replica_batch_size(batch_size)
        if input_context.num_input_pipelines > 1:
            if len(files) < input_context.num_input_pipelines:
                raise ValueError(
                    f"{prepared_dir}: {len(files)} {split} shards cannot be split over "
                    f"{input_context.num_input_pipelines} workers; raise data.shards"
                )
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    ds = ds.map(_decoder(meta.shape, with_labels), num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(min(sum(meta.counts.values()), 50_000), seed=seed,
                        reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(per_batch, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)

    def scale(*batch):
        x = to_float(batch[0], meta.is_image)
        return (x, batch[1]) if with_labels else x

    return ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_numpy(prepared_dir: str | Path, split: str, limit: int | None = None) -> Iterator:
    """Yield ``(uint8 samples, labels or None)`` in order, 1,000 at a time, for evaluation."""
    prepared_dir = Path(prepared_dir)
    meta = read_meta(prepared_dir)
    labelled = meta.num_classes is not None
    ds = tf.data.TFRecordDataset(_shard_files(prepared_dir, split), compression_type="GZIP")
    ds = ds.map(_decoder(meta.shape, labelled), num_parallel_calls=tf.data.AUTOTUNE)
    if limit is not None:
        ds = ds.take(limit)
    for batch in ds.batch(1000).prefetch(2).as_numpy_iterator():
        yield (batch[0], batch[1]) if labelled else (batch, None)
