"""ACME accounts (RFC 8555 §7.3): creation with or without an external account binding,
contact updates, key rollover and deactivation. Every change is audited under the account."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Protocol

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import AccountStatus, AcmeAccount
from fleetpki.core.clock import Clock
from fleetpki.core.errors import Conflict
from fleetpki.ra.acme.eab import EabKeyStore, mac_key
from fleetpki.ra.rate_limits import RateLimit, RateLimiter
from fleetpki.ra.shared_secrets import SecretDeriver
from fleetpki.store.api import AcmeAccounts, AuditEvent

MAX_CONTACTS = 4
# RFC 8555 §7.3: "mailto:" is the contact scheme servers must support; one address each, no
# header fields (hfields) and no comma-separated lists (RFC 8555 §7.3, RFC 6068).
_MAILTO = re.compile(r"^mailto:[^@\s,?<>]{1,64}@[A-Za-z0-9.-]{1,253}$")


def actor(account_id: str) -> str:
    return f"acme:{account_id}"


class AccountStore(AcmeAccounts, EabKeyStore, Protocol):
    pass


class AccountService:
    def __init__(self, store: AccountStore, deriver: SecretDeriver, clock: Clock, *,
                 eab_required: bool, per_account: RateLimit | None = None) -> None:
        self._store = store
        self._deriver = deriver
        self._clock = clock
        self.eab_required = eab_required
        self._by_account = RateLimiter(per_account)

    def active(self, account_id: str) -> AcmeAccount:
        """The account a request names by its URL (`kid`), if it may still act
        (RFC 8555 §7.3.6: a deactivated account's key authorizes nothing)."""
        account = self.get(account_id)
        if account.status is not AccountStatus.valid:
            raise AcmeProblem("unauthorized", f"account {account_id} is "
                              f"{account.status.value}", status=403)
        return account

    def throttle(self, account: AcmeAccount) -> None:
        """Spend one of the account's requests (RFC 8555 §6.6: rateLimited, Retry-After).
        Called once the request's signature checked out, so that nobody else can spend
        an account's budget by naming it."""
        wait = self._by_account.take(account.id)
        if wait is not None:
            raise AcmeProblem("rateLimited", f"too many requests for account {account.id}; "
                              f"retry in {wait} s", status=429, retry_after=wait)

    def eab_mac_key(self, key_id: str) -> bytes | None:
        """The MAC key of an EAB key this server made; None for an unknown key id. A key
        that can no longer bind (used, disabled, expired) still answers, so that the MAC
        proves who asks and `register` refuses with the reason."""
        if self._store.get_eab_key(key_id) is None:
            return None
        return mac_key(self._deriver, key_id)

    def find(self, key_thumbprint: str) -> AcmeAccount | None:
        return self._store.find_account(key_thumbprint)

    def register(self, key_jwk: str, key_thumbprint: str, contact: Sequence[str],
                 eab_key_id: str | None) -> AcmeAccount:
        """A new account; the caller checked the JWS (and the binding's MAC, if any)."""
        now = self._clock.now().replace(microsecond=0)
        profile = None
        if eab_key_id is None and self.eab_required:
            raise AcmeProblem("externalAccountRequired", "this server requires an external "
                              "account binding: ask the operator for an EAB key id and MAC key "
                              "(fleetpki acme eab create)")
        if eab_key_id is not None:
            key = self._store.get_eab_key(eab_key_id)
            reason = "it does not exist" if key is None else key.unusable_reason(now)
            if key is None or reason is not None:
                raise AcmeProblem("unauthorized", f"external account binding refused: {reason}",
                                  status=403)
            profile = key.profile
        account = AcmeAccount(id=secrets.token_urlsafe(12), key_thumbprint=key_thumbprint,
                              key_jwk=key_jwk, status=AccountStatus.valid,
                              contact=check_contact(contact), created_at=now,
                              eab_key_id=eab_key_id, profile=profile)
        try:
            self._store.add_account(account, AuditEvent(
                actor=actor(account.id), action="acme.account.created", subject=account.id,
                details={"eab_key": eab_key_id or "-", "profile": profile or "*",
                         "key_thumbprint": key_thumbprint}), at=now)
        except Conflict as conflict:
            raise AcmeProblem("unauthorized", f"account not created: {conflict}",
                              status=403) from None
        return account

    def get(self, account_id: str) -> AcmeAccount:
        account = self._store.get_account(account_id)
        if account is None:
            raise AcmeProblem("accountDoesNotExist", f"no account {account_id}", status=400)
        return account

    def update_contact(self, account: AcmeAccount, contact: Sequence[str]) -> AcmeAccount:
        checked = check_contact(contact)
        return self._store.update_account(account.id, AuditEvent(
            actor=actor(account.id), action="acme.account.updated", subject=account.id,
            details={"contacts": str(len(checked))}), at=self._clock.now(), contact=checked)

    def deactivate(self, account: AcmeAccount) -> AcmeAccount:
        """RFC 8555 §7.3.6: final; the account's certificates stay valid."""
        return self._store.update_account(account.id, AuditEvent(
            actor=actor(account.id), action="acme.account.deactivated", subject=account.id),
            at=self._clock.now(), status=AccountStatus.deactivated)

    def change_key(self, account: AcmeAccount, key_jwk: str, key_thumbprint: str
                   ) -> AcmeAccount:
        """RFC 8555 §7.3.5; Conflict if the new key already belongs to an account (the
        store's unique key, so that two accounts racing for one key cannot both have it)."""
        return self._store.change_account_key(account.id, key_thumbprint, key_jwk, AuditEvent(
            actor=actor(account.id), action="acme.account.key_changed", subject=account.id,
            details={"key_thumbprint": key_thumbprint}), at=self._clock.now())


def check_contact(contact: Sequence[str]) -> tuple[str, ...]:
    if len(contact) > MAX_CONTACTS:
        raise AcmeProblem("invalidContact", f"at most {MAX_CONTACTS} contacts")
    for uri in contact:
        if not uri.startswith("mailto:"):
            raise AcmeProblem("unsupportedContact", f"contact {uri[:80]!r}: only mailto: "
                              "addresses are supported")
        if not _MAILTO.match(uri):
            raise AcmeProblem("invalidContact", f"contact {uri[:80]!r} is not one e-mail "
                              "address written mailto:user@host")
    return tuple(contact)
