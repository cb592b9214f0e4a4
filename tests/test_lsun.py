"""LSUN: LMDB exports (directory or zip) built here with the ``lmdb`` package, prepared by
the real stage function; the output, the split, the skip report, the geometry and every
refusal of a bad input."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace

import lmdb
import numpy as np
import pytest
from PIL import Image

from wgan.config import ParamsError, parse_params
from wgan.datasets import load_source, prepare
from wgan.datasets.images import MAX_FILE_BYTES, center_crop_box, hash_split
from wgan.prepared.read import read_numpy

BILINEAR = Image.Resampling.BILINEAR
FORMATS = {"WEBP": {"quality": 90}, "JPEG": {"quality": 90}, "PNG": {}}


def encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, **options)
    return buf.getvalue()


def key_of(i: int) -> bytes:
    return f"{(i * 2654435761) % 2**32:040x}".encode()  # hex, like LSUN's, not in i order


def photos(n: int, seed: int) -> dict[bytes, bytes]:
    """``n`` non-square images (landscape and portrait), WebP, JPEG and PNG in turn."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(n):
        w, h = (44, 30) if i % 2 else (26, 40)
        fmt = list(FORMATS)[i % 3]
        out[key_of(seed * 1000 + i)] = encoded(rng.integers(0, 256, (h, w, 3), np.uint8), fmt,
                                               **FORMATS[fmt])
    return out


