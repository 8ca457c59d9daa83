"""ACME payloads (RFC 8555 §7) as typed requests, and resources as JSON objects.

Parsing is strict about what it reads (types, base64url without padding, sizes) and ignores
members it does not know, as RFC 8555 §7.1 lets clients add fields. Every failure is an
AcmeProblem "malformed" that names the member.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationStatus,
    ChallengeStatus,
    OrderStatus,
)
from fleetpki.protocols.acme.urls import AcmeUrls

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")
MAX_IDENTIFIERS = 100


def b64url_decode(text: object, member: str) -> bytes:
    """RFC 8555 §6.1 / RFC 7515 §2: base64url without padding."""
    if not isinstance(text, str) or not _B64URL.match(text) or len(text) % 4 == 1:
        raise AcmeProblem("malformed", f"{member} must be base64url without padding")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise AcmeProblem("malformed", f"{member} is not valid base64url") from None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise AcmeProblem("malformed", f"the {what} payload is not JSON") from None
    if not isinstance(value, dict):
        raise AcmeProblem("malformed", f"the {what} payload must be a JSON object")
    return value


def _strings(value: object, member: str, limit: int = 10) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > limit \
            or not all(isinstance(v, str) and len(v) <= 512 for v in value):
        raise AcmeProblem("malformed", f"{member} must be a list of at most {limit} strings")
    return tuple(value)


def _boolean(body: Mapping[str, Any], member: str) -> bool:
    value = body.get(member, False)
    if not isinstance(value, bool):
        raise AcmeProblem("malformed", f"{member} must be true or false")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class NewAccount:
    contact: tuple[str, ...]
    terms_agreed: bool
    only_return_existing: bool
    external_account_binding: object | None  # the inner JWS, checked by jws.py


def new_account(payload: bytes) -> NewAccount:
    body = json_object(payload, "newAccount")
    return NewAccount(contact=_strings(body.get("contact", []), "contact"),
                      terms_agreed=_boolean(body, "termsOfServiceAgreed"),
                      only_return_existing=_boolean(body, "onlyReturnExisting"),
                      external_account_binding=body.get("externalAccountBinding"))


@dataclasses.dataclass(frozen=True, slots=True)
class AccountUpdate:
    contact: tuple[str, ...] | None
    deactivate: bool


def account_update(payload: bytes) -> AccountUpdate:
    body = json_object(payload, "account update")
    status = body.get("status")
    if status not in (None, "valid", "deactivated"):
        raise AcmeProblem("malformed", "an account's status can only be set to \"deactivated\"")
    contact = _strings(body["contact"], "contact") if "contact" in body else None
    return AccountUpdate(contact=contact, deactivate=status == "deactivated")


@dataclasses.dataclass(frozen=True, slots=True)
class NewOrder:
    identifiers: tuple[tuple[str, str], ...]
    replaces: str | None


def new_order(payload: bytes) -> NewOrder:
    body = json_object(payload, "newOrder")
    raw = body.get("identifiers")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_IDENTIFIERS:
        raise AcmeProblem("malformed", f"identifiers must be a list of 1 to {MAX_IDENTIFIERS} "
                          "{\"type\", \"value\"} objects")
    identifiers = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("type"), str) \
                or not isinstance(item.get("value"), str) or len(item["value"]) > 253:
            raise AcmeProblem("malformed", "each identifier must be {\"type\": ..., \"value\": "
                              "...} with a value of at most 253 characters")
        identifiers.append((item["type"], item["value"]))
    if "notBefore" in body or "notAfter" in body:
        # RFC 8555 §7.4: the server may refuse them; the profile decides the validity.
        raise AcmeProblem("malformed", "notBefore and notAfter are not supported: the "
                          "certificate profile sets the validity")
    replaces = body.get("replaces")
    if replaces is not None and (not isinstance(replaces, str) or len(replaces) > 200):
        raise AcmeProblem("malformed", "replaces must be an ARI certificate identifier")
    return NewOrder(identifiers=tuple(identifiers), replaces=replaces)


def finalize(payload: bytes) -> bytes:
    body = json_object(payload, "finalize")
    return b64url_decode(body.get("csr"), "csr")


@dataclasses.dataclass(frozen=True, slots=True)
class Revocation:
    certificate_der: bytes
    reason: int


def revocation(payload: bytes) -> Revocation:
    body = json_object(payload, "revokeCert")
    reason = body.get("reason", 0)
    if not isinstance(reason, int) or isinstance(reason, bool):
        raise AcmeProblem("badRevocationReason", "reason must be an RFC 5280 CRLReason code")
    der = b64url_decode(body.get("certificate"), "certificate")
    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        raise AcmeProblem("malformed", "certificate is not a DER X.509 certificate "
                          "(base64url of the DER bytes, RFC 8555 §7.6)") from None
    return Revocation(der, reason)


def deactivation(payload: bytes) -> bool:
    """An authorization update (RFC 8555 §7.5.2): True if it asks for deactivation."""
    body = json_object(payload, "authorization update")
    if body.get("status") != "deactivated":
        raise AcmeProblem("malformed", "an authorization can only be updated to "
                          "{\"status\": \"deactivated\"}")
    return True


# -- resources ------------------------------------------------------------------------------

def timestamp(moment: dt.datetime) -> str:
    """RFC 3339, UTC, whole seconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_resource(account: AcmeAccount, urls: AcmeUrls) -> dict[str, Any]:
    return {"status": account.status.value, "contact": list(account.contact),
            "orders": urls.orders(account.id), "createdAt": timestamp(account.created_at)}


def challenge_resource(challenge: AcmeChallenge, urls: AcmeUrls) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": challenge.type, "url": urls.challenge(challenge.id),
                                "status": challenge.status.value, "token": challenge.token}
    if challenge.validated_at is not None and challenge.status is ChallengeStatus.valid:
        resource["validated"] = timestamp(challenge.validated_at)
    if challenge.error:
        resource["error"] = json.loads(challenge.error)
    return resource


def authorization_resource(authorization: AcmeAuthorization, status: AuthorizationStatus,
                           urls: AcmeUrls) -> dict[str, Any]:
    challenges = authorization.challenges
    if status is AuthorizationStatus.valid:
        # RFC 8555 §7.1.4: a valid authorization lists the challenge that was validated.
        challenges = tuple(c for c in challenges if c.status is ChallengeStatus.valid) \
            or challenges
    resource: dict[str, Any] = {
        "identifier": {"type": authorization.identifier.type,
                       "value": authorization.identifier.value},
        "status": status.value, "expires": timestamp(authorization.expires),
        "challenges": [challenge_resource(c, urls) for c in challenges]}
    if authorization.wildcard:
        resource["wildcard"] = True
    return resource


def order_resource(order: AcmeOrder, status: OrderStatus, urls: AcmeUrls,
                   error: dict[str, Any] | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "status": status.value, "expires": timestamp(order.expires),
        "identifiers": [{"type": i.type, "value": i.value} for i in order.identifiers],
        "authorizations": [urls.authorization(a) for a in order.authorization_ids],
        "finalize": urls.finalize(order.id)}
    if status is OrderStatus.valid:
        resource["certificate"] = urls.certificate(order.id)
    if status is OrderStatus.invalid and error is not None:
        resource["error"] = error
    if order.replaces:
        resource["replaces"] = order.replaces
    return resource
