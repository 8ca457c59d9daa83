"""What front ends (CLI, EST, SCEP, CMP, ACME, inventory) may ask of the RA."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from fleetpki.core.issuance_plan import Request
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate


@dataclasses.dataclass(frozen=True, slots=True)
class Authorization:
    """Who asks, and what they may ask for. Built by an authorizer, never by a front end."""

    actor: str  # e.g. "operator:alice", "bootstrap:group-7", "device:<serial>"
    profiles: frozenset[str] | None = None  # None: any profile
    # If set, the certificate must name exactly this device (re-enrollment, IDevID mapping).
    device_id: str | None = None


class RegistrationAuthority(Protocol):
    def issue(self, request: Request, profile: str, authorization: Authorization
              ) -> IssuedCertificate: ...

    def revoke(self, serial: int, reason: RevocationReason, authorization: Authorization, *,
               issuer: str | None = None) -> IssuedCertificate: ...
