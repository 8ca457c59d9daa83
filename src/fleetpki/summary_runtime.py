"""Keeping the fleet summary fresh while `fleetpki serve` runs.

Every worker runs the loop; a lock file lets one of them compute at a time, and the stored
summary's age (not a per-worker timer) says when a pass is due, so a restart or a second
server on the same database does not double the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from fleetpki.core.clock import Clock
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.process_lock import process_lock

log = logging.getLogger(__name__)


def summary_lock(directory: Path) -> contextlib.AbstractContextManager[bool]:
    """Held by whoever computes a summary; yields False at once if someone else is."""
    return process_lock(directory / ".summary.lock", wait=False)


def refresh_if_due(latest: Callable[[], StoredSummary | None],
                   refresh: Callable[[], StoredSummary], clock: Clock,
                   interval: dt.timedelta, lock_directory: Path) -> StoredSummary | None:
    """Compute a summary if the newest is older than `interval` and no one else is at it."""
    current = latest()
    if current is not None and clock.now() - current.computed_at < interval:
        return None
    with summary_lock(lock_directory) as held:
        if not held:
            return None
        current = latest()  # another worker may have finished while we waited for the lock
        if current is not None and clock.now() - current.computed_at < interval:
            return None
        stored = refresh()
        log.info("fleet summary computed", extra={"seconds": stored.seconds})
        return stored


async def summary_loop(latest: Callable[[], StoredSummary | None],
                       refresh: Callable[[], StoredSummary], clock: Clock,
                       interval: dt.timedelta, lock_directory: Path) -> None:
    """Until cancelled; the first check comes right away, so a fresh server shows a summary
    within seconds. A failed pass is logged and retried at the next check."""
    check_every = max(5.0, min(60.0, interval.total_seconds() / 4))
    while True:
        try:
            await asyncio.to_thread(refresh_if_due, latest, refresh, clock, interval,
                                    lock_directory)
        except Exception:
            log.exception("fleet summary failed; retrying in %.0f s", check_every)
        await asyncio.sleep(check_every)


def refresh_in_background(refresh: Callable[[], StoredSummary], lock_directory: Path) -> bool:
    """Start a pass in a thread unless one is running (here or in another worker); True if
    started. A million certificates take a minute or more: no page should wait for that."""

    def run() -> None:
        with summary_lock(lock_directory) as held:
            if not held:
                return
            try:
                stored = refresh()
            except Exception:
                log.exception("fleet summary failed")
                return
            log.info("fleet summary computed on request", extra={"seconds": stored.seconds})

    with summary_lock(lock_directory) as free:
        if not free:
            return False
    threading.Thread(target=run, name="fleet-summary", daemon=True).start()
    return True
