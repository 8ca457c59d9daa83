"""The fleet summary: one pass over every certificate, kept for the overview to read.

Counting a million certificates by status, week of expiry, algorithm and compliance takes
seconds, far more than a page may. So the pass runs apart, in the server's background loop
every `inventory.summary_interval` and on demand, and the overview reads its stored result
(one row) together with the moment it was computed, which the dashboard shows.

The pass streams certificates grouped by device and profile (store.certificate_facts), so
"the newest certificate of this device in this profile" is known without holding the fleet
in memory: that is what tells a device that renewed from one that went dark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from fleetpki.core.inventory_records import CertificateFact, StoredSummary
from fleetpki.core.profile import Profile
from fleetpki.core.renewal_window import RenewalAdvisory, suggested_window
from fleetpki.core.serials import serial_hex
from fleetpki.inventory.compliance import ComplianceCheck, Finding

WEEKS = 53  # a year and a day: a one-year certificate issued today falls in the last
SAMPLE = 100  # serials or device ids listed per finding, for the dashboard to link


@dataclasses.dataclass
class _Tally:
    now: dt.datetime
    statuses: Counter[str] = dataclasses.field(default_factory=Counter)
    by_profile: dict[str, Counter[str]] = dataclasses.field(default_factory=dict)
    weeks: list[int] = dataclasses.field(default_factory=lambda: [0] * WEEKS)
    expired_last_90d: int = 0
    later: int = 0  # valid beyond the timeline's last week
    algorithms: Counter[str] = dataclasses.field(default_factory=Counter)
    findings: Counter[str] = dataclasses.field(default_factory=Counter)
    finding_samples: dict[str, list[dict[str, str]]] = dataclasses.field(default_factory=dict)
    overdue: int = 0
    overdue_sample: list[dict[str, str]] = dataclasses.field(default_factory=list)
    devices: int = 0
    dark: int = 0
    dark_sample: list[str] = dataclasses.field(default_factory=list)
    expiring_7d: int = 0
    expiring_30d: int = 0


class _Facts(Protocol):
    def certificate_facts(self, *, with_der: bool = False) -> Iterable[CertificateFact]: ...

    def save_summary(self, summary: StoredSummary, *, keep: int = 48) -> None: ...


def summarize(facts: Iterable[CertificateFact], profiles: Mapping[str, Profile],
              advisories: Sequence[RenewalAdvisory], now: dt.datetime,
              progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The summary document (JSON-ready). `facts` must come grouped by device, then profile,
    oldest first within a group, as store.certificate_facts yields them."""
    tally = _Tally(now)
    check = ComplianceCheck(profiles)
    seen = 0
    for device_id, of_device in itertools.groupby(facts, key=lambda f: f.device_id):
        tally.devices += 1
        holds_valid = any_revoked = False
        for _, of_profile in itertools.groupby(of_device, key=lambda f: f.profile):
            newest = None
            for fact in of_profile:
                _count(tally, fact, check)
                any_revoked |= fact.revoked_at is not None
                holds_valid |= fact.revoked_at is None and fact.not_after > now
                newest = fact
                seen += 1
                if progress is not None and seen % 10_000 == 0:
                    progress(seen)
            if newest is not None:
                _check_renewal(tally, newest, profiles, advisories)
        # Dark: every certificate it had expired on it. A device whose certificates were
        # revoked was cut off on purpose; that is not darkness.
        if not holds_valid and not any_revoked:
            tally.dark += 1
            if len(tally.dark_sample) < SAMPLE:
                tally.dark_sample.append(device_id)
    if progress is not None:
        progress(seen)
    return _document(tally)


