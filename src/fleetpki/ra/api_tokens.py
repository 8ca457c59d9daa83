"""Admin API tokens: made here, shown once, stored only as a hash (core/api_tokens.py).

There is no default password: the first admin token comes from `fleetpki admin token create`
on the CA host, whose operator the audit log names; later ones can come from the API itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fleetpki.core.api_tokens import (
    ApiToken,
    OperatorCertificate,
    Role,
    format_token,
    split_token,
)
from fleetpki.core.clock import Clock
from fleetpki.core.errors import BadInput, Conflict, NotAuthenticated, NotAuthorized
from fleetpki.store.api import ApiTokens, AuditEvent, CertificateReader, OperatorCertificates


class CertificateAuthenticationStore(OperatorCertificates, CertificateReader, Protocol):
    pass

MAX_LIFETIME = dt.timedelta(days=2 * 366)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclasses.dataclass(frozen=True, slots=True)
class NewToken:
    token: ApiToken
    text: str = dataclasses.field(repr=False)  # shown to its holder once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


class TokenAdmin:
    def __init__(self, store: ApiTokens, clock: Clock, actor: str) -> None:
        self._store = store
        self._clock = clock
        self._actor = actor

    def create(self, name: str, role: Role, *, lifetime: dt.timedelta) -> NewToken:
        if not _NAME.match(name):
            raise BadInput(f"token name '{name}' must be 1-128 letters, digits or ._@- "
                           "(say who or what holds it: a person, a monitoring system)")
        if not dt.timedelta(minutes=5) <= lifetime <= MAX_LIFETIME:
            raise BadInput("an API token must live between 5 minutes and 2 years")
        now = self._clock.now()
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        token = ApiToken(id=token_id, name=name, role=role, secret_hash=_hash(secret),
                         created_at=now, created_by=self._actor, expires_at=now + lifetime)
        self._store.add_token(token, AuditEvent(
            actor=self._actor, action="api_token.created", subject=token_id,
            details={"name": name, "role": role.value,
                     "expires_at": token.expires_at.isoformat()}), at=now)
        return NewToken(token, format_token(token_id, secret))

    def revoke(self, token_id: str) -> ApiToken:
        return self._store.revoke_token(token_id, AuditEvent(
            actor=self._actor, action="api_token.revoked", subject=token_id), at=self._clock.now())

    def list(self, *, include_revoked: bool = False) -> list[ApiToken]:
        return self._store.list_tokens(include_revoked=include_revoked)


class TokenAuthenticator:
    """Who holds this token, and in which role; NotAuthenticated otherwise. The reasons given
    to the caller never say whether an id exists: a guessed id and a wrong secret read alike."""

    def __init__(self, store: ApiTokens, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def authenticate(self, text: str) -> ApiToken:
        parts = split_token(text.strip())
        if parts is None:
            raise NotAuthenticated("malformed API token: expected fpk_<id>_<secret> as "
                                   "`fleetpki admin token create` printed it")
        token_id, secret = parts
        token = self._store.get_token(token_id)
        if token is None or not hmac.compare_digest(_hash(secret), token.secret_hash):
            raise NotAuthenticated("unknown API token or wrong secret")
        reason = token.unusable_reason(self._clock.now())
        if reason is not None:
            raise NotAuthenticated(f"{reason}; ask an admin for a new one")
        return token


class OperatorCertificateAdmin:
    """Admit a TLS client certificate to the admin API in a role, or withdraw it. The TLS
    layer of the admin listener checks the chain (our CAs, registered manufacturer CAs) and
    the key; the registration pins the very certificate and gives it a name and a role."""

    def __init__(self, store: OperatorCertificates, clock: Clock, actor: str) -> None:
        self._store = store
        self._clock = clock
        self._actor = actor

    def add(self, certificate_pem: bytes, name: str, role: Role) -> OperatorCertificate:
        if not _NAME.match(name):
            raise BadInput(f"operator name '{name}' must be 1-128 letters, digits or ._@-")
        try:
            cert = x509.load_pem_x509_certificate(certificate_pem)
        except ValueError:
            raise BadInput("not a PEM certificate: give the operator's client certificate "
                           "(-----BEGIN CERTIFICATE-----)") from None
        now = self._clock.now()
        if cert.not_valid_after_utc <= now:
            raise BadInput(f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
        record = OperatorCertificate(
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(), name=name, role=role,
            subject=cert.subject.rfc4514_string(), not_after=cert.not_valid_after_utc,
            created_at=now, created_by=self._actor)
        self._store.add_operator_certificate(record, AuditEvent(
            actor=self._actor, action="operator_certificate.added", subject=record.fingerprint,
            details={"name": name, "role": role.value, "subject": record.subject}), at=now)
        return record

    def revoke(self, fingerprint: str) -> OperatorCertificate:
        return self._store.revoke_operator_certificate(
            fingerprint.lower().replace(":", ""), AuditEvent(
                actor=self._actor, action="operator_certificate.revoked",
                subject=fingerprint), at=self._clock.now())

    def list(self, *, include_revoked: bool = False) -> list[OperatorCertificate]:
        return self._store.list_operator_certificates(include_revoked=include_revoked)


class CertificateAuthenticator:
    """Who presents this TLS client certificate. The handshake proved the key and the chain
    (without dates: the admin listener shares the enrollment listener's TLS settings, which
    accept expired device certificates), so the dates, the registration and, for a
    certificate we issued, its revocation are checked here."""

    def __init__(self, store: CertificateAuthenticationStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    def authenticate(self, der: bytes) -> ApiToken:
        cert = x509.load_der_x509_certificate(der)
        now = self._clock.now()
        if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
            raise NotAuthenticated("the client certificate is outside its validity period")
        record = self._store.get_operator_certificate(cert.fingerprint(hashes.SHA256()).hex())
        if record is None:
            raise NotAuthenticated("this client certificate is not registered as an operator's "
                                   "(`fleetpki admin operator add`)")
        if record.revoked_at is not None:
            raise NotAuthenticated(f"operator certificate of {record.name} was revoked on "
                                   f"{record.revoked_at:%Y-%m-%d %H:%M} UTC")
        try:
            ours = self._store.get_certificate(cert.serial_number)
        except Conflict:  # the serial exists under several of our issuers; none is this one
            ours = None
        if ours is not None and ours.der == der and ours.revoked_at is not None:
            raise NotAuthenticated("the client certificate was revoked")
        return record.as_principal()


def require(token: ApiToken, role: Role, doing: str) -> None:
    """Raise NotAuthorized unless the token's role includes `role`."""
    if not token.role.includes(role):
        raise NotAuthorized(f"{doing} needs the {role.value} role; token {token.id} has "
                            f"{token.role.value}")
