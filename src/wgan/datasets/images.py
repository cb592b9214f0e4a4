"""CelebA and user image folders or zips -> ``resize`` x ``resize`` x 3 uint8 samples.

Files are listed once (a directory walked recursively, or a zip's members) and
sorted. Each goes to train or test by CelebA's ``list_eval_partition.txt`` when
present, else by a hash of its file name, so neither the split nor the output
order depends on listing order or on the number of workers. Each split is a
:class:`wgan.prepared.write.ParallelSplit`: a worker process decodes the files of one shard
and writes it. Each image is centre-cropped, converted to RGB and resized. Plain JPEGs
(CelebA's kind) decode through libjpeg-turbo directly, every other file through
Pillow; both give the same pixels. Files that cannot be used (corrupt, truncated, not
an image, smaller than the crop) are skipped and listed in ``Source.report``.

The files may come from strangers. A folder is read for its regular files only: a FIFO,
socket or device is skipped, and so is a symbolic link unless it leads to a regular
file inside the folder (a link elsewhere could turn ``/etc/passwd`` or someone's
photos into samples). Links are resolved when listing, and each file is opened
component by component with ``O_NOFOLLOW`` and ``O_NONBLOCK`` beneath the folder's
descriptor, then checked with ``fstat``, so a name swapped for a link or a FIFO after
the listing is refused, not followed or waited on. A file or zip member may hold at
most :data:`MAX_FILE_BYTES` (a zip member's declared size is checked before it is
read, and the read stops there whatever the header says) and an image at most
:data:`MAX_PIXELS` pixels by its header, checked before anything is decoded.

Each ``sha256`` entry of a folder covers one split: the sha256 of the
``sha256sum``-style lines (``<digest>  <name>``) of its files, hashed by the
workers from the bytes they read anyway. Like ``report``, it is filled in once
the split is consumed, which :func:`wgan.prepared.write.write_prepared` does before it
reads either.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
import zlib
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import simplejpeg
from PIL import ExifTags, Image

from wgan.cli import usable_cpus
from wgan.config import DataConfig, ImageFolderConfig
from wgan.datasets.untrusted import RefusedFile, inside, kind, open_regular, read_capped
from wgan.prepared.format import Example
from wgan.prepared.write import ParallelSplit, Source

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "REPORT_LIMIT", "SQUARE", "Geometry",
           "center_crop_box", "decode_image", "hash_split", "load"]

# The largest image file or zip member read, in bytes. CelebA's JPEGs are ~10 KB and a
# phone's photo a few MB; a worker holds the file, so this bounds its memory too.
MAX_FILE_BYTES = 64 * 2**20
# The most pixels an image's header may declare (8192 x 8192), checked before decoding:
# a PNG of zeros compresses ~1000:1, so a small file can declare gigabytes of pixels.
# Below Pillow's own bomb limit (~89.5 M pixels, where it only warns), so it decides.
MAX_PIXELS = 2**26

_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")  # the only decoders a file may reach
# What Pillow raises for corrupt, truncated or foreign data (anything else is a bug).
_BAD_IMAGE = (OSError, SyntaxError, ValueError, EOFError)
# What zipfile raises for a member it cannot give: corrupt data, a bad CRC, encryption
# (RuntimeError), a compression method it lacks (NotImplementedError).
_BAD_MEMBER = (OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError,
               NotImplementedError)
# EXIF orientation -> the transpose that makes the stored pixels upright.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_PARTITION = "list_eval_partition.txt"
_SPLIT_SALT = b"wgan-split-0:"  # the fixed "seed" of the hash split
REPORT_LIMIT = 1000  # skipped items listed in a report; the count is always exact
SQUARE = "square"  # Geometry.crop: the largest centred square, whatever the image's size

# A file's note for the parent process: (its sha256, why it was skipped or None)
_Note = tuple[str, str | None]


@dataclass(frozen=True)
class Geometry:
    """How a decoded image becomes a ``size`` x ``size`` RGB sample: the centred box of side
    ``crop`` (:data:`SQUARE`: the shorter side; None: the whole image), resized with
    ``resample``."""

    crop: int | str | None
    size: int
    resample: Image.Resampling


@dataclass(frozen=True)
class _Recipe:
    """What a worker needs to turn a file name into a sample (pickled once per shard)."""

    root: str  # the folder (every link in its path resolved) or the zip
    is_zip: bool
    geometry: Geometry
    links: dict[str, str] = field(default_factory=dict)  # link name -> its target, in root


def center_crop_box(w: int, h: int, c: int) -> tuple[int, int, int, int]:
    """The ``c`` x ``c`` box centred in a ``w`` x ``h`` image, offsets rounded down.

    CelebA's 178x218 with c=108 gives (35, 55, 143, 163).
    """
    left, top = (w - c) // 2, (h - c) // 2
    return left, top, left + c, top + c


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode.startswith("I"):
        # 16-bit greys: Pillow's convert clips at 255 (almost all white), so scale instead.
        img = Image.fromarray(np.clip(np.asarray(img) >> 8, 0, 255).astype(np.uint8))
    return img if img.mode == "RGB" else img.convert("RGB")


def _crop_box(w: int, h: int, geometry: Geometry) -> tuple[int, int, int, int] | str:
    """The box to resize, or why a ``w`` x ``h`` image cannot give a sample."""
    if geometry.crop is None:
        return 0, 0, w, h
    if geometry.crop == SQUARE:
        return center_crop_box(w, h, min(w, h))
    if geometry.crop > min(w, h):
        return f"crop {geometry.crop} is larger than the {w}x{h} image"
    return center_crop_box(w, h, geometry.crop)


def _draft_request(w: int, h: int, box: tuple[int, int, int, int], size: int) -> tuple[int, int]:
    """The smallest decoded size that keeps ``box`` at least ``size`` pixels wide and high."""
    return -(-w * size // (box[2] - box[0])), -(-h * size // (box[3] - box[1]))


def _full_scale(w: int, h: int, want: tuple[int, int]) -> bool:
    """Whether ``Image.draft(None, want)`` keeps a ``w`` x ``h`` JPEG at full scale: Pillow
    takes the largest of 1/2, 1/4, 1/8 that keeps both sides >= ``want``."""
    return min(w // want[0], h // want[1]) < 2


def _crop_resize(img: Image.Image, geometry: Geometry) -> bytes | str:
    """The cropped, resized RGB sample, or why the image cannot give one."""
    w, h = img.size
    box = _crop_box(w, h, geometry)
    if isinstance(box, str):
        return box
    size = (geometry.size, geometry.size)
    # JPEG decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost. Ask only for a
    # scale that keeps the box >= `size` pixels, so the resize stays a downscale; the
    # pixels then differ slightly from a full decode, the geometry does not.
    drafted = img.draft(None, _draft_request(w, h, box, geometry.size))
    scale = drafted[1][2] / w if drafted else 1.0
    if scale == 1.0:
        small = _to_rgb(img.crop(box)).resize(size, geometry.resample)
    else:
        small = _to_rgb(img).resize(size, geometry.resample, box=tuple(v * scale for v in box))
    # Turning the small square instead of the full picture keeps draft decoding; the
    # centre crop is the same up to the rounding of an odd margin.
    turn = _upright(img)
    return (small if turn is None else small.transpose(turn)).tobytes()


def _plain_header(data: bytes) -> bool:
    """Whether a JPEG's header segments, walked up to the scan, hold nothing that Pillow
    reads differently from libjpeg-turbo: no APP1 (EXIF or XMP, either can turn the
    picture), no MPF (multi-picture) block, no JFIF or Adobe block too short for Pillow's
    parser (which refuses such files). False also when the walk fails."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, size = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        payload = data[pos + 4:pos + 2 + size]
        if marker == 0xDA:  # start of scan: no more header segments
            return True
        if marker == 0xE1 or (marker == 0xE2 and payload.startswith(b"MPF\0")):
            return False
        if marker in (0xE0, 0xEE) and payload.startswith((b"JFIF", b"Adobe")) \
                and len(payload) < 7:
            return False
        pos += 2 + size
    return False


