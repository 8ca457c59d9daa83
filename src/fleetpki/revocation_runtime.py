"""Revocation inside a running fleetpki: one publisher at a time, and OCSP responders that
follow their certificates' rollover without a restart.

Every worker of `fleetpki serve` runs the same loop; a lock file makes sure that only one of them
(or a `fleetpki crl publish` run from a shell) signs at a time, the others skip that round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from fleetpki.process_lock import process_lock
from fleetpki.revocation.ocsp_responder import OcspResponder, ResponderKey

log = logging.getLogger(__name__)
_RELOAD_EVERY = 10.0  # seconds between looks at the responder files


def publish_lock(directory: Path, *, wait: bool) -> contextlib.AbstractContextManager[bool]:
    """Hold the publication lock; yields False (without waiting) when `wait` is False and
    another process holds it."""
    return process_lock(directory / ".publish.lock", wait=wait)


class ResponderKeys:
    """Reloads the responder keys into a running responder when their files change."""

    def __init__(self, files: Callable[[], list[Path]], load: Callable[[], list[ResponderKey]]
                 ) -> None:
        self._files = files
        self._load = load
        self._stamp = self._current_stamp()
        self._checked = time.monotonic()

    def initial(self) -> list[ResponderKey]:
        return self._load()

    def refresh(self, responder: OcspResponder) -> None:
        if time.monotonic() - self._checked < _RELOAD_EVERY:
            return
        self._checked = time.monotonic()
        stamp = self._current_stamp()
        if stamp != self._stamp:
            responder.replace_responders(self._load())
            self._stamp = stamp
            log.info("OCSP responder certificates reloaded")

    def _current_stamp(self) -> tuple[tuple[str, int], ...]:
        stamps = []
        for path in self._files():
            with contextlib.suppress(FileNotFoundError):
                stamps.append((str(path), path.stat().st_mtime_ns))
        return tuple(stamps)


async def revocation_loop(publish: Callable[[], object], directory: Path, interval: float,
                          responder: OcspResponder | None, keys: ResponderKeys | None) -> None:
    """Until cancelled: every `interval`, publish what is due if no one else is, and pick up
    rolled-over responder certificates. A failed round is logged and retried next round."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(_publish_if_free, publish, directory)
            if responder is not None and keys is not None:
                keys.refresh(responder)
        except Exception:
            log.exception("revocation publishing failed; retrying in %.0f s", interval)


def _publish_if_free(publish: Callable[[], object], directory: Path) -> None:
    with publish_lock(directory, wait=False) as held:
        if held:
            publish()
