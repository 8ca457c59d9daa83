"""What the rest of fleetpki may ask of the store, as narrow Protocols.

Each consumer takes the smallest of these it needs: the inventory and the OCSP responder get a
`CertificateReader` and cannot write by accident; the RA gets an `IssuanceLedger`.

Every method that changes state takes the audit events describing the change and writes them in
the same transaction: an action is recorded if and only if it happened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Protocol

from fleetpki.core.audit_chain import canonical_details
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CARecord, CertificateStatus, IssuedCertificate


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEvent:
    """An entry to be appended; the store assigns sequence, time and hashes.

    The canonical JSON of the details is computed where the event is made, so a batch worker
    does that work in parallel and the process that chains the entries only hashes."""

    actor: str
    action: str
    subject: str
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    details_json: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details_json", canonical_details(self.details))


@dataclasses.dataclass(frozen=True, slots=True)
class SerialReservation:
    """The intent to issue (DESIGN.md §2), written before anything is signed."""

    issuer: str
    serial: int
    device_id: str
    profile: str


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateQuery:
    device_id: str | None = None
    profile: str | None = None
    issuer: str | None = None
    status: CertificateStatus | None = None
    expiring_before: dt.datetime | None = None
    subject_contains: str | None = None
    san_contains: str | None = None
    key_spec: str | None = None
    limit: int = 100
    offset: int = 0


class CertificateReader(Protocol):
    def get_certificate(self, serial: int, issuer: str | None = None
                        ) -> IssuedCertificate | None: ...

    def find_certificates(self, query: CertificateQuery, *, now: dt.datetime
                          ) -> list[IssuedCertificate]: ...

    def current_certificate(self, device_id: str, profile: str, *, now: dt.datetime
                            ) -> IssuedCertificate | None:
        """The newest valid (unrevoked, unexpired) certificate of a device in a profile."""
        ...


class CAReader(Protocol):
    def list_cas(self) -> list[CARecord]: ...

    def get_ca(self, name: str) -> CARecord | None: ...


class AuditWriter(Protocol):
    def audit(self, events: Sequence[AuditEvent], *, at: dt.datetime) -> None:
        """Append events that record something with no other state change (a refusal, a CRL)."""
        ...


class IssuanceLedger(CertificateReader, AuditWriter, Protocol):
    """The RA's slice: reserve serials, record what was signed, release what was refused."""

    def reserve_serials(self, reservations: Sequence[SerialReservation], *, at: dt.datetime
                        ) -> None:
        """Raise SerialCollision if any serial is already known for its issuer."""
        ...

    def record_issued(self, certificates: Sequence[IssuedCertificate],
                      released: Sequence[SerialReservation], events: Sequence[AuditEvent], *,
                      at: dt.datetime) -> None:
        """One transaction: certificates stored, refused reservations released, events chained."""
        ...


class RevocationWriter(Protocol):
    def revoke(self, issuer: str, serial: int, reason: RevocationReason, *, at: dt.datetime,
               event: AuditEvent) -> IssuedCertificate: ...


class CARegistry(CAReader, AuditWriter, Protocol):
    def add_ca(self, record: CARecord, event: AuditEvent, *, at: dt.datetime) -> None: ...

    def set_ca_key_file(self, name: str, key_file: str | None, event: AuditEvent, *,
                        at: dt.datetime) -> None: ...

    def next_crl_number(self, issuer: str) -> int: ...


class SerialCollision(Exception):
    """A freshly drawn serial already exists for the issuer; draw again (astronomically rare)."""


class CARevocationWriter(Protocol):
    def revoke_ca(self, name: str, reason: RevocationReason, *, at: dt.datetime,
                  event: AuditEvent) -> None: ...
