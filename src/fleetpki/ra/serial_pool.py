"""Serials reserved ahead, so that an online issuance makes one write transaction, not two.

The issuance cycle (docs/issuance-cycle.md, step 3) writes a serial to the ledger before it
is signed. Done per certificate, that is a COMMIT of its own (an fsync on a durable store, a
turn at SQLite's single writer lock) in front of the one that records the certificate. A pool
reserves a block of serials in one transaction and hands them out one at a time; each is still
in the ledger before anything is signed with it, so a crash leaves reserved serials that are
never reused and no certificate anyone has seen, exactly as before.

Blocks start at one serial and double with each refill up to ``largest``: a one-off command
reserves what it uses, a busy server soon reserves 64 at a time. Serials of a block are
reserved without a device (the ledger names the device when the certificate is recorded);
those still unused when the pool is released are given back to the ledger.
"""

from __future__ import annotations

import datetime as dt
import threading

from fleetpki.core.serials import SerialSource
from fleetpki.store.api import IssuanceLedger, SerialCollision, SerialReservation

_ATTEMPTS = 5
LARGEST_BLOCK = 64


class SerialPool:
    """Thread-safe: the threads of one process share a pool; each process has its own."""

    def __init__(self, ledger: IssuanceLedger, source: SerialSource, *,
                 largest: int = LARGEST_BLOCK) -> None:
        if largest < 1:
            raise ValueError("a serial pool needs blocks of at least one serial")
        self._ledger = ledger
        self._source = source
        self._largest = largest
        self._lock = threading.Lock()
        self._ready: dict[str, list[int]] = {}
        self._block: dict[str, int] = {}

    def take(self, issuer: str, device_id: str, profile: str, now: dt.datetime) -> int:
        """A serial of `issuer` that the ledger holds as reserved and nobody else will get."""
        with self._lock:
            ready = self._ready.setdefault(issuer, [])
            if ready:
                return ready.pop()
            size = self._block.get(issuer, 1)
            mine, *spare = self._reserve(issuer, size, now, device_id, profile)
            ready.extend(spare)
            self._block[issuer] = min(size * 2, self._largest)
            return mine

    def release(self, now: dt.datetime) -> None:
        """Give the serials never handed out back to the ledger (on a clean shutdown)."""
        with self._lock:
            unused = [SerialReservation(issuer, serial, "", "")
                      for issuer, serials in self._ready.items() for serial in serials]
            self._ready.clear()
        if unused:
            self._ledger.record_issued([], unused, [], at=now)

    def _reserve(self, issuer: str, size: int, now: dt.datetime, device_id: str,
                 profile: str) -> list[int]:
        """`size` serials (fewer if the source repeated one) in one transaction; the first
        is reserved for `device_id`, the others for nobody yet."""
        for _ in range(_ATTEMPTS):
            serials = list(dict.fromkeys(self._source.next_serial() for _ in range(size)))
            try:
                self._ledger.reserve_serials(
                    [SerialReservation(issuer, serials[0], device_id, profile),
                     *(SerialReservation(issuer, serial, "", "") for serial in serials[1:])],
                    at=now)
            except SerialCollision:
                continue  # all or none were written: draw the whole block again
            return serials
        raise RuntimeError("could not draw unused serials: the serial source is broken")
