"""When a certificate should be renewed: the server-side renewal-window policy.

One policy answers three questions the same way: when the RA accepts a re-enrollment, what
the EST `renewalinfo` endpoint suggests to an agent, and (later) what ACME Renewal
Information (RFC 9773) suggests to an ACME client. In the spirit of RFC 9773 §4.2, a window
is a time span: a client picks a random instant inside it, so a fleet issued in one burst
does not come back in one burst.

  normal:    the profile's renewal period is the last `window_fraction` of the lifetime; the
             suggested window is its first half, which leaves the second half for retries.
  advisory:  an operator pulled renewals forward (after an incident, or to spread load) for
             the profile's certificates issued before a date: the advisory's window, when it
             is earlier than the normal one. Re-enrollment is accepted from its start.
  revoked:   renew at once; the certificate can no longer renew itself, so an agent falls
             back to its factory identity (docs/agent.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

from fleetpki.core.profile import Renewal

# A revoked certificate's window: from now, this long. Any instant in it means "now".
_IMMEDIATE = dt.timedelta(minutes=1)


@dataclasses.dataclass(frozen=True, slots=True)
class RenewalAdvisory:
    """An operator's decision to pull renewals forward for one profile."""

    id: str
    profile: str
    # Certificates issued before this are concerned. Issued, not notBefore: notBefore is
    # backdated a few minutes (clock skew), so a certificate renewed just after the advisory
    # would otherwise count as covered and be asked to renew again.
    issued_before: dt.datetime
    start: dt.datetime
    end: dt.datetime
    explanation: str
    created_at: dt.datetime
    created_by: str
    withdrawn_at: dt.datetime | None = None

    def covers(self, profile: str, issued_at: dt.datetime) -> bool:
        return (self.withdrawn_at is None and self.profile == profile
                and issued_at < self.issued_before)


@dataclasses.dataclass(frozen=True, slots=True)
class RenewalWindow:
    start: dt.datetime
    end: dt.datetime
    explanation: str | None = None  # why the window is not the profile's normal one
    advisory: str | None = None  # id of the advisory that moved it

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError("a renewal window ends after it starts")


def normal_window(not_before: dt.datetime, not_after: dt.datetime, renewal: Renewal
                  ) -> RenewalWindow:
    """The profile's own window: the first half of its renewal period."""
    opens = renewal_opens(not_before, not_after, renewal)
    return RenewalWindow(opens, opens + (not_after - opens) / 2)


def renewal_opens(not_before: dt.datetime, not_after: dt.datetime, renewal: Renewal
                  ) -> dt.datetime:
    """When the profile lets a certificate renew itself, without any advisory."""
    return not_after - (not_after - not_before) * renewal.window_fraction


def suggested_window(profile: str, not_before: dt.datetime, not_after: dt.datetime,
                     renewal: Renewal, advisories: Iterable[RenewalAdvisory], *,
                     issued_at: dt.datetime, revoked: bool, now: dt.datetime
                     ) -> RenewalWindow:
    if revoked:
        return RenewalWindow(now, now + _IMMEDIATE,
                             "the certificate was revoked: enroll again with the factory "
                             "identity or a bootstrap credential")
    window = normal_window(not_before, not_after, renewal)
    advisory = earliest_advisory(profile, issued_at, advisories)
    if advisory is not None and advisory.start < window.start:
        end = min(advisory.end, window.end)
        return RenewalWindow(advisory.start, max(end, advisory.start), advisory.explanation,
                             advisory.id)
    return window


def accepts_renewal_from(profile: str, not_before: dt.datetime, not_after: dt.datetime,
                         renewal: Renewal, advisories: Iterable[RenewalAdvisory], *,
                         issued_at: dt.datetime
                         ) -> tuple[dt.datetime, RenewalAdvisory | None]:
    """From when the RA accepts a re-enrollment with this certificate, and the advisory that
    made it earlier than the profile's period, if one did."""
    opens = renewal_opens(not_before, not_after, renewal)
    advisory = earliest_advisory(profile, issued_at, advisories)
    if advisory is not None and advisory.start < opens:
        return advisory.start, advisory
    return opens, None


def earliest_advisory(profile: str, issued_at: dt.datetime,
                      advisories: Iterable[RenewalAdvisory]) -> RenewalAdvisory | None:
    concerned = [a for a in advisories if a.covers(profile, issued_at)]
    return min(concerned, key=lambda a: a.start, default=None)
