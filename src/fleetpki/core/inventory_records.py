"""What the inventory reads about devices and the fleet as a whole, as frozen records."""

from __future__ import annotations

import dataclasses
import datetime as dt


@dataclasses.dataclass(frozen=True, slots=True)
class DeviceSummary:
    """A device as its certificates describe it: fleetpki has no device table of its own, a
    device is the `device_id` its certificates name."""

    device_id: str
    certificates: int
    valid: int  # unexpired and unrevoked, now
    profiles: tuple[str, ...]
    first_issued: dt.datetime
    last_issued: dt.datetime
    latest_not_after: dt.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateFact:
    """The columns a fleet summary needs of one certificate: no DER unless asked for, so a
    pass over a million certificates moves tens of megabytes, not hundreds."""

    serial: int
    issuer: str
    device_id: str
    profile: str
    key_spec: str
    not_before: dt.datetime
    not_after: dt.datetime
    issued_at: dt.datetime
    revoked_at: dt.datetime | None
    der: bytes | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredSummary:
    """A fleet summary as computed at one moment (inventory/summary.py makes and reads it)."""

    computed_at: dt.datetime
    seconds: float  # how long the pass took
    document: str  # JSON
