"""The fleet summary's pass: counts, the weekly timeline, compliance against current
profiles, overdue renewals and dark devices, from a hand-made stream of facts."""

from __future__ import annotations

import dataclasses
import datetime as dt
from importlib import resources
from pathlib import Path

from fleetpki.core.inventory_records import CertificateFact
from fleetpki.core.renewal_window import RenewalAdvisory
from fleetpki.inventory.summary import WEEKS, summarize
from fleetpki.profiles_loader import load_profiles

NOW = dt.datetime(2030, 6, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
_DEFAULTS = resources.files("fleetpki.defaults").joinpath("profiles.toml")
PROFILES = load_profiles(Path(str(_DEFAULTS)), known_issuers={"issuing"})


def fact(serial: int, device: str, *, profile: str = "sensor", key: str = "ec-p256",
         issued: dt.datetime = NOW - 10 * DAY, days: int = 365,
         revoked: dt.datetime | None = None) -> CertificateFact:
    return CertificateFact(serial=serial, issuer="issuing", device_id=device, profile=profile,
                           key_spec=key, not_before=issued, not_after=issued + days * DAY,
                           issued_at=issued, revoked_at=revoked)


def test_counts_timeline_and_algorithms() -> None:
    facts = [fact(1, "a", days=20), fact(2, "b", key="ec-p384", days=100),
             fact(3, "c", revoked=NOW - DAY), fact(4, "d", issued=NOW - 400 * DAY)]
    summary = summarize(facts, PROFILES, [], NOW)
    assert summary["certificates"] == {"total": 4, "valid": 2, "expired": 1, "revoked": 1,
                                       "expiring_7d": 0, "expiring_30d": 1}
    weeks = summary["expiry"]["per_week"]
    assert len(weeks) == WEEKS and weeks[1] == 1 and weeks[12] == 1 and sum(weeks) == 2
    assert summary["expiry"]["expired_last_90d"] == 1
    assert summary["algorithms"] == {"ec-p256": 1, "ec-p384": 1}


def test_compliance_is_judged_against_the_current_profile() -> None:
    facts = [fact(1, "rsa-sensor", key="rsa-2048"), fact(2, "long", days=800),
             fact(3, "gone", profile="camera"), fact(4, "fine")]
    findings = summarize(facts, PROFILES, [], NOW)["compliance"]
    assert findings["findings"] == {"weak_key": 1, "validity_too_long": 1,
                                    "missing_extension": 0, "profile_removed": 1}
    assert findings["samples"]["weak_key"][0]["device_id"] == "rsa-sensor"


def test_dark_devices_and_overdue_renewals() -> None:
    renewed_old = fact(1, "renewed", issued=NOW - 370 * DAY)
    renewed_new = fact(2, "renewed", issued=NOW - 10 * DAY)
    dark = fact(3, "dark", issued=NOW - 400 * DAY)
    cut_off = fact(4, "cut-off", issued=NOW - 400 * DAY, revoked=NOW - 100 * DAY)
    # A one-year certificate with 10 days left is past its normal window (which closes at
    # half of the last third of its life) and nothing newer exists.
    overdue = fact(5, "overdue", issued=NOW - 355 * DAY)
    summary = summarize([renewed_old, renewed_new, dark, cut_off, overdue], PROFILES, [], NOW)
    assert summary["devices"]["total"] == 4
    assert summary["devices"]["dark"] == 1 and summary["devices"]["dark_sample"] == ["dark"]
    assert summary["compliance"]["overdue_renewal"] == 1
    assert summary["compliance"]["overdue_sample"][0]["device_id"] == "overdue"


def test_an_advisory_makes_renewals_overdue_early() -> None:
    young = fact(1, "young", issued=NOW - 30 * DAY)
    advisory = RenewalAdvisory(id="ra-1", profile="sensor", issued_before=NOW - DAY,
                               start=NOW - 5 * DAY, end=NOW - DAY, explanation="incident",
                               created_at=NOW - 5 * DAY, created_by="operator:x")
    assert summarize([young], PROFILES, [], NOW)["compliance"]["overdue_renewal"] == 0
    assert summarize([young], PROFILES, [advisory], NOW)["compliance"]["overdue_renewal"] == 1
    withdrawn = dataclasses.replace(advisory, profile="gateway")
    assert summarize([young], PROFILES, [withdrawn], NOW)["compliance"]["overdue_renewal"] == 0
