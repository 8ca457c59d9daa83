"""A lock shared by every process on the host that works on the same data directory (the
workers of `fleetpki serve`, a CLI command next to them): an flock on a file."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def process_lock(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the lock on `path` (created if missing); yields False, without waiting, when
    `wait` is False and another holder has it. Closing the file releases it, so a holder
    that dies releases it too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
