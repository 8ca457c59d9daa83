"""When to renew and when to retry: pure functions of the certificate, the policy and a
random source (so the simulator, seeded, replays a fleet exactly)."""

from __future__ import annotations

import datetime as dt
import random

from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.state import AgentState, Window


def local_window(not_before: dt.datetime, not_after: dt.datetime, policy: RenewalPolicy
                 ) -> Window:
    """The window without server advice."""
    if policy.renew_before_expiry is not None:
        start = max(not_before, not_after - policy.renew_before_expiry)
        return Window(start, start, "local")
    lifetime = not_after - not_before
    start = not_before + lifetime * policy.renew_at_fraction
    return Window(start, start + lifetime * policy.spread_fraction, "local")


def pick_instant(window: Window, policy: RenewalPolicy, rng: random.Random) -> dt.datetime:
    """RFC 9773 §4.2: a uniformly random instant in the window, so that devices issued
    together renew apart."""
    if not policy.jitter or window.end <= window.start:
        return window.start
    return window.start + (window.end - window.start) * rng.random()


def retry_at(state: AgentState, policy: RenewalPolicy, rng: random.Random, now: dt.datetime,
             *, not_before: dt.datetime | None = None, expires: dt.datetime | None = None
             ) -> dt.datetime:
    """When to try again after `state.failures` failures (counting the one just seen).

    Exponential backoff with full jitter, widened to `retry_spread` of the remaining validity
    when that is longer (a device with weeks left has no reason to queue up with the rest of
    the fleet the minute a CA comes back), and never more than half of what is left, so
    a device near expiry uses the chances it has. `not_before` (a Retry-After) is a floor.
    The result never overflows a datetime: it is at most the last representable moment."""
    doublings = 2 ** max(0, min(state.failures, 30))
    # Compared before multiplying: backoff_initial * 2^30 can exceed what a timedelta holds.
    cap = (policy.backoff_max if policy.backoff_initial > policy.backoff_max / doublings
           else policy.backoff_initial * doublings)
    if expires is not None and expires > now:
        remaining = expires - now
        cap = max(cap, remaining * policy.retry_spread)
        cap = max(policy.backoff_initial, min(cap, remaining / 2))
    delay: dt.timedelta = cap * rng.random() if policy.jitter else cap
    if policy.jitter:
        delay = max(delay, policy.backoff_initial / 2)
    moment = _later(now, delay)
    if not_before is not None and not_before > moment:
        moment = not_before
    return moment


def _later(moment: dt.datetime, delay: dt.timedelta) -> dt.datetime:
    """moment + delay, clamped to the last representable moment instead of OverflowError."""
    try:
        return moment + delay
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=moment.tzinfo)


def next_contact(state: AgentState, now: dt.datetime, *, has_identity: bool,
                 has_candidate: bool) -> dt.datetime:
    """The earliest time the agent wants to talk to the server again. A daemon sleeps until
    then; the simulator waits for the device's first connectivity window after it."""
    gates = [state.next_attempt] if state.next_attempt and state.next_attempt > now else []
    if gates:
        return gates[0]
    if not has_identity or has_candidate or state.renew_at is None:
        return now
    wanted = [state.renew_at]
    if state.info_next is not None:
        wanted.append(state.info_next)
    return max(now, min(wanted))
