"""A full disk or a read-only database gives a StoreError with a next step, and changes nothing."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fleetpki.core.errors import StoreError
from fleetpki.core.records import IssuedCertificate
from fleetpki.store.api import AuditEvent, SerialReservation
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)


def certificate(serial: int, size: int) -> IssuedCertificate:
    return IssuedCertificate(
        serial=serial, issuer="issuing", device_id=f"d{serial}", profile="sensor",
        subject=f"CN=d{serial}", sans=(), key_spec="ec-p256", key_fingerprint="00" * 32,
        not_before=NOW, not_after=NOW + dt.timedelta(days=1), issued_at=NOW, der=b"x" * size)


@pytest.fixture
def store(tmp_path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / 'fleetpki.db'}")
    with sqlite3.connect(tmp_path / "fleetpki.db") as db:
        db.execute("insert into cas values ('issuing', 'issuing', null, x'00', 'k', 0, "
                   "'2026-11-21 00:00:00', 0, null, null, 0)")
    return store


def test_full_disk_is_reported_and_the_transaction_rolls_back(store: SqlStore) -> None:
    store.reserve_serials([SerialReservation("issuing", 1, "d1", "sensor")], at=NOW)
    writer: sa.Engine = store._writer  # the one engine that writes

    @sa.event.listens_for(writer, "connect")
    def _limit(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 1}")

    writer.dispose()
    store._commits.close()  # it keeps its own connection open: make it reconnect too
    with pytest.raises(StoreError, match="disk holding the database is full"):
        store.record_issued([certificate(1, 200_000)], [], [AuditEvent("t", "issue", "1")],
                            at=NOW)
    assert store.get_certificate(1) is None
    assert store.audit_head()[0] == 0
    assert store.count_reserved_serials() == 1


def test_read_only_database_is_reported(tmp_path: Path, store: SqlStore) -> None:
    store.close()
    readonly = SqlStore(f"sqlite:///file:{tmp_path / 'fleetpki.db'}?mode=ro&uri=true")
    with pytest.raises(StoreError, match="read-only"):
        readonly.reserve_serials([SerialReservation("issuing", 2, "d2", "sensor")], at=NOW)
    assert readonly.count_reserved_serials() == 0
