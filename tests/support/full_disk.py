"""A disk that is full for chosen files: they are created as usual, but the kernel refuses
every byte written to them with ENOSPC, as on a real full disk (their descriptor is /dev/full's).

`os.open` and `io.open` (behind `Path.open`, `Path.write_bytes`) are replaced; batch workers
are forked from the test process, so they inherit the replacement.
"""

from __future__ import annotations

import io
import os
from typing import Any

import pytest


def fill_disk_for(monkeypatch: pytest.MonkeyPatch, *fragments: str) -> None:
    """Writes to any file whose path contains one of `fragments` fail with ENOSPC."""
    real_open, real_io_open = os.open, io.open

    def full(path: Any) -> bool:
        return not isinstance(path, int) and any(f in str(path) for f in fragments)

    def opening(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if flags & (os.O_WRONLY | os.O_RDWR) and full(path):
            device = real_open("/dev/full", os.O_WRONLY)
            os.dup2(device, fd)
            os.close(device)
        return fd

    def io_opening(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        # After `mode`, the sixth positional argument would be the opener.
        if full(file) and any(c in mode for c in "wax+") and len(args) < 6:
            kwargs.setdefault("opener", lambda path, flags: opening(path, flags, 0o666))
        return real_io_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(io, "open", io_opening)