def _plain_jpeg_sample(data: bytes, geometry: Geometry) -> bytes | str | None:
    """The sample of a plain JPEG (YCbCr or grey, a plain header, decoded at full scale)
    through libjpeg-turbo directly, or None to take the Pillow path.

    Pillow bundles the same libjpeg-turbo with the same defaults, so the pixels are
    identical (tested), but its Python header parser and tile loop add ~30% to the CPU
    per CelebA image. Anything else (EXIF or XMP metadata, CMYK, scaled decoding, sizes
    Pillow's bomb check would judge, any decoder complaint) goes to Pillow, which
    also reports bad files.
    """
    if not (data.startswith(b"\xff\xd8\xff") and _plain_header(data)):
        return None
    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if w * h > MAX_PIXELS:
        return _too_many_pixels(w, h)
    if colorspace not in ("YCbCr", "Gray"):
        return None
    box = _crop_box(w, h, geometry)
    if isinstance(box, str):
        return box
    if not _full_scale(w, h, _draft_request(w, h, box, geometry.size)):
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None
    left, top, right, bottom = box
    crop = Image.fromarray(pixels[top:bottom, left:right])
    return crop.resize((geometry.size, geometry.size), geometry.resample).tobytes()


def _upright(img: Image.Image) -> Image.Transpose | None:
    """The turn that shows the picture as its EXIF orientation says (phones store
    portraits sideways), as ``ImageOps.exif_transpose``; None if none or unreadable."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except (*_BAD_IMAGE, struct.error):
        return None  # a broken EXIF block does not make the pixels unusable
    return _UPRIGHT.get(orientation)


def _too_many_pixels(w: int, h: int) -> str:
    return f"{w}x{h} pixels, more than the {MAX_PIXELS}-pixel cap"


def _too_big(size: int) -> str:
    return f"declares {size} bytes, more than the {MAX_FILE_BYTES}-byte cap for an image file"


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """A zip member, refused unread if its header declares more than the cap. The read
    asks for one byte more than declared, so inflating stops there even if the header
    lies (zipfile then fails the CRC)."""
    info = archive.getinfo(name)
    if info.file_size > MAX_FILE_BYTES:
        raise RefusedFile(_too_big(info.file_size))
    with archive.open(info) as f:
        data = f.read(info.file_size + 1)
    if len(data) > info.file_size:
        raise RefusedFile(f"holds more than the {info.file_size} bytes it declares")
    return data


def _open_beneath(root_fd: int, path: str) -> int:
    """Open the regular file at ``path`` (posix, relative) beneath the directory
    ``root_fd``, following no link on the way: each component is opened with
    ``O_NOFOLLOW`` relative to the one before."""
    *dirs, last = path.split("/")
    fd = root_fd
    try:
        for part in dirs:
            try:
                parent, fd = fd, os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                                         | os.O_CLOEXEC, dir_fd=fd)
            except OSError as err:
                if err.errno in (errno.ELOOP, errno.ENOTDIR):  # what O_NOFOLLOW says of links
                    raise RefusedFile(f"its directory {part!r} is a symbolic link or no "
                                      "directory (not followed)") from None
                raise
            if parent != root_fd:
                os.close(parent)
        return open_regular(last, dir_fd=fd)
    finally:
        if fd != root_fd:
            os.close(fd)


def _read(recipe: _Recipe, archive: zipfile.ZipFile | None, root_fd: int | None,
          name: str) -> bytes:
    """The bytes of file ``name``; :class:`RefusedFile` or a zip or OS error if it cannot
    be used."""
    if archive is not None:
        return _read_member(archive, name)
    assert root_fd is not None
    fd = _open_beneath(root_fd, recipe.links.get(name, name))
    try:
        return read_capped(fd, MAX_FILE_BYTES, "an image file")
    finally:
        os.close(fd)


def _open_image(data: bytes) -> Image.Image:
    """Pillow's image of ``data``, its header read; Pillow's bomb warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=_FORMATS)


