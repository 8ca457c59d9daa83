"""What the enrollment flow asks of its driver, and what it gets back (flow.py).

The flow yields commands; the driver performs them and sends back the result: an
`HttpResponse`, a `CertificateRefused` or a `TransportFailure` for an `HttpRequest`, None for
the others. On a device
the driver is the HTTPS transport and the key store; in the simulator it is a virtual network
into the in-process EST front end and an in-memory slot per device.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes


class Credential(enum.Enum):
    """Which identity the transport presents as the TLS client certificate."""

    none = "none"  # anonymous TLS (a bootstrap secret travels in HTTP Basic instead)
    current = "current"  # the operational certificate: renewal, renewal information
    candidate = "candidate"  # just issued, not yet trusted for use: its first use confirms it
    factory = "factory"  # the IDevID the device left the factory with


@dataclasses.dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    credential: Credential = Credential.none


@dataclasses.dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclasses.dataclass(frozen=True, slots=True)
class TransportFailure:
    """No HTTP answer: refused, timed out, or the server's certificate did not chain to the
    trust store (then `untrusted_server`, which is never retried faster than the backoff)."""

    reason: str
    untrusted_server: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateRefused:
    """No HTTP answer because the server's TLS layer refused the client certificate we
    presented: a TLS alert that names our certificate (RFC 8446 §6.2: bad_certificate,
    unsupported_certificate, certificate_revoked, certificate_expired, certificate_unknown,
    unknown_ca, access_denied, certificate_required). That is an answer about the credential,
    like an HTTP 401/403, not an outage: the flow treats it as a refusal of that credential
    and falls back to the next one. Never produced for an anonymous connection, nor for a
    server we did not trust (that stays a `TransportFailure` with `untrusted_server`)."""

    reason: str
    alert: str  # the alert's name as RFC 8446 spells it, e.g. "unknown_ca"


Reply = HttpResponse | CertificateRefused | TransportFailure


@dataclasses.dataclass(frozen=True, slots=True)
class NewIdentity:
    key: CertificateIssuerPrivateKeyTypes = dataclasses.field(repr=False)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SaveCandidate:
    """Write the new key and certificate durably next to the current pair (not over it)."""

    identity: NewIdentity


@dataclasses.dataclass(frozen=True, slots=True)
class PromoteCandidate:
    """The candidate worked: it becomes current; the old pair is kept as the previous one."""


@dataclasses.dataclass(frozen=True, slots=True)
class DiscardCandidate:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class SavePendingKey:
    """RFC 7030 §4.2.3: a held request is repeated with the same CSR, so its key must survive
    a restart while the device waits. None clears it."""

    key: CertificateIssuerPrivateKeyTypes | None = dataclasses.field(repr=False)


Command = HttpRequest | SaveCandidate | PromoteCandidate | DiscardCandidate | SavePendingKey
