"""The file helpers every stage shares: a file's sha256, atomic writes and bounded JSON reads.

Every stage output is written to a temporary sibling and renamed into place
(:func:`atomic_path`), so a killed stage or a full disk never leaves a truncated file that
DVC or a later stage would read as complete. JSON inputs are read only up to a size
bound (:func:`read_json`), and a bad one is one ``ValueError`` naming the file.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["atomic_path", "npy_header", "read_json", "sha256_file", "write_json"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so large files never sit in memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to, renamed onto ``path`` if the block succeeds.

    So ``path`` only ever appears complete: on any error (Ctrl-C and a full disk included)
    the sibling is removed and ``path`` is left as it was; one that a killed process left
    behind is removed by the next write of ``path``. The sibling is hidden and keeps
    ``path``'s suffix, by which Keras, numpy and Pillow choose the format they write.
    Parent directories are created. The file must be closed when the block ends, as the
    rename happens then; opening it in the same ``with`` does that::

        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            f.write(data)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _remove_stale(path: Path) -> None:
    """Remove the temporary siblings of ``path`` whose writing process no longer exists."""
    prefix = f".{path.stem}.tmp-"
    for stale in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(path.suffix)}"):
        pid = re.match(r"\d+", stale.name[len(prefix):])
        if pid is not None and not _alive(int(pid.group())):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, as another user's
        return True
    return True


def write_json(path: str | Path, data: Any, *, trailing_newline: bool = True) -> None:
    """Write ``data`` as JSON (indent 2) to ``path`` atomically, creating parent dirs.

    ``trailing_newline=False`` only for files whose exact bytes are already fixed by
    outputs in the wild (``meta.json``).
    """
    text = json.dumps(data, indent=2) + ("\n" if trailing_newline else "")
    # Opened by name rather than with mkstemp, so the file gets the usual umask-based
    # permissions instead of mkstemp's owner-only 0600.
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def read_json(path: str | Path, max_bytes: int, fix: str) -> Any:
    """The JSON value in ``path``, which is read only if it holds at most ``max_bytes``.

    Raises:
      ValueError: one line naming ``path``, what is wrong and then ``fix`` (what to do),
        if the file is too large or not JSON (deep nesting included).
      OSError: if it cannot be read (the message names it).
    """
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{path}: larger than {max_bytes} bytes, so not read; {fix}")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"{path}: not valid JSON ({err}); {fix}") from err


def npy_header(f: Any) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from the header of an open ``.npy`` file, so an
    untrusted array can be judged before any of its data is read."""
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f".npy version {version}, not 1.0 or 2.0")
    return read(f)
