"""The file helpers every stage shares: a file's sha256, an atomic JSON write and a
bounded JSON read.

JSON outputs (metrics, ``info.json``, ``meta.json``, the training config) are written
to a temporary sibling and renamed into place, so a killed stage never leaves a
truncated file that DVC or a later stage would read as complete. JSON inputs are read
only up to a size bound (:func:`read_json`), and a bad one is one ``ValueError`` naming
the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["read_json", "sha256_file", "write_json"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks so large files never sit in memory."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_json(path: str | Path, data: Any, *, trailing_newline: bool = True) -> None:
    """Write ``data`` as JSON (indent 2) to ``path`` atomically, creating parent dirs.

    ``trailing_newline=False`` only for files whose exact bytes are already fixed by
    outputs in the wild (``meta.json``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened by name rather than with mkstemp, so the file gets the usual umask-based
    # permissions instead of mkstemp's owner-only 0600.
    text = json.dumps(data, indent=2) + ("\n" if trailing_newline else "")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
