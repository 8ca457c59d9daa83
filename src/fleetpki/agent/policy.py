"""How an agent decides when to renew and how hard to retry.

The default policy is what keeps a fleet alive (docs/fleet-renewal.md measures it): renew in
a window the server suggests (or, without one, from two thirds of the lifetime) at a random
instant, back off exponentially with full jitter, renew with an expired certificate while the
profile's grace allows, and fall back to the factory identity when the certificate can no
longer renew itself. `RenewalPolicy.naive` is the policy many fleets ship with, kept for the
simulator's comparison.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from fleetpki.core.keys import KeySpec


@dataclasses.dataclass(frozen=True, slots=True)
class RenewalPolicy:
    # Without server advice: the local window starts at this fraction of the lifetime...
    renew_at_fraction: float = 0.67
    # ...and spans this fraction of it; the agent renews at a random instant inside.
    spread_fraction: float = 0.15
    # Ask the server's `renewalinfo` and follow its window (docs/agent.md).
    use_server_window: bool = True
    jitter: bool = True
    # Exponential backoff with full jitter (a random delay up to base * 2^failures, capped).
    backoff_initial: dt.timedelta = dt.timedelta(minutes=5)
    backoff_max: dt.timedelta = dt.timedelta(hours=12)
    # With time to spare, spread retries over this share of the remaining validity: after a
    # CA outage the devices that failed come back over days, not in the first hour.
    retry_spread: float = 0.4
    # Try re-enrollment with an expired certificate (the profile decides whether it works).
    grace: bool = True
    # When the certificate can no longer renew itself (revoked, expired past grace), enroll
    # again with the factory identity, then a bootstrap secret if the device has one.
    factory_fallback: bool = True
    server_keygen: bool = False
    key_spec: KeySpec = dataclasses.field(default_factory=lambda: KeySpec.parse("ec-p256"))
    # Naive policies renew a fixed time before expiry instead of at a fraction.
    renew_before_expiry: dt.timedelta | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.renew_at_fraction < 1.0:
            raise ValueError("renew_at_fraction must be between 0 and 1")
        if not 0.0 <= self.spread_fraction <= 1.0 - self.renew_at_fraction:
            raise ValueError("spread_fraction must fit in what is left of the lifetime")
        if self.backoff_initial <= dt.timedelta(0) or self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_initial must be positive and at most backoff_max")
        if not 0.0 <= self.retry_spread <= 0.5:
            raise ValueError("retry_spread must be between 0 and 0.5")

    @classmethod
    def naive(cls, days_before_expiry: int = 7) -> RenewalPolicy:
        """Renew N days before expiry at every chance, no jitter, no grace, no fallback."""
        return cls(use_server_window=False, jitter=False, spread_fraction=0.0,
                   backoff_initial=dt.timedelta(seconds=1), backoff_max=dt.timedelta(seconds=1),
                   retry_spread=0.0, grace=False, factory_fallback=False,
                   renew_before_expiry=dt.timedelta(days=days_before_expiry))