def decode_image(data: bytes, geometry: Geometry) -> bytes | str:
    """The ``geometry.size``² RGB sample of the encoded image ``data``, or why it cannot
    give one (corrupt, truncated, not an image, over :data:`MAX_PIXELS`, smaller than the
    crop); never raises for bad data, which may come from strangers."""
    out = _plain_jpeg_sample(data, geometry)
    if out is not None:
        return out
    try:
        with _open_image(data) as img:
            w, h = img.size
            return _too_many_pixels(w, h) if w * h > MAX_PIXELS else _crop_resize(img, geometry)
    except Image.UnidentifiedImageError:  # its message holds an address: not reproducible
        return "not a readable image (Pillow cannot identify it)"
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        return f"more than the {MAX_PIXELS}-pixel cap ({err})"
    except _BAD_IMAGE as err:
        return f"not a readable image ({type(err).__name__}: {err})"


def _process(
    recipe: _Recipe, archive: zipfile.ZipFile | None, root_fd: int | None, name: str,
) -> tuple[bytes | str, str]:
    """Read, hash and decode one file: (the sample's RGB bytes or why it was skipped, the
    file's sha256, empty if it was not read); never raises for a bad file."""
    try:
        data = _read(recipe, archive, root_fd, name)
    except RefusedFile as err:
        return str(err), ""
    except _BAD_MEMBER as err:
        return f"cannot read the file ({err})", ""
    return decode_image(data, recipe.geometry), hashlib.sha256(data).hexdigest()


