"""Prepare throughput and memory on a generated CelebA-like set of 178×218 JPEGs.

The set is written by the benchmark itself (``benchmarks/work/celeba-<n>/``, reused when
present): synthetic faces (background gradient, skin ellipse, eyes, mouth, hair, blur,
sensor noise) saved as JPEG quality 90, about 7.5 KB each like the real aligned CelebA
files. 1,000 distinct pictures are drawn; the other files are byte-unique copies of them
(a JPEG comment segment holds the file number), which costs the decoder the same;
smaller sets draw n/20 pictures.

Each size runs ``wgan.datasets.prepare`` (what ``stages/prepare.py`` does) in a fresh
subprocess, so its peak RSS is its own. Throughput is images written per second of the
in-process prepare (listing, decoding, cropping, resizing, hashing, serialising, GZIP
TFRecord writes and the atomic rename); the subprocess wall time with interpreter and
TensorFlow start-up is reported next to it.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, WORK, Figure, command, gated

SIZES = {"quick": [200], "default": [2000, 20000], "full": [2000, 20000]}
DISTINCT = 1000  # at most; n // 20 for smaller sets (50 at least)
TARGET_IMAGES_PER_S = 3000
RSS_GROWTH_LIMIT = 0.10


def _face(i: int) -> bytes:
    """One 178×218 synthetic face as JPEG bytes (deterministic in ``i``)."""
    from PIL import Image, ImageDraw, ImageFilter

    r = np.random.default_rng(i)
    yy, xx = np.mgrid[0:218, 0:178].astype(np.float32)
    grad = r.uniform(-0.6, 0.6, (2, 3))
    img = r.uniform(40, 220, 3) + yy[..., None] * grad[0] + xx[..., None] * grad[1]
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    cx, cy = 89 + int(r.integers(-8, 9)), 115 + int(r.integers(-8, 9))
    skin = tuple(int(v) for v in r.uniform(90, 240, 3))
    d.ellipse([cx - 45, cy - 60, cx + 45, cy + 60], fill=skin)
    for dx in (-18, 18):
        d.ellipse([cx + dx - 7, cy - 20, cx + dx + 7, cy - 12], fill=(30, 30, 30))
    d.arc([cx - 20, cy + 15, cx + 20, cy + 40], 20, 160, fill=(120, 30, 30), width=3)
    d.chord([cx - 50, cy - 75, cx + 50, cy - 10], 180, 360,
            fill=tuple(int(v) for v in r.uniform(0, 120, 3)))
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    noisy = np.asarray(im).astype(np.int16) + r.normal(0, 4, (218, 178, 3)).astype(np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The same picture with a COM segment after SOI: a byte-unique file, same decode."""
    segment = b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text
    return jpeg[:2] + segment + jpeg[2:]


