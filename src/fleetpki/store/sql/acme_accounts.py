"""The ACME account tables (RFC 8555 §7.3): external account binding keys and accounts.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py. Every
change is written in one transaction with its audit entry. Binding an EAB key is one
conditional UPDATE: of two accounts racing for one key, the database lets exactly one bind it.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa

from fleetpki.core.acme_records import (
    AccountStatus,
    AcmeAccount,
    EabKey,
)
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.engine import integrity_is_conflict, translate_errors
from fleetpki.store.sql.schema import (
    acme_accounts,
    acme_eab_keys,
)


class AcmeAccountTables:
    _writer: sa.Engine
    _reader: sa.Engine

    # -- external account binding keys (RFC 8555 §7.3.4) ----------------------------------

    def add_eab_key(self, key: EabKey, event: AuditEvent, *, at: dt.datetime) -> None:
        clash = f"an EAB key with id '{key.key_id}' exists already; choose another id"
        with translate_errors(), integrity_is_conflict(clash), self._writer.begin() as c:
            c.execute(acme_eab_keys.insert().values(**_eab_key_values(key)))
            append_events(c, [event], at)

    def get_eab_key(self, key_id: str) -> EabKey | None:
        t = acme_eab_keys
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.key_id == key_id)).first()
        return _eab_key(row) if row else None

    def list_eab_keys(self, *, include_disabled: bool = False) -> list[EabKey]:
        t = acme_eab_keys
        query = sa.select(t).order_by(t.c.created_at, t.c.key_id)
        if not include_disabled:
            query = query.where(t.c.disabled_at.is_(None))
        with translate_errors(), self._reader.connect() as c:
            return [_eab_key(r) for r in c.execute(query)]

    def disable_eab_key(self, key_id: str, event: AuditEvent, *, at: dt.datetime) -> EabKey:
        t = acme_eab_keys
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(t.update().where(t.c.key_id == key_id, t.c.disabled_at.is_(None))
                             .values(disabled_at=at))
            row = c.execute(sa.select(t).where(t.c.key_id == key_id)).first()
            if row is None:
                raise NotFound(f"no EAB key with id '{key_id}'; nothing was disabled")
            if done.rowcount != 1:
                raise Conflict(f"EAB key '{key_id}' was disabled already, on "
                               f"{row.disabled_at:%Y-%m-%d %H:%M}")
            append_events(c, [event], at)
            return _eab_key(row)

    # -- accounts ----------------------------------------------------------------------------

    def add_account(self, account: AcmeAccount, event: AuditEvent, *, at: dt.datetime
                    ) -> None:
        t = acme_accounts
        raced = (f"another account with the key {account.key_thumbprint} (or the id "
                 f"'{account.id}') was created at the same time; nothing was written")
        with translate_errors(), integrity_is_conflict(raced), self._writer.begin() as c:
            if c.execute(sa.select(t.c.id)
                         .where(t.c.key_thumbprint == account.key_thumbprint)).first():
                # RFC 8555 §7.3.1: a key registers one account; newAccount finds it instead.
                raise Conflict(f"an account with the key {account.key_thumbprint} exists "
                               "already; nothing was written")
            if account.eab_key_id is not None:
                _bind_eab_key(c, account.eab_key_id, account.id, at)
            c.execute(t.insert().values(**_account_values(account)))
            append_events(c, [event], at)

    def get_account(self, account_id: str) -> AcmeAccount | None:
        t = acme_accounts
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.id == account_id)).first()
        return _account(row) if row else None

    def find_account(self, key_thumbprint: str) -> AcmeAccount | None:
        t = acme_accounts
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.key_thumbprint == key_thumbprint)).first()
        return _account(row) if row else None

    def update_account(self, account_id: str, event: AuditEvent, *, at: dt.datetime,
                       contact: tuple[str, ...] | None = None,
                       status: AccountStatus | None = None) -> AcmeAccount:
        changes: dict[str, Any] = {}
        if contact is not None:
            changes["contact"] = json.dumps(list(contact))
        if status is not None:
            changes["status"] = status.value
        with translate_errors(), self._writer.begin() as c:
            return _rewrite_account(c, account_id, changes, event, at)

    def change_account_key(self, account_id: str, key_thumbprint: str, key_jwk: str,
                           event: AuditEvent, *, at: dt.datetime) -> AcmeAccount:
        # RFC 8555 §7.3.5: the new key must not be any other account's. The unique index
        # decides, also between two rollovers racing to the same key.
        held = (f"another account holds the key {key_thumbprint}; the account key was not "
                "changed")
        with translate_errors(), integrity_is_conflict(held), self._writer.begin() as c:
            return _rewrite_account(c, account_id, {"key_thumbprint": key_thumbprint,
                                                    "key_jwk": key_jwk}, event, at)


# -- helpers that run inside a caller's transaction ------------------------------------------

def _bind_eab_key(c: sa.Connection, key_id: str, account_id: str, at: dt.datetime) -> None:
    """RFC 8555 §7.3.4: an EAB key creates one account. A conditional UPDATE, so that of two
    accounts racing for one key the database lets one bind it."""
    t = acme_eab_keys
    done = c.execute(t.update().where(t.c.key_id == key_id, t.c.account_id.is_(None),
                                      t.c.disabled_at.is_(None)).values(account_id=account_id))
    if done.rowcount == 1:
        return
    row = c.execute(sa.select(t).where(t.c.key_id == key_id)).first()
    if row is None:
        raise NotFound(f"no EAB key with id '{key_id}'; nothing was written")
    reason = _eab_key(row).unusable_reason(at) or f"EAB key '{key_id}' cannot be bound"
    raise Conflict(f"{reason}; nothing was written")


def _rewrite_account(c: sa.Connection, account_id: str, changes: dict[str, Any],
                     event: AuditEvent, at: dt.datetime) -> AcmeAccount:
    t = acme_accounts
    if changes:
        c.execute(t.update().where(t.c.id == account_id).values(changes))
    row = c.execute(sa.select(t).where(t.c.id == account_id)).first()
    if row is None:
        raise NotFound(f"no ACME account with id '{account_id}'")
    append_events(c, [event], at)
    return _account(row)


# -- rows <-> records ------------------------------------------------------------------------

def _eab_key_values(key: EabKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "profile": key.profile, "created_at": key.created_at,
            "created_by": key.created_by, "expires_at": key.expires_at,
            "account_id": key.account_id, "disabled_at": key.disabled_at}


def _eab_key(row: Any) -> EabKey:
    return EabKey(key_id=row.key_id, profile=row.profile, created_at=row.created_at,
                  created_by=row.created_by, expires_at=row.expires_at,
                  account_id=row.account_id, disabled_at=row.disabled_at)


def _account_values(account: AcmeAccount) -> dict[str, Any]:
    return {"id": account.id, "key_thumbprint": account.key_thumbprint,
            "key_jwk": account.key_jwk, "status": account.status.value,
            "contact": json.dumps(list(account.contact)), "created_at": account.created_at,
            "eab_key_id": account.eab_key_id, "profile": account.profile}


def _account(row: Any) -> AcmeAccount:
    return AcmeAccount(id=row.id, key_thumbprint=row.key_thumbprint, key_jwk=row.key_jwk,
                       status=AccountStatus(row.status), contact=tuple(json.loads(row.contact)),
                       created_at=row.created_at, eab_key_id=row.eab_key_id,
                       profile=row.profile)
