"""Writing the prepared format (:mod:`wgan.prepared.format`); only ``prepare`` runs this.

The TFRecord framing and gzip stream are written here with zlib and google-crc32c rather
than TensorFlow's writer, so that forked worker processes can write shards. The deflate
level is the dataset reader's choice (``Source.compression_level``): 1 by default, 0
(stored blocks, still gzip) for photos, which deflate shrinks by only 10-25% for more CPU
than the JPEG decode itself (see BENCHMARKS.md).

Examples of a split that a reader streams go round-robin over its shards (example i to
shard i mod N). A :class:`ParallelSplit` (image folders, LMDBs) is written by worker
processes, one shard each, from the part of the split the reader assigns to it (file j of
the sorted list to shard j mod N; a range of keys); a skipped item leaves no record.
Either way the files do not depend on the number of workers.

Writes are atomic: shards and ``meta.json`` go to a hidden temporary sibling that is
renamed into place only when complete, so a killed prepare leaves nothing that looks
finished.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import shutil
import signal
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wgan.files import write_json
from wgan.prepared.format import (
    META_FILE,
    Example,
    PreparedMeta,
    encode_example,
    masked_crc32c,
    meta_dict,
    shard_name,
)

__all__ = ["ParallelSplit", "Source", "write_prepared"]


@dataclass(frozen=True)
class ParallelSplit:
    """A split whose shards are decoded and written by worker processes, one shard each.

    ``parts(n)`` divides the split into the work of its ``n`` shards, in shard order, each
    small and picklable (the file names of a shard; a range of keys, so that a split of
    millions of records is never listed). ``decode(part)`` runs in a worker, so it must
    pickle (a module-level function or a ``functools.partial`` of one): it yields the
    part's examples, in order, and returns a picklable note on the part (a generator's
    return value: its skipped items, its hash). Once every shard is written,
    ``finish(notes)`` gets the notes in shard order, in the calling process (readers fill
    ``Source.report`` and ``sha256`` there). Iterating the split decodes it in this
    process instead, as one part.
    """

    parts: Callable[[int], list]
    decode: Callable[[Any], Generator[Example, None, Any]]
    finish: Callable[[list], None]
    workers: int

    def __iter__(self) -> Iterator[Example]:
        notes: list = []
        for part in self.parts(1):
            yield from _decoded(self.decode(part), notes)
        self.finish(notes)


@dataclass
class Source:
    """What a dataset reader hands to :func:`write_prepared`.

    ``splits`` maps a split name to an iterable of ``(uint8 sample, label or None)``
    (possibly a :class:`ParallelSplit`); it is consumed once, streaming, so readers never
    hold a whole dataset.
    ``size_hints`` (expected counts) only chooses the number of shards.
    ``compression_level`` is the gzip deflate level of the shards (0-9).
    ``resources`` are released by ``with source:``, which :func:`wgan.datasets.prepare` uses.
    """

    name: str
    shape: tuple[int, ...]
    num_classes: int | None
    splits: dict[str, Iterable[Example]]
    sha256: dict[str, str]
    size_hints: dict[str, int] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    compression_level: int = 1
    # What the reader holds until the source is written or abandoned (an LMDB extracted
    # from its zip to a temporary file); ``with source:`` releases it.
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resources.close()


class _ShardFile:
    """One shard being written: TFRecord-framed records in one gzip stream."""

    def __init__(self, path: Path, compression_level: int) -> None:
        self._file = open(path, "wb")
        self._deflate = zlib.compressobj(compression_level, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9)
        self.count = 0

    def write(self, record: bytes) -> None:
        length = struct.pack("<Q", len(record))
        for part in (length, masked_crc32c(length), record, masked_crc32c(record)):
            self._file.write(self._deflate.compress(part))
        self.count += 1

    def __enter__(self) -> _ShardFile:
        return self

    def __exit__(self, *exc) -> None:
        with self._file:
            if exc[0] is None:
                self._file.write(self._deflate.flush())


def _serialized(where: str, examples: Iterable[Example], shape: tuple[int, ...]) -> Iterator[bytes]:
    """Serialised examples, refusing a sample that is not uint8 of ``shape``."""
    for i, (x, y) in enumerate(examples):
        if x.dtype != np.uint8 or x.shape != shape:
            raise ValueError(f"{where} sample {i}: expected uint8 of shape {shape}, "
                             f"got {x.dtype} of shape {x.shape}")
        yield encode_example(x, y)


def _write_split(
    directory: Path, split: str, examples: Iterable[Example], shape: tuple[int, ...], shards: int,
    compression_level: int,
) -> list[int]:
    """Round-robin examples over ``shards`` files; return each shard's count."""
    with contextlib.ExitStack() as stack:
        files = [stack.enter_context(_ShardFile(directory / shard_name(split, i, shards),
                                                compression_level)) for i in range(shards)]
        for i, record in enumerate(_serialized(split, examples, shape)):
            files[i % shards].write(record)
    return [f.count for f in files]


