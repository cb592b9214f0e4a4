"""Reading the prepared format (:mod:`wgan.prepared.format`) back, with ``tf.data``.

Three readers, one per use: :func:`make_dataset` streams float batches (classifier),
:func:`training_stream` is the endless, exactly resumable training input, and
:func:`read_numpy` yields uint8 samples in file order (evaluation).

Each reader first checks the shards against ``meta.json`` (itself checked by
:func:`~wgan.prepared.format.read_meta`): the shard files are exactly those it lists,
no count is more than its shard's size can hold, and each shard's first record has
sound framing and CRCs, a sample of the size ``shape`` gives (of 0/1 values for masks)
and a label exactly when ``num_classes`` is set. That is one small read per shard.

A record that is corrupt further in shows as a TensorFlow error where it is read, which
does not say which file. So on such an error the split's shards are re-read one at a
time, and the first that fails (or holds another count than ``meta.json`` lists) is
named in a ``ValueError``: inside the readers for train and evaluate, and through
:func:`shard_errors_named` for Keras' ``fit`` (classifier). Sound data costs nothing more.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from wgan.prepared.format import (
    META_FILE,
    REPREPARE,
    PreparedMeta,
    example_decoder,
    masked_crc32c,
    read_meta,
    shard_name,
    shard_pattern,
    to_float,
)

__all__ = ["checked_meta", "make_dataset", "training_stream", "read_numpy", "shard_errors_named"]

_FRAMING = 16  # bytes around each record: its length, the length's CRC, the data's CRC
_EXAMPLE_SLACK = 256  # a record is its sample's bytes plus < 30 bytes of tf.train.Example
# Deflate data never inflates to more than 1032 times its size (stored blocks: once).
_MAX_DEFLATE_RATIO = 1032
# TensorFlow wraps an op's message in where it ran ("{{function_node ...}} <message>
# [Op:IteratorGetNext] name: ") and, inside graphs, "[[{{node ...}}]]".
_TF_NOISE = re.compile(r"\{\{function_node [^}]*\}\}|\[\[.*?\]\]|\[Op:[^\]]*\]( name: ?\S*)?")


def checked_meta(prepared_dir: Path) -> PreparedMeta:
    """``meta.json``, after checking every shard it lists against it (see the module doc):
    what train builds its models from."""
    meta = read_meta(prepared_dir)
    for split, counts in meta.shard_counts.items():
        for path, count in zip(_shard_paths(prepared_dir, meta, split), counts, strict=True):
            reason = _first_record_fault(path, count, meta)
            if reason is not None:
                raise ValueError(f"{path}: {reason}; {REPREPARE}")
    return meta


def _shard_paths(prepared_dir: Path, meta: PreparedMeta, split: str) -> list[Path]:
    """The split's shard files, which must be exactly those ``meta.json`` lists."""
    if split not in meta.shard_counts:
        raise ValueError(f"{prepared_dir / META_FILE} lists no {split!r} split, only "
                         f"{list(meta.shard_counts)}")
    n = len(meta.shard_counts[split])
    expected = [prepared_dir / shard_name(split, i, n) for i in range(n)]
    present = sorted(prepared_dir.glob(shard_pattern(split)))
    if present != expected:
        missing = [p.name for p in expected if p not in present]
        what = (f"{missing[0]} is missing" if missing else
                f"{next(p.name for p in present if p not in expected)} is not one of them")
        raise ValueError(f"{prepared_dir / META_FILE} lists {n} {split} shards, but {what}; "
                         f"{REPREPARE}")
    return expected


def _first_record_fault(path: Path, count: int, meta: PreparedMeta) -> str | None:
    """What is wrong with a shard that a look at its size and first record shows, or None."""
    sample_bytes = math.prod(meta.shape)
    try:
        record = _first_record(path, sample_bytes + _EXAMPLE_SLACK)
    except ValueError as err:
        return str(err)
    if (record is None) != (count == 0):
        return (f"meta.json says it holds {count} samples, but it holds "
                f"{'none' if record is None else 'some'}")
    size = path.stat().st_size
    if count * (sample_bytes + _FRAMING) > _MAX_DEFLATE_RATIO * size:  # bounds _load_split
        return (f"meta.json says it holds {count} samples of {sample_bytes} bytes, more than a "
                f"{size}-byte gzip file can hold")
    return None if record is None else _example_fault(record, meta)


