"""What a simulation models: the fleet, its connectivity, the server's outages and the
operator's interventions. Frozen, so a run is described by its scenario and its seed."""

from __future__ import annotations

import dataclasses
import datetime as dt

from fleetpki.agent.policy import RenewalPolicy

DAY = dt.timedelta(days=1)
# The policies a run compares: the agent's default, and the cron-job script it replaces.
POLICIES = {"default": RenewalPolicy(), "naive": RenewalPolicy.naive(7)}


@dataclasses.dataclass(frozen=True, slots=True)
class Outage:
    start: dt.timedelta  # after the simulation's start
    length: dt.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class MassRevocation:
    at: dt.timedelta
    share: float  # of the devices, chosen at random; their current certificates are revoked


@dataclasses.dataclass(frozen=True, slots=True)
class EarlyRenewal:
    """An operator's renewal advisory: every certificate issued before `at` should renew
    within `within` (core/renewal_window.py)."""

    at: dt.timedelta
    within: dt.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    devices: int = 50_000
    duration: dt.timedelta = 730 * DAY
    start: dt.datetime = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    # The fleet was rolled out over this span before the start, so that it is in its
    # steady state when the simulation begins (the roll-out is reported apart).
    rollout: dt.timedelta = 60 * DAY
    lifetime: dt.timedelta = 90 * DAY
    # Connectivity: one window a day at a device's own random time of day.
    window: dt.timedelta = dt.timedelta(seconds=30)
    missed_windows: float = 0.05
    # A share of the fleet is offline for one stretch of this many days (warehouse, outage).
    offline_share: float = 0.02
    offline_days: tuple[int, int] = (60, 240)
    outages: tuple[Outage, ...] = (Outage(200 * DAY, 7 * DAY),)
    revocations: tuple[MassRevocation, ...] = ()
    early_renewals: tuple[EarlyRenewal, ...] = ()
    # The profile the server enforces.
    window_fraction: float = 0.33
    grace_after_expiry: dt.timedelta = 30 * DAY
    info_interval: dt.timedelta = 90 * DAY
    seed: int = 1

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("a fleet has at least one device")
        if not 0.0 <= self.missed_windows < 1.0:
            raise ValueError("missed_windows is a probability below 1")
        if not 0.0 <= self.offline_share <= 1.0:
            raise ValueError("offline_share is a share between 0 and 1")
        if self.duration <= dt.timedelta(0) or self.lifetime < 2 * DAY:
            raise ValueError("the duration must be positive and the lifetime at least 2 days")

    @property
    def end(self) -> dt.datetime:
        return self.start + self.duration


REFERENCE = Scenario()
