"""Dataset readers: every source, its error messages, and the prepared-format round trip.

All fixtures (IDX files, npz, CIFAR tarballs, image folders and zips, mask pickles,
an HTTP server on 127.0.0.1) are built here in ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from wgan.cli import usable_cpus
from wgan.config import FILTERS, DataConfig, parse_params
from wgan.datasets import (
    cifar10,
    download,
    images,
    load_source,
    mnist,
    prepare,
    prepared_params,
)
from wgan.datasets.download import fetch
from wgan.datasets.images import center_crop_box
from wgan.datasets.safe_pickle import UnsafePickleError, load_pickle
from wgan.files import sha256_file
from wgan.prepared.format import read_meta
from wgan.prepared.read import make_dataset, read_numpy, training_stream
from wgan.prepared.write import ParallelSplit, Source, write_prepared

BICUBIC = Image.Resampling.BICUBIC
CELEBA_BOX = (35, 55, 143, 163)


def data_cfg(**data) -> DataConfig:
    return parse_params({"data": data}).data


def consume(source) -> dict[str, list]:
    return {split: list(examples) for split, examples in source.splits.items()}


def as_keys(examples) -> list[tuple[bytes, int | None]]:
    return sorted((x.tobytes(), y) for x, y in examples)


# --- MNIST ---

def write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(f">i{array.ndim}i", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def mnist_arrays(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {s: (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n))
            for s, n in (("train", 6), ("test", 4))}


def write_mnist_idx(raw: Path) -> dict:
    arrays = mnist_arrays()
    (raw / "mnist").mkdir(parents=True)
    for split, (pixels, labels) in mnist.IDX_FILES.items():
        write_idx(raw / "mnist" / pixels, 2051, arrays[split][0])
        write_idx(raw / "mnist" / labels, 2049, arrays[split][1])
    return arrays


def check_mnist(source, arrays) -> None:
    assert source.shape == (28, 28, 1) and source.num_classes == 10
    assert source.size_hints == {"train": 6, "test": 4}
    for split, examples in consume(source).items():
        x, y = arrays[split]
        assert [label for _, label in examples] == y.tolist()
        assert all(img.shape == (28, 28, 1) and img.dtype == np.uint8 for img, _ in examples)
        np.testing.assert_array_equal(np.stack([img[..., 0] for img, _ in examples]), x)


def test_mnist_idx_files(tmp_path):
    arrays = write_mnist_idx(tmp_path)
    source = load_source(data_cfg(mnist={"source": "local"}), tmp_path)
    assert sorted(source.sha256) == sorted(n for pair in mnist.IDX_FILES.values() for n in pair)
    check_mnist(source, arrays)


def test_mnist_npz(tmp_path):
    arrays = mnist_arrays()
    np.savez(tmp_path / "mnist.npz", x_train=arrays["train"][0], y_train=arrays["train"][1],
             x_test=arrays["test"][0], y_test=arrays["test"][1])
    source = load_source(data_cfg(mnist={"source": "local"}), tmp_path)
    assert source.sha256 == {"mnist.npz": sha256_file(tmp_path / "mnist.npz")}
    check_mnist(source, arrays)


def test_mnist_npz_missing_key(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="missing key 'y_train'"):
        load_source(data_cfg(mnist={"source": "local"}), tmp_path)


def test_mnist_idx_bad_magic(tmp_path):
    write_mnist_idx(tmp_path)
    bad = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(bad, 2051, np.zeros(4))
    with pytest.raises(ValueError, match="magic number is 2051, expected 2049") as err:
        load_source(data_cfg(mnist={"source": "local"}), tmp_path)
    assert str(bad) in str(err.value)


def test_mnist_idx_truncated(tmp_path):
    write_mnist_idx(tmp_path)
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-10]))
    source = load_source(data_cfg(mnist={"source": "local"}), tmp_path)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        list(source.splits["train"])


def test_mnist_missing_files_named(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_source(data_cfg(mnist={"source": "local"}), tmp_path)
    assert str(tmp_path / "mnist.npz") in str(err.value)
    assert str(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz") in str(err.value)


def test_mnist_bundled_split_and_pixels():
    source = load_source(data_cfg(mnist={"source": "bundled"}))
    splits = consume(source)
    assert {s: len(e) for s, e in splits.items()} == {"train": 4500, "test": 500}
    for split, per_class in (("train", 450), ("test", 50)):
        assert np.bincount([y for _, y in splits[split]]).tolist() == [per_class] * 10
    with gzip.open(mnist.bundled_csv(), "rt") as f:
        rows = [list(map(int, line.split(","))) for line in f]
    expected = sorted((bytes(r[:784]), r[784]) for r in rows)
    assert as_keys(splits["train"] + splits["test"]) == expected


# --- CIFAR-10 ---

def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def cifar_batches(n: int = 3) -> dict[str, dict]:
    rng = np.random.default_rng(1)
    return {name: {b"batch_label": b"batch", b"labels": rng.integers(0, 10, n).tolist(),
                   b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   b"filenames": [b"x.png"] * n}
            for names in cifar10.MEMBERS.values() for name in names}


def write_cifar(path: Path, batches: dict, extra: dict[str, bytes] | None = None) -> None:
    """A tarball laid out like the official one: Python pickles, protocol 2, bytes keys."""
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(batches, key=lambda n: n[-1]):  # not in batch order, like the original
            add_member(tar, name, pickle.dumps(batches[name], protocol=2))
        add_member(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({b"a": 1}, protocol=2))
        for name, payload in (extra or {}).items():
            add_member(tar, name, payload)


def test_cifar_planar_to_hwc(tmp_path):
    batches = cifar_batches()
    first = batches[cifar10.MEMBERS["train"][0]][b"data"]
    for c, value in enumerate((11, 22, 33)):  # pixel (y=5, x=7) of sample 0, per channel
        first[0, c * 1024 + 5 * 32 + 7] = value
    write_cifar(tmp_path / cifar10.ARCHIVE, batches)
    source = load_source(data_cfg(name="cifar10"), tmp_path)
    assert source.sha256 == {cifar10.ARCHIVE: sha256_file(tmp_path / cifar10.ARCHIVE)}
    splits = consume(source)
    assert [len(splits["train"]), len(splits["test"])] == [15, 3]
    assert splits["train"][0][0][5, 7].tolist() == [11, 22, 33]
    for split in ("train", "test"):
        rows = [(r, y) for m in cifar10.MEMBERS[split]
                for r, y in zip(batches[m][b"data"], batches[m][b"labels"], strict=True)]
        for (img, label), (row, y) in zip(splits[split], rows, strict=True):
            assert img.shape == (32, 32, 3) and img.dtype == np.uint8 and label == y
            np.testing.assert_array_equal(img, np.stack(row.reshape(3, 32, 32), axis=-1))


@pytest.mark.parametrize("member", ["../evil", "/etc/evil", "cifar-10-batches-py/../../evil"])
def test_cifar_refuses_unsafe_members(tmp_path, member):
    write_cifar(tmp_path / cifar10.ARCHIVE, cifar_batches(1), extra={member: b"x"})
    with pytest.raises(ValueError, match="refusing archive member") as err:
        load_source(data_cfg(name="cifar10"), tmp_path)
    assert repr(member) in str(err.value)


def test_cifar_missing_batch(tmp_path):
    batches = cifar_batches(1)
    del batches["cifar-10-batches-py/data_batch_3"]
    write_cifar(tmp_path / cifar10.ARCHIVE, batches)
    with pytest.raises(ValueError, match="data_batch_3' is missing"):
        load_source(data_cfg(name="cifar10"), tmp_path)


def test_cifar_batches_over_the_cap_are_refused_unread(tmp_path, monkeypatch):
    write_cifar(tmp_path / cifar10.ARCHIVE, cifar_batches(1))
    monkeypatch.setattr(cifar10, "MAX_FILE_BYTES", 1000)  # a batch of one image is ~3.4 KB
    with pytest.raises(ValueError, match=r"member 'cifar-10-batches-py/data_batch_1' is \d+ "
                                         "bytes, more than the 1000-byte cap for a pickle"):
        load_source(data_cfg(name="cifar10"), tmp_path)


def test_cifar_malicious_batch_not_run(tmp_path):
    marker = tmp_path / "pwned"
    batches = cifar_batches(1)
    write_cifar(tmp_path / cifar10.ARCHIVE, {}, extra={
        **{n: pickle.dumps(b, protocol=2) for n, b in batches.items()},
        cifar10.MEMBERS["train"][0]: pickle.dumps(Exploit(f"touch {marker}"), protocol=2),
    })
    source = load_source(data_cfg(name="cifar10"), tmp_path)
    with pytest.raises(UnsafePickleError, match="data_batch_1: refusing to unpickle posix.system"):
        list(source.splits["train"])
    assert not marker.exists()


# --- downloads ---

@pytest.fixture
def http_root(tmp_path):
    """A directory served over HTTP on 127.0.0.1 while the test runs."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_fetch_verifies_and_reuses(http_root, tmp_path):
    root, url = http_root
    payload = os.urandom(3 << 20)  # several read chunks
    (root / "blob.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    dest = tmp_path / "raw" / "blob.bin"
    assert fetch(f"{url}/blob.bin", dest, digest, "blob") == dest
    assert dest.read_bytes() == payload and sha256_file(dest) == digest
    # A verified file is reused: this URL would fail.
    assert fetch("http://127.0.0.1:9/none", dest, digest, "blob") == dest


def test_fetch_wrong_checksum_leaves_nothing(http_root, tmp_path):
    root, url = http_root
    (root / "blob.bin").write_bytes(b"payload")
    dest = tmp_path / "raw" / "blob.bin"
    with pytest.raises(ValueError) as err:
        fetch(f"{url}/blob.bin", dest, "0" * 64, "blob")
    assert hashlib.sha256(b"payload").hexdigest() in str(err.value) and "0" * 64 in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_fetch_existing_file_with_wrong_checksum(tmp_path):
    dest = tmp_path / "blob.bin"
    dest.write_bytes(b"old")
    with pytest.raises(ValueError, match=f"{dest} has sha256 {hashlib.sha256(b'old').hexdigest()}"):
        fetch("http://127.0.0.1:9/none", dest, "0" * 64, "blob")
    assert dest.read_bytes() == b"old"


def test_fetch_unreachable_names_dest(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dest = tmp_path / "raw" / "mnist.npz"
    url = f"http://127.0.0.1:{port}/mnist.npz"
    with pytest.raises(FileNotFoundError) as err:
        fetch(url, dest, "0" * 64, "MNIST")
    assert f"put it at {dest}" in str(err.value) and url in str(err.value)
    assert list(dest.parent.iterdir()) == []


def test_fetch_interrupted_leaves_nothing(http_root, tmp_path, monkeypatch):
    root, url = http_root
    (root / "blob.bin").write_bytes(b"payload")

    def interrupted(url, tmp, what):
        tmp.write_bytes(b"part")
        raise KeyboardInterrupt

    monkeypatch.setattr(download, "_download", interrupted)
    dest = tmp_path / "raw" / "blob.bin"
    with pytest.raises(KeyboardInterrupt):
        fetch(f"{url}/blob.bin", dest, hashlib.sha256(b"payload").hexdigest(), "blob")
    assert list(dest.parent.iterdir()) == []


def test_mnist_download_source(http_root, tmp_path, monkeypatch):
    root, url = http_root
    arrays = mnist_arrays()
    np.savez(root / "mnist.npz", x_train=arrays["train"][0], y_train=arrays["train"][1],
             x_test=arrays["test"][0], y_test=arrays["test"][1])
    monkeypatch.setattr(mnist, "URL", f"{url}/mnist.npz")
    monkeypatch.setattr(mnist, "SHA256", sha256_file(root / "mnist.npz"))
    raw = tmp_path / "raw"
    check_mnist(load_source(data_cfg(mnist={"source": "download"}), raw), arrays)
    assert (raw / "mnist.npz").is_file()


# --- images: CelebA and folders ---

def photo(seed: int, size=(178, 218)) -> Image.Image:
    """A smooth random RGB picture (compresses like a photo)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (7, 6, 3), dtype=np.uint8)).resize(size, BICUBIC)


def encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def palette_image() -> Image.Image:
    img = Image.new("P", (178, 218), 3)
    img.putpalette([0, 0, 0] * 3 + [200, 100, 50] + [0, 0, 0] * 252)
    return img


# Expected RGB of each constant-colour file after conversion (JPEG within +-2).
MODE_COLOURS = {
    "000003.jpg": (Image.new("L", (178, 218), 77), (77, 77, 77)),
    "000004.png": (Image.new("RGBA", (178, 218), (10, 20, 30, 128)), (10, 20, 30)),
    "000005.jpg": (Image.new("CMYK", (178, 218), (0, 255, 0, 0)), (255, 0, 255)),
    "000006.png": (palette_image(), (200, 100, 50)),
    "000007.png": (Image.fromarray(np.full((218, 178), 51000, np.uint16)), (199, 199, 199)),
}
SKIPPED = {
    "000008.jpg": "not a readable image",
    "000009.jpg": "truncated",
    "000010.png": "crop 108 is larger than the 50x50 image",
    "000011.jpg": "not listed in list_eval_partition.txt",
    "notes.txt": "not an image file",
}


def celeba_files() -> dict[str, bytes]:
    jpeg = encoded(photo(1), "JPEG")
    files = {
        "000001.jpg": jpeg,
        "000002.png": encoded(photo(2), "PNG"),
        **{n: encoded(img, n[-3:].replace("jpg", "jpeg")) for n, (img, _) in MODE_COLOURS.items()},
        "000008.jpg": b"this is not a jpeg\n" * 50,
        "000009.jpg": jpeg[: len(jpeg) * 6 // 10],
        "000010.png": encoded(photo(3, (50, 50)), "PNG"),
        "000011.jpg": jpeg,
        "notes.txt": b"hello",
    }
    return files


PARTITION = "".join(f"{n:06d}.jpg 0\n" for n in (1, 3, 5, 8, 9)) + (
    "000002.png 2\n000004.png 1\n000006.png 0\n000007.png 1\n000010.png 0\n")


def make_celeba(base: Path, as_zip: bool) -> Path:
    base.mkdir(parents=True)
    (base / "list_eval_partition.txt").write_text(PARTITION)
    files = celeba_files()
    if as_zip:
        with zipfile.ZipFile(base / "img_align_celeba.zip", "w") as zf:
            for name, payload in files.items():
                zf.writestr(f"img_align_celeba/{name}", payload)
    else:
        (base / "img_align_celeba").mkdir()
        for name, payload in files.items():
            (base / "img_align_celeba" / name).write_bytes(payload)
    return base


def reference(payload: bytes, box=CELEBA_BOX, size=64, resample=BICUBIC) -> np.ndarray:
    img = Image.open(io.BytesIO(payload))
    return np.asarray((img.crop(box) if box else img).resize((size, size), resample))


def test_center_crop_box():
    assert center_crop_box(178, 218, 108) == CELEBA_BOX
    assert center_crop_box(5, 4, 3) == (1, 0, 4, 3)  # odd margins round down


@pytest.mark.parametrize("as_zip", [False, True], ids=["dir", "zip"])
def test_celeba(tmp_path, as_zip):
    base = make_celeba(tmp_path / "celeba", as_zip)
    source = load_source(data_cfg(name="celeba", workers=2, celeba={"path": str(base)}))
    assert source.shape == (64, 64, 3) and source.num_classes is None
    splits = consume(source)
    files = celeba_files()
    train, test = [x for x, _ in splits["train"]], [x for x, _ in splits["test"]]
    assert all(x.shape == (64, 64, 3) and x.dtype == np.uint8 for x in train + test)
    assert all(y is None for _, y in splits["train"] + splits["test"])
    # Sorted order; partition: 0 and 1 -> train, 2 -> test.
    assert len(train) == 6 and len(test) == 1
    np.testing.assert_array_equal(train[0], reference(files["000001.jpg"]))
    np.testing.assert_array_equal(test[0], reference(files["000002.png"]))
    for x, (_, colour) in zip(train[1:], MODE_COLOURS.values(), strict=True):
        np.testing.assert_allclose(x.reshape(-1, 3), np.tile(colour, (64 * 64, 1)), atol=2)
    report = source.report
    assert report["skipped"] == len(SKIPPED)
    reasons = {Path(f["file"]).name: f["reason"] for f in report["files"]}
    assert reasons.keys() == SKIPPED.keys()
    for name, expected in SKIPPED.items():
        assert expected in reasons[name], (name, reasons[name])
    root = "img_align_celeba.zip" if as_zip else "img_align_celeba"
    assert set(source.sha256) == {"list_eval_partition.txt", f"{root}[train]", f"{root}[test]"}


def test_celeba_missing_names_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_source(data_cfg(name="celeba", celeba={"path": str(tmp_path)}))
    for expected in ("img_align_celeba", "img_align_celeba.zip"):
        assert str(tmp_path / expected) in str(err.value)


@pytest.mark.parametrize("resample", FILTERS)
def test_folder_without_crop(tmp_path, resample):
    """crop: null resizes the whole picture; JPEG may decode at reduced scale (draft)."""
    png, jpeg = encoded(photo(2), "PNG"), encoded(photo(1), "JPEG")
    (tmp_path / "a.png").write_bytes(png)
    (tmp_path / "b.JPG").write_bytes(jpeg)
    cfg = data_cfg(name="folder", folder={"path": str(tmp_path), "crop": None, "filter": resample,
                                          "test_fraction": 0.0})
    out = [x for x, _ in consume(load_source(cfg))["train"]]
    filt = Image.Resampling[resample.upper()]
    np.testing.assert_array_equal(out[0], reference(png, box=None, resample=filt))
    diff = np.abs(out[1].astype(int) - reference(jpeg, box=None, resample=filt))
    assert diff.mean() < 2


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_folder_photos_come_out_upright_by_their_exif_orientation(tmp_path, orientation, fmt):
    """Phones store portraits sideways with an EXIF Orientation tag; viewers turn them."""
    pixels = np.zeros((32, 48, 3), np.uint8)  # stored landscape: left third dark, rest light
    pixels[:, 16:] = 230
    pixels[:8, 16:24] = (200, 30, 30)  # and a red mark near the top
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, exif=exif)
    (tmp_path / f"p.{fmt.lower()}").write_bytes(buf.getvalue())
    # resize 28 of crop 32 needs the full JPEG scale (16 would decode at 1/2, other pixels)
    cfg = data_cfg(name="folder", folder={"path": str(tmp_path), "crop": 32, "resize": 28,
                                          "test_fraction": 0.0})
    (out, _), = consume(load_source(cfg))["train"]
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue())))
    w, h = upright.size
    expected = np.asarray(upright.crop(center_crop_box(w, h, 32)).resize((28, 28), BICUBIC))
    assert np.abs(out.astype(int) - expected).max() <= 1
    if orientation != 1:  # the test can tell: the stored orientation looks different
        stored = reference(buf.getvalue(), box=center_crop_box(48, 32, 32), size=28)
        assert np.abs(stored.astype(int) - expected).max() > 100


PLAIN_JPEGS = {  # name: (bytes, crop); every one decodes at full scale
    "420": (encoded(photo(1), "JPEG", quality=90), 108),
    "422": (encoded(photo(2), "JPEG", quality=90, subsampling=1), 108),
    "444": (encoded(photo(3), "JPEG", quality=95, subsampling=0), 108),
    "progressive": (encoded(photo(4), "JPEG", quality=75, progressive=True), 108),
    "grey": (encoded(photo(5).convert("L"), "JPEG"), 108),
    "odd-margins": (encoded(photo(6, (177, 219)), "JPEG"), 100),
    "no-crop": (encoded(photo(7, (120, 90)), "JPEG"), None),
}


@pytest.mark.parametrize("name", PLAIN_JPEGS)
def test_plain_jpegs_skip_pillow_with_pillows_pixels(name):
    """Plain JPEGs decode through libjpeg-turbo directly (no Pillow header parser): the
    sample must be byte-identical to Pillow's decode + crop + resize."""
    data, crop = PLAIN_JPEGS[name]
    recipe = images.Geometry(crop, 64, BICUBIC)
    sample = images._plain_jpeg_sample(data, recipe)
    assert isinstance(sample, bytes)  # the fast path took it
    img = Image.open(io.BytesIO(data)).convert("RGB")
    box = center_crop_box(*img.size, crop) if crop else None
    expected = reference(encoded(img, "PNG"), box=box)  # lossless: Pillow's decoded pixels
    np.testing.assert_array_equal(np.frombuffer(sample, np.uint8).reshape(64, 64, 3), expected)


def with_exif(data: bytes) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(Image.open(io.BytesIO(data)), "JPEG", exif=exif)


def with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """``data`` with one more header segment right after the start-of-image marker."""
    return data[:2] + bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload \
        + data[2:]


XMP_TURNED = b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta><rdf:RDF><rdf:Description>" \
    b"<tiff:Orientation>6</tiff:Orientation></rdf:Description></rdf:RDF></x:xmpmeta>"


def test_pillow_turns_by_xmp_orientation_too():
    """Why XMP goes to Pillow: without EXIF, Pillow takes the orientation from XMP."""
    data = with_segment(PLAIN_JPEGS["420"][0], 0xE1, XMP_TURNED)
    assert images._upright(Image.open(io.BytesIO(data))) == Image.Transpose.ROTATE_270


@pytest.mark.parametrize("name, data, crop", [
    ("exif", with_exif(PLAIN_JPEGS["420"][0]), 108),
    ("xmp", with_segment(PLAIN_JPEGS["420"][0], 0xE1, XMP_TURNED), 108),
    ("multi-picture", with_segment(PLAIN_JPEGS["420"][0], 0xE2, b"MPF\0MM\0*"), 108),
    # Pillow's parser refuses these (libjpeg-turbo would not): they must stay refused
    ("short JFIF", with_segment(PLAIN_JPEGS["grey"][0][:2] + PLAIN_JPEGS["grey"][0][20:],
                                0xE0, b"JFIF\0"), 108),
    ("short Adobe", with_segment(PLAIN_JPEGS["420"][0], 0xEE, b"Adobe"), 108),
    ("cmyk", encoded(photo(1).convert("CMYK"), "JPEG"), 108),
    ("scaled decode", encoded(photo(1), "JPEG"), None),  # 178x218 -> 64: Pillow drafts at 1/2
    ("truncated", PLAIN_JPEGS["420"][0][:3000], 108),
    ("png", encoded(photo(1), "PNG"), 108),
])
def test_other_images_take_the_pillow_path(name, data, crop):
    assert images._plain_jpeg_sample(data, images.Geometry(crop, 64, BICUBIC)) is None


def test_corrupt_jpegs_never_raise_and_agree_with_pillow_when_accepted():
    """Untrusted bytes: randomly damaged JPEGs either go to Pillow (None), are refused with
    a reason, or decode to exactly what the Pillow path gives for the same bytes."""
    rng = np.random.default_rng(0)
    data = PLAIN_JPEGS["420"][0]
    recipe = images.Geometry(108, 64, BICUBIC)
    accepted = 0
    for i in range(400):
        damaged = bytearray(data)
        for pos in rng.integers(0, 700 if i % 2 else len(data), rng.integers(1, 20)):
            damaged[pos] = rng.integers(0, 256)
        damaged = bytes(damaged[: rng.integers(3, len(data))] if i % 5 == 0 else damaged)
        sample = images._plain_jpeg_sample(damaged, recipe)
        if isinstance(sample, bytes):
            accepted += 1
            with Image.open(io.BytesIO(damaged)) as img:
                assert images._crop_resize(img, recipe) == sample, i
    assert accepted > 0  # some damage (inside the entropy-coded data) goes unnoticed


def test_jpegs_over_the_pixel_cap_are_refused_by_their_header(monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 178 * 218 - 1)
    recipe = images.Geometry(108, 64, BICUBIC)
    assert images._plain_jpeg_sample(PLAIN_JPEGS["420"][0], recipe) == \
        f"178x218 pixels, more than the {178 * 218 - 1}-pixel cap"


def test_full_scale_agrees_with_pillows_draft():
    for w, h in [(64, 64), (127, 300), (128, 128), (178, 218), (255, 256), (513, 129)]:
        data = encoded(Image.new("RGB", (w, h)), "JPEG")
        for want in [(32, 32), (64, 64), (64, 100), (106, 130), (200, 50)]:
            img = Image.open(io.BytesIO(data))
            drafted = img.draft(None, want)
            pillow_full = drafted is None or drafted[1][2] == w
            assert images._full_scale(w, h, want) == pillow_full, (w, h, want)


def test_folder_hash_split_is_stable(tmp_path):
    """A file's split depends on its name only: adding files or subfolders never moves it."""
    def write(directory: Path, names: list[str], channel: int) -> None:
        for i, name in enumerate(names):
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            colour = [0, 0, 0]
            colour[channel] = 10 * i + 5
            Image.new("RGB", (8, 8), tuple(colour)).save(directory / name)

    def split_colours(directory: Path) -> dict[str, set]:
        cfg = data_cfg(name="folder", folder={"path": str(directory), "crop": None, "resize": 16,
                                              "test_fraction": 0.5})
        return {s: {tuple(x[0, 0]) for x, _ in e} for s, e in consume(load_source(cfg)).items()}

    base = [f"img{i:02d}.png" for i in range(16)]
    write(tmp_path / "a", base, 0)
    write(tmp_path / "b", base, 0)
    write(tmp_path / "b", [f"sub/dir/extra{i}.png" for i in range(8)], 1)
    a, b = split_colours(tmp_path / "a"), split_colours(tmp_path / "b")
    assert a["train"] and a["test"]
    assert sum(map(len, b.values())) == 24
    for split in ("train", "test"):
        assert a[split] == {c for c in b[split] if c[1] == 0}


def test_folder_whose_images_are_all_skipped_names_the_reasons_and_leaves_nothing(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(3):
        Image.new("RGB", (40, 50)).save(folder / f"{i}.png")
    cfg = data_cfg(name="folder", folder={"path": str(folder), "crop": 100, "resize": 16,
                                          "test_fraction": 0.0})
    with pytest.raises(ValueError, match=r"pics\[train\]: all 3 images were skipped, e\.g\. "
                                         r"0\.png: crop 100 is larger than the 40x50 image"):
        write_prepared(load_source(cfg), tmp_path / "out", shards=2, params={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics"]


def test_folder_without_a_train_image_names_the_test_fraction(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(2):  # both names hash into the test split at 0.9
        Image.new("RGB", (16, 16)).save(folder / f"{i}.png")
    cfg = data_cfg(name="folder", folder={"path": str(folder), "crop": None, "resize": 16,
                                          "test_fraction": 0.9})
    with pytest.raises(ValueError, match=r"all 2 images fell into the test split \(by "
                                         r"data\.folder\.test_fraction\); lower"):
        load_source(cfg)


def test_folder_zip_and_missing(tmp_path):
    with zipfile.ZipFile(tmp_path / "pics.zip", "w") as zf:
        zf.writestr("deep/x/one.PNG", encoded(photo(4, (40, 30)), "PNG"))
    cfg = data_cfg(name="folder", folder={"path": str(tmp_path / "pics.zip"), "crop": 30,
                                          "resize": 16, "test_fraction": 0.0})
    assert [x.shape for x, _ in consume(load_source(cfg))["train"]] == [(16, 16, 3)]
    missing = data_cfg(name="folder", folder={"path": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load_source(missing)


# --- hostile image folders and zips ---

@contextlib.contextmanager
def watching(fifo: Path):
    """Yield a list that records each time a reader was found blocked on ``fifo`` (the
    bug these tests guard against). Such a reader is released (it reads an empty file),
    so the test fails on that list instead of hanging. (A writer's non-blocking open
    succeeds only while a reader has the FIFO open.)"""
    blocked: list[bool] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                blocked.append(True)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield blocked
    finally:
        stop.set()
        thread.join()


def png_declaring(w: int, h: int) -> bytes:
    """A grey PNG whose header says ``w`` x ``h`` but that holds one row of pixels: tiny,
    and refused as truncated by any decoder that gets that far."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + \
        chunk(b"IDAT", zlib.compress(b"\0" * (w + 1))) + chunk(b"IEND", b"")


def jpeg_declaring(w: int, h: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is patched to say ``w`` x ``h``."""
    data = bytearray(PLAIN_JPEGS["420"][0])
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


def folder_cfg(path: Path, **extra) -> DataConfig:
    return data_cfg(name="folder", folder={"path": str(path), "crop": None, "resize": 16,
                                           "test_fraction": 0.0}, **extra)


def report_of(out: Path) -> dict[str, str]:
    report = json.loads((out / "meta.json").read_text())["report"]
    reasons = {f["file"]: f["reason"] for f in report["files"]}
    assert report["skipped"] == len(reasons)
    return reasons


def test_folders_read_regular_files_and_links_that_stay_inside(tmp_path, monkeypatch):
    """prepare, for real (a worker process): a link to /etc/passwd, to /dev/zero or to a
    picture outside the folder is not read, nor is a FIFO, a socket or a link to a
    directory; each is skipped with its reason. A link inside the folder is a sample."""
    secret = tmp_path / "private.png"
    secret.write_bytes(encoded(photo(9, (16, 16)), "PNG"))
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    for name, seed in (("a.png", 1), ("sub/b.png", 2)):
        (folder / name).write_bytes(encoded(photo(seed, (16, 16)), "PNG"))
    (folder / "inside.png").symlink_to("sub/b.png")
    (folder / "passwd.png").symlink_to("/etc/passwd")
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "outside.png").symlink_to(secret)
    (folder / "escape.png").symlink_to("../private.png")
    (folder / "broken.png").symlink_to("nowhere.png")
    (folder / "subdir").symlink_to("sub")
    os.mkfifo(folder / "pipe.png")
    monkeypatch.chdir(folder)  # a socket's path must be short
    server = socket.socket(socket.AF_UNIX)
    server.bind("sock.png")
    out = tmp_path / "prepared"
    with server, watching(folder / "pipe.png") as blocked:
        meta = prepare(folder_cfg(folder, workers=1), out)
    assert not blocked
    outside = "a symbolic link that leads outside the image folder (not followed; copy the " \
              "file in instead)"
    assert report_of(out) == {
        "broken.png": "a broken symbolic link",
        "escape.png": outside,
        "outside.png": outside,
        "passwd.png": outside,
        "pipe.png": "a FIFO (named pipe), not a regular file",
        "sock.png": "a socket, not a regular file",
        "subdir": "a symbolic link to a directory (not followed)",
        "zero.png": outside,
    }
    assert meta.counts == {"train": 3}  # a.png, inside.png, sub/b.png
    pixels = [x.tobytes() for xs, _ in read_numpy(out, "train") for x in xs]
    b = reference((folder / "sub/b.png").read_bytes(), box=None, size=16).tobytes()
    assert pixels.count(b) == 2
    assert reference(secret.read_bytes(), box=None, size=16).tobytes() not in pixels
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pics", "prepared", "private.png"]


def test_a_file_swapped_after_the_listing_is_refused_not_followed(tmp_path):
    """Between the listing and the read, a.png becomes a FIFO, b.png a link to a file
    outside and the directory sub a link to one outside: none is followed or waited on."""
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("a.png", "b.png", "c.png", "sub/d.png"):
        for root in (folder, elsewhere):
            (root / name).parent.mkdir(exist_ok=True)
            (root / name).write_bytes(encoded(photo(3, (16, 16)), "PNG"))
    source = load_source(folder_cfg(folder))
    (folder / "a.png").unlink()
    os.mkfifo(folder / "a.png")
    (folder / "b.png").unlink()
    (folder / "b.png").symlink_to(elsewhere / "b.png")
    (folder / "sub/d.png").unlink()
    (folder / "sub").rmdir()
    (folder / "sub").symlink_to(elsewhere / "sub")
    with watching(folder / "a.png") as blocked:
        assert len(consume(source)["train"]) == 1  # c.png
    assert not blocked
    reasons = {f["file"]: f["reason"] for f in source.report["files"]}
    assert reasons == {"a.png": "a FIFO (named pipe), not a regular file",
                       "b.png": "a symbolic link, not followed",
                       "sub/d.png": "its directory 'sub' is a symbolic link or no directory "
                                    "(not followed)"}


def traced_peak(run) -> tuple[int, BaseException | None]:
    """The peak of Python-traced memory (numpy's and zipfile's buffers included) while
    ``run()`` runs, and what it raised."""
    tracemalloc.start()
    try:
        run()
        error = None
    except Exception as err:  # the caller checks it
        error = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


def zip_of_zeros(path: Path, members: dict[str, bytes], zeros: dict[str, int]) -> None:
    """A zip of ``members`` and, streamed, of members of ``zeros[name]`` MiB of zeros
    (deflated ~230:1: the test never holds more than 1 MiB of one)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
        for name, mib in zeros.items():
            with zf.open(name, "w") as f:
                for _ in range(mib):
                    f.write(bytes(2**20))


def lie_about_size(path: Path, member: str, size: int) -> None:
    """Patch the central directory of the zip ``path`` so ``member`` declares ``size``."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46:entry + 46 + len(member)] != member.encode():
        entry = data.index(b"PK\x01\x02", entry + 4)
    data[entry + 24:entry + 28] = struct.pack("<I", size)
    path.write_bytes(bytes(data))


def test_zip_bombs_are_skipped_unread_in_bounded_memory(tmp_path):
    """A 1 GiB member is refused by its declared size before a byte is inflated; a member
    whose header understates its size is read only as far as it says, then fails its
    CRC. Either way the reader's memory stays far below the member's size."""
    path = tmp_path / "pics.zip"
    zip_of_zeros(path, {"good.png": encoded(photo(4, (16, 16)), "PNG")},
                 {"bomb.png": 1024, "liar.png": 128})
    lie_about_size(path, "liar.png", 1000)
    assert path.stat().st_size < 8 * 2**20
    source = load_source(folder_cfg(path))
    splits: dict = {}
    peak, error = traced_peak(lambda: splits.update(consume(source)))
    print(f"zip bomb: peak traced memory {peak / 2**20:.1f} MiB")
    assert error is None and len(splits["train"]) == 1
    assert source.report["files"] == [
        {"file": "bomb.png", "reason": f"declares {2**30} bytes, more than the "
                                       f"{images.MAX_FILE_BYTES}-byte cap for an image file"},
        {"file": "liar.png", "reason": "cannot read the file (Bad CRC-32 for file 'liar.png')"},
    ]
    assert peak < 16 * 2**20  # the members inflate to 1024 and 128 MiB


def test_images_over_the_pixel_cap_are_skipped_before_decoding(tmp_path):
    """Both decoders: an image's header is checked against MAX_PIXELS before anything
    is decoded, also between the cap and Pillow's own limit (where Pillow only warns)
    and above twice it (where Pillow raises)."""
    folder = tmp_path / "pics"
    folder.mkdir()
    (folder / "ok.png").write_bytes(encoded(photo(5, (16, 16)), "PNG"))
    (folder / "wide.png").write_bytes(png_declaring(9000, 9000))  # 81 M: Pillow warns only
    (folder / "huge.png").write_bytes(png_declaring(20000, 20000))  # 400 M: Pillow raises
    (folder / "huge.jpg").write_bytes(jpeg_declaring(65000, 65000))
    assert 9000**2 > images.MAX_PIXELS and 9000**2 < Image.MAX_IMAGE_PIXELS
    source = load_source(folder_cfg(folder))
    assert len(consume(source)["train"]) == 1
    cap = f"more than the {images.MAX_PIXELS}-pixel cap"
    reasons = {f["file"]: f["reason"] for f in source.report["files"]}
    assert reasons["wide.png"] == f"9000x9000 pixels, {cap}"
    assert reasons["huge.jpg"] == f"65000x65000 pixels, {cap}"
    assert reasons["huge.png"].startswith(f"{cap} (Image size (400000000 pixels)")


def test_celeba_partition_file_must_be_a_regular_file_inside(tmp_path):
    base = make_celeba(tmp_path / "celeba", as_zip=False)
    partition = base / "list_eval_partition.txt"
    partition.unlink()
    os.mkfifo(partition)
    with watching(partition) as blocked, pytest.raises(ValueError) as err:
        load_source(data_cfg(name="celeba", celeba={"path": str(base)}))
    assert not blocked
    assert str(err.value) == (f"{partition}: cannot read it (a FIFO (named pipe), not a "
                              "regular file); replace it with CelebA's list_eval_partition.txt")
    partition.unlink()
    (tmp_path / "elsewhere.txt").write_text(PARTITION)
    partition.symlink_to(tmp_path / "elsewhere.txt")
    with pytest.raises(ValueError, match="leads outside the folder"):
        load_source(data_cfg(name="celeba", celeba={"path": str(base)}))


def test_a_fifo_as_the_folder_path_is_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pics.zip")
    with watching(tmp_path / "pics.zip") as blocked, pytest.raises(FileNotFoundError) as err:
        load_source(folder_cfg(tmp_path / "pics.zip"))
    assert not blocked
    assert "is not a directory or a .zip" in str(err.value)


# --- masks and the restricted unpickler ---

class Exploit:
    """Unpickling this would run ``command`` in a shell."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class EvalExploit(Exploit):
    def __reduce__(self):
        return eval, (f"__import__('os').system({self.command!r})",)


def mask_cfg(path: Path, length: int = 16) -> DataConfig:
    return data_cfg(name="mask", mask={"path": str(path), "length": length, "test_fraction": 0.25})


def dump(path: Path, obj, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


RNG = np.random.default_rng(2)
MASKS = (RNG.random((8, 16)) < 0.5).astype(np.float32)
MASK_FORMS = {
    "N,L": MASKS,
    "N,L,1": MASKS[..., None],
    "N,L short": MASKS[:, :10],
    "list of varying": [MASKS[i, : 6 + i] for i in range(8)],
    "tuple of lists": tuple(MASKS[i, : 16 - i].tolist() for i in range(8)),
}


@pytest.mark.parametrize("form", MASK_FORMS)
def test_mask_forms(tmp_path, form):
    obj = MASK_FORMS[form]
    source = load_source(mask_cfg(dump(tmp_path / "m.pkl", obj)))
    assert source.shape == (16,) and source.size_hints == {"train": 6, "test": 2}
    expected = np.zeros((8, 16), np.uint8)
    for i, row in enumerate(obj):
        row = np.asarray(row).reshape(-1)
        expected[i, : len(row)] = row
    splits = consume(source)
    assert all(x.dtype == np.uint8 and x.shape == (16,) for x, _ in splits["train"])
    assert as_keys(splits["train"] + splits["test"]) == as_keys((r, None) for r in expected)


@pytest.mark.parametrize("obj, message", [
    (np.where(np.arange(48).reshape(3, 16) == 21, 0.5, 1.0), "sample 1 position 5 has value 0.5"),
    ([np.zeros(4), np.zeros(20)], "sample 1 has length 20 > data.mask.length=16"),
    (np.zeros((2, 3, 4)), "expected an array (N, L) or (N, L, 1), got (2, 3, 4)"),
    ({"a": 1}, "expected an ndarray"),
])
def test_mask_errors(tmp_path, obj, message):
    path = dump(tmp_path / "m.pkl", obj)
    with pytest.raises(ValueError) as err:
        load_source(mask_cfg(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_mask_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"not found at {tmp_path / 'nope.pkl'}"):
        load_source(mask_cfg(tmp_path / "nope.pkl"))


@pytest.mark.parametrize("exploit, name",
                         [(Exploit, "posix.system"), (EvalExploit, "(__)?builtin(s|__).eval")])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_malicious_pickle_not_run(tmp_path, exploit, name, protocol):
    marker = tmp_path / "pwned"
    path = dump(tmp_path / "m.pkl", [np.zeros(3), exploit(f"touch {marker}")], protocol)
    with pytest.raises(UnsafePickleError, match=f"{path}: refusing to unpickle {name}"):
        load_source(mask_cfg(path))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_safe_pickle_reads_numpy_and_builtins(tmp_path, protocol):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "f": np.asfortranarray(np.eye(2)),
           "s": np.float32(1.5), "d": np.dtype("int16"), "b": [b"", b"xy"], "set": {1, 2},
           "ba": bytearray(b"q"), "c": 1 + 2j, "o": np.array([None, 1], dtype=object)}
    got = load_pickle(dump(tmp_path / "ok.pkl", obj, protocol))
    assert got.keys() == obj.keys()
    for key in ("a", "f", "o"):
        np.testing.assert_array_equal(got[key], obj[key])
    assert [got[k] for k in ("s", "d", "b", "set", "ba", "c")] == [
        obj[k] for k in ("s", "d", "b", "set", "ba", "c")]


class Rot13:
    def __reduce__(self):
        return codecs.encode, ("a", "rot13")


def test_safe_pickle_codecs_only_latin1():
    """``_codecs.encode`` is admitted for protocol-2 bytes, but only as latin-1."""
    assert load_pickle(io.BytesIO(pickle.dumps(b"\xff", protocol=2))) == b"\xff"
    with pytest.raises(ValueError, match="'rot13' is not allowed"):
        load_pickle(io.BytesIO(pickle.dumps(Rot13(), protocol=2)), name="x")


# --- hostile pickles ---

def shared_lists(levels: int = 10, width: int = 10) -> bytes:
    """~270 bytes that stand for ``width ** levels`` elements: each list holds ``width``
    references (memo gets) to the one before."""
    out = bytearray(b"\x80\x02]q\x00(" + b"K\x00" * width + b"e")
    for i in range(1, levels + 1):
        out += b"]q" + bytes([i]) + b"(" + (b"h" + bytes([i - 1])) * width + b"e"
    return bytes(out + b".")


def nested_lists(depth: int) -> bytes:
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


class Reduced:
    """Pickles as ``func(*args)`` with ``state``: how a hostile file is written."""

    def __init__(self, func, args, state=None) -> None:
        self.reduced = (func, args) if state is None else (func, args, state)

    def __reduce__(self):
        return self.reduced


def cyclic() -> list:
    loop: list = [np.zeros(2)]
    loop.append(loop)
    return loop


ARRAY_LIE = Reduced(np.ndarray.__reduce__(np.zeros(0))[0], (np.ndarray, (0,), b"b"),
                    (1, (2**30,), np.dtype(np.float32), False, b""))
HOSTILE_PICKLES = {  # what the C unpickler (+ np.asarray) did with each: see issue 15
    "memo index 2**26 (1.6 GB)": (b"\x80\x02Nr" + (2**26).to_bytes(4, "little") + b".",
                                  "expected an ndarray (N, L) or (N, L, 1) or a list of 1-D "
                                  "masks, got NoneType"),
    "bytearray(2**30)": (b"\x80\x02c__builtin__\nbytearray\nJ\x00\x00\x00\x40\x85R.",
                         "refusing this pickle: it would take more than 16777480 bytes of "
                         "memory (8 x its 33 bytes + 16777216)"),
    "10**10 shared elements (minutes)": (shared_lists(), "refusing this pickle: counting "
                                         "shared references as often as they appear, it "
                                         "holds more than 65814 elements"),
    "depth 10**6 (numpy's message)": (nested_lists(10**6), "refusing this pickle: it would "
                                      "take more than"),
    "depth 33": (nested_lists(33), "refusing this pickle: it nests deeper than 32 levels"),
    "cycle": (pickle.dumps(cyclic()), "refusing this pickle: it contains itself"),
    "5000-key dict": (pickle.dumps({i: 0.0 for i in range(5000)}),
                      "refusing this pickle: a dict or set of more than 4096 entries"),
    "array shape lie": (pickle.dumps(ARRAY_LIE, protocol=2),
                        "refusing this pickle: array data of 0 bytes where shape "
                        "(1073741824,) of float32 needs 4294967296 bytes"),
    "ndarray((2**30,))": (pickle.dumps(Reduced(np.ndarray, ((2**30,),))),
                          "refusing this pickle: calling ndarray is not allowed"),
    "LONG4 of 2**31 bytes": (b"\x80\x02\x8b\xff\xff\xff\x7f.", "not a readable pickle "
                             "(truncated: 2147483647 bytes wanted at byte 7 of 8)"),
    "BINBYTES8 of 2**60 bytes": (b"\x80\x04\x8e" + (2**60).to_bytes(8, "little") + b".",
                                 f"truncated: {2**60} bytes wanted at byte 11 of 12"),
    "1 shared 1-value mask x 10**5": (pickle.dumps([np.ones(1, np.float32)] * 10**5),
                                      "100000 masks padded to data.mask.length=8192 would "
                                      "take 819200000 bytes, more than 64 x the file's"),
}


@pytest.mark.parametrize("name", HOSTILE_PICKLES)
def test_hostile_mask_pickles_fail_with_one_line_in_bounded_memory(tmp_path, name):
    data, expected = HOSTILE_PICKLES[name]
    path = tmp_path / "m.pkl"
    path.write_bytes(data)
    peak, error = traced_peak(lambda: load_source(mask_cfg(path, length=8192)))
    print(f"{name}: {len(data)} bytes, peak traced memory {peak / 2**20:.1f} MiB")
    assert isinstance(error, ValueError)
    message = str(error)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    assert peak < 64 * 2**20


def test_pickles_over_the_size_cap_or_not_regular_are_not_read(tmp_path):
    huge = tmp_path / "huge.pkl"
    with open(huge, "wb") as f:
        f.truncate(5 * 2**30)  # sparse: no disk used
    peak, error = traced_peak(lambda: load_source(mask_cfg(huge)))
    assert str(error) == (
        f"{huge}: cannot read the mask pickle ({5 * 2**30} bytes, more than the "
        f"{2**30}-byte cap for a mask pickle); put a regular file there or set data.mask.path")
    assert peak < 2**20
    fifo = tmp_path / "fifo.pkl"
    os.mkfifo(fifo)
    with watching(fifo) as blocked, pytest.raises(ValueError) as err:
        load_source(mask_cfg(fifo))
    assert not blocked
    assert "(a FIFO (named pipe), not a regular file)" in str(err.value)
    with open(huge, "rb") as f:
        peak, error = traced_peak(lambda: load_pickle(f))
    assert str(error) == f"{huge}: refusing this pickle: {5 * 2**30} bytes, more than the " \
        f"{2**30}-byte cap for a pickle. If you trust this file, re-save its data as plain " \
        "numpy arrays"
    assert peak < 2**20


def test_a_hostile_cifar_batch_names_its_member(tmp_path):
    batches = cifar_batches(1)
    name = cifar10.MEMBERS["test"][0]
    write_cifar(tmp_path / cifar10.ARCHIVE, {}, extra={
        **{n: pickle.dumps(b, protocol=2) for n, b in batches.items()},
        name: HOSTILE_PICKLES["bytearray(2**30)"][0]})
    source = load_source(data_cfg(name="cifar10"), tmp_path)
    with pytest.raises(ValueError, match=f"{cifar10.ARCHIVE}:{name}: refusing this pickle: "
                                         "it would take more than 16777480 bytes"):
        list(source.splits["test"])


def py2_pickle(obj) -> bytes:
    """``obj`` (bytes, ints, lists, dicts, numpy arrays) as Python 2's cPickle and numpy
    1.x wrote CIFAR-10 (protocol 2): ``str`` as BINSTRING, numpy under ``numpy.core``,
    dtype arguments as ints."""
    def dump(obj) -> bytes:
        if isinstance(obj, bytes):
            size = bytes([len(obj)]) if len(obj) < 256 else struct.pack("<i", len(obj))
            return (b"U" if len(obj) < 256 else b"T") + size + obj
        if isinstance(obj, int | np.integer):
            return b"J" + struct.pack("<i", obj)
        if isinstance(obj, list):
            return b"](" + b"".join(map(dump, obj)) + b"e"
        if isinstance(obj, dict):
            return b"}(" + b"".join(dump(k) + dump(v) for k, v in obj.items()) + b"u"
        order, code = obj.dtype.str[:1].encode(), obj.dtype.str[1:].encode()
        dtype = b"cnumpy\ndtype\n" + dump(code) + b"K\x00K\x01\x87R(K\x03" + dump(order) + \
            b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        shape = b"(" + b"".join(map(dump, obj.shape)) + b"t"
        return b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + \
            dump(b"b") + b"\x87R(K\x01" + shape + dtype + b"\x89" + dump(obj.tobytes()) + b"tb"
    return b"\x80\x02" + dump(obj) + b"."


def test_cifar_python2_batches(tmp_path):
    """The real batches are Python 2 pickles: the interpreter reads them as pickle does."""
    batches = cifar_batches(2)
    payloads = {name: py2_pickle(batch) for name, batch in batches.items()}
    first = payloads[cifar10.MEMBERS["train"][0]]
    expected = pickle.loads(first, encoding="bytes")
    got = load_pickle(first, encoding="bytes")
    assert got.keys() == expected.keys() and got[b"labels"] == expected[b"labels"]
    np.testing.assert_array_equal(got[b"data"], expected[b"data"])
    assert got[b"data"].dtype == np.uint8
    write_cifar(tmp_path / cifar10.ARCHIVE, {}, extra=payloads)
    splits = consume(load_source(data_cfg(name="cifar10"), tmp_path))
    rows = [(r, y) for m in cifar10.MEMBERS["train"]
            for r, y in zip(batches[m][b"data"], batches[m][b"labels"], strict=True)]
    assert [(img.tobytes(), label) for img, label in splits["train"]] == [
        (np.stack(r.reshape(3, 32, 32), axis=-1).tobytes(), y) for r, y in rows]


def random_object(rng: np.random.Generator, depth: int = 0):
    """Numbers, strings, containers and numpy arrays of many dtypes, nested."""
    kind = rng.integers(0, 7 if depth < 3 else 3)
    if kind == 0:
        return [float(rng.random()), int(rng.integers(-2**40, 2**40)), int(rng.integers(256)),
                int(rng.integers(-2**31, 2**31)), 2**70, True, False, None, "é" * 300,
                b"x" * 300, 1 + 2j][rng.integers(11)]
    if kind == 1:  # runs of one opcode, as lists of numbers pickle
        value = [lambda: float(rng.random()), lambda: int(rng.integers(256)),
                 lambda: int(rng.integers(65536)), lambda: int(rng.integers(-2**31, 2**31)),
                 lambda: bool(rng.integers(2))][rng.integers(5)]
        return [value() for _ in range(rng.integers(0, 2500))]
    if kind == 2:
        dtype = ["f4", ">f8", "u1", "i8", "c8", "?", "S3", "U2", "O"][rng.integers(9)]
        array = rng.integers(0, 100, (rng.integers(0, 4), 3)).astype(dtype)
        return array if rng.integers(2) else np.asfortranarray(array)
    items = [random_object(rng, depth + 1) for _ in range(rng.integers(0, 5))]
    if kind == 3:
        return items
    if kind == 4:
        return tuple(items)
    if kind == 5:
        return {k: v for k, v in zip(["a", 1, 2.5, (1, "x"), b"k"], items, strict=False)}
    return [items, items]  # shared


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.flags.f_contiguous == \
            b.flags.f_contiguous and all(same(x, y) for x, y in zip(a.flat, b.flat, strict=True))
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_the_interpreter_reads_what_pickle_reads(protocol):
    """Random numpy and builtin objects, pickled: the bounded interpreter gives what the C
    unpickler gives, value for value and type for type."""
    rng = np.random.default_rng(protocol)
    for i in range(60):
        data = pickle.dumps(random_object(rng), protocol=protocol)
        assert same(load_pickle(data), pickle.loads(data)), i


# --- prepared-format round trip ---

def test_prepared_params_hold_only_what_decides_the_prepared_data():
    base = parse_params({"data": {"name": "celeba"}}).data
    other = parse_params({"data": {"name": "celeba", "workers": 7,
                                   "folder": {"resize": 32}, "mask": {"length": 16}}}).data
    assert prepared_params(base) == prepared_params(other)
    assert prepared_params(base)["celeba"]["crop"] == 108
    changed = parse_params({"data": {"name": "celeba", "celeba": {"resize": 32}}}).data
    assert prepared_params(changed) != prepared_params(base)
    assert set(prepared_params(parse_params({"data": {"name": "cifar10"}}).data)) == {
        "name", "raw_dir", "shards"}


def mnist_source(tmp_path):
    write_mnist_idx(tmp_path / "raw")
    return lambda: load_source(data_cfg(mnist={"source": "local"}), tmp_path / "raw")


def celeba_source(tmp_path):
    base = make_celeba(tmp_path / "celeba", as_zip=False)
    return lambda: load_source(data_cfg(name="celeba", celeba={"path": str(base)}))


def mask_source(tmp_path):
    path = dump(tmp_path / "m.pkl", MASKS)
    return lambda: load_source(mask_cfg(path))


@pytest.mark.parametrize("make", [mnist_source, celeba_source, mask_source])
def test_round_trip_bit_exact(tmp_path, make):
    new_source = make(tmp_path)
    expected = consume(new_source())
    source = new_source()
    out = tmp_path / "prepared"
    meta = write_prepared(source, out, shards=3, params={})
    assert meta.counts == {s: len(e) for s, e in expected.items()}
    assert read_meta(out).sha256 == source.sha256 and source.sha256
    for split, examples in expected.items():
        got = []
        for x, y in read_numpy(out, split):
            got += list(zip(x, [None] * len(x) if y is None else y.tolist(), strict=True))
        assert as_keys(got) == as_keys(examples)
        # Canonical bytes (map keys in order), so a re-run writes identical files.
        files = sorted(str(f) for f in out.glob(f"{split}-*.tfrecord.gz"))
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            raw = record.numpy()
            assert raw == tf.train.Example.FromString(raw).SerializeToString(deterministic=True)
    if meta.is_image:
        ds = make_dataset(out, "train", 100, shuffle=False, repeat=False, drop_remainder=False)
        floats = np.concatenate(list(ds.as_numpy_iterator()))
        uint8 = np.stack([x for x, _ in expected["train"]]).astype(np.float32)
        assert floats.min() >= -1 and floats.max() <= 1
        np.testing.assert_allclose(np.sort(floats, axis=0), np.sort(uint8 / 127.5 - 1, axis=0),
                                   atol=1e-6)


def shard_samples(out: Path, split: str) -> list[list[bytes]]:
    """The ``x`` bytes of every record, shard by shard, in file order."""
    return [[tf.train.Example.FromString(r.numpy()).features.feature["x"].bytes_list.value[0]
             for r in tf.data.TFRecordDataset(str(f), compression_type="GZIP")]
            for f in sorted(out.glob(f"{split}-*.tfrecord.gz"))]


def test_image_shards_hold_file_j_at_j_mod_n_whatever_the_workers(tmp_path):
    """Each shard is written by one worker process: file j goes to shard j mod N, a skipped
    file leaves a gap rather than shifting the rest, and nothing depends on how many
    workers run or on whether the files come from a folder or a zip (byte-identical)."""
    folder = tmp_path / "pics"
    folder.mkdir()
    with zipfile.ZipFile(tmp_path / "pics.zip", "w") as zf:
        for i in range(7):
            payload = b"corrupt" * 9 if i == 1 else encoded(photo(i, (20, 24)), "PNG")
            (folder / f"{i}.png").write_bytes(payload)
            zf.writestr(f"{i}.png", payload)
    written = {}
    for path, workers in ((folder, 1), (folder, 3), (tmp_path / "pics.zip", 2)):
        cfg = data_cfg(name="folder", workers=workers, folder={
            "path": str(path), "crop": None, "resize": 16, "test_fraction": 0.0})
        source = load_source(cfg)
        out = tmp_path / f"out-{path.name}-{workers}"
        meta = write_prepared(source, out, shards=3, params={})
        written[path.name, workers] = {f.name: f.read_bytes() for f in out.iterdir()}, meta
    assert written["pics", 1] == written["pics", 3]  # meta.json (report, sha256) included
    shards = {name: data for name, data in written["pics", 1][0].items() if name.endswith(".gz")}
    assert {n: written["pics.zip", 2][0][n] for n in shards} == shards
    cfg = data_cfg(name="folder", folder={
        "path": str(folder), "crop": None, "resize": 16, "test_fraction": 0.0})
    split = load_source(cfg).splits["train"]
    assert isinstance(split, ParallelSplit)
    (names,) = split.parts(1)
    per_file = [next(iter(split.decode([name])), None) for name in names]
    assert [e is None for e in per_file] == [i == 1 for i in range(7)]
    out = tmp_path / "out-pics-1"
    shards = shard_samples(out, "train")
    assert shards == [[e[0].tobytes() for e in per_file[s::3] if e is not None] for s in range(3)]
    meta = written["pics", 1][1]
    assert meta.shard_counts == {"train": [3, 1, 2]} and meta.counts == {"train": 6}
    assert read_meta(out).shard_counts == meta.shard_counts
    # Uneven shards stream whole: every sample once per epoch.
    stream = training_stream(out, 6, seed=0).take(1)
    got = sorted(to_bytes(x) for x in next(iter(stream)).numpy())
    assert got == sorted(e[0].tobytes() for e in per_file if e is not None)


def to_bytes(x: np.ndarray) -> bytes:
    return np.rint((x + 1) * 127.5).astype(np.uint8).tobytes()


def every_nth(items: list, shards: int) -> list[list]:
    """``ParallelSplit.parts`` of a list: item j to shard j mod ``shards``."""
    return [items[s::shards] for s in range(shards)]


def die_at(items: list[str]):
    """A ``ParallelSplit.decode`` whose worker is killed at the item ``"die"``, as the
    kernel's OOM killer would."""
    for item in items:
        if item == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        yield np.zeros(2, np.uint8), None


def test_a_killed_prepare_worker_fails_with_a_hint_and_leaves_nothing(tmp_path):
    split = ParallelSplit(functools.partial(every_nth, ["a", "b", "die", "c"]), die_at,
                          lambda notes: None, workers=2)
    source = Source("x", (2,), None, {"train": split}, {}, size_hints={"train": 4})
    with pytest.raises(RuntimeError, match="train: a prepare worker process died.*data.workers"):
        write_prepared(source, tmp_path / "out", shards=2, params={})
    assert list(tmp_path.iterdir()) == []


def fail_or_crawl(items: list[str]):
    """A ``ParallelSplit.decode``: item ``"bug"`` raises; every other item takes 10 ms and
    leaves a file named after it, so a test can count how far a worker got."""
    for item in items:
        if item == "bug":
            raise KeyError("a bug in decode")
        time.sleep(0.01)
        Path(item).touch()
        yield np.zeros(2, np.uint8), None


def test_a_failing_shard_stops_the_other_workers_and_names_its_shard(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    items = ["bug"] + [str(marks / f"{i}") for i in range(1000)]  # shard 0 fails at once
    split = ParallelSplit(functools.partial(every_nth, items), fail_or_crawl,
                          lambda notes: None, workers=2)
    source = Source("x", (2,), None, {"train": split}, {}, size_hints={"train": len(items)})
    with pytest.raises(KeyError, match="a bug in decode") as err:
        write_prepared(source, tmp_path / "out", shards=2, params={})
    assert "while writing train-00000-of-00002.tfrecord.gz" in err.value.__notes__
    # Without the stop the other worker would go on through all of its 500 items (5 s).
    assert len(list(marks.iterdir())) < 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["marks"]


PREPARE_FOREVER = """
import functools, multiprocessing, os, sys, time
import numpy as np
import tensorflow as tf
from wgan.prepared.write import ParallelSplit, Source, write_prepared
tf.reduce_sum(tf.ones(3)).numpy()  # the TensorFlow runtime is up before the workers fork

def crawl(items):
    os.write(1, f"{os.getpid()}\\n".encode())  # one write: two workers share the pipe
    for item in items:
        time.sleep(0.5)
        yield np.zeros(2, np.uint8), None

def every_nth(items, shards):
    return [items[s::shards] for s in range(shards)]

split = ParallelSplit(functools.partial(every_nth, list(range(4000))), crawl,
                      lambda notes: None, workers=2)
source = Source("x", (2,), None, {"train": split}, {}, size_hints={"train": 4000})
try:
    write_prepared(source, sys.argv[1], shards=4, params={})
except KeyboardInterrupt:
    os.write(1, f"workers alive: {len(multiprocessing.active_children())}\\n".encode())
    raise
"""


def start_prepare_forever(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A real prepare in its own process group; returns it once both workers are decoding."""
    proc = subprocess.Popen([sys.executable, "-c", PREPARE_FOREVER, str(tmp_path / "out")],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    workers = [int(proc.stdout.readline()) for _ in range(2)]
    return proc, workers


def gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        if Path(f"/proc/{pid}/stat").is_file() and \
                Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads worker states from /proc")
def test_prepare_workers_exit_when_their_parent_is_killed(tmp_path):
    proc, workers = start_prepare_forever(tmp_path)
    proc.kill()
    proc.wait()
    try:
        assert all(gone(pid) for pid in workers)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_twice_waits_for_the_workers_and_leaves_nothing(tmp_path):
    proc, _ = start_prepare_forever(tmp_path)
    try:
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
        time.sleep(0.2)  # the parent is waiting for the workers to end their 0.5 s sample
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    # Had the second Ctrl-C cut that wait short, the temporary directory would be removed
    # under live workers that still write into it.
    assert out.splitlines()[-1] == "workers alive: 0"
    assert list(tmp_path.iterdir()) == []


def test_training_stream_refuses_a_pipeline_without_samples(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    for i in range(4):  # files 1 and 3 are unreadable: shard counts [1, 0, 1, 0]
        payload = b"corrupt" * 9 if i % 2 else encoded(photo(i, (20, 24)), "PNG")
        (folder / f"{i}.png").write_bytes(payload)
    cfg = data_cfg(name="folder", folder={
        "path": str(folder), "crop": None, "resize": 16, "test_fraction": 0.0})
    meta = write_prepared(load_source(cfg), tmp_path / "out", shards=4, params={})
    assert meta.shard_counts == {"train": [1, 0, 1, 0]}
    second = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                        num_replicas_in_sync=2)
    with pytest.raises(ValueError, match="input pipeline 1 .* hold no samples; lower data.shards"):
        training_stream(tmp_path / "out", 4, seed=0, input_context=second)


def test_meta_without_shard_counts_asks_for_a_new_prepare(tmp_path):
    out = tmp_path / "prepared"
    write_prepared(load_source(mask_cfg(dump(tmp_path / "m.pkl", MASKS))), out, 2, params={})
    raw = json.loads((out / "meta.json").read_text())
    del raw["shard_counts"]
    (out / "meta.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="older version of prepare.*dvc repro prepare"):
        read_meta(out)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_default_workers_follow_the_cpu_affinity_not_the_machine():
    mask = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(mask)})  # this thread only, as taskset -c / SLURM would
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, mask)
    assert usable_cpus() == len(mask)
