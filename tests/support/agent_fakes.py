"""Fakes for the device agent's unit tests: a CA made with `cryptography` alone, EST replies,
and a scripted driver that answers a flow session's requests and records its commands.

The CA here is deliberately not fleetpki's: the agent must work with certificates it did not
make, and a flow test must not depend on the server's issuance code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import NameOID

from fleetpki.agent import durable
from fleetpki.agent.flow import Session, SessionResult
from fleetpki.agent.messages import (
    Command,
    HttpRequest,
    HttpResponse,
    Reply,
    TransportFailure,
)
from fleetpki.protocols.est.codec import (
    CT_CERTS_ONLY,
    certs_only,
    decode_base64_body,
    encode_base64_body,
    encode_serverkeygen,
)
from fleetpki.protocols.est.renewal_info import CT_JSON, RenewalInfo, encode_renewal_info

NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclasses.dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate


def make_ca(cn: str, parent: Authority | None = None, *, now: dt.datetime = NOW) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = parent.certificate.subject if parent else name(cn)
    certificate = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - 3650 * DAY).not_valid_after(now + 3650 * DAY)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                   .sign(parent.key if parent else key, hashes.SHA256()))
    return Authority(key, certificate)


class FakeCa:
    """A root and an issuing CA; issues device certificates for any public key."""

    def __init__(self) -> None:
        self.root = make_ca("Fake Root")
        self.issuing = make_ca("Fake Issuing", self.root)

    def issue(self, public_key: CertificatePublicKeyTypes, *, cn: str = "device-1",
              not_before: dt.datetime = NOW - DAY, not_after: dt.datetime = NOW + 29 * DAY,
              subject: x509.Name | None = None) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject or name(cn))
                .issuer_name(self.issuing.certificate.subject).public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before).not_valid_after(not_after)
                .sign(self.issuing.key, hashes.SHA256()))

    def pair(self, **kwargs: dt.datetime | str) -> tuple[ec.EllipticCurvePrivateKey,
                                                          x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        return key, self.issue(key.public_key(), **kwargs)  # type: ignore[arg-type]

    def enrollment_reply(self, request: HttpRequest, *, lifetime: dt.timedelta = 30 * DAY,
                         now: dt.datetime = NOW) -> HttpResponse:
        """200 with a certs-only certificate for the CSR in `request`, as an EST server."""
        csr = x509.load_der_x509_csr(decode_base64_body(request.body))
        certificate = self.issue(csr.public_key(), subject=csr.subject, not_before=now,
                                 not_after=now + lifetime)
        return HttpResponse(200, {"content-type": CT_CERTS_ONLY},
                            encode_base64_body(certs_only([certificate])))

    def serverkeygen_reply(self, request: HttpRequest, key: CertificateIssuerPrivateKeyTypes,
                           *, now: dt.datetime = NOW) -> HttpResponse:
        csr = x509.load_der_x509_csr(decode_base64_body(request.body))
        certificate = self.issue(key.public_key(), subject=csr.subject, not_before=now,
                                 not_after=now + 30 * DAY)
        pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        content_type, body = encode_serverkeygen(pkcs8, [certificate], "test-boundary")
        return HttpResponse(200, {"content-type": content_type}, body)


def renewal_info(certificate: x509.Certificate, start: dt.datetime, end: dt.datetime, *,
                 status: str = "valid", retry_after: int = 3600,
                 explanation: str | None = None) -> HttpResponse:
    body = encode_renewal_info(RenewalInfo(start, end, status,
                                           f"{certificate.serial_number:x}",
                                           certificate.not_valid_after_utc, explanation))
    return HttpResponse(200, {"content-type": CT_JSON, "retry-after": str(retry_after)}, body)


def status(code: int, text: str = "", **headers: str) -> HttpResponse:
    return HttpResponse(code, {k.replace("_", "-"): v for k, v in headers.items()},
                        text.encode())


DOWN = TransportFailure("127.0.0.1:8443 refused the connection")

Answer = Reply | Callable[[HttpRequest], Reply]


class Script:
    """Answers a session's requests from per-operation queues (the last path segment:
    'renewalinfo', 'simplereenroll'...) and records every command, in order. A request
    with no answer left fails the test: the flow asked for something the test did not
    expect."""

    def __init__(self, **answers: Answer | Iterable[Answer]) -> None:
        self.queues: dict[str, list[Answer]] = {
            operation: list(value) if isinstance(value, list | tuple) else [value]  # type: ignore[list-item]
            for operation, value in answers.items()}
        self.commands: list[Command] = []

    @property
    def requests(self) -> list[HttpRequest]:
        return [c for c in self.commands if isinstance(c, HttpRequest)]

    def operations(self) -> list[str]:
        return [r.path.rsplit("/", 1)[-1] for r in self.requests]

    def of(self, kind: type[Command]) -> list[Command]:
        return [c for c in self.commands if isinstance(c, kind)]

    def run(self, session: Session) -> SessionResult:
        reply: Reply | None = None
        try:
            command = next(session)
            while True:
                self.commands.append(command)
                reply = self._answer(command) if isinstance(command, HttpRequest) else None
                command = session.send(reply)
        except StopIteration as stop:
            result: SessionResult = stop.value
            return result

    def _answer(self, request: HttpRequest) -> Reply:
        operation = request.path.rsplit("/", 1)[-1]
        queue = self.queues.get(operation)
        if not queue:
            raise AssertionError(f"unexpected request {request.method} {request.path}")
        answer = queue.pop(0)
        return answer(request) if callable(answer) else answer


def make_unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """chmod 000 the file; as root (which ignores file modes) the read of that one path
    fails with the EACCES a non-root agent would get."""
    path.chmod(0o000)
    if os.geteuid() != 0:
        return
    read_bytes, read_text = Path.read_bytes, Path.read_text
    read_regular = durable.read_regular

    def guarded_regular(target: Path) -> bytes:
        denied(target)
        return read_regular(target)

    def denied(self: Path) -> None:
        if self == path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))

    def guarded_bytes(self: Path) -> bytes:
        denied(self)
        return read_bytes(self)

    def guarded_text(self: Path, *args: Any, **kwargs: Any) -> str:
        denied(self)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_bytes", guarded_bytes)
    monkeypatch.setattr(Path, "read_text", guarded_text)
    monkeypatch.setattr(durable, "read_regular", guarded_regular)
