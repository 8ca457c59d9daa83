"""schedule: the local window, the instant inside it, backoff, and when to wake up."""

from __future__ import annotations

import datetime as dt
import random

from fleetpki.agent import schedule
from fleetpki.agent.policy import RenewalPolicy
from fleetpki.agent.state import AgentState, Window
from support.agent_fakes import DAY, NOW

HOUR = dt.timedelta(hours=1)


def test_local_window_starts_at_the_fraction_and_spans_the_spread() -> None:
    window = schedule.local_window(NOW, NOW + 100 * DAY, RenewalPolicy())
    assert window == Window(NOW + 67 * DAY, NOW + 82 * DAY, "local")


def test_naive_policy_renews_a_fixed_time_before_expiry() -> None:
    window = schedule.local_window(NOW, NOW + 100 * DAY, RenewalPolicy.naive(7))
    assert window.start == window.end == NOW + 93 * DAY


def test_the_instant_is_uniform_inside_the_window_and_the_start_without_jitter() -> None:
    window = Window(NOW, NOW + 10 * DAY, "server")
    rng = random.Random(3)
    instants = [schedule.pick_instant(window, RenewalPolicy(), rng) for _ in range(500)]
    assert all(window.start <= moment <= window.end for moment in instants)
    assert max(instants) - min(instants) > 8 * DAY  # spread, not clustered
    assert schedule.pick_instant(window, RenewalPolicy(jitter=False), rng) == NOW


def test_backoff_grows_with_failures_up_to_the_cap() -> None:
    policy = RenewalPolicy(jitter=False)
    waits = [schedule.retry_at(AgentState(failures=n), policy, random.Random(1), NOW) - NOW
             for n in (1, 2, 3, 20)]
    assert waits[:3] == [policy.backoff_initial * 2, policy.backoff_initial * 4,
                         policy.backoff_initial * 8]
    assert waits[3] == policy.backoff_max


def test_backoff_with_jitter_stays_between_half_the_initial_delay_and_the_cap() -> None:
    policy = RenewalPolicy()
    rng = random.Random(5)
    for failures in range(1, 12):
        wait = schedule.retry_at(AgentState(failures=failures), policy, rng, NOW) - NOW
        cap = min(policy.backoff_max, policy.backoff_initial * 2 ** failures)
        assert policy.backoff_initial / 2 <= wait <= cap


def test_backoff_shrinks_near_expiry_and_respects_retry_after() -> None:
    policy = RenewalPolicy(jitter=False)
    near = schedule.retry_at(AgentState(failures=10), policy, random.Random(1), NOW,
                             expires=NOW + 8 * HOUR)
    assert policy.backoff_initial <= near - NOW < 8 * HOUR  # while the certificate works
    floor = schedule.retry_at(AgentState(failures=1), policy, random.Random(1), NOW,
                              not_before=NOW + DAY)
    assert floor == NOW + DAY


def test_next_contact() -> None:
    state = AgentState(renew_at=NOW + 10 * DAY, info_next=NOW + DAY)
    assert schedule.next_contact(state, NOW, has_identity=True, has_candidate=False) == \
        NOW + DAY
    gated = state.replace(next_attempt=NOW + HOUR)
    assert schedule.next_contact(gated, NOW, has_identity=True, has_candidate=False) == \
        NOW + HOUR
    assert schedule.next_contact(state, NOW, has_identity=False, has_candidate=False) == NOW
    assert schedule.next_contact(state, NOW, has_identity=True, has_candidate=True) == NOW
    overdue = AgentState(renew_at=NOW - DAY)
    assert schedule.next_contact(overdue, NOW, has_identity=True, has_candidate=False) == NOW


def test_retry_at_never_overflows_whatever_the_failures_or_the_date() -> None:
    longest = dt.timedelta(days=3650)  # the configuration's maximum backoff
    policy = RenewalPolicy(backoff_initial=longest, backoff_max=longest, jitter=False)
    state = AgentState(failures=1_000_000)
    assert schedule.retry_at(state, policy, random.Random(1), NOW) == NOW + longest
    late = dt.datetime(9995, 1, 1, tzinfo=dt.UTC)
    assert schedule.retry_at(state, policy, random.Random(1), late) == \
        dt.datetime.max.replace(tzinfo=dt.UTC)
