"""Load accounting: per-minute counts, shards that add up, the peaks the report states."""

from __future__ import annotations

import datetime as dt

from fleetpki.simulator.load import Load

ORIGIN = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
END = ORIGIN + dt.timedelta(days=2)


def test_summary_counts_peaks_over_the_measured_span_only() -> None:
    load = Load(ORIGIN, END)
    load.enrollment(ORIGIN + dt.timedelta(minutes=5), ok=True)  # before the span: not counted
    since = ORIGIN + dt.timedelta(days=1)
    for minute in range(10):
        load.enrollment(since + dt.timedelta(minutes=minute), ok=True)
    load.enrollment(since + dt.timedelta(minutes=3), ok=True)
    load.enrollment(since + dt.timedelta(hours=5), ok=False)
    summary = load.summary(since)
    assert summary.enrollments == 11
    assert summary.refused_or_failed == 1
    assert summary.peak_minute == 2
    assert summary.peak_hour_per_minute == 11 / 60
    assert summary.peak_day == 11
    assert summary.busiest_hour == since
    assert abs(summary.mean_per_minute - 11 / 1441) < 1e-9
    assert load.per_day(since)[0] == 11


def test_shards_add_up_minute_by_minute() -> None:
    one, two, total = Load(ORIGIN, END), Load(ORIGIN, END), Load(ORIGIN, END)
    one.enrollment(ORIGIN + dt.timedelta(minutes=7), ok=True)
    two.enrollment(ORIGIN + dt.timedelta(minutes=7), ok=True)
    two.enrollment(ORIGIN + dt.timedelta(minutes=9), ok=False)
    total.add(one.ok.tobytes(), one.not_ok.tobytes())
    total.add(two.ok.tobytes(), two.not_ok.tobytes())
    assert total.ok[7] == 2 and total.not_ok[9] == 1 and sum(total.ok) == 2
