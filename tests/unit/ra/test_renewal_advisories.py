"""The RA's renewal advisory desk: what an operator may ask, what is stored and audited, and
that every refusal leaves the store and the audit log as they were."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.unit.revocation.test_crl_publisher import profile

from fleetpki.core.clock import FakeClock
from fleetpki.core.errors import BadInput, Conflict, NotFound
from fleetpki.ra.renewal_advisories import MAX_EXPLANATION, RenewalAdvisoryAdmin
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
ACTOR = "operator:test"


@dataclasses.dataclass
class Desk:
    admin: RenewalAdvisoryAdmin
    store: SqlStore
    clock: FakeClock

    def audit_since(self, seq: int) -> list[tuple[str, str, dict[str, Any]]]:
        return [(e.action, e.subject, e.details)
                for e in self.store.audit_entries(since_seq=seq + 1)]


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    clock = FakeClock(NOW)
    profiles = {"sensor": profile("sensor"), "gateway": profile("gateway")}
    try:
        yield Desk(RenewalAdvisoryAdmin(store, profiles, clock, ACTOR), store, clock)
    finally:
        store.close()


def test_advise_defaults_to_now_and_audits_the_window(desk: Desk) -> None:
    made = desk.admin.advise("sensor", end=NOW + 3 * DAY, explanation="  HSM migration  ")
    assert re.fullmatch(r"ra-[0-9a-f]{10}", made.id)
    assert (made.profile, made.start, made.issued_before, made.end) == (
        "sensor", NOW, NOW, NOW + 3 * DAY)
    assert (made.explanation, made.created_at, made.created_by, made.withdrawn_at) == (
        "HSM migration", NOW, ACTOR, None)
    assert desk.admin.list() == [made]
    assert desk.audit_since(0) == [("renewal.advised", made.id, {
        "profile": "sensor", "start": NOW.isoformat(), "end": (NOW + 3 * DAY).isoformat(),
        "issued_before": NOW.isoformat()})]


def test_advise_keeps_explicit_times_in_utc(desk: Desk) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    made = desk.admin.advise("gateway", start=(NOW + DAY).astimezone(plus_two),
                             end=NOW + 5 * DAY, issued_before=NOW - 10 * DAY,
                             explanation="x" * MAX_EXPLANATION)
    assert (made.start, made.issued_before) == (NOW + DAY, NOW - 10 * DAY)
    assert made.start.tzinfo is dt.UTC
    assert desk.admin.list() == [made]


def test_every_advisory_gets_its_own_id(desk: Desk) -> None:
    ids = {desk.admin.advise("sensor", end=NOW + DAY, explanation="e").id for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize(("changes", "error", "says"), [
    ({"profile": "camera"}, NotFound, "no profile named 'camera' (profiles: gateway, sensor)"),
    ({"end": NOW}, BadInput, "already passed"),
    ({"start": NOW + 2 * DAY}, BadInput, "must end after it starts"),
    ({"start": NOW - 3 * DAY, "end": NOW - DAY}, BadInput, "already passed"),
    ({"issued_before": NOW + 2 * DAY}, BadInput, "after the advisory's end"),
    ({"explanation": ""}, BadInput, "give an explanation"),
    ({"explanation": " \t "}, BadInput, "give an explanation"),
    ({"explanation": "x" * (MAX_EXPLANATION + 1)}, BadInput, "keep it to 500"),
    ({"explanation": "line one\nline two"}, BadInput, "one line"),
    ({"end": dt.datetime(2026, 12, 1)}, BadInput, "no time zone"),  # naive on purpose
])
def test_refusals_say_why_and_store_nothing(desk: Desk, changes: dict[str, Any],
                                            error: type[Exception], says: str) -> None:
    request: dict[str, Any] = {"profile": "sensor", "end": NOW + DAY, "explanation": "why"}
    request.update(changes)
    head = desk.store.audit_head()
    with pytest.raises(error) as refused:
        desk.admin.advise(request.pop("profile"), **request)
    assert says in str(refused.value)
    assert desk.store.audit_head() == head
    assert desk.admin.list(include_withdrawn=True) == []


def test_withdraw_is_audited_and_happens_once(desk: Desk) -> None:
    made = desk.admin.advise("sensor", end=NOW + 3 * DAY, explanation="incident 42")
    seq = desk.store.audit_head()[0]
    desk.clock.advance(DAY)
    withdrawn = desk.admin.withdraw(made.id)
    assert withdrawn == dataclasses.replace(made, withdrawn_at=NOW + DAY)
    assert desk.audit_since(seq) == [("renewal.withdrawn", made.id, {})]
    seq = desk.store.audit_head()[0]
    with pytest.raises(Conflict, match="already withdrawn"):
        desk.admin.withdraw(made.id)
    with pytest.raises(NotFound, match="ra-0000000000"):
        desk.admin.withdraw("ra-0000000000")
    assert desk.audit_since(seq) == []


def test_list_filters_by_profile_and_hides_withdrawn_by_default(desk: Desk) -> None:
    first = desk.admin.advise("sensor", end=NOW + DAY, explanation="a")
    desk.clock.advance(dt.timedelta(minutes=1))
    second = desk.admin.advise("gateway", end=NOW + DAY, explanation="b")
    desk.clock.advance(dt.timedelta(minutes=1))
    third = desk.admin.advise("sensor", end=NOW + DAY, explanation="c")
    desk.admin.withdraw(first.id)
    assert [a.id for a in desk.admin.list()] == [second.id, third.id]
    assert [a.id for a in desk.admin.list("sensor")] == [third.id]
    assert [a.id for a in desk.admin.list("sensor", include_withdrawn=True)] == [
        first.id, third.id]
