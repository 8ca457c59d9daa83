"""What front ends (CLI, EST, SCEP, CMP, ACME, inventory) may ask of the RA."""

from __future__ import annotations

import dataclasses
import enum
from typing import Protocol

from fleetpki.core.errors import FleetPKIError
from fleetpki.core.issuance_plan import Request
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CertificateStatus, IssuedCertificate
from fleetpki.core.renewal_window import RenewalWindow


@dataclasses.dataclass(frozen=True, slots=True)
class Authorization:
    """Who asks, and what they may ask for. Built by an authorizer, never by a front end."""

    actor: str  # e.g. "operator:alice", "bootstrap:group-7", "device:<serial>"
    profiles: frozenset[str] | None = None  # None: any profile
    # If set, the certificate must name exactly this device (re-enrollment, IDevID mapping).
    device_id: str | None = None
    # If set, the certificate must carry exactly these names (RFC 7030 §4.2.2: re-enrollment
    # keeps the subject and subjectAltName of the certificate being renewed).
    subject: str | None = None
    sans: tuple[str, ...] | None = None


class RegistrationAuthority(Protocol):
    def issue(self, request: Request, profile: str, authorization: Authorization
              ) -> IssuedCertificate: ...

    def revoke(self, serial: int, reason: RevocationReason, authorization: Authorization, *,
               issuer: str | None = None) -> IssuedCertificate: ...


@dataclasses.dataclass(frozen=True, slots=True)
class BasicCredentials:
    """HTTP Basic user name and password, as a front end received them."""

    username: str
    password: str = dataclasses.field(repr=False)


class EnrollmentKind(enum.Enum):
    enroll = "enroll"  # first enrollment (EST simpleenroll)
    reenroll = "reenroll"  # renewal with the current certificate (EST simplereenroll)
    server_keygen = "server-keygen"  # the server makes the key (EST serverkeygen)


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentRequest:
    """One device's request, whatever protocol carried it. The front end fills in what it
    saw on the wire; the RA decides who that is and what they may have."""

    csr: bytes  # DER (or PEM) PKCS#10
    kind: EnrollmentKind
    client_address: str
    label: str | None = None  # selects the profile; None: the credential's profile
    basic: BasicCredentials | None = None
    # DER of the TLS client certificate (leaf). The TLS layer or a trusted proxy checked the
    # chain; the RA checks again which of our CAs or which manufacturer CA signed it.
    client_certificate: bytes | None = None
    # Why the front end could not even decode the request, if it could not. The RA still
    # authenticates the requester first, so that the refusal is audited under a name.
    undecodable: str | None = None
    # The front end's own reason to refuse what the request asks of its protocol (EST: a key
    # encrypted in a way it cannot). Audited the same way, once the requester is known.
    refusal: FleetPKIError | None = None
    # SCEP (RFC 8894 §2.3): the CSR's challengePassword, which the RA checks against the
    # bootstrap credentials ("<id>:<secret>"), the profile's static challenge, or the profile's
    # challenge callback. `client_certificate` is then the certificate that signed the request,
    # when it is not self-signed (a factory identity, or the current certificate).
    challenge_password: str | None = dataclasses.field(default=None, repr=False)
    protocol: str = "est"  # what carried the request, for metrics and the audit log
    # The front end proved possession of the key another way than the CSR's signature (CMP's
    # CRMF proof, RFC 4211 §4.1) and sends the request as core/csr.py unsigned_request.
    possession_proven: bool = False
    # Server-side key generation: the key type the device asked for ("ec-p256", "ed25519",
    # "rsa" for the profile's RSA size), when the CSR's own key does not say it (CMP central
    # key generation, RFC 9483 §4.1.6). The profile must allow it.
    server_key_type: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Transaction:
    """A request the protocol names itself (SCEP transactionID): a retry of the same
    transaction gets the first outcome, never a second certificate."""

    protocol: str
    transaction_id: str
    # SHA-256 hex of the SubjectPublicKeyInfo that signed the message (CMP: or of the MAC
    # credential's id): the requester proves it holds that key (or secret), so only it may
    # collect the outcome.
    requester: str


@dataclasses.dataclass(frozen=True, slots=True)
class Enrolled:
    certificate: IssuedCertificate
    # RFC 7030 §4.4.2: with server-side key generation, the PKCS#8 DER of the new key. It
    # exists only in memory and in the one response that carries it.
    private_key_pkcs8: bytes | None = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentPending:
    """RFC 7030 §4.2.3: held for an operator; the client retries the same request later."""

    request_id: str
    retry_after: int  # seconds


@dataclasses.dataclass(frozen=True, slots=True)
class RenewalAdvice:
    """When the RA wants the holder of `certificate` to renew (core/renewal_window.py), what
    it knows of the certificate now, and how many seconds until the device should ask again
    (the profile's renewal.info_interval)."""

    certificate: IssuedCertificate
    window: RenewalWindow
    status: CertificateStatus
    retry_after: int
