"""Hostile prepared data: corrupt shards and a meta.json that disagrees with them.

Every reader must name the bad shard or meta.json and say to re-run prepare, before
using anything (meta.json checks, each shard's first record) or, for damage further in,
where TensorFlow fails to read it (train, evaluate, and Keras' fit in the classifier).
"""

import json
import re
from pathlib import Path

import pytest
import tensorflow as tf
from conftest import digit_blobs

from wgan.classifier import train_classifier
from wgan.config import ClassifierConfig
from wgan.prepared.format import read_meta
from wgan.prepared.read import make_dataset, read_numpy, training_stream
from wgan.prepared.write import Source, write_prepared

REPREPARE = "re-run `dvc repro prepare`"
SHARD0, SHARD1 = "train-00000-of-00002.tfrecord.gz", "train-00001-of-00002.tfrecord.gz"


def _digits(path: Path, compression_level: int = 1) -> Path:
    """64 train and 32 test digits in 2 shards each, by the project's writer."""
    splits = {}
    for split, n, seed in (("train", 64, 0), ("test", 32, 1)):
        x, y = digit_blobs(n, seed)
        splits[split] = list(zip(x, y.tolist(), strict=True))
    source = Source("mnist", (28, 28, 1), 10, splits, {}, {"train": 64, "test": 32},
                    compression_level=compression_level)
    write_prepared(source, path, 2, {"name": "mnist"})
    return path


def _read_all(prepared: Path) -> None:
    for _ in read_numpy(prepared, "train"):
        pass


def _train_stream(prepared: Path) -> None:
    training_stream(prepared, 8, seed=0)


def _train_classifier(prepared: Path) -> None:
    train_classifier(prepared, prepared.parent / "classifier",
                     ClassifierConfig(epochs=1, batch=16, lr=3e-3), 0)


READERS = {"evaluate": _read_all, "train": _train_stream, "classifier": _train_classifier}


def _names(path: Path, reason: str) -> str:
    """The regex of the one-line error about ``path``: it, ``reason``, what to do."""
    return rf"^{re.escape(str(path))}{reason}; {REPREPARE}$"


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("level", [1, 0])  # deflated (inflate fails) and stored (CRC fails)
def test_a_flipped_byte_deep_in_a_shard_names_the_shard(tmp_path, reader, level):
    prepared = _digits(tmp_path / "mnist", level)
    shard = prepared / SHARD1
    _flip(shard, shard.stat().st_size // 2)
    with pytest.raises(ValueError, match=_names(shard, r" is corrupt \(.+\)")):
        READERS[reader](prepared)


@pytest.mark.parametrize("reader", READERS)
def test_a_truncated_shard_names_the_shard(tmp_path, reader):
    prepared = _digits(tmp_path / "mnist")
    shard = prepared / SHARD1
    shard.write_bytes(shard.read_bytes()[:shard.stat().st_size // 2])
    with pytest.raises(ValueError, match=_names(shard, r" is corrupt \(truncated record.*\)")):
        READERS[reader](prepared)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b""), "meta.json says it holds 16 samples, but it holds none"),
    (lambda p: p.write_bytes(b"not gzip"), r"not a complete gzip file \(Not a gzipped file"),
    (lambda p: _flip(p, 30), r"first record|gzip"),  # inside the first record's deflate data
])
def test_a_damaged_first_record_is_found_before_reading(tmp_path, damage, reason):
    prepared = _digits(tmp_path / "mnist")
    shard = prepared / "test-00001-of-00002.tfrecord.gz"
    damage(shard)
    # The train split is read, but every shard is checked first (test's here).
    with pytest.raises(ValueError, match=_names(shard, f": {reason}.*")):
        make_dataset(prepared, "train", 8)


def _edit_meta(prepared: Path, edit) -> None:
    meta = json.loads((prepared / "meta.json").read_text())
    edit(meta)
    (prepared / "meta.json").write_text(json.dumps(meta))


def _set_shard_counts(meta: dict, train: list) -> None:
    meta["shard_counts"]["train"] = train
    meta["counts"]["train"] = sum(train)


META_CASES = {
    # The shapes that hold as many bytes as a sample: the values or labels tell.
    "mask shape on images": (lambda m: m.update(shape=[784]),
                             rf"{SHARD0}: its first sample holds values up to 255, but "
                             r"meta.json's shape \[784\] is a mask's"),
    "wrong shape": (lambda m: m.update(shape=[28, 28, 3]),
                    rf"{SHARD0}: its first sample is 784 bytes, but meta.json's shape "
                    r"\[28, 28, 3\] of uint8 makes 2352"),
    "two channels": (lambda m: m.update(shape=[28, 14, 2]), r"meta.json: 'shape' must be"),
    "no shape": (lambda m: m.pop("shape"), r"meta.json: missing keys \['shape'\]"),
    "unknown key": (lambda m: m.update(sizes=1), r"meta.json: unknown keys \['sizes'\]"),
    "shape of text": (lambda m: m.update(shape="28x28"), r"meta.json: 'shape' must be"),
    "counts not the sums": (lambda m: m["counts"].update(train=65),
                            r"meta.json: 'counts' must be the sums of 'shard_counts'"),
    "float count": (lambda m: _set_shard_counts(m, [32.0, 32]),
                    r"meta.json: 'shard_counts' must be"),
    "a third shard": (lambda m: _set_shard_counts(m, [32, 32, 0]),
                      r"meta.json lists 3 train shards, but train-00000-of-00003.tfrecord.gz is "
                      "missing"),
    "a huge count": (lambda m: _set_shard_counts(m, [10**12, 32]),
                     rf"{SHARD0}: meta.json says it holds 1000000000000 samples of 784 bytes, "
                     r"more than a \d+-byte gzip file can hold"),
    "an empty shard that is not": (lambda m: _set_shard_counts(m, [0, 32]),
                                   rf"{SHARD0}: meta.json says it holds 0 samples, but it holds "
                                   "some"),
    "labels without classes": (lambda m: m.update(num_classes=None),
                               rf"{SHARD0}: its first record has a label, but meta.json's "
                               "num_classes is null"),
    "too few classes": (lambda m: m.update(num_classes=5),  # the first label is 8
                        rf"{SHARD0}: its first record's label is \[8\], not one label in "
                        r"\[0, 5\)"),
    "classes of text": (lambda m: m.update(num_classes="10"), r"meta.json: 'num_classes' must"),
}


