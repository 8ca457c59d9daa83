"""The inventory's reads and tables behave the same on SQLite and PostgreSQL: device lists
and pages, the audit log newest first, keyset pages of certificates, API tokens, operator
certificates, stored summaries, and the summary pass's grouped stream."""

from __future__ import annotations

import dataclasses

import pytest
from tests.contract.test_store_contract import (
    DAY,
    NOW,
    T0,
    cert,
    event,
    issue,
    with_cas,
)

from fleetpki.core.api_tokens import ApiToken, OperatorCertificate, Role
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.serials import serial_hex
from fleetpki.store.api import AuditQuery, CertificateQuery
from fleetpki.store.sql.store import SqlStore


def test_devices_are_listed_in_id_order_with_counts_and_paged_by_key(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1, device_id="dev-b"), cert(2, device_id="dev-a"),
          cert(3, device_id="dev-a", issued_at=T0 + DAY, not_after=NOW - DAY),
          cert(4, device_id="dev-c", profile="gateway"), cert(5, device_id="other-1"))
    first = store.list_devices(limit=2, now=NOW)
    assert [d.device_id for d in first] == ["dev-a", "dev-b"]
    a = first[0]
    assert (a.certificates, a.valid, a.profiles) == (2, 1, ("device",))
    assert a.first_issued == T0 and a.last_issued == T0 + DAY
    assert a.latest_not_after == NOW + 365 * DAY
    rest = store.list_devices(after="dev-b", limit=10, now=NOW)
    assert [d.device_id for d in rest] == ["dev-c", "other-1"]
    assert [d.device_id for d in store.list_devices(prefix="dev-", limit=10, now=NOW)] == [
        "dev-a", "dev-b", "dev-c"]
    device = store.get_device("dev-c", now=NOW)
    assert device is not None and device.profiles == ("gateway",)
    assert store.get_device("nobody", now=NOW) is None


def test_certificates_page_by_expiry_and_serial_without_gaps_or_repeats(store: SqlStore
                                                                          ) -> None:
    with_cas(store)
    same_day = NOW + 10 * DAY
    issue(store, *[cert(n, device_id=f"dev-{n}", not_after=same_day if n % 2 else
                        NOW + n * DAY) for n in range(1, 12)])
    seen: list[int] = []
    after = None
    for _ in range(10):
        page = store.find_certificates(CertificateQuery(limit=3, after=after), now=NOW)
        if not page:
            break
        seen += [c.serial for c in page]
        after = (page[-1].not_after, serial_hex(page[-1].serial))
    assert sorted(seen) == list(range(1, 12)) and len(seen) == 11
    window = store.find_certificates(CertificateQuery(expiring_after=NOW + 4 * DAY,
                                                      expiring_before=NOW + 9 * DAY), now=NOW)
    assert sorted(c.serial for c in window) == [4, 6, 8]
    prefixed = store.find_certificates(CertificateQuery(serial_prefix="a"), now=NOW)
    assert [c.serial for c in prefixed] == [10]


def test_the_audit_log_reads_newest_first_filtered_and_paged(store: SqlStore) -> None:
    store.audit([event("a.one", "x", actor="alice")], at=T0)
    store.audit([event("b.two", "y", actor="bob")], at=T0)
    store.audit([event("a.one", "z", actor="alice")], at=T0)
    newest = store.audit_page(AuditQuery(limit=2))
    assert [e.subject for e in newest] == ["z", "y"]
    assert [e.subject for e in store.audit_page(AuditQuery(before_seq=newest[-1].seq))] == ["x"]
    assert [e.subject for e in store.audit_page(AuditQuery(actor="alice"))] == ["z", "x"]
    assert [e.subject for e in store.audit_page(AuditQuery(action="b.two"))] == ["y"]
    assert [e.seq for e in store.audit_page(AuditQuery(subject="x"))] == [1]


TOKEN_ID = "0123456789abcdef"


def token() -> ApiToken:
    return ApiToken(id=TOKEN_ID, name="alice", role=Role.operator, secret_hash="ab" * 32,
                    created_at=T0, created_by="operator:root", expires_at=NOW)


def test_tokens_round_trip_and_revoke_once(store: SqlStore) -> None:
    store.add_token(token(), event("api_token.created"), at=T0)
    with pytest.raises(Conflict):
        store.add_token(token(), event("api_token.created"), at=T0)
    assert store.get_token("0123456789abcdef") == token()
    head = store.audit_head()
    revoked = store.revoke_token("0123456789abcdef", event("api_token.revoked"), at=NOW)
    assert revoked.revoked_at == NOW and store.audit_head()[0] == head[0] + 1
    with pytest.raises(Conflict):
        store.revoke_token("0123456789abcdef", event("api_token.revoked"), at=NOW)
    with pytest.raises(NotFound):
        store.revoke_token("ffffffffffffffff", event("api_token.revoked"), at=NOW)
    assert store.list_tokens() == []
    assert [t.id for t in store.list_tokens(include_revoked=True)] == ["0123456789abcdef"]


def test_operator_certificates_round_trip_and_revoke_once(store: SqlStore) -> None:
    record = OperatorCertificate(fingerprint="cd" * 32, name="ops-bot", role=Role.auditor,
                                 subject="CN=ops-bot", not_after=NOW, created_at=T0,
                                 created_by="operator:root")
    store.add_operator_certificate(record, event("operator_certificate.added"), at=T0)
    with pytest.raises(Conflict):
        store.add_operator_certificate(record, event("operator_certificate.added"), at=T0)
    assert store.get_operator_certificate("cd" * 32) == record
    revoked = store.revoke_operator_certificate("cd" * 32, event("x"), at=NOW)
    assert revoked == dataclasses.replace(record, revoked_at=NOW)
    assert store.list_operator_certificates() == []
    with pytest.raises(Conflict):
        store.revoke_operator_certificate("cd" * 32, event("x"), at=NOW)


def test_summaries_keep_the_newest_and_prune_the_rest(store: SqlStore) -> None:
    assert store.latest_summary() is None
    for n in range(5):
        store.save_summary(StoredSummary(computed_at=T0 + n * DAY, seconds=0.5,
                                         document=f'{{"n": {n}}}'), keep=3)
    latest = store.latest_summary()
    assert latest == StoredSummary(computed_at=T0 + 4 * DAY, seconds=0.5, document='{"n": 4}')


def test_facts_stream_grouped_by_device_and_profile_oldest_first(store: SqlStore) -> None:
    with_cas(store)
    issue(store, cert(1, device_id="b", issued_at=T0 + DAY), cert(2, device_id="a"),
          cert(3, device_id="b"), cert(4, device_id="a", profile="gateway"))
    store.revoke("issuing", 3, RevocationReason.superseded, at=NOW, event=event())
    facts = list(store.certificate_facts())
    assert [(f.device_id, f.profile, f.serial) for f in facts] == [
        ("a", "device", 2), ("a", "gateway", 4), ("b", "device", 3), ("b", "device", 1)]
    assert facts[2].revoked_at == NOW and facts[0].der is None
    with_der = list(store.certificate_facts(with_der=True))
    assert all(f.der for f in with_der)