def write_lmdb(directory: Path, records: dict[bytes, bytes]) -> Path:
    env = lmdb.open(str(directory), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for key, value in records.items():
            txn.put(key, value)
    env.close()
    return directory


def zipped(directory: Path, method: int = zipfile.ZIP_DEFLATED) -> Path:
    """The export as LSUN ships it: ``<name>.zip`` holding ``<name>/data.mdb`` and lock.mdb."""
    archive = directory.with_name(directory.name + ".zip")
    with zipfile.ZipFile(archive, "w", method) as zf:
        for name in ("data.mdb", "lock.mdb"):
            zf.write(directory / name, f"{directory.name}/{name}")
    return archive


def expected(value: bytes, size: int) -> bytes:
    """The sample by hand: the centred square of side min(w, h), resized once."""
    img = Image.open(io.BytesIO(value)).convert("RGB")
    box = center_crop_box(*img.size, min(img.size))
    return img.crop(box).resize((size, size), BILINEAR).tobytes()


def lsun_cfg(path: Path, **extra):
    lsun = {"path": str(path), "resize": 16, **extra.pop("lsun", {})}
    return parse_params({"data": {"name": "lsun", "shards": 3, "lsun": lsun, **extra}}).data


def samples(out: Path, split: str) -> list[bytes]:
    """Every sample of a split, shard after shard, read back by the pipeline's reader."""
    return [x.tobytes() for batch, _ in read_numpy(out, split) for x in batch]


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The temporary directory that zips are extracted to, to check that nothing stays."""
    path = tmp_path / "scratch"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.fixture
def export(tmp_path) -> tuple[Path, dict[bytes, bytes], dict[bytes, bytes]]:
    """bedroom_train_lmdb/ with 24 images and one undecodable value, and
    bedroom_val_lmdb/ with 5 images beside it."""
    train = {**photos(24, seed=1), key_of(7777): b"RIFF\x10\x00\x00\x00WEBPVP8 broken"}
    val = photos(5, seed=2)
    root = tmp_path / "lsun"
    root.mkdir()
    write_lmdb(root / "bedroom_train_lmdb", train)
    write_lmdb(root / "bedroom_val_lmdb", val)
    return root, train, val


def test_output_is_the_same_bytes_whatever_the_workers_or_the_zip(tmp_path, export, scratch):
    root, train, val = export
    written = {}
    for form, workers in (("dir", 1), ("dir", 3), ("zip", 2)):
        path = root / "bedroom_train_lmdb"
        if form == "zip":
            path = zipped(path)
            zipped(root / "bedroom_val_lmdb", zipfile.ZIP_STORED)
            for d in ("bedroom_train_lmdb", "bedroom_val_lmdb"):  # only the zips are left
                for f in (root / d).iterdir():
                    f.unlink()
                (root / d).rmdir()
        out = tmp_path / f"out-{form}-{workers}"
        meta = prepare(lsun_cfg(path, workers=workers), out)
        written[form, workers] = {f.name: f.read_bytes() for f in out.iterdir()}
    assert written["dir", 1] == written["dir", 3]  # meta.json (report, sha256) included
    shards = {n: b for n, b in written["dir", 1].items() if n.endswith(".gz")}
    assert {n: written["zip", 2][n] for n in shards} == shards
    assert list(scratch.iterdir()) == []  # the extracted data.mdb is gone
    # The val LMDB is the test split; shards hold the records in key order.
    good = {k: v for k, v in train.items() if k != key_of(7777)}
    out = tmp_path / "out-dir-1"
    assert samples(out, "train") == [expected(good[k], 16) for k in sorted(good)]
    assert samples(out, "test") == [expected(val[k], 16) for k in sorted(val)]
    assert meta.counts == {"train": 24, "test": 5}
    saved = json.loads((out / "meta.json").read_text())
    (record,) = saved["report"]["records"]
    assert saved["report"]["skipped"] == 1
    assert record["lmdb"] == "bedroom_train_lmdb" and record["key"] == key_of(7777).decode()
    assert record["reason"].startswith("not a readable image")
    assert set(saved["sha256"]) == {"bedroom_train_lmdb[train]", "bedroom_val_lmdb[test]"}
    assert saved["params"]["lsun"]["path"] == str(root / "bedroom_train_lmdb")


def test_without_a_val_lmdb_a_hash_of_each_key_splits(tmp_path):
    records = photos(30, seed=3)
    path = write_lmdb(tmp_path / "church_outdoor_train_lmdb", records)
    out = tmp_path / "out"
    meta = prepare(lsun_cfg(path, lsun={"test_fraction": 0.3}), out)
    test = sorted(k for k in records if hash_split(k, 0.3) == "test")
    train = sorted(k for k in records if k not in test)
    assert 0 < len(test) < len(train)
    assert samples(out, "train") == [expected(records[k], 16) for k in train]
    assert samples(out, "test") == [expected(records[k], 16) for k in test]
    assert meta.counts == {"train": len(train), "test": len(test)}
    assert json.loads((out / "meta.json").read_text())["report"] == {"skipped": 0,
                                                                     "records": []}
    meta = prepare(lsun_cfg(path, lsun={"test_fraction": 0.0}), tmp_path / "all")
    assert meta.counts == {"train": 30}


def test_the_shorter_side_is_resized_and_the_centre_cropped(tmp_path):
    """A wide image whose three thirds are red, green and blue gives pure green; a tall one
    at the output's size gives exactly its centred rows (offset rounded down)."""
    wide = np.zeros((16, 48, 3), np.uint8)
    wide[:, :16, 0] = wide[:, 16:32, 1] = wide[:, 32:, 2] = 255
    tall = np.random.default_rng(0).integers(0, 256, (37, 16, 3), np.uint8)
    records = {b"tall": encoded(tall, "WEBP", lossless=True), b"wide": encoded(wide, "PNG")}
    path = write_lmdb(tmp_path / "x_train_lmdb", records)
    out = tmp_path / "out"
    prepare(lsun_cfg(path, shards=1, lsun={"test_fraction": 0.0}), out)
    got_tall, got_wide = (np.frombuffer(x, np.uint8).reshape(16, 16, 3)
                          for x in samples(out, "train"))
    assert (got_wide == [0, 255, 0]).all()
    assert (got_tall == tall[10:26]).all()  # top = (37 - 16) // 2


def test_bad_records_are_skipped_and_reported_by_key(tmp_path):
    records = {**photos(4, seed=4), b"bad\nkey": photos(1, seed=5).popitem()[1],
               b"\xff" * 100: b"x", key_of(99): b"\0" * (MAX_FILE_BYTES + 1)}
    path = write_lmdb(tmp_path / "x_train_lmdb", records)
    out = tmp_path / "out"
    meta = prepare(lsun_cfg(path, lsun={"test_fraction": 0.0}), out)
    assert meta.counts == {"train": 4}
    report = json.loads((out / "meta.json").read_text())["report"]
    reasons = {r["key"]: r["reason"] for r in report["records"]}
    assert report["skipped"] == 3 == len(reasons)
    assert "printable ASCII" in reasons["b'bad\\nkey'"]
    assert reasons[repr(b"\xff" * 64) + "..."].startswith("the key is not 1-511 printable")
    assert reasons[key_of(99).decode()] == (f"a value of {MAX_FILE_BYTES + 1} bytes, more "
                                            f"than the {MAX_FILE_BYTES}-byte cap for an image")


def junk(path: Path) -> Path:
    """Random bytes at ``path``; returns the export (the directory, for a data.mdb)."""
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(np.random.default_rng(0).bytes(9000))
    return path.parent if path.name == "data.mdb" else path


def fifo_data(root: Path) -> Path:
    root.mkdir()
    os.mkfifo(root / "data.mdb")
    return root


def damaged_page(root: Path) -> Path:
    write_lmdb(root, {key_of(i): bytes(200) for i in range(300)})
    with open(root / "data.mdb", "r+b") as f:
        f.seek(10 * 4096)  # a leaf page in the middle
        f.write(b"\xff" * 4096)
    return root


def truncated(root: Path) -> Path:
    write_lmdb(root, photos(6, seed=6))
    os.truncate(root / "data.mdb", os.path.getsize(root / "data.mdb") // 2)
    return root


def zip_with(root: Path, members: dict[str, bytes]) -> Path:
    archive = root.with_name(root.name + ".zip")
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def declaring(root: Path, size: int) -> Path:
    """A zip whose data.mdb's headers declare ``size`` (< 2**32 - 1) bytes."""
    archive = zip_with(root, {f"{root.name}/data.mdb": b"tiny"})
    data = bytearray(archive.read_bytes())
    for sig, at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local and central headers
        pos = data.find(sig)
        data[pos + at:pos + at + 4] = size.to_bytes(4, "little")
    archive.write_bytes(data)
    with zipfile.ZipFile(archive) as zf:  # zipfile must read the lie as the size
        assert zf.getinfo(f"{root.name}/data.mdb").file_size == size
    return archive


BAD_INPUTS = {
    "missing": (lambda r: r, FileNotFoundError, "not found; fetch a category"),
    "no data.mdb": (lambda r: r.mkdir() or r, FileNotFoundError, "has no data.mdb"),
    "not an lmdb": (lambda r: junk(r / "data.mdb"), ValueError,
                    "data.mdb is not a readable LMDB (MDB_INVALID"),
    "truncated": (truncated, ValueError, "data.mdb is truncated"),
    "damaged page": (damaged_page, ValueError, "data.mdb is damaged after key"),
    "fifo": (fifo_data, ValueError, "cannot read data.mdb (a FIFO"),
    "empty": (lambda r: write_lmdb(r, {}), ValueError, "the LMDB holds no records"),
    "traversal": (lambda r: zip_with(r, {"../evil/data.mdb": b"x"}), ValueError,
                  "member '../evil/data.mdb' has an absolute or '..' path"),
    "no member": (lambda r: zip_with(r, {"readme.txt": b"x"}), ValueError,
                  "holds 0 data.mdb files"),
    "huge declared": (lambda r: declaring(r, 2**32 - 2), ValueError,
                      "data.mdb declares 4294967294 bytes, more than the"),
    "zip of junk": (lambda r: zip_with(r, {f"{r.name}/data.mdb": b"junk" * 3000}), ValueError,
                    "data.mdb is not a readable LMDB"),
    "not a zip": (lambda r: junk(r), ValueError,
                  "is neither a directory nor a zip"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_fail_with_one_line_and_leave_nothing(tmp_path, scratch, monkeypatch, case):
    make, kind, message = BAD_INPUTS[case]
    if case == "huge declared":  # as if the disk had 2 GiB free, whatever it has
        monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=2**31))
    path = make(tmp_path / "x_train_lmdb")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(kind) as err:
        prepare(lsun_cfg(path), tmp_path / "out")
    text = str(err.value)
    assert message in text and "\n" not in text, text
    assert str(path) in text or "data.lsun.path" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temp dir
    assert list(scratch.iterdir()) == []


def test_the_key_scan_holds_no_list_of_keys(tmp_path):
    """Shard boundaries come from one pass of a cursor: memory does not grow with the
    records (a list of these 20,000 keys would take over 1.5 MB)."""
    path = write_lmdb(tmp_path / "x_train_lmdb", {key_of(i): b"v" for i in range(20_000)})
    split = load_source(lsun_cfg(path, lsun={"test_fraction": 0.0})).splits["train"]
    tracemalloc.start()
    try:
        parts = split.parts(4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak
    keys = sorted(key_of(i) for i in range(20_000))
    assert [p[0] for p in parts] == [keys[s * 5000] for s in range(4)]
    assert [p[1] for p in parts] == [keys[s * 5000] for s in range(1, 4)] + [None]


def test_resize_must_suit_the_dcgan():
    with pytest.raises(ParamsError, match="data.lsun.resize"):
        parse_params({"data": {"name": "lsun", "lsun": {"resize": 50}}})