def _count(tally: _Tally, fact: CertificateFact, check: ComplianceCheck) -> None:
    now = tally.now
    if fact.revoked_at is not None:
        status = "revoked"
    elif fact.not_after <= now:
        status = "expired"
        if fact.not_after > now - dt.timedelta(days=90):
            tally.expired_last_90d += 1
    else:
        status = "valid"
        week = int((fact.not_after - now) / dt.timedelta(weeks=1))
        if week < WEEKS:
            tally.weeks[week] += 1
        else:
            tally.later += 1
        left = fact.not_after - now
        tally.expiring_7d += left <= dt.timedelta(days=7)
        tally.expiring_30d += left <= dt.timedelta(days=30)
        tally.algorithms[fact.key_spec] += 1
        # Compliance matters for what is still trusted, not for what expired or was revoked.
        for finding in check.findings(fact):
            tally.findings[finding.name] += 1
            sample = tally.finding_samples.setdefault(finding.name, [])
            if len(sample) < SAMPLE:
                sample.append(_reference(fact))
    tally.statuses[status] += 1
    tally.by_profile.setdefault(fact.profile, Counter())[status] += 1


def _check_renewal(tally: _Tally, newest: CertificateFact, profiles: Mapping[str, Profile],
                   advisories: Sequence[RenewalAdvisory]) -> None:
    """Overdue: the newest certificate of a device in a profile is past the end of the window
    in which the server asked it to renew (the same window the EST renewalinfo endpoint
    hands out), and nothing newer was issued."""
    profile = profiles.get(newest.profile)
    if profile is None or newest.revoked_at is not None or newest.not_after <= tally.now:
        return
    window = suggested_window(newest.profile, newest.not_before, newest.not_after,
                              profile.renewal, advisories, issued_at=newest.issued_at,
                              revoked=False, now=tally.now)
    if tally.now > window.end:
        tally.overdue += 1
        if len(tally.overdue_sample) < SAMPLE:
            tally.overdue_sample.append(_reference(newest))


def _reference(fact: CertificateFact) -> dict[str, str]:
    return {"serial": serial_hex(fact.serial), "issuer": fact.issuer,
            "device_id": fact.device_id, "profile": fact.profile,
            "not_after": fact.not_after.isoformat()}


def _document(tally: _Tally) -> dict[str, Any]:
    return {
        "computed_at": tally.now.isoformat(),
        "certificates": {"total": sum(tally.statuses.values()),
                         **{s: tally.statuses.get(s, 0) for s in ("valid", "expired",
                                                                  "revoked")},
                         "expiring_7d": tally.expiring_7d, "expiring_30d": tally.expiring_30d},
        "by_profile": {p: {s: c.get(s, 0) for s in ("valid", "expired", "revoked")}
                       for p, c in sorted(tally.by_profile.items())},
        "expiry": {"week_starts": [(tally.now + dt.timedelta(weeks=w)).date().isoformat()
                                   for w in range(WEEKS)],
                   "per_week": tally.weeks, "later": tally.later,
                   "expired_last_90d": tally.expired_last_90d},
        "algorithms": dict(tally.algorithms.most_common()),
        "compliance": {
            "findings": {f.name: tally.findings.get(f.name, 0) for f in Finding},
            "labels": {f.name: f.value for f in Finding},
            "samples": tally.finding_samples,
            "overdue_renewal": tally.overdue, "overdue_sample": tally.overdue_sample,
        },
        "devices": {"total": tally.devices, "dark": tally.dark,
                    "dark_sample": tally.dark_sample},
    }


def refresh_summary(store: _Facts, profiles: Mapping[str, Profile],
                    advisories: Sequence[RenewalAdvisory], now: dt.datetime, *,
                    progress: Callable[[int], None] | None = None) -> StoredSummary:
    """Compute the summary now and store it; returns what was stored."""
    started = time.perf_counter()
    document = summarize(store.certificate_facts(with_der=True), profiles, advisories, now,
                         progress)
    stored = StoredSummary(computed_at=now, seconds=round(time.perf_counter() - started, 3),
                           document=json.dumps(document, separators=(",", ":")))
    store.save_summary(stored)
    return stored