def celeba_like(n: int) -> Path:
    """``benchmarks/work/celeba-<n>`` with ``img_align_celeba/000001.jpg`` ..., made once."""
    base = WORK / f"celeba-{n}"
    images = base / "img_align_celeba"
    done = base / ".complete"
    if done.is_file():
        return base
    images.mkdir(parents=True, exist_ok=True)
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        pictures = pool.map(_face, range(min(n, DISTINCT, max(50, n // 20))), chunksize=16)
    for i in range(n):
        payload = _with_comment(pictures[i % len(pictures)], b"benchmark file %d" % i)
        (images / f"{i + 1:06d}.jpg").write_bytes(payload)
    done.write_text(str(n))
    return base


def _child(n: int, out: str) -> None:
    """Subprocess body: prepare the set of size n into ``out``; print one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from wgan.config import parse_params
    from wgan.datasets import prepare

    data = parse_params({"data": {"name": "celeba",
                                  "celeba": {"path": str(WORK / f"celeba-{n}")}}}).data
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    meta = prepare(data, out)
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0  # the pool's workers are reaped by now
    size = sum(p.stat().st_size for p in Path(out).glob("*.tfrecord.gz"))
    print(json.dumps({
        "seconds": seconds,
        "images": sum(meta.counts.values()),
        "counts": meta.counts,
        "rss_self_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_workers_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "bytes_written": size,
        "cpu_s": cpu,
    }))


def _cpu_seconds() -> float:
    """User + system CPU of this process and its reaped children (the pool workers)."""
    return sum(u.ru_utime + u.ru_stime for u in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))


def measure(n: int) -> dict:
    """Prepare ``n`` CelebA-like JPEGs in a fresh process; its wall, CPU and peak memory."""
    celeba_like(n)
    out = WORK / f"prepared-celeba-{n}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.prepare", "--child", str(n),
                           str(out)], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"prepare of {n} images failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(process_wall_s=wall)
    return result


def _budget_us() -> float:
    """CPU µs per image that the target leaves when every core is busy all the time."""
    return 1e6 * (os.cpu_count() or 1) / TARGET_IMAGES_PER_S


def run(size: str = "default", repeats: int | None = None) -> list[Figure]:
    sizes = SIZES[size]
    repeats = repeats or (1 if size == "quick" else 3)
    figures, peak = [], {}
    for n in sizes:
        celeba_like(n)
        gate = gated(lambda n=n: measure(n), repeats)
        runs = gate.values
        for r, load in zip(runs, gate.loads, strict=True):
            r["load"] = load
        best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]  # median by time
        rate = best["images"] / best["seconds"]
        peak[n] = max(max(r["rss_self_mib"], r["rss_workers_mib"]) for r in runs)
        cmd = command("prepare", size)
        figures.append(Figure(
            id=f"prepare.celeba{n}.images_per_s", what=f"prepare {n:,} CelebA-like JPEGs "
            "178×218 → 64×64 (crop 108, bicubic), GZIP TFRecords", value=round(rate),
            unit="images/s", command=cmd, target=f">= {TARGET_IMAGES_PER_S}",
            meets=rate >= TARGET_IMAGES_PER_S, load=max(r["load"] for r in runs),
            details={"runs_s": [round(r["seconds"], 2) for r in runs],
                     "process_wall_s": round(best["process_wall_s"], 2),
                     "images_per_s_with_startup": round(best["images"]
                                                        / best["process_wall_s"]),
                     "counts": best["counts"], "bytes_written": best["bytes_written"],
                     "bytes_per_image": round(best["bytes_written"] / best["images"]),
                     "rss_main_mib": round(best["rss_self_mib"]),
                     "rss_worker_mib": round(best["rss_workers_mib"]),
                     "rounds_discarded_for_load": gate.discarded}))
        cpu_us = 1e6 * best["cpu_s"] / best["images"]
        figures.append(Figure(
            id=f"prepare.celeba{n}.cpu_us_per_image", what=f"prepare {n:,} images: CPU per "
            f"image, main process + workers ({TARGET_IMAGES_PER_S:,} images/s on "
            f"{os.cpu_count()} cores allows at most {_budget_us():.0f})", value=round(cpu_us),
            unit="µs", command=cmd, load=max(r["load"] for r in runs)))
        figures.append(Figure(
            id=f"prepare.celeba{n}.peak_rss_mib", what=f"prepare {n:,} images: peak RSS "
            "of any process (main or worker)", value=round(peak[n]), unit="MiB",
            command=cmd, load=max(r["load"] for r in runs)))
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        growth = peak[large] / peak[small] - 1
        figures.append(Figure(
            id="prepare.rss_growth", what=f"peak RSS growth from {small:,} to {large:,} "
            "images (streaming)", value=round(100 * growth, 1), unit="%",
            command=command("prepare", size), target=f"<= {100 * RSS_GROWTH_LIMIT:.0f}",
            meets=growth <= RSS_GROWTH_LIMIT))
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]), sys.argv[3])
    else:
        for fig in run(sys.argv[1] if len(sys.argv) > 1 else "quick"):
            print(fig)
