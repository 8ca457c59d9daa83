"""The server-side renewal window: the profile's period, pulled forward by advisories."""

from __future__ import annotations

import datetime as dt

import pytest

from fleetpki.core.profile import Renewal
from fleetpki.core.renewal_window import (
    RenewalAdvisory,
    RenewalWindow,
    accepts_renewal_from,
    normal_window,
    suggested_window,
)

ISSUED = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
EXPIRES = ISSUED + dt.timedelta(days=90)
RENEWAL = Renewal(window_fraction=0.5)  # opens at day 45
NOW = ISSUED + dt.timedelta(days=10)


def advisory(start_day: int, end_day: int, *, issued_before_day: int = 20,
             profile: str = "sensor", withdrawn: bool = False, id_: str = "ra-1"
             ) -> RenewalAdvisory:
    return RenewalAdvisory(
        id=id_, profile=profile, issued_before=ISSUED + dt.timedelta(days=issued_before_day),
        start=ISSUED + dt.timedelta(days=start_day), end=ISSUED + dt.timedelta(days=end_day),
        explanation="incident", created_at=NOW, created_by="operator:alice",
        withdrawn_at=NOW if withdrawn else None)


def test_normal_window_is_the_first_half_of_the_renewal_period() -> None:
    window = normal_window(ISSUED, EXPIRES, RENEWAL)
    assert window.start == ISSUED + dt.timedelta(days=45)
    assert window.end == ISSUED + dt.timedelta(days=67, hours=12)
    assert window.explanation is None


def test_an_earlier_advisory_moves_the_window_and_the_acceptance() -> None:
    found = suggested_window("sensor", ISSUED, EXPIRES, RENEWAL, [advisory(12, 19)],
                             issued_at=ISSUED, revoked=False, now=NOW)
    assert (found.start, found.end) == (ISSUED + dt.timedelta(days=12),
                                        ISSUED + dt.timedelta(days=19))
    assert (found.explanation, found.advisory) == ("incident", "ra-1")
    opens, which = accepts_renewal_from("sensor", ISSUED, EXPIRES, RENEWAL, [advisory(12, 19)],
                                        issued_at=ISSUED)
    assert opens == ISSUED + dt.timedelta(days=12) and which is not None


@pytest.mark.parametrize("other", [
    advisory(50, 60),  # later than the profile's own window: nothing to pull forward
    advisory(12, 19, profile="gateway"),  # another profile
    advisory(12, 19, issued_before_day=0),  # certificates issued before day 0 only
    advisory(12, 19, withdrawn=True),
], ids=["later", "other-profile", "issued-after-cutoff", "withdrawn"])
def test_advisories_that_do_not_concern_the_certificate_change_nothing(
        other: RenewalAdvisory) -> None:
    assert suggested_window("sensor", ISSUED, EXPIRES, RENEWAL, [other], issued_at=ISSUED,
                            revoked=False, now=NOW) == normal_window(ISSUED, EXPIRES, RENEWAL)
    assert accepts_renewal_from("sensor", ISSUED, EXPIRES, RENEWAL, [other],
                                issued_at=ISSUED) == (ISSUED + dt.timedelta(days=45), None)


def test_the_earliest_of_several_advisories_wins() -> None:
    found = suggested_window("sensor", ISSUED, EXPIRES, RENEWAL,
                             [advisory(30, 40, id_="ra-late"), advisory(15, 25, id_="ra-early")],
                             issued_at=ISSUED, revoked=False, now=NOW)
    assert found.advisory == "ra-early"


def test_a_revoked_certificate_is_told_to_renew_now() -> None:
    found = suggested_window("sensor", ISSUED, EXPIRES, RENEWAL, [], issued_at=ISSUED,
                             revoked=True, now=NOW)
    assert found.start == NOW and found.end > NOW
    assert found.explanation is not None and "factory identity" in found.explanation


def test_a_window_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValueError, match="ends after it starts"):
        RenewalWindow(NOW, NOW - dt.timedelta(seconds=1))


def test_coverage_goes_by_issuance_not_by_the_backdated_not_before() -> None:
    """notBefore is backdated for clock skew: a certificate renewed a minute after the
    advisory has a notBefore before its cut-off, and must still not be covered."""
    cutoff = advisory(12, 19, issued_before_day=20)
    renewed_at = ISSUED + dt.timedelta(days=20, minutes=1)
    backdated = renewed_at - dt.timedelta(minutes=5)
    found = suggested_window("sensor", backdated, backdated + dt.timedelta(days=90), RENEWAL,
                             [cutoff], issued_at=renewed_at, revoked=False, now=renewed_at)
    assert found.advisory is None
    assert cutoff.covers("sensor", renewed_at - dt.timedelta(minutes=2))
