"""Renewal advisories: an operator pulls renewals forward for a profile, e.g. after an incident.

What an advisory does is decided in core/renewal_window.py (agents are told to renew inside its
window, and the RA accepts re-enrollment from its start). This desk decides what may be asked:
a profile that exists, a window that has not already ended, and an explanation short enough
to travel to every device that asks for renewal information. The store makes each change
atomic with its audit entry.
"""

from __future__ import annotations

import builtins
import datetime as dt
import secrets
from collections.abc import Mapping

from fleetpki.core.clock import Clock
from fleetpki.core.errors import BadInput, NotFound
from fleetpki.core.profile import Profile
from fleetpki.core.renewal_window import RenewalAdvisory
from fleetpki.store.api import AuditEvent, RenewalAdvisories

# The explanation is handed to devices with their renewal window: one short line of text.
MAX_EXPLANATION = 500


class RenewalAdvisoryAdmin:
    def __init__(self, store: RenewalAdvisories, profiles: Mapping[str, Profile], clock: Clock,
                 actor: str) -> None:
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._actor = actor

    def advise(self, profile: str, *, start: dt.datetime | None = None, end: dt.datetime,
               issued_before: dt.datetime | None = None, explanation: str) -> RenewalAdvisory:
        """Ask the profile's certificates issued before `issued_before` (default: now) to renew
        between `start` (default: now) and `end`. BadInput or NotFound, and nothing stored,
        for a request that cannot take effect as asked."""
        now = self._clock.now()
        if profile not in self._profiles:
            raise NotFound(f"no profile named '{profile}' (profiles: "
                           f"{', '.join(sorted(self._profiles))})")
        start = _utc(start, "start") if start is not None else now
        end = _utc(end, "end")
        issued_before = (_utc(issued_before, "issued-before") if issued_before is not None
                         else now)
        # The past end first: with the default start (now) it is also "before the start",
        # but "already passed" is what the operator needs to hear.
        if end <= now:
            raise BadInput(f"the advisory's end {_show(end)} has already passed: no device "
                           "could act on it")
        if end <= start:
            raise BadInput(f"the advisory must end after it starts (start {_show(start)}, "
                           f"end {_show(end)})")
        if issued_before > end:
            raise BadInput(f"issued-before {_show(issued_before)} is after the advisory's end "
                           f"{_show(end)}: certificates issued then could not renew in time")
        text = _explanation(explanation)
        advisory = RenewalAdvisory(
            id=f"ra-{secrets.token_hex(5)}", profile=profile, issued_before=issued_before,
            start=start, end=end, explanation=text, created_at=now, created_by=self._actor)
        event = AuditEvent(actor=self._actor, action="renewal.advised", subject=advisory.id,
                           details={"profile": profile, "start": start.isoformat(),
                                    "end": end.isoformat(),
                                    "issued_before": issued_before.isoformat()})
        self._store.add_advisory(advisory, event, at=now)
        return advisory

    def withdraw(self, advisory_id: str) -> RenewalAdvisory:
        """Agents go back to the profile's normal window the next time they ask; certificates
        already renewed under the advisory stay renewed. NotFound or Conflict otherwise."""
        now = self._clock.now()
        event = AuditEvent(actor=self._actor, action="renewal.withdrawn", subject=advisory_id)
        return self._store.withdraw_advisory(advisory_id, event, at=now)

    def list(self, profile: str | None = None, include_withdrawn: bool = False
             ) -> builtins.list[RenewalAdvisory]:
        """Oldest first."""
        return self._store.list_advisories(profile=profile, include_withdrawn=include_withdrawn)


def _utc(value: dt.datetime, name: str) -> dt.datetime:
    # A naive time would be read in whatever zone the server runs in; refuse to guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise BadInput(f"{name} {value.isoformat()} has no time zone; give one (e.g. Z for UTC)")
    return value.astimezone(dt.UTC)


def _explanation(text: str) -> str:
    stripped = text.strip()
    if not stripped:
        raise BadInput("give an explanation: devices and operators see it with the advisory")
    if len(stripped) > MAX_EXPLANATION:
        raise BadInput(f"the explanation is {len(stripped)} characters; keep it to "
                       f"{MAX_EXPLANATION} (it travels to every device that asks)")
    if not stripped.isprintable():
        raise BadInput("the explanation must be one line of printable text (no line breaks "
                       "or control characters)")
    return stripped


def _show(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC"
