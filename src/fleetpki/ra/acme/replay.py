"""Spent ACME nonces (RFC 8555 §6.5): each is accepted once, by whichever server process.

Nonces are minted without a database write (protocols/acme/nonces.py); spending one is a
single insert that fails for a nonce seen before, kept until the nonce would have expired.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol


class NonceStore(Protocol):
    def spend_nonce(self, nonce: str, *, expires: dt.datetime) -> bool: ...


class SpentNonces:
    def __init__(self, store: NonceStore) -> None:
        self._store = store

    def spend(self, nonce: str, expires: float) -> bool:
        """False if `nonce` was spent before. `expires`: UNIX time it stops being accepted."""
        return self._store.spend_nonce(nonce, expires=dt.datetime.fromtimestamp(expires, dt.UTC))