def _decoded(examples: Generator[Example, None, Any], notes: list) -> Iterator[Example]:
    """The examples of a :class:`ParallelSplit` part; its note is appended to ``notes``."""
    notes.append((yield from examples))


_stop: Any = None  # in a worker: the pool's multiprocessing.Event, set to abandon its shard


def _start_worker(stop: Any) -> None:
    """Worker set-up. Ctrl-C is the parent's to handle (it sets ``stop``), and a worker
    exits when the parent dies: an executor's idle worker would otherwise wait on its
    call queue forever."""
    global _stop
    _stop = stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()


def _exit_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _write_shard(
    decode: Callable, shape: tuple[int, ...], compression_level: int, path: Path, part: Any,
) -> tuple[int, Any]:
    """Worker: decode one shard's part and write its file; return its count and note."""
    notes: list = []
    with _ShardFile(path, compression_level) as shard:
        for record in _serialized(path.name, _decoded(decode(part), notes), shape):
            if _stop.is_set():
                break  # the parent failed or was interrupted: the shard is thrown away
            shard.write(record)
    return shard.count, notes[0] if notes else None


def _write_parallel(
    directory: Path, split: str, source: ParallelSplit, shape: tuple[int, ...], shards: int,
    compression_level: int,
) -> list[int]:
    """One worker process per shard (at most ``source.workers`` at a time): no sample
    crosses a process boundary, and the files do not depend on the number of workers.
    The first failure, or Ctrl-C, stops every worker within one sample."""
    paths = [directory / shard_name(split, s, shards) for s in range(shards)]
    parts = source.parts(shards)
    task = functools.partial(_write_shard, source.decode, shape, compression_level)
    stop = multiprocessing.Event()
    pool = ProcessPoolExecutor(max(1, min(source.workers, shards)), initializer=_start_worker,
                               initargs=(stop,))
    with _ctrl_c_sets(stop):
        try:
            futures = [pool.submit(task, path, part)
                       for path, part in zip(paths, parts, strict=True)]
            _wait_for(futures, stop)
            for path, future in zip(paths, futures, strict=True):
                if future.done() and future.exception() is not None:
                    _raise_for(split, path, future.exception())
            if stop.is_set():
                raise KeyboardInterrupt
            done = [future.result() for future in futures]
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(cancel_futures=True)
    source.finish([note for _, note in done])
    return [count for count, _ in done]


def _wait_for(futures: list, stop: Any) -> None:
    """Until every shard is written, one failed, or ``stop`` is set (by Ctrl-C)."""
    while not stop.is_set():
        done, pending = wait(futures, timeout=0.1, return_when=FIRST_EXCEPTION)
        if not pending or any(future.exception() is not None for future in done):
            return


@contextlib.contextmanager
def _ctrl_c_sets(stop: Any) -> Iterator[None]:
    """Within, Ctrl-C only sets ``stop``; the caller raises KeyboardInterrupt once the
    workers are gone. A Ctrl-C raised in the middle of the shut-down would leave workers
    writing into the temporary directory that the caller removes next (and on Python 3.11
    a ``Thread.join`` cut short marks the thread as stopped, so no retry can wait again)."""
    if threading.current_thread() is not threading.main_thread():  # only it gets signals
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _raise_for(split: str, path: Path, err: BaseException) -> None:
    if isinstance(err, BrokenProcessPool):  # multiprocessing.Pool would wait forever
        raise RuntimeError(
            f"{split}: a prepare worker process died ({err}); if it ran out of memory, lower "
            "data.workers (or it raised an exception that cannot be unpickled)") from err
    err.add_note(f"while writing {path.name}")
    raise err


def write_prepared(source: Source, out_dir: str | Path, shards: int, params: dict) -> PreparedMeta:
    """Write ``source`` in the prepared format to ``out_dir``, atomically.

    Each split gets ``min(shards, size_hint)`` shards. On any error the temporary
    directory is removed and ``out_dir`` is left as it was.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    for kind in ("tmp", "old"):  # left behind by a killed run
        for stale in out_dir.parent.glob(f".{out_dir.name}.{kind}-*"):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        shard_counts = {}
        for split, examples in source.splits.items():
            n_shards = max(1, min(shards, source.size_hints.get(split, shards)))
            write = _write_parallel if isinstance(examples, ParallelSplit) else _write_split
            shard_counts[split] = write(tmp, split, examples, source.shape, n_shards,
                                        source.compression_level)
            if sum(shard_counts[split]) == 0:
                raise ValueError(f"{source.name}: split {split!r} has no usable samples")
        meta = PreparedMeta(
            dataset=source.name,
            shape=tuple(source.shape),
            num_classes=source.num_classes,
            sha256=source.sha256,
            params=params,
            shard_counts=shard_counts,
        )
        # No trailing newline: meta.json's bytes are part of the prepared data's DVC hash,
        # and adding one would re-run every stage after prepare for every existing output.
        write_json(tmp / META_FILE, meta_dict(meta, source.report), trailing_newline=False)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` with ``tmp`` using renames, never a half-written directory."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
    tmp.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
