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

Each ``sha256`` entry of a folder covers one split: the sha256 of the
``sha256sum``-style lines (``<digest>  <name>``) of its files, hashed by the
workers from the bytes they read anyway. Like ``report``, it is filled in once
the split is consumed, which :func:`wgan.prepared.write.write_prepared` does before it
reads either.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import simplejpeg
from PIL import ExifTags, Image

from wgan.config import DataConfig, ImageFolderConfig
from wgan.files import sha256_file
from wgan.prepared.format import Example
from wgan.prepared.write import ParallelSplit, Source

__all__ = ["center_crop_box", "load", "usable_cpus"]

_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")  # the only decoders a file may reach
# What Pillow raises for corrupt, truncated or foreign data (anything else is a bug).
_BAD_IMAGE = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
# EXIF orientation -> the transpose that makes the stored pixels upright.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
            4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
            6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}
_PARTITION = "list_eval_partition.txt"
_SPLIT_SALT = b"wgan-split-0:"  # the fixed "seed" of the hash split
_REPORT_LIMIT = 1000  # files listed in the report; the count is always exact

# A file's note for the parent process: (its sha256, why it was skipped or None)
_Note = tuple[str, str | None]


@dataclass(frozen=True)
class _Recipe:
    """What a worker needs to turn a file name into a sample (pickled once per shard)."""

    root: str
    is_zip: bool
    crop: int | None
    size: int
    resample: Image.Resampling