def _decode_files(recipe: _Recipe, names: list[str]) -> Generator[Example, None, list[_Note]]:
    """Worker: the samples of ``names``, in order; returns each file's note.

    A zip is opened here, in the worker: a forked worker must not share the parent's file
    offset."""
    size = recipe.geometry.size
    notes = []
    with contextlib.ExitStack() as stack:
        archive, root_fd = None, None
        if recipe.is_zip:
            archive = stack.enter_context(zipfile.ZipFile(recipe.root))
        else:
            root_fd = os.open(recipe.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            stack.callback(os.close, root_fd)
        for name in names:
            out, digest = _process(recipe, archive, root_fd, name)
            notes.append((digest, out if isinstance(out, str) else None))
            if not isinstance(out, str):
                yield np.frombuffer(out, np.uint8).reshape(size, size, 3), None
    return notes


def _skip(report: dict[str, Any], name: str, reason: str) -> None:
    report["skipped"] += 1
    if len(report["files"]) < REPORT_LIMIT:
        report["files"].append({"file": name, "reason": reason})


def _every_nth(names: list[str], shards: int) -> list[list[str]]:
    """File j to shard j mod ``shards``."""
    return [names[s::shards] for s in range(shards)]


def _finish(
    names: list[str], report: dict[str, Any], sha256: dict[str, str], key: str,
    shard_notes: list[list[_Note]],
) -> None:
    """Record a consumed split's skipped files and its manifest sha256 (file order)."""
    notes: list = [None] * len(names)
    for s, part in enumerate(shard_notes):
        notes[s::len(shard_notes)] = part
    manifest = hashlib.sha256()
    skipped = []
    for name, (digest, reason) in zip(names, notes, strict=True):
        manifest.update(f"{digest}  {name}\n".encode())
        if reason is not None:
            _skip(report, name, reason)
            skipped.append(f"{name}: {reason}")
    if len(skipped) == len(names):
        raise ValueError(f"{key}: all {len(names)} images were skipped, e.g. "
                         f"{'; '.join(skipped[:3])}")
    sha256[key] = manifest.hexdigest()


def _split(
    recipe: _Recipe, names: list[str], workers: int, report: dict[str, Any],
    sha256: dict[str, str], key: str,
) -> ParallelSplit:
    """``names`` as a split written by ``workers`` processes; the parent records the
    skipped files in ``report`` and the manifest hash in ``sha256[key]``."""
    return ParallelSplit(functools.partial(_every_nth, names),
                         functools.partial(_decode_files, recipe),
                         functools.partial(_finish, names, report, sha256, key), workers)


_OUTSIDE = ("a symbolic link that leads outside the image folder (not followed; copy "
            "the file in instead)")


def _link(root: str, name: str) -> tuple[str | None, str | None]:
    """(where the link ``name`` leads, relative to ``root``, or None; why it is not
    followed, or None)."""
    target = inside(os.path.join(root, name), root)
    if target is None:
        return None, _OUTSIDE
    try:
        mode = os.stat(os.path.join(root, target), follow_symlinks=False).st_mode
    except OSError:
        return None, "a broken symbolic link"
    if stat.S_ISREG(mode):
        return target, None
    return None, f"a symbolic link to {kind(mode)} (not followed)"


def _entry(root: str, name: str, entry: os.DirEntry) -> tuple[str | None, str | None]:
    """(the target of a link to follow or None, why the entry is skipped or None)."""
    try:
        if entry.is_file(follow_symlinks=False):
            return None, None
        if entry.is_symlink():
            return _link(root, name)
        return None, f"{kind(entry.stat(follow_symlinks=False).st_mode)}, not a regular file"
    except OSError as err:
        return None, f"cannot stat it ({err.strerror})"


def _list_dir(root: str) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Every entry under the resolved directory ``root`` but its subdirectories, as
    sorted posix paths; the links to follow (name -> target); the entries to skip
    (name -> reason). Links to directories are not followed, like ``os.walk``'s."""
    names, links, refused = [], {}, {}
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(os.path.join(root, rel)) as it:
                entries = list(it)
        except OSError as err:
            if not rel:
                raise ValueError(f"{root}: cannot list the image folder ({err})") from err
            names.append(rel)
            refused[rel] = f"cannot list this directory ({err.strerror})"
            continue
        for entry in entries:
            name = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                pending.append(name)
                continue
            names.append(name)
            target, reason = _entry(root, name, entry)
            if target is not None:
                links[name] = target
            if reason is not None:
                refused[name] = reason
    return sorted(names), links, refused


def _list(root: Path) -> tuple[list[str], dict[str, str], dict[str, str]]:
    """Every file under ``root`` (a directory, recursively, or a zip) as sorted posix
    paths, with the links to follow and the entries to skip (see :func:`_list_dir`)."""
    if root.is_dir():
        return _list_dir(os.path.realpath(root))
    try:
        with zipfile.ZipFile(root) as zf:
            return sorted(i.filename for i in zf.infolist() if not i.is_dir()), {}, {}
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{root}: not a readable zip ({err}); re-create it") from err


def _read_partition(path: Path) -> tuple[dict[str, str], str]:
    """CelebA's ``<file name> 0|1|2`` lines: 0 (train) and 1 (validation) -> train, 2 -> test;
    and the file's sha256. Read like an image: a regular file (a link only if it stays
    in its folder), at most :data:`MAX_FILE_BYTES`."""
    base = os.path.realpath(path.parent)
    target = inside(str(path), base)
    try:
        if target is None:
            raise RefusedFile(_OUTSIDE.replace("image folder", "folder"))
        fd = open_regular(os.path.join(base, target))
        try:
            data = read_capped(fd, MAX_FILE_BYTES, "a partition file")
        finally:
            os.close(fd)
        text = data.decode()
    except (RefusedFile, OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it ({err}); replace it with CelebA's "
                         f"{_PARTITION}") from err
    out = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}:{lineno}: expected '<file name> 0|1|2', got {line!r}")
        out[parts[0]] = "test" if parts[1] == "2" else "train"
    return out, hashlib.sha256(data).hexdigest()


