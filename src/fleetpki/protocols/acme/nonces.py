"""Stateless ACME anti-replay nonces (RFC 8555 §6.5): minted without a database write, and
checkable by any server process that shares the key.

A nonce is base64url (no padding, §6.5.1) of

    issued (8 octets, big-endian milliseconds since the UNIX epoch)
    || random (16 octets from the OS CSPRNG: §6.5.1 wants nonces unpredictable and unique)
    || HMAC-SHA256(key, label || issued || random), truncated to 16 octets

so `expiry` can tell a nonce this deployment minted, and when, from one it did not, with no
lookup. What it cannot tell is whether the nonce was already used: replay is stopped by the
store, which records each spent nonce until its expiry and refuses a second spend
(ra/acme/replay.py). `expiry` alone does NOT stop a replay.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Final

from joserfc.util import urlsafe_b64decode, urlsafe_b64encode

__all__ = ["MIN_KEY_BYTES", "NONCE_LENGTH", "NonceMint"]

MIN_KEY_BYTES: Final = 32
_ISSUED_BYTES: Final = 8
_RANDOM_BYTES: Final = 16  # 128 bits
_MAC_BYTES: Final = 16  # truncated HMAC-SHA256: forging one is a 2**-128 guess per try
_RAW_BYTES: Final = _ISSUED_BYTES + _RANDOM_BYTES + _MAC_BYTES
NONCE_LENGTH: Final = len(urlsafe_b64encode(bytes(_RAW_BYTES)))  # characters
# Domain separation: the key may be derived from a secret that MACs other things too.
_LABEL: Final = b"fleetpki acme nonce v1\x00"


class NonceMint:
    """Mints nonces and says until when one is accepted. `key` is shared by every server
    process (at least MIN_KEY_BYTES of secret); `clock` returns UNIX seconds."""

    def __init__(self, key: bytes, *, lifetime: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the nonce key must be at least {MIN_KEY_BYTES} bytes")
        if not lifetime > 0:
            raise ValueError("the nonce lifetime must be positive")
        self._key = bytes(key)
        self._lifetime = lifetime
        self._clock = clock

    def new(self) -> str:
        """A fresh nonce for a Replay-Nonce header (RFC 8555 §6.5.1)."""
        issued_ms = max(0, int(self._clock() * 1000))
        body = issued_ms.to_bytes(_ISSUED_BYTES, "big") + secrets.token_bytes(_RANDOM_BYTES)
        return urlsafe_b64encode(body + self._mac(body)).decode("ascii")

    def expiry(self, nonce: str) -> float | None:
        """The UNIX time after which `nonce` is no longer accepted, if this deployment minted
        it and that time has not passed; None otherwise (forged, garbled, expired). Says
        nothing about whether it was spent: the caller must record it (module docstring)."""
        raw = _decode(nonce)
        if raw is None:
            return None
        body, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(body)):  # constant time: no MAC oracle
            return None
        expires = int.from_bytes(body[:_ISSUED_BYTES], "big") / 1000 + self._lifetime
        return expires if self._clock() <= expires else None

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, _LABEL + body, hashlib.sha256).digest()[:_MAC_BYTES]


def _decode(nonce: object) -> bytes | None:
    """The raw octets of a well-formed nonce, or None: a length check first, so hostile
    input costs no more than a nonce."""
    if not isinstance(nonce, str) or len(nonce) != NONCE_LENGTH:
        return None
    try:
        raw = urlsafe_b64decode(nonce.encode("ascii"))
    except ValueError:  # non-ASCII, padding, characters outside base64url
        return None
    return raw if len(raw) == _RAW_BYTES else None
