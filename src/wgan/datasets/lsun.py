"""LSUN: one category's LMDB export -> ``resize`` x ``resize`` x 3 uint8 samples.

``data.lsun.path`` is LSUN's ``<category>_train_lmdb/`` (holding ``data.mdb``) or the
``<category>_train_lmdb.zip`` its ``download.py`` fetches. Each value is an encoded image
(WebP in the official export; JPEG, PNG and the other formats of
:mod:`wgan.datasets.images` are accepted too); each key names it. The test split is
``<category>_val_lmdb`` (directory or zip) beside the train export when it is there, else
a hash of each key (:func:`wgan.datasets.images.hash_split`, as for image folders).

Geometry: the shorter side is resized to ``resize`` and the centre cropped square, what
the WGAN and DCGAN reference code does for LSUN (torchvision's ``Scale`` then
``CenterCrop``). Here it is one resampling of the centred square of side min(w, h)
(:data:`wgan.datasets.images.SQUARE`), through the same decoder as CelebA.

Streaming, in flat memory: the keys are never listed. A split's shards are contiguous key
ranges of about ``entries / N`` records each, found by one pass of a cursor over the keys
(values are not read), and each shard's worker opens the LMDB itself and walks its range.
Shards in key order also make the first skipped records of the report the first in key
order, whatever the number of workers.

The files may come from strangers, and LMDB trusts its file: it maps it into memory and
follows the page numbers it holds, so a truncated file would crash the reader on a page
past its end. Before use, ``data.mdb`` must be a regular file at least as long as its own
header says. A zip must name no member with an absolute or ``..`` path and hold exactly
one ``data.mdb``, which is streamed into a temporary directory (an LMDB must be a file to
be mapped) only if its declared size fits the free space there; it is removed when the
source is released. A key must be printable ASCII (LSUN's are 40 hex digits) and a value
at most :data:`wgan.datasets.images.MAX_FILE_BYTES`; records that break this, or whose
value does not decode, are skipped and reported with their key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import lmdb
import numpy as np
from PIL import Image

from wgan.cli import usable_cpus
from wgan.config import DataConfig
from wgan.datasets.images import (
    MAX_FILE_BYTES,
    REPORT_LIMIT,
    SQUARE,
    Geometry,
    decode_image,
    hash_split,
)
from wgan.datasets.untrusted import RefusedFile, open_regular
from wgan.prepared.format import Example
from wgan.prepared.write import ParallelSplit, Source

__all__ = ["MAX_KEY_BYTES", "load"]

MAX_KEY_BYTES = 511  # LMDB's own limit in its default build
_DATA = "data.mdb"
_TRAIN, _VAL = "_train_lmdb", "_val_lmdb"
# Left free on the disk that a zip's data.mdb is extracted to.
_SPACE_MARGIN = 64 * 2**20
_AGAIN = "download the category again with LSUN's download.py"
# A key range [start, end) of one shard (end None: to the last key), or None: no records.
_Part = tuple[bytes, bytes | None] | None


@dataclass(frozen=True)
class _Db:
    """An LMDB to read: its data.mdb, the name that reports and hashes give it
    (``bedroom_train_lmdb``) and the path that messages give (the directory or zip)."""

    file: str
    name: str
    where: str


def _show(key: bytes) -> str:
    """A key as reports print it: as is if valid, else its escaped bytes (cut short)."""
    if _key_problem(key) is None:
        return key.decode("ascii")
    return repr(key[:64]) + ("..." if len(key) > 64 else "")


def _key_problem(key: bytes) -> str | None:
    if not 0 < len(key) <= MAX_KEY_BYTES or not all(0x20 <= b <= 0x7E for b in key):
        return (f"the key is not 1-{MAX_KEY_BYTES} printable ASCII characters (LSUN's are "
                "40 hex digits); re-key the LMDB with text keys")
    return None


def _lmdb_reason(db: _Db, err: lmdb.Error) -> str:
    return str(err).removeprefix(f"{db.file}: ")


@contextlib.contextmanager
def _opened(db: _Db) -> Iterator[lmdb.Environment]:
    """The LMDB, read-only and without a lock file, once its data.mdb is checked to be a
    regular file at least as long as its header says; closed on exit (a forked worker
    must open its own)."""
    try:
        fd = open_regular(db.file, follow_symlinks=True)  # not a FIFO (which would block)
        size = os.fstat(fd).st_size
        os.close(fd)
    except (RefusedFile, OSError) as err:
        raise ValueError(f"{db.where}: cannot read {_DATA} ({err}); {_AGAIN}") from None
    try:
        env = lmdb.open(db.file, subdir=False, readonly=True, lock=False, create=False)
    except lmdb.Error as err:
        raise ValueError(f"{db.where}: {_DATA} is not a readable LMDB "
                         f"({_lmdb_reason(db, err)}); {_AGAIN}") from None
    try:
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        if size < needed:
            raise ValueError(f"{db.where}: {_DATA} is truncated ({size} bytes, its header "
                             f"says {needed}); {_AGAIN}")
        yield env
    finally:
        env.close()


def _shard_starts(db: _Db, shards: int) -> list[_Part]:
    """``shards`` contiguous key ranges of about equal counts, from one pass of a cursor
    over the keys; a range the pass did not reach (the header overstated the count) is
    None, and the last runs to the end (it understated it)."""
    starts: list[bytes | None] = [None] * shards
    with _opened(db) as env, env.begin() as txn:
        entries = env.stat()["entries"]
        positions = [s * entries // shards for s in range(shards)]
        key, s = b"", 0
        try:
            for i, key in enumerate(txn.cursor().iternext(keys=True, values=False)):
                while s < shards and positions[s] == i:  # positions never decrease
                    starts[s] = key
                    s += 1
                if s == shards:
                    break
        except lmdb.Error as err:
            raise _damaged(db, key, err) from None
    ends = [*starts[1:], None]
    return [None if start is None else (start, end) for start, end in zip(starts, ends,
                                                                          strict=True)]


def _damaged(db: _Db, after: bytes, err: lmdb.Error) -> ValueError:
    where = f"after key {_show(after)}" if after else "at its first key"
    return ValueError(f"{db.where}: {_DATA} is damaged {where} ({_lmdb_reason(db, err)}); "
                      f"{_AGAIN}")


def _decode_range(
    db: _Db, geometry: Geometry, keep: tuple[str, float] | None, part: _Part,
) -> Generator[Example, None, dict[str, Any]]:
    """Worker: the samples of the records in ``part`` (of split ``keep[0]`` by the hash
    split at test fraction ``keep[1]``, or all), in key order. Returns the part's note:
    records seen and skipped, the first skipped (key and reason), and the sha256 of its
    ``<sha256 of value>  <key>`` lines."""
    note: dict[str, Any] = {"seen": 0, "skipped": 0, "records": []}
    manifest = hashlib.sha256()
    if part is not None:
        start, end = part
        with _opened(db) as env, env.begin(buffers=True) as txn:
            cursor, key = txn.cursor(), b""
            try:
                if not cursor.set_key(start):
                    raise ValueError(f"{db.where}: key {_show(start)} is gone: the LMDB "
                                     "changed while prepare read it; run prepare again")
                for key_view, value in cursor:
                    key = bytes(key_view)
                    if key == end:
                        break
                    if keep is not None and hash_split(key, keep[1]) != keep[0]:
                        continue
                    out, digest = _record(key, value, geometry)
                    manifest.update(f"{digest}  {_show(key)}\n".encode())
                    note["seen"] += 1
                    if isinstance(out, str):
                        note["skipped"] += 1
                        if len(note["records"]) < REPORT_LIMIT:
                            note["records"].append({"lmdb": db.name, "key": _show(key),
                                                    "reason": out})
                    else:
                        yield np.frombuffer(out, np.uint8).reshape(
                            geometry.size, geometry.size, 3), None
            except lmdb.Error as err:
                raise _damaged(db, key, err) from None
    note["sha256"] = manifest.hexdigest()
    return note


def _record(key: bytes, value: memoryview, geometry: Geometry) -> tuple[bytes | str, str]:
    """(the sample's RGB bytes or why the record is skipped, the value's sha256 or "" if
    it was not read). ``value`` points into the map: its size is checked before a copy."""
    problem = _key_problem(key)
    if problem is None and len(value) > MAX_FILE_BYTES:
        problem = (f"a value of {len(value)} bytes, more than the {MAX_FILE_BYTES}-byte cap "
                   "for an image")
    if problem is not None:
        return problem, ""
    data = bytes(value)
    return decode_image(data, geometry), hashlib.sha256(data).hexdigest()


def _finish(report: dict[str, Any], sha256: dict[str, str], label: str,
            notes: list[dict[str, Any]]) -> None:
    """Record a written split's skipped records (shard order is key order) and its hash:
    the sha256 of its shards' manifest hashes, one per line."""
    seen = sum(n["seen"] for n in notes)
    skipped = [r for n in notes for r in n["records"]]
    if seen == 0:
        raise ValueError(f"{label}: no record fell into this split; lower "
                         "data.lsun.test_fraction or use a larger LMDB")
    if seen == sum(n["skipped"] for n in notes):
        reasons = "; ".join(f"key {r['key']}: {r['reason']}" for r in skipped[:3])
        raise ValueError(f"{label}: all {seen} records were skipped, e.g. {reasons}")
    report["skipped"] += sum(n["skipped"] for n in notes)
    report["records"].extend(skipped[:REPORT_LIMIT - len(report["records"])])
    sha256[label] = hashlib.sha256("".join(f"{n['sha256']}\n" for n in notes).encode()).hexdigest()


