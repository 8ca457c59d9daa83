"""ACME (RFC 8555) records: accounts, external account binding keys, orders, authorizations
and challenges, as they cross the store <-> RA boundary.

Statuses are stored as last written; what an order or an authorization *is* at a given time
(expired, ready once all its authorizations are valid) is decided by the RA from these
records and the clock (ra/acme/lifecycle.py), so that nothing needs a timer to stay true.
No secret appears here: an EAB key's MAC key is derived from the RA's secret derivation key
and its key id (ra/shared_secrets.py), and never stored.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum


class AccountStatus(enum.Enum):
    valid = "valid"
    deactivated = "deactivated"  # by its holder (RFC 8555 §7.3.6): final
    revoked = "revoked"  # by an operator: final


class OrderStatus(enum.Enum):
    pending = "pending"
    ready = "ready"
    processing = "processing"
    valid = "valid"
    invalid = "invalid"


class AuthorizationStatus(enum.Enum):
    pending = "pending"
    valid = "valid"
    invalid = "invalid"
    deactivated = "deactivated"
    expired = "expired"
    revoked = "revoked"


class ChallengeStatus(enum.Enum):
    pending = "pending"
    processing = "processing"
    valid = "valid"
    invalid = "invalid"


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class Identifier:
    """RFC 8555 §9.7.7: "dns" (a lower-case host name, possibly "*."-prefixed) or "ip"
    (RFC 8738, the address in its canonical text form)."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeAccount:
    id: str
    # RFC 7638 JWK thumbprint (SHA-256, base64url without padding) of the account key: the
    # key is how a request names its account when it sends a `jwk` (newAccount, revokeCert),
    # and no two accounts may share one.
    key_thumbprint: str
    key_jwk: str  # the public JWK as JSON text
    status: AccountStatus
    contact: tuple[str, ...]
    created_at: dt.datetime
    eab_key_id: str | None = None  # the external account binding it was created with
    # The only profile the account may order in (its EAB key's); None: any profile with ACME.
    profile: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class EabKey:
    """An external account binding key (RFC 8555 §7.3.4): an operator hands the key id and
    its MAC key to the owner of a gateway; the first account created with it is bound to it,
    and no other account may use it."""

    key_id: str
    profile: str | None  # where the bound account may order; None: any profile with ACME
    created_at: dt.datetime
    created_by: str
    expires_at: dt.datetime  # unused keys stop working then
    account_id: str | None = None  # set, once, when an account is created with it
    disabled_at: dt.datetime | None = None

    def unusable_reason(self, now: dt.datetime) -> str | None:
        if self.disabled_at is not None:
            return f"EAB key '{self.key_id}' was disabled on {self.disabled_at:%Y-%m-%d}"
        if self.account_id is not None:
            return f"EAB key '{self.key_id}' is already bound to an account"
        if self.expires_at <= now:
            return f"EAB key '{self.key_id}' expired on {self.expires_at:%Y-%m-%d %H:%M}"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeChallenge:
    id: str
    authorization_id: str
    type: str  # "http-01", "tls-alpn-01", "dns-01"
    token: str  # RFC 8555 §8.1: base64url, >= 128 bits of entropy
    status: ChallengeStatus
    validated_at: dt.datetime | None = None
    error: str | None = None  # the problem document (JSON text) of a failed validation


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeAuthorization:
    id: str
    account_id: str
    identifier: Identifier
    status: AuthorizationStatus
    expires: dt.datetime
    created_at: dt.datetime
    challenges: tuple[AcmeChallenge, ...]
    wildcard: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeOrder:
    id: str
    account_id: str
    profile: str
    status: OrderStatus
    identifiers: tuple[Identifier, ...]  # sorted, no duplicates
    authorization_ids: tuple[str, ...]  # in the order of `identifiers`
    expires: dt.datetime
    created_at: dt.datetime
    error: str | None = None  # problem document (JSON text) of an invalid order
    serial: int | None = None  # the certificate, once valid
    issuer: str | None = None
    # RFC 9773 §5: the certificate (ARI certID) this order renews, if the client said so.
    replaces: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class AuthorizationView:
    """An authorization as a client sees it now (expiry computed: ra/acme/lifecycle.py)."""

    authorization: AcmeAuthorization
    status: AuthorizationStatus


@dataclasses.dataclass(frozen=True, slots=True)
class OrderView:
    """An order as a client sees it now: its computed status, its authorizations, and for an
    invalid order the problem document (JSON text) saying why."""

    order: AcmeOrder
    status: OrderStatus
    authorizations: tuple[AcmeAuthorization, ...]
    error: str | None = None
