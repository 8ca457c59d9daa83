"""Where each ACME resource lives (RFC 8555 §7.1), as absolute URLs.

    /acme/directory                 the default ACME profile's directory
    /acme/p/<profile>/directory     another profile's (enrollment.acme = true)
    /acme/p/<profile>/new-order     orders in that profile
    /acme/new-nonce, /acme/new-account, /acme/key-change, /acme/revoke-cert,
    /acme/renewal-info/<certID>     shared by every profile
    /acme/acct/<id>[/orders], /acme/order/<id>[/finalize|/cert], /acme/authz/<id>,
    /acme/chall/<id>

Accounts are not per profile: an account's EAB key decides where it may order.
"""

from __future__ import annotations

PREFIX = "/acme"


class AcmeUrls:
    def __init__(self, origin: str, default_profile: str | None) -> None:
        """`origin`: scheme://host[:port] as the client addressed the server."""
        self._base = origin.rstrip("/") + PREFIX
        self._default = default_profile

    def _profile_base(self, profile: str) -> str:
        return self._base if profile == self._default else f"{self._base}/p/{profile}"

    def directory(self, profile: str) -> str:
        return self._profile_base(profile) + "/directory"

    def new_order(self, profile: str) -> str:
        return self._profile_base(profile) + "/new-order"

    @property
    def new_nonce(self) -> str:
        return self._base + "/new-nonce"

    @property
    def new_account(self) -> str:
        return self._base + "/new-account"

    @property
    def key_change(self) -> str:
        return self._base + "/key-change"

    @property
    def revoke_cert(self) -> str:
        return self._base + "/revoke-cert"

    @property
    def renewal_info(self) -> str:
        return self._base + "/renewal-info"

    def account(self, account_id: str) -> str:
        return f"{self._base}/acct/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self._base}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self._base}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self._base}/order/{order_id}/finalize"

    def certificate(self, order_id: str) -> str:
        return f"{self._base}/order/{order_id}/cert"

    def authorization(self, authorization_id: str) -> str:
        return f"{self._base}/authz/{authorization_id}"

    def challenge(self, challenge_id: str) -> str:
        return f"{self._base}/chall/{challenge_id}"

    def account_id(self, url: str) -> str | None:
        """The id in an account URL of this server (a JWS `kid`), or None."""
        prefix = self._base + "/acct/"
        if not url.startswith(prefix):
            return None
        rest = url[len(prefix):]
        return rest if rest and "/" not in rest else None