def _first_record(path: Path, max_length: int) -> bytes | None:
    """A shard's first record with its framing and CRCs checked, or None if it has none."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(12)
            if not head:
                return None
            if len(head) < 12:
                raise ValueError("it ends inside its first record")
            if masked_crc32c(head[:8]) != head[8:]:
                raise ValueError("its first record's length fails its CRC (corrupt)")
            (length,) = struct.unpack("<Q", head[:8])
            if length > max_length:
                raise ValueError(f"its first record is {length} bytes, more than a sample of "
                                 f"the shape in meta.json makes (at most {max_length})")
            body = f.read(length + 4)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:  # ValueErrors above pass
        raise ValueError(f"not a complete gzip file ({err})") from err
    if len(body) < length + 4:
        raise ValueError("it ends inside its first record")
    if masked_crc32c(body[:-4]) != body[-4:]:
        raise ValueError("its first record fails its CRC (corrupt)")
    return body[:-4]


def _example_fault(record: bytes, meta: PreparedMeta) -> str | None:
    """How a (CRC-checked) record disagrees with ``meta.json``, or None."""
    try:
        feature = tf.train.Example.FromString(record).features.feature
    except DecodeError:
        return "its first record is not a tf.train.Example"
    x = feature["x"].bytes_list.value if "x" in feature else []
    if len(x) != 1:
        return "its first record holds no sample 'x'"
    sample_bytes = math.prod(meta.shape)
    if len(x[0]) != sample_bytes:
        return (f"its first sample is {len(x[0])} bytes, but meta.json's shape "
                f"{list(meta.shape)} of uint8 makes {sample_bytes}")
    if not meta.is_image and max(x[0]) > 1:
        return (f"its first sample holds values up to {max(x[0])}, but meta.json's shape "
                f"{list(meta.shape)} is a mask's, whose values are 0 and 1")
    labels = list(feature["y"].int64_list.value) if "y" in feature else []
    if meta.num_classes is None and labels:
        return "its first record has a label, but meta.json's num_classes is null"
    if meta.num_classes is not None and not (len(labels) == 1
                                             and 0 <= labels[0] < meta.num_classes):
        return (f"its first record's label is {labels}, not one label in "
                f"[0, {meta.num_classes}) as meta.json's num_classes says")
    return None


def _bad_shard(paths: list[Path], counts: list[int], meta: PreparedMeta) -> str | None:
    """The first of these shards that TensorFlow cannot read and decode in full, or whose
    count is not the one ``meta.json`` lists, and why; None if they are all sound."""
    decode = example_decoder(meta.shape, meta.num_classes is not None)
    for path, count in zip(paths, counts, strict=True):
        ds = tf.data.TFRecordDataset(str(path), compression_type="GZIP").map(decode)
        try:
            n = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
        except tf.errors.OpError as err:
            return f"{path} is corrupt ({' '.join(_TF_NOISE.sub(' ', err.message).split())})"
        if n != count:
            return f"{path} holds {n} samples, but meta.json lists {count}"
    return None


def _raise_bad_shard(paths: list[Path], counts: list[int], meta: PreparedMeta,
                     err: BaseException | None = None) -> None:
    """Raise a ``ValueError`` naming the first bad shard, if there is one."""
    reason = _bad_shard(paths, counts, meta)
    if reason is not None:
        raise ValueError(f"{reason}; {REPREPARE}") from err


@contextlib.contextmanager
def shard_errors_named(prepared_dir: str | Path, split: str) -> Iterator[None]:
    """Turn a TensorFlow error raised in the block while it reads ``split`` (say, inside
    Keras' ``fit``) into a ``ValueError`` naming the bad shard; other errors pass."""
    try:
        yield
    except tf.errors.OpError as err:
        prepared_dir = Path(prepared_dir)
        meta = read_meta(prepared_dir)
        _raise_bad_shard(_shard_paths(prepared_dir, meta, split), meta.shard_counts[split],
                         meta, err)
        raise


def _read_records(paths: list[Path]) -> tf.data.Dataset:
    files = [str(p) for p in paths]
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
    meta = checked_meta(prepared_dir)
    ds = _read_records(_shard_paths(prepared_dir, meta, split))
    ds = ds.map(example_decoder(meta.shape, with_labels), num_parallel_calls=tf.data.AUTOTUNE)
    if shuffle:
        ds = ds.shuffle(min(meta.counts[split], 50_000), seed=seed)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)
    scale = _scaler(meta.is_image, with_labels)
    return ds.map(scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _load_split(paths: list[Path], counts: list[int], meta: PreparedMeta,
                with_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Every uint8 sample of these shards (and label, ``with_labels``), read by the
    parallel interleave into one array (its size from ``counts``, which
    :func:`checked_meta` has bounded by the files' sizes)."""
    count = sum(counts)
    out = np.empty((count, *meta.shape), np.uint8)
    labels = np.empty((count,), np.int64) if with_labels else None
    ds = _read_records(paths).map(example_decoder(meta.shape, with_labels),
                                  num_parallel_calls=tf.data.AUTOTUNE)
    i, more = 0, False
    try:
        for batch in ds.batch(4096).prefetch(2).as_numpy_iterator():
            x = batch[0] if with_labels else batch
            more = i + len(x) > count
            if more:
                break
            out[i:i + len(x)] = x
            if with_labels:
                labels[i:i + len(x)] = batch[1]
            i += len(x)
    except tf.errors.OpError as err:
        _raise_bad_shard(paths, counts, meta, err)
        raise
    if more or i != count:
        _raise_bad_shard(paths, counts, meta)
        raise ValueError(f"the shards hold {'more' if more else i} samples, but meta.json "
                         f"lists {count}; {REPREPARE}")
    if labels is not None:
        bad = labels[(labels < 0) | (labels >= meta.num_classes)]
        if bad.size:
            raise ValueError(f"{paths[0].parent}: a label is {int(bad[0])}, outside 0.."
                             f"{meta.num_classes - 1} (meta.json num_classes); {REPREPARE}")
        labels = labels.astype(np.int32)
    return out, labels


def training_stream(
    prepared_dir: str | Path,
    batch_size: int,
    *,
    seed: int,
    start: int = 0,
    input_context: tf.distribute.InputContext | None = None,
    split: str = "train",
    with_labels: bool = False,
) -> tf.data.Dataset:
    """The endless, exactly resumable stream of float training batches (``with_labels``:
    ``(images, int32 labels)`` pairs, for a class-conditional model).

    Epoch ``e`` visits every sample once in the order of a stateless permutation
    seeded by ``(seed, e)`` (``tf.random.experimental.index_shuffle``), so the stream
    is a pure function of ``seed`` and ``start`` (examples consumed so far, over all
    input pipelines) resumes it in O(1), with no replay. The uint8 split is held in
    memory (MNIST 3.5 MB, CIFAR-10 150 MB, CelebA 64×64 2.4 GB).

    With ``input_context`` (``strategy.distribute_datasets_from_function``) the shard
    files are split between workers and each pipeline yields per-replica batches.
    """
    prepared_dir = Path(prepared_dir)
    meta = checked_meta(prepared_dir)
    files = _shard_paths(prepared_dir, meta, split)
    sizes = meta.shard_counts[split]
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
    if with_labels and meta.num_classes is None:
        raise ValueError(f"{prepared_dir}: meta.json has no classes (num_classes: null), so "
                         "the training stream has no labels; set model.conditional: false")
    samples, labels = _load_split(files[pipeline_id::pipelines], sizes[pipeline_id::pipelines],
                                  meta, with_labels)
    samples = tf.constant(samples)
    labels = None if labels is None else tf.constant(labels)
    n = int(samples.shape[0])

    def index(i):
        seeds = tf.stack([tf.constant(seed, tf.int64), i // n])
        return tf.random.experimental.index_shuffle(i % n, seeds, n - 1)

    ds = tf.data.Dataset.range(start // pipelines, 2**62).map(index).batch(per_batch)

    def batch(idx):
        x = to_float(tf.gather(samples, idx), meta.is_image)
        return x if labels is None else (x, tf.gather(labels, idx))

    ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def read_numpy(prepared_dir: str | Path, split: str, limit: int | None = None) -> Iterator:
    """Yield ``(uint8 samples, labels or None)`` in order, 1,000 at a time, for evaluation."""
    prepared_dir = Path(prepared_dir)
    meta = checked_meta(prepared_dir)
    labelled = meta.num_classes is not None
    paths = _shard_paths(prepared_dir, meta, split)
    ds = tf.data.TFRecordDataset([str(p) for p in paths], compression_type="GZIP")
    ds = ds.map(example_decoder(meta.shape, labelled), num_parallel_calls=tf.data.AUTOTUNE)
    if limit is not None:
        ds = ds.take(limit)
    try:
        for batch in ds.batch(1000).prefetch(2).as_numpy_iterator():
            yield (batch[0], batch[1]) if labelled else (batch, None)
    except tf.errors.OpError as err:
        _raise_bad_shard(paths, meta.shard_counts[split], meta, err)
        raise
