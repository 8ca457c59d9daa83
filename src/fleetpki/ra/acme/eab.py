"""External account binding keys (RFC 8555 §7.3.4): made by an operator, used once.

An EAB MAC key must be known to the server to check the MAC a client makes with it, so a hash
cannot stand in for it. As for CMP's shared secrets (ra/shared_secrets.py), nothing secret is
stored: the key is derived from the RA's secret derivation key and the key id, which is random,
and derived again when a new account presents a binding. The store holds the key id, its
profile, its expiry and the account it was bound to.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from typing import Protocol

from fleetpki.core.acme_records import EabKey
from fleetpki.core.clock import Clock
from fleetpki.core.errors import BadInput, NotFound
from fleetpki.ra.shared_secrets import SecretDeriver
from fleetpki.store.api import AuditEvent

MAX_LIFETIME = dt.timedelta(days=365)


class EabKeyStore(Protocol):
    def add_eab_key(self, key: EabKey, event: AuditEvent, *, at: dt.datetime) -> None: ...

    def get_eab_key(self, key_id: str) -> EabKey | None: ...

    def list_eab_keys(self, *, include_disabled: bool = False) -> list[EabKey]: ...

    def disable_eab_key(self, key_id: str, event: AuditEvent, *, at: dt.datetime
                        ) -> EabKey: ...


def mac_key(deriver: SecretDeriver, key_id: str) -> bytes:
    """The 256-bit MAC key of `key_id`."""
    return deriver.subkey(f"acme eab key\x00{key_id}")


def encode_mac_key(key: bytes) -> str:
    """As ACME clients take it (certbot --eab-hmac-key, lego --hmac): base64url, no padding."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


class EabKeyAdmin:
    """What operators do with EAB keys (CLI, admin API). Every change is audited."""

    def __init__(self, store: EabKeyStore, deriver: SecretDeriver, clock: Clock,
                 actor: str) -> None:
        self._store = store
        self._deriver = deriver
        self._clock = clock
        self._actor = actor

    def create(self, *, profile: str | None, lifetime: dt.timedelta,
               known_profiles: frozenset[str]) -> tuple[EabKey, str]:
        """A new key and its MAC key (base64url), which is shown once and never stored."""
        if profile is not None and profile not in known_profiles:
            raise NotFound(f"no profile '{profile}' with enrollment.acme = true (ACME "
                           f"profiles: {', '.join(sorted(known_profiles)) or 'none'})")
        if not dt.timedelta(minutes=1) <= lifetime <= MAX_LIFETIME:
            raise BadInput(f"an EAB key lives between 1 minute and {MAX_LIFETIME.days} days "
                           "until it is used")
        now = self._clock.now().replace(microsecond=0)
        key = EabKey(key_id="eab-" + secrets.token_hex(8), profile=profile, created_at=now,
                     created_by=self._actor, expires_at=now + lifetime)
        self._store.add_eab_key(key, AuditEvent(
            actor=self._actor, action="acme.eab_key.created", subject=key.key_id,
            details={"profile": profile or "*", "expires_at": key.expires_at.isoformat()}),
            at=now)
        return key, encode_mac_key(mac_key(self._deriver, key.key_id))

    def list(self, *, include_disabled: bool = False) -> list[EabKey]:
        return self._store.list_eab_keys(include_disabled=include_disabled)

    def disable(self, key_id: str) -> EabKey:
        now = self._clock.now()
        return self._store.disable_eab_key(key_id, AuditEvent(
            actor=self._actor, action="acme.eab_key.disabled", subject=key_id), at=now)
