"""A virtual device: the agent's identity slots kept in memory instead of files.

It performs the flow's storage commands exactly as the key store does on a device (a new
pair becomes a candidate, a candidate that worked becomes current, the old one is kept as
previous), and it keeps the few numbers the report needs.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from fleetpki.agent.flow import Identities
from fleetpki.agent.messages import (
    Command,
    Credential,
    DiscardCandidate,
    NewIdentity,
    PromoteCandidate,
    SaveCandidate,
    SavePendingKey,
)
from fleetpki.agent.state import AgentState


class VirtualDevice:
    __slots__ = (
        "address",
        "candidate",
        "candidate_der",
        "current",
        "current_der",
        "device_id",
        "factory_der",
        "gaps",
        "index",
        "pending_key",
        "previous",
        "state",
        "valid_until",
    )

    def __init__(self, index: int, device_id: str, factory: x509.Certificate) -> None:
        self.index = index
        self.device_id = device_id
        self.address = f"10.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}"
        self.factory_der = factory.public_bytes(serialization.Encoding.DER)
        self.current: NewIdentity | None = None
        self.current_der: bytes | None = None
        self.candidate: NewIdentity | None = None
        self.candidate_der: bytes | None = None
        self.previous: NewIdentity | None = None
        self.pending_key: CertificateIssuerPrivateKeyTypes | None = None
        self.state = AgentState()
        self.valid_until: dt.datetime | None = None
        # Spans without a valid certificate: (from, until); until None = still open.
        self.gaps: list[tuple[dt.datetime, dt.datetime | None]] = []

    def identities(self) -> Identities:
        return Identities(
            current=self.current.certificate if self.current else None,
            candidate=self.candidate.certificate if self.candidate else None,
            factory=True, pending_key=self.pending_key)

    def client_certificate(self, credential: Credential) -> bytes | None:
        if credential is Credential.current:
            return self.current_der
        if credential is Credential.candidate:
            return self.candidate_der
        if credential is Credential.factory:
            return self.factory_der
        return None

    def apply(self, command: Command, now: dt.datetime) -> None:
        if isinstance(command, SaveCandidate):
            self.candidate = command.identity
            self.candidate_der = command.identity.certificate.public_bytes(
                serialization.Encoding.DER)
        elif isinstance(command, PromoteCandidate):
            if self.candidate is None:
                raise RuntimeError("the flow promoted a candidate the device does not hold")
            self._note_validity(now, self.candidate.certificate)
            self.previous, self.current, self.candidate = self.current, self.candidate, None
            self.current_der, self.candidate_der = self.candidate_der, None
        elif isinstance(command, DiscardCandidate):
            self.candidate = self.candidate_der = None
        elif isinstance(command, SavePendingKey):
            self.pending_key = command.key

    def _note_validity(self, now: dt.datetime, certificate: x509.Certificate) -> None:
        if self.valid_until is not None and now > self.valid_until:
            self.gaps.append((self.valid_until, now))
        self.valid_until = certificate.not_valid_after_utc

    def close_gaps(self, end: dt.datetime) -> None:
        if self.valid_until is None:
            return
        if end > self.valid_until:
            self.gaps.append((self.valid_until, None))
