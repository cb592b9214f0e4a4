"""Reading the files of a dataset, which may come from strangers: regular files only,
never blocking, never more than a cap.

A file named ``x.png`` may be a FIFO (an ``open`` for reading waits for a writer
forever), a device (``/dev/zero`` never ends) or a link to a file anywhere on the
machine. :func:`open_regular` opens without blocking (``O_NONBLOCK``) and, unless told
otherwise, without following a link (``O_NOFOLLOW``), then checks with ``fstat`` that
what it opened is a regular file: a check of the name beforehand could be outdated by
the time of the ``open``. :func:`read_capped` then reads at most ``cap + 1`` bytes,
whatever size the file claims. Refusals raise :class:`RefusedFile`, whose message
says why without naming the file (callers add the name where they report it).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

__all__ = ["RefusedFile", "inside", "kind", "open_regular", "read_capped", "read_regular"]

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFREG: "a regular file",
}


class RefusedFile(ValueError):
    """A file that is not a regular file or is larger than its cap; the message is the
    reason, without the file's name."""


def kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: "a FIFO (named pipe)", "a socket", ..."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def inside(path: str, root: str) -> str | None:
    """``path`` relative to the resolved directory ``root`` once every link in it is
    resolved, or None if it leads outside ``root`` (or to ``root`` itself)."""
    real = os.path.realpath(path)
    if real == root or os.path.commonpath([real, root]) != root:
        return None
    return os.path.relpath(real, root)


def open_regular(path: str | Path, *, dir_fd: int | None = None,
                 follow_symlinks: bool = False) -> int:
    """A read-only descriptor of the regular file ``path`` (relative to ``dir_fd`` if
    given). Never blocks on a FIFO; raises :class:`RefusedFile` if ``path`` is anything
    but a regular file (a link, too, unless ``follow_symlinks``), ``OSError`` if it
    cannot be opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as err:
        if err.errno == errno.ELOOP and not follow_symlinks:  # O_NOFOLLOW met a link
            raise RefusedFile("a symbolic link, not followed") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RefusedFile(f"{kind(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_capped(fd: int, cap: int, what: str) -> bytes:
    """All the bytes of the open regular file ``fd``, refused (:class:`RefusedFile`) if
    more than ``cap``: first by the size ``fstat`` reports, then while reading, since
    a file can grow and some files (``/proc``) report no size at all."""
    size = os.fstat(fd).st_size
    if size > cap:
        raise RefusedFile(f"{size} bytes, more than the {cap}-byte cap for {what}")
    chunks, total = [], 0
    while True:
        # os.read allocates what it is asked for, so never ask for more than cap + 1.
        chunk = os.read(fd, min(cap + 1 - total, max(size - total + 1, 1 << 16)))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        if total > cap:
            raise RefusedFile(f"more than the {cap}-byte cap for {what} (it grew while "
                              "being read)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_regular(path: str | Path, cap: int, what: str, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``cap`` of them: see
    :func:`open_regular` and :func:`read_capped`."""
    fd = open_regular(path, follow_symlinks=follow_symlinks)
    try:
        return read_capped(fd, cap, what)
    finally:
        os.close(fd)
