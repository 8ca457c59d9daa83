"""Certificates found at TLS endpoints by discovery scans (`fleetpki discover`).

They cross the discovery <-> store boundary. A discovered certificate is whatever an endpoint
served, ours or not, well-formed or not: nothing here is trusted or verified.
"""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True, slots=True)
class DiscoveredCertificate:
    """One certificate seen at one endpoint. The same certificate served at two endpoints is
    two records; `fingerprint` (SHA-256 of `der`, lower-case hex) tells them apart at one.

    `first_seen` and `last_seen` are the store's: None on a record about to be written, set on
    every record read back."""

    host: str
    port: int
    fingerprint: str
    position: int  # 0: the leaf the endpoint served; 1..: the chain it sent after it
    subject: str  # RFC 4514
    issuer_name: str  # RFC 4514
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    key_spec: str  # 'ec-p256', 'rsa-1024', ... (at most 16 characters)
    signature_algorithm: str  # the signature algorithm OID's name, e.g. 'ecdsa-with-SHA256'
    issued_by_us: str | None  # the name of our CA whose signature verifies, if any
    der: bytes
    first_seen: dt.datetime | None = None
    last_seen: dt.datetime | None = None

    @property
    def endpoint(self) -> str:
        """'host:port', with an IPv6 address in brackets (RFC 3986 §3.2.2)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"