def hash_split(name: bytes, test_fraction: float) -> str:
    """train/test by a hash of a file name or key: stable when items are added or listed
    differently, and the same in every process."""
    digest = hashlib.sha256(_SPLIT_SALT + name).digest()
    return "test" if int.from_bytes(digest[:8], "big") < test_fraction * 2**64 else "train"


def _assign(
    names: list[str], refused: dict[str, str], partition: dict[str, str] | None,
    test_fraction: float, report: dict[str, Any],
) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for name in names:
        path = PurePosixPath(name)
        if name in refused:
            _skip(report, name, refused[name])
        elif path.suffix.lower() not in _SUFFIXES:
            _skip(report, name, f"not an image file (suffix {path.suffix or 'none'!r})")
        elif partition is None:
            splits[hash_split(path.name.encode(), test_fraction)].append(name)
        elif path.name in partition:
            splits[partition[path.name]].append(name)
        else:
            _skip(report, name, f"not listed in {_PARTITION}")
    return splits


def _celeba_root(cfg: ImageFolderConfig) -> Path:
    base = Path(cfg.path)
    for root in (base / "img_align_celeba", base / "img_align_celeba.zip"):
        if root.is_dir() or root.is_file():  # not a FIFO, which zipfile would wait on
            return root
    raise FileNotFoundError(
        f"CelebA not found: put the aligned images in {base / 'img_align_celeba'}/ "
        f"(000001.jpg, ...) or the official {base / 'img_align_celeba.zip'}, optionally with "
        f"{base / _PARTITION}; or set data.celeba.path"
    )


