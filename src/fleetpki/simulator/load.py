"""Server load over simulated time: enrollments per minute, and what to say about it.

The peak that matters for capacity is the rate sustained over some span, not the busiest
single minute: with a mean below one enrollment a minute, a minute with six is chance (a
Poisson count), whatever the policy. So the summary gives both the busiest single minute and
the busiest hour expressed per minute, each against the mean; the target in
docs/fleet-renewal.md is stated on the hourly figure.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from array import array

_MINUTE = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True, slots=True)
class LoadSummary:
    enrollments: int  # successful, inside the measured span
    refused_or_failed: int  # enrollment requests answered with anything but 200
    mean_per_minute: float
    peak_minute: int
    peak_hour_per_minute: float
    peak_day: int
    busiest_hour: dt.datetime | None

    @property
    def minute_ratio(self) -> float:
        return self.peak_minute / self.mean_per_minute if self.mean_per_minute else 0.0

    @property
    def hour_ratio(self) -> float:
        return self.peak_hour_per_minute / self.mean_per_minute if self.mean_per_minute else 0.0


class Load:
    def __init__(self, origin: dt.datetime, end: dt.datetime) -> None:
        self.origin = origin
        self.end = end
        size = int((end - origin) / _MINUTE) + 1
        self.ok = array("I", bytes(4 * size))
        self.not_ok = array("I", bytes(4 * size))

    def add(self, ok: bytes, not_ok: bytes) -> None:
        """Add another shard's counts (from `array.tobytes()` of a Load of the same span)."""
        for mine, theirs in ((self.ok, ok), (self.not_ok, not_ok)):
            other = array("I")
            other.frombytes(theirs)
            if len(other) != len(mine):
                raise ValueError("the shards did not cover the same span")
            for minute, count in enumerate(other):
                if count:
                    mine[minute] += count

    def enrollment(self, now: dt.datetime, ok: bool) -> None:
        minute = int((now - self.origin) / _MINUTE)
        if 0 <= minute < len(self.ok):
            (self.ok if ok else self.not_ok)[minute] += 1

    def per_day(self, since: dt.datetime) -> list[int]:
        """Successful enrollments per day from `since` to the end."""
        first = int((since - self.origin) / _MINUTE)
        days = []
        for start in range(first, len(self.ok), 1440):
            days.append(sum(self.ok[start:start + 1440]))
        return days

    def summary(self, since: dt.datetime) -> LoadSummary:
        first = int((since - self.origin) / _MINUTE)
        ok = self.ok[first:]
        minutes = len(ok)
        total = sum(ok)
        hours = [sum(ok[i:i + 60]) for i in range(0, minutes, 60)]
        days = [sum(ok[i:i + 1440]) for i in range(0, minutes, 1440)]
        busiest = max(range(len(hours)), key=hours.__getitem__, default=None)
        return LoadSummary(
            enrollments=total, refused_or_failed=sum(self.not_ok[first:]),
            mean_per_minute=total / minutes if minutes else 0.0,
            peak_minute=max(ok, default=0),
            peak_hour_per_minute=(max(hours, default=0) / 60),
            peak_day=max(days, default=0),
            busiest_hour=None if busiest is None else since + dt.timedelta(hours=busiest))
