"""Records of who may enroll: bootstrap credentials, manufacturer CAs, enrollments on hold.

They cross the store <-> RA boundary. Secrets never appear here: a bootstrap credential carries
only the hash of its secret (ra/credentials.py makes and checks it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum


@dataclasses.dataclass(frozen=True, slots=True)
class BootstrapCredential:
    """A user name and secret a device presents (HTTP Basic) for its first enrollment.

    Per-device when `device_id` is set (the certificate must name that device), per-group
    otherwise (any device of the profile, up to `max_uses` enrollments)."""

    id: str
    secret_hash: str
    profile: str
    device_id: str | None
    max_uses: int
    uses: int
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    disabled_at: dt.datetime | None = None

    def unusable_reason(self, now: dt.datetime) -> str | None:
        """Why the credential cannot authenticate now, or None. Use counts are checked when a
        use is redeemed, so that a device polling for an approved request is not locked out."""
        if self.disabled_at is not None:
            return f"bootstrap credential '{self.id}' was disabled on {self.disabled_at:%Y-%m-%d}"
        if self.expires_at <= now:
            return f"bootstrap credential '{self.id}' expired on {self.expires_at:%Y-%m-%d %H:%M}"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class ManufacturerCA:
    """A CA that signs factory identities (IDevIDs, IEEE 802.1AR). A device whose client
    certificate it signed directly may enroll in `profile` (group enrollment)."""

    name: str
    certificate_der: bytes
    profile: str
    device_id_from: str  # subject attribute of the IDevID naming the device, e.g. serialNumber
    allow_list: bool  # only device ids on the manufacturer's allow list may enroll
    created_at: dt.datetime


class ApprovalState(enum.Enum):
    pending = "pending"
    issued = "issued"
    rejected = "rejected"


@dataclasses.dataclass(frozen=True, slots=True)
class PendingEnrollment:
    """An enrollment held for an operator (profile `approval = "manual"`). The device retries
    with the same request (RFC 7030 §4.2.3: 202 + Retry-After) and is matched by its key."""

    id: str
    profile: str
    device_id: str
    actor: str  # who asked, as the audit log names them
    key_fingerprint: str  # SHA-256 of the SubjectPublicKeyInfo
    csr_der: bytes
    requested_at: dt.datetime
    state: ApprovalState = ApprovalState.pending
    decided_by: str | None = None
    decided_at: dt.datetime | None = None
    serial: int | None = None
    issuer: str | None = None
    reason: str = ""
