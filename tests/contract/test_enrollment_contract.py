"""The enrollment tables behave the same on SQLite and PostgreSQL: use counts hold under races,
decisions happen once, and every change is audited in its own transaction."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from fleetpki.core.enrollment_records import (
    ApprovalState,
    BootstrapCredential,
    ManufacturerCA,
    PendingEnrollment,
)
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.store.api import AuditEvent
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2031, 5, 1, 12, 0, tzinfo=dt.UTC)


def credential(name: str = "bt-1", max_uses: int = 1) -> BootstrapCredential:
    return BootstrapCredential(id=name, secret_hash="ab" * 32, profile="sensor", device_id=None,
                               max_uses=max_uses, uses=0, expires_at=NOW + dt.timedelta(days=1),
                               created_at=NOW, created_by="op")


def event(action: str = "x") -> AuditEvent:
    return AuditEvent(actor="op", action=action, subject="s")


def test_credential_round_trip_and_duplicate(store: SqlStore) -> None:
    store.add_credentials([credential()], [event()], at=NOW)
    assert store.get_credential("bt-1") == credential()
    with pytest.raises(Conflict):
        store.add_credentials([credential()], [event()], at=NOW)
    assert store.get_credential("nope") is None


def test_credentials_are_added_all_or_none(store: SqlStore) -> None:
    store.add_credentials([credential("taken")], [event()], at=NOW)
    head = store.audit_head()
    many = [credential(f"dev-{i}") for i in range(1200)]  # more than one IN (...) chunk
    with pytest.raises(Conflict, match="'taken' already exists"):
        store.add_credentials([*many, credential("taken")], [event()] * 1201, at=NOW)
    with pytest.raises(Conflict, match="listed twice"):
        store.add_credentials([credential("x"), credential("x")], [event()] * 2, at=NOW)
    assert store.get_credential("dev-0") is None and store.get_credential("x") is None
    assert store.audit_head() == head
    store.add_credentials(many, [event()] * 1200, at=NOW)
    assert len(store.list_credentials()) == 1201
    assert store.audit_head()[0] == head[0] + 1200


def test_redeem_counts_uses_and_stops_at_the_limit(store: SqlStore) -> None:
    store.add_credentials([credential(max_uses=2)], [event()], at=NOW)
    assert store.redeem_use("bt-1", at=NOW)
    assert store.redeem_use("bt-1", at=NOW)
    assert not store.redeem_use("bt-1", at=NOW)
    store.return_use("bt-1")
    assert store.get_credential("bt-1").uses == 1  # type: ignore[union-attr]


def test_redeem_refuses_expired_and_disabled(store: SqlStore) -> None:
    store.add_credentials([credential("a", 5)], [event()], at=NOW)
    store.add_credentials([credential("b", 5)], [event()], at=NOW)
    assert not store.redeem_use("a", at=NOW + dt.timedelta(days=2))
    store.disable_credential("b", event(), at=NOW)
    assert not store.redeem_use("b", at=NOW)
    with pytest.raises(Conflict):
        store.disable_credential("b", event(), at=NOW)
    with pytest.raises(NotFound):
        store.disable_credential("zz", event(), at=NOW)
    assert [c.id for c in store.list_credentials()] == ["a"]
    assert [c.id for c in store.list_credentials(include_disabled=True)] == ["a", "b"]


def test_racing_redeemers_share_exactly_the_uses_there_are(store: SqlStore) -> None:
    store.add_credentials([credential(max_uses=10)], [event()], at=NOW)
    wins: list[bool] = []
    lock = threading.Lock()

    def redeem() -> None:
        for _ in range(5):
            won = store.redeem_use("bt-1", at=NOW)
            with lock:
                wins.append(won)

    threads = [threading.Thread(target=redeem) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(wins) == 10 and len(wins) == 30


def test_manufacturers_and_allow_list(store: SqlStore) -> None:
    maker = ManufacturerCA("acme", b"\x30\x00", "sensor", "serialNumber", True, NOW)
    store.add_manufacturer(maker, event(), at=NOW)
    assert store.list_manufacturers() == [maker]
    with pytest.raises(Conflict):
        store.add_manufacturer(maker, event(), at=NOW)
    assert store.allow_devices("acme", ["d1", "d2", "d1"], event(), at=NOW) == 2
    assert store.allow_devices("acme", ["d2", "d3"], event(), at=NOW) == 1
    assert store.is_allowed("acme", "d3") and not store.is_allowed("acme", "d4")
    with pytest.raises(NotFound):
        store.allow_devices("other", ["d1"], event(), at=NOW)


def test_pending_is_found_by_key_and_decided_once(store: SqlStore) -> None:
    pending = PendingEnrollment(id="p1", profile="held", device_id="gw-1", actor="bootstrap:a",
                                key_fingerprint="f" * 64, csr_der=b"csr", requested_at=NOW)
    store.add_pending(pending, event(), at=NOW)
    assert store.find_pending("held", "f" * 64) == pending
    assert store.find_pending("other", "f" * 64) is None
    assert store.list_pending() == [pending]
    store.decide("p1", ApprovalState.rejected, decided_by="op", at=NOW, event=event(),
                 reason="no")
    with pytest.raises(Conflict):
        store.decide("p1", ApprovalState.issued, decided_by="op", at=NOW, event=event())
    decided = store.get_pending("p1")
    assert decided is not None and decided.state is ApprovalState.rejected
    assert decided.reason == "no" and store.list_pending() == []
    assert store.list_pending(None) == [decided]


def test_every_change_is_audited(store: SqlStore) -> None:
    before = store.audit_head()[0]
    store.add_credentials([credential()], [event("a")], at=NOW)
    store.disable_credential("bt-1", event("b"), at=NOW)
    store.redeem_use("bt-1", at=NOW)  # counts are not audit-worthy on their own
    assert store.audit_head()[0] == before + 2