def _unsafe(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts


def _extract(archive: Path, stack: contextlib.ExitStack) -> str:
    """The zip's one data.mdb, streamed into a temporary directory that ``stack`` removes,
    once its declared size is checked against the free space there (zipfile inflates no
    more than that size, whatever the data, and then checks the CRC)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            unsafe = [i.filename for i in infos if _unsafe(i.filename)]
            if unsafe:
                raise ValueError(f"{archive}: member {unsafe[0][:200]!r} has an absolute or "
                                 f"'..' path, so this is not LSUN's export; {_AGAIN}")
            found = [i for i in infos if PurePosixPath(i.filename).name == _DATA
                     and not i.is_dir()]
            if len(found) != 1:
                raise ValueError(f"{archive}: holds {len(found)} {_DATA} files, not one "
                                 f"(<category>{_TRAIN}/{_DATA} in LSUN's export); {_AGAIN}")
            info = found[0]
            scratch = tempfile.mkdtemp(prefix="wgan-lsun-")
            stack.callback(shutil.rmtree, scratch, ignore_errors=True)
            free = shutil.disk_usage(scratch).free - _SPACE_MARGIN
            if info.file_size > free:
                raise ValueError(
                    f"{archive}: {info.filename} declares {info.file_size} bytes, more than "
                    f"the {max(free, 0)} bytes free in {os.path.dirname(scratch)}; free space "
                    "there, set TMPDIR to a disk with room, or unzip it yourself and set "
                    "data.lsun.path to the directory")
            print(f"extracting {info.filename} ({info.file_size:,} bytes) from "
                  f"{archive} to {scratch}", file=sys.stderr)
            target = os.path.join(scratch, _DATA)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, RuntimeError,
            NotImplementedError) as err:
        raise ValueError(f"{archive}: cannot extract {_DATA} ({err}); {_AGAIN}") from err
    return target


def _db(path: Path, stack: contextlib.ExitStack) -> _Db:
    """The LMDB of an export directory or zip (extracted; ``stack`` removes the copy)."""
    if path.is_dir():
        return _Db(str(path / _DATA), path.name, str(path))
    return _Db(_extract(path, stack), path.name.removesuffix(".zip"), str(path))


def _export(path: Path) -> Path:
    """``data.lsun.path`` once checked to be a directory with data.mdb or a zip."""
    if path.is_dir():
        if not os.path.lexists(path / _DATA):
            raise FileNotFoundError(
                f"data.lsun.path: {path} has no {_DATA}; point it at a category's LMDB "
                f"export (<category>{_TRAIN}/ with {_DATA}, or its .zip)")
        return path
    if path.is_file() and zipfile.is_zipfile(path):  # not a FIFO, which zipfile would wait on
        return path
    if os.path.lexists(path):
        raise ValueError(f"data.lsun.path: {path} is neither a directory nor a zip; point it "
                         f"at <category>{_TRAIN}/ (with {_DATA}) or <category>{_TRAIN}.zip")
    raise FileNotFoundError(
        f"data.lsun.path: {path} not found; fetch a category with LSUN's download.py "
        f"(e.g. bedroom{_TRAIN}.zip and bedroom{_VAL}.zip) and put it there, or set "
        "data.lsun.path")


def _val_beside(train: Path) -> Path | None:
    """``<category>_val_lmdb/`` or its zip beside ``<category>_train_lmdb[.zip]``, if any."""
    name = train.name.removesuffix(".zip")
    if not name.endswith(_TRAIN):
        return None
    val = name.removesuffix(_TRAIN) + _VAL
    for candidate in (train.with_name(val), train.with_name(val + ".zip")):
        if os.path.lexists(candidate):
            return _export(candidate)
    return None


def _entries(db: _Db) -> int:
    with _opened(db) as env:
        entries = env.stat()["entries"]
    if entries == 0:
        raise ValueError(f"{db.where}: the LMDB holds no records; {_AGAIN}")
    return entries


def _split(db: _Db, geometry: Geometry, keep: tuple[str, float] | None, workers: int,
           report: dict[str, Any], sha256: dict[str, str], split: str) -> ParallelSplit:
    return ParallelSplit(functools.partial(_shard_starts, db),
                         functools.partial(_decode_range, db, geometry, keep),
                         functools.partial(_finish, report, sha256, f"{db.name}[{split}]"),
                         workers)


def load(cfg: DataConfig, raw_dir: Path) -> Source:
    """The records of ``cfg.lsun``, decoded when iterated; release the source (``with``)
    to remove an extracted copy. ``raw_dir`` is unused: the path is ``data.lsun.path``."""
    lsun = cfg.lsun
    geometry = Geometry(SQUARE, lsun.resize, Image.Resampling[lsun.filter.upper()])
    workers = cfg.workers or usable_cpus()
    report: dict[str, Any] = {"skipped": 0, "records": []}
    sha256: dict[str, str] = {}
    with contextlib.ExitStack() as stack:  # the extracted copies, if this fails
        train_path = _export(Path(lsun.path))
        val_path = _val_beside(train_path)
        train = _db(train_path, stack)
        entries = _entries(train)
        if val_path is not None:
            val = _db(val_path, stack)
            hints = {"train": entries, "test": _entries(val)}
            splits = {"train": _split(train, geometry, None, workers, report, sha256, "train"),
                      "test": _split(val, geometry, None, workers, report, sha256, "test")}
        else:
            hints = {"train": entries, "test": entries}
            splits = {s: _split(train, geometry, (s, lsun.test_fraction), workers, report,
                                sha256, s)
                      for s in (("train", "test") if lsun.test_fraction > 0 else ("train",))}
        return Source(
            name=cfg.name,
            shape=(lsun.resize, lsun.resize, 3),
            num_classes=None,
            splits=splits,
            sha256=sha256,
            size_hints=hints,
            report=report,
            compression_level=0,  # photos: as image folders (see images.load)
            resources=stack.pop_all(),
        )