@pytest.mark.parametrize("case", META_CASES)
def test_meta_json_that_disagrees_with_the_shards_is_named(tmp_path, case):
    prepared = _digits(tmp_path / "mnist")
    edit, message = META_CASES[case]
    _edit_meta(prepared, edit)
    with pytest.raises(ValueError, match=rf"{message}.*; {REPREPARE}$"):
        make_dataset(prepared, "train", 8)


@pytest.mark.parametrize("text, message", [
    ("{" + " " * (1 << 20) + "}", r"larger than 1048576 bytes, so not read"),
    ('{"dataset": ', r"not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, r"not valid JSON"),  # nesting deeper than the recursion limit
    ("[1, 2]", r"expected a JSON object"),
])
def test_meta_json_that_is_not_a_small_json_object_is_named(tmp_path, text, message):
    prepared = _digits(tmp_path / "mnist")
    (prepared / "meta.json").write_text(text)
    with pytest.raises(ValueError, match=rf"mnist/meta.json: {message}.*; {REPREPARE}$"):
        read_meta(prepared)


@pytest.mark.parametrize("counts, shard", [([31, 32], SHARD0), ([32, 33], SHARD1)])
def test_shard_counts_that_do_not_match_the_records_are_named_on_a_full_read(
        tmp_path, counts, shard):
    """More records than listed, and fewer: only reading a shard in full shows it."""
    prepared = _digits(tmp_path / "mnist")
    _edit_meta(prepared, lambda m: _set_shard_counts(m, counts))
    listed = counts[[SHARD0, SHARD1].index(shard)]
    reason = f" holds 32 samples, but meta.json lists {listed}"
    with pytest.raises(ValueError, match=_names(prepared / shard, reason)):
        _train_stream(prepared)


def test_an_extra_shard_file_is_named(tmp_path):
    prepared = _digits(tmp_path / "mnist")
    (prepared / "train-00002-of-00003.tfrecord.gz").write_bytes(b"")
    with pytest.raises(ValueError, match=r"meta.json lists 2 train shards, but "
                                         r"train-00002-of-00003.tfrecord.gz is not one of them"):
        make_dataset(prepared, "train", 8)


def test_sound_shards_read_in_full(tmp_path):
    """The checks pass real data, stored or deflated, labelled or not."""
    prepared = _digits(tmp_path / "mnist", 0)
    assert sum(len(x) for x, _ in read_numpy(prepared, "train")) == 64
    assert next(iter(training_stream(prepared, 8, seed=0))).shape == (8, 28, 28, 1)
    assert tf.is_tensor(next(iter(make_dataset(prepared, "test", 8)))[0])


def test_training_stream_with_labels_pairs_each_image_with_its_label(tmp_path):
    # A conditional model trains on (image, label) pairs: each must be the pair written.
    prepared = _digits(tmp_path / "mnist")
    written = {}
    for x, y in read_numpy(prepared, "train"):
        written.update({image.tobytes(): int(label) for image, label in zip(x, y, strict=True)})
    images, labels = next(iter(training_stream(prepared, 48, seed=0, with_labels=True)))
    assert labels.dtype == tf.int32 and len(set(labels.numpy().tolist())) > 1
    uint8 = tf.cast(tf.round((images + 1.0) * 127.5), tf.uint8).numpy()
    assert [written[image.tobytes()] for image in uint8] == labels.numpy().tolist()


def test_a_label_outside_num_classes_is_named_before_training(tmp_path):
    # Only the first record's label is checked up front; a later one of 12 in a 10-class
    # set would pick no class (a zero one-hot) and train a conditional critic on nothing.
    x, y = digit_blobs(64, 0)
    y[40] = 12
    pairs = list(zip(x, y.tolist(), strict=True))
    splits = {"train": pairs, "test": pairs[:8]}
    write_prepared(Source("mnist", (28, 28, 1), 13, splits, {}, {"train": 64, "test": 8}),
                   tmp_path / "mnist", 1, {"name": "mnist"})
    meta_path = tmp_path / "mnist" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "num_classes": 10}))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path / 'mnist'))}: a label is "
                                         rf"12, outside 0..9 \(meta.json num_classes\); "
                                         rf"{re.escape(REPREPARE)}$"):
        training_stream(tmp_path / "mnist", 8, seed=0, with_labels=True)
    training_stream(tmp_path / "mnist", 8, seed=0)  # unconditional training reads no labels
