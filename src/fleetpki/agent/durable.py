"""Writing files so that a crash or a power loss leaves the old content or the new, whole.

The recipe, and why each step: write a new file under a temporary name and fsync it (its
bytes are on disk), rename it over the target (atomic: readers see old or new, never a mix),
fsync the directory (the rename itself is durable only once the directory entry is). The key
store (keystore.py) and the trust store (trust_store.py) write nothing any other way.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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
