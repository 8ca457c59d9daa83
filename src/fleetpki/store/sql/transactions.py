"""The tables of protocols that bring their own names and secrets (SCEP, RFC 8894): static
per-profile challenge passwords, and the transactions a protocol names itself.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py. Changes
to challenges are written in one transaction with their audit entry. Transactions are not
audited on their own: the issuance or the hold they lead to is.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fleetpki.core.enrollment_records import EnrollmentChallenge, EnrollmentTransaction
from fleetpki.core.errors import NotFound, StoreError
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.audit_append import append_events
from fleetpki.store.sql.engine import translate_errors
from fleetpki.store.sql.schema import enrollment_challenges, enrollment_transactions

_TRANSACTION_KEY = ("protocol", "transaction_id")
# reserve_transaction reads back the row its INSERT collided with. A concurrent release can
# delete that row in between; the INSERT is then tried again, a bounded number of times.
_RESERVE_ATTEMPTS = 3


class TransactionTables:
    _writer: sa.Engine
    _reader: sa.Engine

    # -- static challenges ------------------------------------------------------------------

    def set_challenge(self, challenge: EnrollmentChallenge, event: AuditEvent, *,
                      at: dt.datetime) -> None:
        t = enrollment_challenges
        with translate_errors(), self._writer.begin() as c:
            # An upsert, not a read then a write: two operators setting the same profile's
            # challenge at once both succeed, and the later one holds.
            insert = sqlite.insert if c.dialect.name == "sqlite" else postgresql.insert
            statement = insert(t).values(
                profile=challenge.profile, secret_hash=challenge.secret_hash,
                created_at=challenge.created_at, created_by=challenge.created_by)
            c.execute(statement.on_conflict_do_update(
                index_elements=["profile"],
                set_={name: statement.excluded[name]
                      for name in ("secret_hash", "created_at", "created_by")}))
            append_events(c, [event], at)

    def get_challenge(self, profile: str) -> EnrollmentChallenge | None:
        t = enrollment_challenges
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.profile == profile)).first()
        return _challenge(row) if row else None

    def list_challenges(self) -> list[EnrollmentChallenge]:
        t = enrollment_challenges
        with translate_errors(), self._reader.connect() as c:
            return [_challenge(r) for r in c.execute(sa.select(t).order_by(t.c.profile))]

    def clear_challenge(self, profile: str, event: AuditEvent, *, at: dt.datetime) -> None:
        t = enrollment_challenges
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(t.delete().where(t.c.profile == profile))
            if done.rowcount == 0:
                raise NotFound(f"profile '{profile}' has no static challenge password; nothing "
                               "was cleared (`fleetpki scep challenge list` shows the profiles "
                               "that have one)")
            append_events(c, [event], at)

    # -- protocol transactions --------------------------------------------------------------

    def reserve_transaction(self, transaction: EnrollmentTransaction, *,
                            stale_before: dt.datetime) -> EnrollmentTransaction | None:
        t = enrollment_transactions
        values = _transaction_values(transaction)
        key = _key(transaction.protocol, transaction.transaction_id)
        with translate_errors(), self._writer.begin() as c:
            # INSERT ... ON CONFLICT DO NOTHING: of two requests racing under one name, the
            # database lets exactly one insert; the other reads the winner's row below. On
            # PostgreSQL the loser's INSERT waits for the winner's commit, and the row it then
            # reads is locked until this transaction ends, so a stale row is replaced once.
            # (SQLite writers are serialised by BEGIN IMMEDIATE: engine.py.)
            insert = sqlite.insert if c.dialect.name == "sqlite" else postgresql.insert
            # An INSERT's row count is kept only when asked for (otherwise -1 on PostgreSQL).
            statement = insert(t).values(**values).on_conflict_do_nothing(
                index_elements=list(_TRANSACTION_KEY)).execution_options(preserve_rowcount=True)
            for _ in range(_RESERVE_ATTEMPTS):
                if c.execute(statement).rowcount == 1:
                    return None
                row = c.execute(sa.select(t).where(*key).with_for_update()).first()
                if row is None:  # released since the INSERT collided: try again
                    continue
                stored = _transaction(row)
                undecided = stored.pending_id is None and stored.serial is None
                if undecided and stored.created_at < stale_before:
                    # Its process died while deciding: nothing was issued or held under it.
                    c.execute(t.update().where(*key).values(**values))
                    return None
                return stored
        raise StoreError(f"{transaction.protocol} transaction '{transaction.transaction_id}' "
                         "was reserved and released repeatedly while being reserved; retry")

    def get_transaction(self, protocol: str, transaction_id: str
                        ) -> EnrollmentTransaction | None:
        t = enrollment_transactions
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(*_key(protocol, transaction_id))).first()
        return _transaction(row) if row else None

    def settle_transaction(self, protocol: str, transaction_id: str, *,
                           pending_id: str | None = None, serial: int | None = None,
                           issuer: str | None = None) -> None:
        if (serial is None) != (issuer is None):
            raise ValueError("a transaction settles as issued with both a serial and an issuer")
        if pending_id is None and serial is None:
            raise ValueError("a transaction settles as held (pending_id) or issued (serial)")
        # Only what is given changes: a held transaction that is later issued keeps the id
        # of the enrollment it was held as.
        outcome: dict[str, Any] = {}
        if pending_id is not None:
            outcome["pending_id"] = pending_id
        if serial is not None:
            outcome.update(serial=serial_hex(serial), issuer=issuer)
        t = enrollment_transactions
        with translate_errors(), self._writer.begin() as c:
            c.execute(t.update().where(*_key(protocol, transaction_id)).values(**outcome))

    def release_transaction(self, protocol: str, transaction_id: str) -> None:
        t = enrollment_transactions
        with translate_errors(), self._writer.begin() as c:
            c.execute(t.delete().where(*_key(protocol, transaction_id)))

    def prune_transactions(self, before: dt.datetime) -> int:
        t = enrollment_transactions
        with translate_errors(), self._writer.begin() as c:
            return int(c.execute(t.delete().where(t.c.created_at < before)).rowcount)


def _key(protocol: str, transaction_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    t = enrollment_transactions
    return t.c.protocol == protocol, t.c.transaction_id == transaction_id


def _transaction_values(transaction: EnrollmentTransaction) -> dict[str, Any]:
    return {
        "protocol": transaction.protocol, "transaction_id": transaction.transaction_id,
        "profile": transaction.profile, "key_fingerprint": transaction.key_fingerprint,
        "requester_fingerprint": transaction.requester_fingerprint,
        "request_fingerprint": transaction.request_fingerprint,
        "created_at": transaction.created_at, "pending_id": transaction.pending_id,
        "serial": serial_hex(transaction.serial) if transaction.serial is not None else None,
        "issuer": transaction.issuer,
    }


def _challenge(row: Any) -> EnrollmentChallenge:
    return EnrollmentChallenge(profile=row.profile, secret_hash=row.secret_hash,
                               created_at=row.created_at, created_by=row.created_by)


def _transaction(row: Any) -> EnrollmentTransaction:
    return EnrollmentTransaction(
        protocol=row.protocol, transaction_id=row.transaction_id, profile=row.profile,
        key_fingerprint=row.key_fingerprint, requester_fingerprint=row.requester_fingerprint,
        request_fingerprint=row.request_fingerprint,
        created_at=row.created_at, pending_id=row.pending_id,
        serial=int(row.serial, 16) if row.serial else None, issuer=row.issuer)
