"""The summary's runtime: one pass at a time across workers, never twice when fresh."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

from fleetpki.core.clock import FakeClock
from fleetpki.core.inventory_records import StoredSummary
from fleetpki.summary_runtime import refresh_if_due, refresh_in_background, summary_lock

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
INTERVAL = dt.timedelta(minutes=10)


def stored(at: dt.datetime) -> StoredSummary:
    return StoredSummary(computed_at=at, seconds=0.1, document="{}")


def test_a_fresh_summary_is_not_recomputed_and_a_stale_one_is(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    made: list[StoredSummary] = []

    def refresh() -> StoredSummary:
        made.append(stored(clock.now()))
        return made[-1]

    assert refresh_if_due(lambda: stored(NOW - dt.timedelta(minutes=9)), refresh, clock,
                          INTERVAL, tmp_path) is None
    assert refresh_if_due(lambda: stored(NOW - dt.timedelta(minutes=11)), refresh, clock,
                          INTERVAL, tmp_path) == stored(NOW)
    assert len(made) == 1


def test_nothing_is_computed_while_another_holds_the_lock(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    calls: list[int] = []

    def refresh() -> StoredSummary:
        calls.append(1)
        return stored(NOW)

    with summary_lock(tmp_path) as held:
        assert held
        assert refresh_if_due(lambda: None, refresh, clock, INTERVAL, tmp_path) is None
        assert refresh_in_background(refresh, tmp_path) is False
    assert calls == []


def test_a_background_pass_runs_once_in_a_thread(tmp_path: Path) -> None:
    done = threading.Event()

    def refresh() -> StoredSummary:
        done.set()
        return stored(NOW)

    assert refresh_in_background(refresh, tmp_path) is True
    assert done.wait(10)
