"""What the enrollment flow writes onto the wire and reads off it: CSRs and credentials in,
certificates' names, Retry-After and error texts out. Pure functions, so that flow.py keeps to
the decisions."""

from __future__ import annotations

import base64
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from fleetpki.agent.messages import CertificateRefused, HttpResponse, Reply, TransportFailure

_SHOWN_BYTES = 300  # of an error body, in logs and status
_MAX_RETRY_AFTER_SECONDS = 90 * 86400  # a longer wait is a server's mistake


def serial_text(certificate: x509.Certificate) -> str:
    return f"{certificate.serial_number:x}"


def names_of(certificate: x509.Certificate) -> tuple[x509.Name, tuple[x509.GeneralName, ...]]:
    """Subject and SANs, which a renewal must repeat unchanged (RFC 7030 §4.2.2)."""
    try:
        sans = tuple(certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = ()
    return certificate.subject, sans


def build_csr(key: CertificateIssuerPrivateKeyTypes, subject: x509.Name,
              sans: tuple[x509.GeneralName, ...]) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.DER)


def public_key_der(key: CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def basic_authorization(username: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{secret}".encode()).decode("ascii")


def retry_after(reply: HttpResponse, now: dt.datetime) -> dt.datetime | None:
    """RFC 9110 §10.2.3: delay-seconds (HTTP-date is not used by EST servers we know)."""
    value = reply.header("retry-after")
    if value is None or not value.strip().isdigit():
        return None
    # min() on the integer first: a 40-digit value must not overflow timedelta
    return now + dt.timedelta(seconds=min(int(value.strip()), _MAX_RETRY_AFTER_SECONDS))


def _body(reply: HttpResponse) -> str:
    return reply.body[:_SHOWN_BYTES].decode("utf-8", "replace").strip()


def body_text(reply: HttpResponse) -> str:
    """What the server said, or "HTTP 503" when it said nothing."""
    return _body(reply) or f"HTTP {reply.status}"


def status_text(reply: HttpResponse) -> str:
    """"HTTP 503: what the body says", or only "HTTP 503" when the body says nothing (not
    "HTTP 503: HTTP 503")."""
    text = _body(reply)
    return f"HTTP {reply.status}: {text}" if text else f"HTTP {reply.status}"


def describe(reply: Reply | None) -> str:
    if isinstance(reply, TransportFailure | CertificateRefused):
        return reply.reason
    if isinstance(reply, HttpResponse):
        return status_text(reply)
    return "no answer"
