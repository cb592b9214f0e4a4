"""Checksummed, atomic downloads of raw dataset files.

A download streams into a hidden temporary file beside ``dest`` and is renamed
into place only after its sha256 matches, so ``dest`` is either absent or
complete: an interrupted or corrupt download never looks like a usable file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path

from tqdm import tqdm

from wgan.files import sha256_file

__all__ = ["fetch"]

_CHUNK = 1 << 20
_TIMEOUT = 60  # seconds without data before a download is abandoned


def _check_existing(dest: Path, sha256: str, what: str) -> bool:
    """True when ``dest`` holds the expected file; a different file is an error, not overwritten."""
    if not dest.exists():
        return False
    digest = sha256_file(dest)
    if digest != sha256:
        raise ValueError(
            f"{what}: {dest} has sha256 {digest}, expected {sha256}; it is not the expected "
            "file (corrupt or a different release). Delete it to download again"
        )
    return True


def _download(url: str, tmp: Path, what: str) -> str:
    """Stream ``url`` into ``tmp`` with a progress bar; return the sha256 of what was written."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_TIMEOUT) as response, open(tmp, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=what) as bar:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    return digest.hexdigest()


def fetch(url: str, dest: str | Path, sha256: str, what: str) -> Path:
    """Return ``dest``, downloading ``url`` there first if it is missing.

    Raises ``FileNotFoundError`` when the download fails (naming the URL and the
    path to put the file at by hand) and ``ValueError`` when a checksum differs.
    """
    dest = Path(dest)
    if _check_existing(dest, sha256, what):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            digest = _download(url, tmp, what)
        except (OSError, http.client.HTTPException) as err:
            raise FileNotFoundError(
                f"{what}: {dest} is missing and downloading {url} failed ({err}). "
                f"Download it by hand and put it at {dest}"
            ) from err
        if digest != sha256:
            raise ValueError(
                f"{what}: download of {url} has sha256 {digest}, expected {sha256}; "
                f"nothing was saved to {dest}. Retry, or put a verified copy at {dest}"
            )
        os.replace(tmp, dest)
    except BaseException:  # includes KeyboardInterrupt: never leave a partial file
        tmp.unlink(missing_ok=True)
        raise
    return dest