def usable_cpus() -> int:
    """The cores this process may run on: its affinity mask (a SLURM or taskset
    allocation), not every core of the machine, which ``os.cpu_count`` reports."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


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


def _crop_box(w: int, h: int, recipe: _Recipe) -> tuple[int, int, int, int] | str:
    """The box to resize, or why a ``w`` x ``h`` image cannot give a sample."""
    if recipe.crop is None:
        return 0, 0, w, h
    if recipe.crop > min(w, h):
        return f"crop {recipe.crop} is larger than the {w}x{h} image"
    return center_crop_box(w, h, recipe.crop)


def _draft_request(w: int, h: int, box: tuple[int, int, int, int], size: int) -> tuple[int, int]:
    """The smallest decoded size that keeps ``box`` at least ``size`` pixels wide and high."""
    return -(-w * size // (box[2] - box[0])), -(-h * size // (box[3] - box[1]))


def _full_scale(w: int, h: int, want: tuple[int, int]) -> bool:
    """Whether ``Image.draft(None, want)`` keeps a ``w`` x ``h`` JPEG at full scale: Pillow
    takes the largest of 1/2, 1/4, 1/8 that keeps both sides >= ``want``."""
    return min(w // want[0], h // want[1]) < 2


def _crop_resize(img: Image.Image, recipe: _Recipe) -> bytes | str:
    """The cropped, resized RGB sample, or why the image cannot give one."""
    w, h = img.size
    box = _crop_box(w, h, recipe)
    if isinstance(box, str):
        return box
    size = (recipe.size, recipe.size)
    # JPEG decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost. Ask only for a
    # scale that keeps the box >= `size` pixels, so the resize stays a downscale; the
    # pixels then differ slightly from a full decode, the geometry does not.
    drafted = img.draft(None, _draft_request(w, h, box, recipe.size))
    scale = drafted[1][2] / w if drafted else 1.0
    if scale == 1.0:
        small = _to_rgb(img.crop(box)).resize(size, recipe.resample)
    else:
        small = _to_rgb(img).resize(size, recipe.resample, box=tuple(v * scale for v in box))
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


def _plain_jpeg_sample(data: bytes, recipe: _Recipe) -> bytes | str | None:
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
    limit = Image.MAX_IMAGE_PIXELS
    if colorspace not in ("YCbCr", "Gray") or (limit is not None and w * h > limit):
        return None
    box = _crop_box(w, h, recipe)
    if isinstance(box, str):
        return box
    if not _full_scale(w, h, _draft_request(w, h, box, recipe.size)):
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError:
        return None
    left, top, right, bottom = box
    crop = Image.fromarray(pixels[top:bottom, left:right])
    return crop.resize((recipe.size, recipe.size), recipe.resample).tobytes()


def _upright(img: Image.Image) -> Image.Transpose | None:
    """The turn that shows the picture as its EXIF orientation says (phones store
    portraits sideways), as ``ImageOps.exif_transpose``; None if none or unreadable."""
    try:
        orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    except (*_BAD_IMAGE, struct.error):
        return None  # a broken EXIF block does not make the pixels unusable
    return _UPRIGHT.get(orientation)


def _read(recipe: _Recipe, archive: zipfile.ZipFile | None, name: str) -> bytes:
    if archive is not None:
        return archive.read(name)
    with open(os.path.join(recipe.root, name), "rb") as f:  # half the cost of Path.read_bytes
        return f.read()


def _process(
    recipe: _Recipe, archive: zipfile.ZipFile | None, name: str,
) -> tuple[bytes | str, str]:
    """Read, hash and decode one file: (the sample's RGB bytes or why it was skipped, the
    file's sha256); never raises for a bad file."""
    try:
        data = _read(recipe, archive, name)
    except (OSError, zipfile.BadZipFile, zlib.error) as err:
        return f"cannot read the file ({err})", ""
    digest = hashlib.sha256(data).hexdigest()
    out = _plain_jpeg_sample(data, recipe)
    if out is None:
        try:
            with Image.open(io.BytesIO(data), formats=_FORMATS) as img:
                out = _crop_resize(img, recipe)
        except Image.UnidentifiedImageError:  # its message holds an address: not reproducible
            return "not a readable image (Pillow cannot identify it)", digest
        except _BAD_IMAGE as err:
            return f"not a readable image ({type(err).__name__}: {err})", digest
    return out, digest


def _decode_files(recipe: _Recipe, names: list[str]) -> Iterator[tuple[Example | None, _Note]]:
    """Worker: each file's sample (None if skipped) and note, in ``names`` order.

    A zip is opened here, in the worker: a forked worker must not share the parent's file
    offset."""
    shape = (recipe.size, recipe.size, 3)
    with zipfile.ZipFile(recipe.root) if recipe.is_zip else contextlib.nullcontext() as archive:
        for name in names:
            out, digest = _process(recipe, archive, name)
            if isinstance(out, str):
                yield None, (digest, out)
            else:
                yield (np.frombuffer(out, np.uint8).reshape(shape), None), (digest, None)


def _skip(report: dict[str, Any], name: str, reason: str) -> None:
    report["skipped"] += 1
    if len(report["files"]) < _REPORT_LIMIT:
        report["files"].append({"file": name, "reason": reason})


def _finish(
    names: list[str], report: dict[str, Any], sha256: dict[str, str], key: str,
    notes: list[_Note],
) -> None:
    """Record a consumed split's skipped files and its manifest sha256 (file order)."""
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
    return ParallelSplit(names, functools.partial(_decode_files, recipe),
                         functools.partial(_finish, names, report, sha256, key), workers)


def _list(root: Path) -> list[str]:
    """Every file under ``root`` (a directory, recursively, or a zip) as sorted posix paths."""
    if root.is_dir():
        names = []
        for dirpath, _, files in os.walk(root):
            rel = PurePosixPath(Path(dirpath).relative_to(root).as_posix())
            names.extend(str(rel / f) for f in files)
        return sorted(names)
    try:
        with zipfile.ZipFile(root) as zf:
            return sorted(i.filename for i in zf.infolist() if not i.is_dir())
    except (zipfile.BadZipFile, OSError) as err:
        raise ValueError(f"{root}: not a readable zip ({err}); re-create it") from err


def _read_partition(path: Path) -> dict[str, str]:
    """CelebA's ``<file name> 0|1|2`` lines: 0 (train) and 1 (validation) -> train, 2 -> test."""
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise ValueError(f"{path}:{lineno}: expected '<file name> 0|1|2', got {line!r}")
        out[parts[0]] = "test" if parts[1] == "2" else "train"
    return out


def _hash_split(file_name: str, test_fraction: float) -> str:
    """train/test by a hash of the file name: stable when files are added or listed differently."""
    digest = hashlib.sha256(_SPLIT_SALT + file_name.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") < test_fraction * 2**64 else "train"


def _assign(
    names: list[str], partition: dict[str, str] | None, test_fraction: float,
    report: dict[str, Any],
) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {"train": [], "test": []}
    for name in names:
        path = PurePosixPath(name)
        if path.suffix.lower() not in _SUFFIXES:
            _skip(report, name, f"not an image file (suffix {path.suffix or 'none'!r})")
        elif partition is None:
            splits[_hash_split(path.name, test_fraction)].append(name)
        elif path.name in partition:
            splits[partition[path.name]].append(name)
        else:
            _skip(report, name, f"not listed in {_PARTITION}")
    return splits


def _celeba_root(cfg: ImageFolderConfig) -> Path:
    base = Path(cfg.path)
    for root in (base / "img_align_celeba", base / "img_align_celeba.zip"):
        if root.exists():
            return root
    raise FileNotFoundError(
        f"CelebA not found: put the aligned images in {base / 'img_align_celeba'}/ "
        f"(000001.jpg, ...) or the official {base / 'img_align_celeba.zip'}, optionally with "
        f"{base / _PARTITION}; or set data.celeba.path"
    )


def _folder_root(cfg: ImageFolderConfig) -> Path:
    root = Path(cfg.path)
    if root.is_dir() or zipfile.is_zipfile(root):
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
    return cfg.celeba, _celeba_root(cfg.celeba), partition if partition.is_file() else None


def load(cfg: DataConfig, raw_dir: Path) -> Source:
    """The images of ``cfg.celeba`` or ``cfg.folder`` (by ``cfg.name``), decoded when iterated.

    ``raw_dir`` is unused: both paths come from their own config section.
    """
    folder, root, partition = _locate(cfg)
    report: dict[str, Any] = {"skipped": 0, "files": []}
    parts = _read_partition(partition) if partition else None
    splits = {s: n for s, n in _assign(_list(root), parts, folder.test_fraction, report).items()
              if n}
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
    sha256 = {partition.name: sha256_file(partition)} if partition else {}
    recipe = _Recipe(str(root), root.is_file(), folder.crop, folder.resize,
                     Image.Resampling[folder.filter.upper()])
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
