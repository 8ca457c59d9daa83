"""The checks every ACME POST passes before anything it asks is looked at (RFC 8555 §6.2-6.5):
content type, size, the JWS and its algorithm, the `url` header against the URL requested,
the nonce (authentic, unexpired, never spent), and the key: the account's (by `kid`) or the
one in the request (`jwk`, only where RFC 8555 allows it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Protocol

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import AcmeAccount
from fleetpki.protocols.acme.account_keys import thumbprint
from fleetpki.protocols.acme.jws import MAX_BODY_BYTES, SignedRequest, parse_jws
from fleetpki.protocols.acme.nonces import NonceMint
from fleetpki.protocols.acme.urls import AcmeUrls

JOSE_TYPE = "application/jose+json"


class AccountLookup(Protocol):
    def active(self, account_id: str) -> AcmeAccount: ...

    def throttle(self, account: AcmeAccount) -> None: ...


class NonceLedger(Protocol):
    def spend(self, nonce: str, expires: float) -> bool: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Verified:
    """A POST whose signature, nonce and URL checked out."""

    jws: SignedRequest
    account: AcmeAccount | None  # by `kid`; None when the request carried its `jwk`
    jwk: Mapping[str, object]  # the key that signed it
    thumbprint: str

    @property
    def payload(self) -> bytes:
        return self.jws.payload

    @property
    def post_as_get(self) -> bool:
        return self.jws.is_post_as_get


class RequestVerifier:
    def __init__(self, mint: NonceMint, ledger: NonceLedger, accounts: AccountLookup) -> None:
        self._mint = mint
        self._ledger = ledger
        self._accounts = accounts

    def verify(self, body: bytes | None, content_type: str, url: str, urls: AcmeUrls, *,
               jwk_allowed: bool) -> Verified:
        """Blocking (the nonce ledger and the account are in the store)."""
        if content_type.split(";")[0].strip().lower() != JOSE_TYPE:
            raise AcmeProblem("malformed", f"ACME requests are {JOSE_TYPE} (RFC 8555 §6.2)",
                              status=415)
        if body is None:
            raise AcmeProblem("malformed", f"the request is larger than {MAX_BODY_BYTES} bytes",
                              status=413)
        jws = parse_jws(body)
        if jws.url != url:
            raise AcmeProblem("unauthorized", f"the JWS url header {jws.url[:200]!r} is not the "
                              f"URL requested, {url!r} (RFC 8555 §6.4)", status=403)
        account = None
        if jws.kid is not None:
            account_id = urls.account_id(jws.kid)
            if account_id is None:
                raise AcmeProblem("accountDoesNotExist", f"kid {jws.kid[:200]!r} is not an "
                                  "account URL of this server")
            account = self._accounts.active(account_id)
            key: Mapping[str, object] = json.loads(account.key_jwk)
        elif not jwk_allowed:
            raise AcmeProblem("malformed", "this request must name its account with kid, not "
                              "carry a jwk (RFC 8555 §6.2)")
        else:
            assert jws.jwk is not None
            key = jws.jwk
        jws.verify(key)
        if account is not None:
            self._accounts.throttle(account)
        expires = self._mint.expiry(jws.nonce)
        if expires is None or not self._ledger.spend(jws.nonce, expires):
            raise AcmeProblem("badNonce", "the nonce is unknown, expired or already used: "
                              "retry with the fresh one in this response's Replay-Nonce")
        return Verified(jws, account, key, account.key_thumbprint if account else thumbprint(key))
