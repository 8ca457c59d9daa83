"""Writing files so that a crash or a power loss leaves the old content or the new, whole;
and reading a file that must be a regular one without ever blocking on something else.

The recipe, and why each step: write a new file under a temporary name and fsync it (its
bytes are on disk), rename it over the target (atomic: readers see old or new, never a mix),
fsync the directory (the rename itself is durable only once the directory entry is). The key
store (keystore.py) and the trust store (trust_store.py) write nothing any other way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


class NotRegularFile(OSError):
    """The path names something other than a regular file (a FIFO, a device, a directory).
    `strerror` says which, for messages such as "cannot read PATH: a FIFO, not a regular
    file"."""


def read_regular(path: Path) -> bytes:
    """The bytes of `path`, or NotRegularFile if it is not a regular file (other failures
    are the OSError of open or read).

    Why not stat() then read_bytes(): opening a FIFO that nobody writes to blocks forever,
    and a device such as /dev/zero never ends, so a file swapped between the check and the
    open would still hang the agent. The open itself does not block (O_NONBLOCK; O_NOCTTY so
    that a terminal never becomes the daemon's controlling one), and the check is fstat() on
    the descriptor that is then read: no race."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _KINDS if test(mode)), "a special file")
            raise NotRegularFile(errno.EINVAL, f"{kind}, not a regular file", str(path))
        os.set_blocking(fd, True)  # a regular file: reads behave as usual
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` (temporary file, fsync, rename, fsync of the directory).
    A crash can leave the temporary file behind; the key store removes it on load."""
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        scratch.unlink()
    write_new(scratch, data, mode)
    scratch.replace(path)
    fsync_directory(path.parent)


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (it must not exist, and must not be a symlink) with `mode` from the
    start, so a key file is never readable by others even for an instant; fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def entries(directory: Path) -> list[os.DirEntry[str]]:
    """A directory's entries, read at once (the scandir iterator is closed even if the
    caller stops early)."""
    with os.scandir(directory) as iterator:
        return list(iterator)
