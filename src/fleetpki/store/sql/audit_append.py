"""Appending to the hash-chained audit log inside the caller's transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa

from fleetpki.core.audit_chain import entry_hash
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.bulk import execute_driver, insert_many, timestamp_converter
from fleetpki.store.sql.schema import audit_log

_HEAD = "SELECT seq, hash FROM audit_head WHERE id = ?"
_HEAD_FOR_UPDATE = _HEAD + " FOR UPDATE"
_AUDIT_COLUMNS = ("seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash")


def append_events(connection: sa.Connection, events: Sequence[AuditEvent], at: dt.datetime
                  ) -> None:
    if not events:
        return
    # Lock the head row: on PostgreSQL FOR UPDATE serialises appenders; on SQLite the writer
    # already holds the database lock (BEGIN IMMEDIATE).
    head = _HEAD if connection.dialect.name == "sqlite" else _HEAD_FOR_UPDATE
    seq, prev = execute_driver(connection, head, (1,)).fetchone()
    at = at.astimezone(dt.UTC)
    stored_at = timestamp_converter(connection.dialect)(at)
    rows = []
    for event in events:
        seq += 1
        details = event.details_json
        digest = entry_hash(prev, seq, at, event.actor, event.action, event.subject, details)
        rows.append((seq, stored_at, event.actor, event.action, event.subject, details, prev,
                     digest))
        prev = digest
    insert_many(connection, audit_log, _AUDIT_COLUMNS, rows)
    execute_driver(connection, "UPDATE audit_head SET seq = ?, hash = ? WHERE id = ?",
                   (seq, prev, 1))