def _folder_root(cfg: ImageFolderConfig) -> Path:
    root = Path(cfg.path)
    if root.is_dir() or (root.is_file() and zipfile.is_zipfile(root)):
        return root
    raise FileNotFoundError(
        f"data.folder.path: {root} is not a directory or a .zip; put your images there "
        f"(searched recursively for {', '.join(sorted(_SUFFIXES))}) or change data.folder.path"
    )


def _locate(cfg: DataConfig) -> tuple[ImageFolderConfig, Path, Path | None]:
    """The config section, image root and partition file (CelebA only) for ``cfg.name``."""
    if cfg.name != "celeba":
        return cfg.folder, _folder_root(cfg.folder), None
    partition = Path(cfg.celeba.path) / _PARTITION
    present = os.path.lexists(partition)  # if it is there, it must be readable
    return cfg.celeba, _celeba_root(cfg.celeba), partition if present else None


def load(cfg: DataConfig, raw_dir: Path) -> Source:
    """The images of ``cfg.celeba`` or ``cfg.folder`` (by ``cfg.name``), decoded when iterated.

    ``raw_dir`` is unused: both paths come from their own config section.
    """
    folder, root, partition = _locate(cfg)
    report: dict[str, Any] = {"skipped": 0, "files": []}
    parts, sha256 = None, {}
    if partition:
        parts, sha256[partition.name] = _read_partition(partition)
    names, links, refused = _list(root)
    splits = {s: n for s, n in _assign(names, refused, parts, folder.test_fraction,
                                       report).items() if n}
    if not splits:
        raise ValueError(
            f"{root}: no usable image files ({', '.join(sorted(_SUFFIXES))}) found; "
            f"skipped {report['skipped']}: {report['files'][:5]}"
        )
    if "train" not in splits:
        raise ValueError(
            f"{root}: all {len(splits['test'])} images fell into the test split (by "
            f"{partition.name if partition else f'data.{cfg.name}.test_fraction'}); "
            "lower the test fraction or add images"
        )
    geometry = Geometry(folder.crop, folder.resize, Image.Resampling[folder.filter.upper()])
    recipe = _Recipe(str(root) if root.is_file() else os.path.realpath(root), root.is_file(),
                     geometry, links)
    workers = cfg.workers or usable_cpus()
    return Source(
        name=cfg.name,
        shape=(folder.resize, folder.resize, 3),
        num_classes=None,
        splits={s: _split(recipe, n, workers, report, sha256, f"{root.name}[{s}]")
                for s, n in splits.items()},
        sha256=sha256,
        size_hints={s: len(n) for s, n in splits.items()},
        report=report,
        # Deflate saves 10-25% on photo pixels but costs ~290 µs per 64×64 image, more
        # than half of decode + resize; stored gzip blocks keep prepare decode-bound.
        compression_level=0,
    )
