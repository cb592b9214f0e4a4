"""Reading the prepared format (:mod:`wgan.prepared.format`) back, with ``tf.data``.

Three readers, one per use: :func:`make_dataset` streams float batches (classifier),
:func:`training_stream` is the endless, exactly resumable training input, and
:func:`read_numpy` yields uint8 samples in file order (evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf

from wgan.prepared.format import (
    PreparedMeta,
    example_decoder,
    read_meta,
    shard_pattern,
    to_float,
)

__all__ = ["make_dataset", "training_stream", "read_numpy"]


def _shard_files(prepared_dir: Path, split: str) -> list[str]:
    files = sorted(str(p) for p in prepared_dir.glob(shard_pattern(split)))
    if not files:
        raise FileNotFoundError(f"{prepared_dir}: no {split!r} shards ({split}-*.tfrecord.gz)")
    return files


def _read_records(files: list[str]) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
        cycle_length=min(len(files), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def _scaler(is_image: bool, with_labels: bool):
    def scale(*batch):
        x = to_float(batch[0], is_image)
        return (x, batch[1]) if with_labels else x

    return scale


def make_dataset(
    prepared_dir: str | Path,
    split: str,
    batch_size: int,
    *,
    shuffle: bool = True,
    repeat: bool = False,
    seed: int = 0,
    with_labels: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A streaming float ``tf.data`` pipeline over one split (classifier, evaluation).

    Interleaves the shards in parallel, decodes, shuffles with a seeded buffer,
    batches, scales (images to [-1, 1], masks to {0, 1}) and prefetches. Memory is
    bounded by the shuffle buffer, whatever the split size.
    """
    prepared_dir = Path(prepared_dir)
    meta = read_meta(prepared_dir)
    ds = _read_records(_shard_files(prepared_dir, split))
    ds = ds.map(example_decoder(meta.shape, with_labels), num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(min(meta.counts[split], 50_000), seed=seed)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)
    scale = _scaler(meta.is_image, with_labels)
    return ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _load_split(files: list[str], meta: PreparedMeta, count: int) -> np.ndarray:
    """Every uint8 sample of these shards, read by the parallel interleave into one array."""
    out = np.empty((count, *meta.shape), np.uint8)
    ds = _read_records(files).map(example_decoder(meta.shape, False),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    i = 0
    for batch in ds.batch(4096).prefetch(2).as_numpy_iterator():
        out[i:i + len(batch)] = batch
        i += len(batch)
    if i != count:
        raise ValueError(f"shards hold {i} samples but meta.json says {count}; re-run prepare")
    return out


def training_stream(
    prepared_dir: str | Path,
    batch_size: int,
    *,
    seed: int,
    start: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    split: str = "train",
) -> tf.data.Dataset:
    """The endless, exactly resumable stream of float training batches.

    Epoch ``e`` visits every sample once in the order of a stateless permutation
    seeded by ``(seed, e)`` (``tf.random.experimental.index_shuffle``), so the stream
    is a pure function of ``seed`` and ``start`` (examples consumed so far, over all
    input pipelines) resumes it in O(1), with no replay. The uint8 split is held in
    memory (MNIST 3.5 MB, CIFAR-10 150 MB, CelebA 64×64 2.4 GB).

    With ``input_context`` (``strategy.distribute_datasets_from_function``) the shard
    files are split between workers and each pipeline yields per-replica batches.
    """
    prepared_dir = Path(prepared_dir)
    meta = read_meta(prepared_dir)
    files = _shard_files(prepared_dir, split)
    sizes = meta.shard_counts[split]
    if len(sizes) != len(files):
        raise ValueError(f"{prepared_dir}: {len(files)} {split} shard files but meta.json lists "
                         f"{len(sizes)}; re-run prepare")
    per_batch, pipelines, pipeline_id = batch_size, 1, 0
    if input_context is not None:
        per_batch = input_context.get_per_replica_batch_size(batch_size)
        pipelines, pipeline_id = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < pipelines:
        raise ValueError(f"{prepared_dir}: {len(files)} {split} shards cannot be split over "
                         f"{pipelines} workers; raise data.shards and re-run prepare")
    count = sum(sizes[pipeline_id::pipelines])
    if count == 0:
        raise ValueError(f"{prepared_dir}: the {split} shards of input pipeline {pipeline_id} "
                         f"(every {pipelines}th from shard {pipeline_id}) hold no samples; "
                         "lower data.shards and re-run prepare")
    samples = tf.constant(_load_split(files[pipeline_id::pipelines], meta, count))
    n = int(samples.shape[0])

    def index(i):
        seeds = tf.stack([tf.constant(seed, tf.int64), i // n])
        return tf.random.experimental.index_shuffle(i % n, seeds, n - 1)

    ds = tf.data.Dataset.range(start // pipelines, 2**62).map(index).batch(per_batch)
    ds = ds.map(lambda idx: to_float(tf.gather(samples, idx), meta.is_image),
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_numpy(prepared_dir: str | Path, split: str, limit: int | None = None) -> Iterator:
    """Yield ``(uint8 samples, labels or None)`` in order, 1,000 at a time, for evaluation."""
    prepared_dir = Path(prepared_dir)
    meta = read_meta(prepared_dir)
    labelled = meta.num_classes is not None
    ds = tf.data.TFRecordDataset(_shard_files(prepared_dir, split), compression_type="GZIP")
    ds = ds.map(example_decoder(meta.shape, labelled), num_parallel_calls=tf.data.AUTOTUNE)
    if limit is not None:
        ds = ds.take(limit)
    for batch in ds.batch(1000).prefetch(2).as_numpy_iterator():
        yield (batch[0], batch[1]) if labelled else (batch, None)
