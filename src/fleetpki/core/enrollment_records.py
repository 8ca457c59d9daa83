"""Records of who may enroll: bootstrap credentials, manufacturer CAs, enrollments on hold,
static enrollment challenges, and the transactions of protocols that name their requests.

They cross the store <-> RA boundary. Secrets never appear here: a bootstrap credential carries
only the hash of its secret (ra/credentials.py makes and checks it).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re

# What a bootstrap credential's id may be: the user name of HTTP Basic, which the server
# checks when it creates one and a device agent when it reads the one it was provisioned with.
CREDENTIAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


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
    # The stored CSR is not the bytes the device signed: its SCEP challengePassword was taken
    # out (no secret rests in the database), or its attributes put in DER order
    # (core/csr.py canonical_csr). Its signature no longer verifies; the RA checked the
    # original's before holding the request, so approval must not check it again.
    csr_altered: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentChallenge:
    """A profile's static challenge password (SCEP challengePassword, RFC 8894 §2.3): one
    secret every device of the profile may present, stored only as a hash."""

    profile: str
    secret_hash: str
    created_at: dt.datetime
    created_by: str


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentTransaction:
    """A request a protocol names itself (SCEP transactionID, RFC 8894 §3.2.1.1), bound to the
    key it asked a certificate for. A retry of the transaction gets the same outcome instead of
    a second certificate; a different key under the same name is refused.

    While neither `pending_id` nor `serial` is set, the request is being decided."""

    protocol: str  # "scep"
    transaction_id: str
    profile: str
    key_fingerprint: str  # SHA-256 hex of the requested SubjectPublicKeyInfo
    requester_fingerprint: str  # SHA-256 hex of the SPKI that signed the request
    # SHA-256 hex of the CSR's CertificationRequestInfo: a retry asks for the same; a CSR that
    # asks for something else is another request.
    request_fingerprint: str
    created_at: dt.datetime
    pending_id: str | None = None
    serial: int | None = None
    issuer: str | None = None
