"""Token buckets per credential and per client address.

A leaked group secret is bounded by its use count; rate limits bound how fast it can be spent,
and how fast one address can guess. Buckets live in each server process: with N workers a key
gets up to N times the configured rate (docs/operations.md). That keeps the hot path free of
database writes; the use counts, which must hold exactly, are in the database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import time
from collections.abc import Callable

_LIMIT = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|min|minute|h|hour)\s*$")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """`count` requests per `period`, with bursts of up to `count`."""

    count: int
    period: dt.timedelta

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _LIMIT.match(text)
        if not match or int(match.group(1)) < 1:
            raise ValueError(f"rate limit {text!r} must look like \"600/min\", \"20/s\" or "
                             "\"1000/hour\" with a positive count")
        return cls(int(match.group(1)), dt.timedelta(seconds=_PERIODS[match.group(2)]))

    def __str__(self) -> str:
        unit = {1: "s", 60: "min", 3600: "hour"}[int(self.period.total_seconds())]
        return f"{self.count}/{unit}"


class RateLimiter:
    def __init__(self, limit: RateLimit | None, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def take(self, key: str) -> int | None:
        """Spend one token; None if allowed, else the whole seconds until one is available."""
        if self._limit is None:
            return None
        capacity = float(self._limit.count)
        rate = capacity / self._limit.period.total_seconds()
        now = self._clock()
        tokens, updated = self._buckets.pop(key, (capacity, now))
        tokens = min(capacity, tokens + (now - updated) * rate)
        if tokens >= 1.0:
            self._remember(key, tokens - 1.0, now)
            return None
        self._remember(key, tokens, now)
        return max(1, math.ceil((1.0 - tokens) / rate))

    def _remember(self, key: str, tokens: float, now: float) -> None:
        # Re-inserted keys move to the end, so the dict's first key is the least recently
        # seen; past the bound it goes (a bucket idle that long has refilled anyway).
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self._max_keys:
            del self._buckets[next(iter(self._buckets))]
