"""What the ACME front end needs of the RA's ACME service (ra/acme/), declared on its own
side as narrow Protocols, and the request and reply types of handler.py."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from fleetpki.core.acme_records import (
    AcmeAccount,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationView,
    Identifier,
    OrderView,
)
from fleetpki.core.records import IssuedCertificate
from fleetpki.protocols.acme.nonces import NonceMint
from fleetpki.protocols.acme.requests import RequestVerifier
from fleetpki.protocols.acme.urls import AcmeUrls
from fleetpki.ra.api import RenewalAdvice


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeCall:
    """One request as the adapter read it."""

    url: str  # absolute, as the client addressed it (checked against the JWS url header)
    urls: AcmeUrls
    profile: str  # the directory's profile (for newOrder and the directory)
    content_type: str = ""
    body: bytes | None = b""  # None: larger than jws.MAX_BODY_BYTES
    resource_id: str = ""  # the id in the path, for per-resource URLs


class Accounts(Protocol):
    eab_required: bool

    def active(self, account_id: str) -> AcmeAccount: ...

    def throttle(self, account: AcmeAccount) -> None: ...

    def eab_mac_key(self, key_id: str) -> bytes | None: ...

    def find(self, key_thumbprint: str) -> AcmeAccount | None: ...

    def register(self, key_jwk: str, key_thumbprint: str, contact: tuple[str, ...],
                 eab_key_id: str | None) -> AcmeAccount: ...

    def update_contact(self, account: AcmeAccount, contact: tuple[str, ...]
                       ) -> AcmeAccount: ...

    def deactivate(self, account: AcmeAccount) -> AcmeAccount: ...

    def change_key(self, account: AcmeAccount, key_jwk: str, key_thumbprint: str
                   ) -> AcmeAccount: ...


class Orders(Protocol):
    def new_order(self, account: AcmeAccount, profile_name: str,
                  identifiers: list[Identifier], *, replaces: str | None = None
                  ) -> OrderView: ...

    def view(self, account: AcmeAccount, order_id: str) -> OrderView: ...

    def list_orders(self, account: AcmeAccount, after: str | None, limit: int
                    ) -> list[AcmeOrder]: ...

    def finalize(self, account: AcmeAccount, order_id: str, csr_der: bytes) -> OrderView: ...

    def certificate(self, account: AcmeAccount, order_id: str) -> IssuedCertificate: ...


class Authorizations(Protocol):
    def view(self, account: AcmeAccount, authorization_id: str) -> AuthorizationView: ...

    def challenge(self, account: AcmeAccount, challenge_id: str
                  ) -> tuple[AcmeChallenge, AuthorizationView]: ...

    def begin_validation(self, account: AcmeAccount, challenge_id: str
                         ) -> tuple[AcmeChallenge, AuthorizationView, bool]: ...

    def record_validation(self, challenge_id: str, *, error: str | None) -> None: ...

    def deactivate(self, account: AcmeAccount, authorization_id: str
                   ) -> AuthorizationView: ...


class Certificates(Protocol):
    def chain_pem(self, record: IssuedCertificate) -> bytes: ...

    def identify(self, der: bytes) -> IssuedCertificate: ...

    def revoke(self, der: bytes, reason_code: int, account: AcmeAccount | None
               ) -> IssuedCertificate: ...

    def renewal_info(self, key_identifier: bytes, serial: int) -> RenewalAdvice: ...


class Normaliser(Protocol):
    def __call__(self, type_: str, value: str) -> Identifier: ...


@dataclasses.dataclass(frozen=True, slots=True)
class AcmeServices:
    """The RA's ACME service, in the parts the front end calls."""

    accounts: Accounts
    orders: Orders
    authorizations: Authorizations
    certificates: Certificates
    normalise: Normaliser  # ra/acme/identifiers.py normalised
    nonces: RequestVerifier
    mint: NonceMint
