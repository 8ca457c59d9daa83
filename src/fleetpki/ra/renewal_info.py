"""Renewal advice for a device's current certificate: the RA's half of EST `renewalinfo`.

The window comes from core/renewal_window.py, the policy that also decides when the RA
accepts a re-enrollment (device_authentication.py), so that the advice and the acceptance
cannot disagree. The operators' advisories are re-read at most every TRUST_REFRESH_SECONDS:
a fleet asking for advice must not cost one database query per device, and an operator who
pulled renewals forward is heard by every worker within that time (or at once, after
`refresh`, which a simulator calls after an operator action).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Iterable
from typing import Protocol

from fleetpki.core.profile import Profile
from fleetpki.core.records import CertificateStatus, IssuedCertificate
from fleetpki.core.renewal_window import RenewalAdvisory, suggested_window
from fleetpki.ra.api import RenewalAdvice
from fleetpki.ra.device_authentication import TRUST_REFRESH_SECONDS

_ENROLL_AGAIN = "enroll again with the factory identity or a bootstrap credential"


class AdvisoryReader(Protocol):
    """The one call of store.api.RenewalAdvisories that the RA's readers need."""

    def list_advisories(self, *, profile: str | None = None, include_withdrawn: bool = False
                        ) -> list[RenewalAdvisory]: ...


class ActiveAdvisories:
    """The advisories that are not withdrawn, cached for TRUST_REFRESH_SECONDS (monotonic)."""

    def __init__(self, store: AdvisoryReader) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._cached: tuple[float, tuple[RenewalAdvisory, ...]] | None = None

    def __call__(self) -> tuple[RenewalAdvisory, ...]:
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] < TRUST_REFRESH_SECONDS:
            return cached[1]
        with self._lock:  # one reload for the threads that found the cache stale together
            cached = self._cached
            if cached is None or time.monotonic() - cached[0] >= TRUST_REFRESH_SECONDS:
                cached = (time.monotonic(), tuple(self._store.list_advisories()))
                self._cached = cached
        return cached[1]

    def refresh(self) -> None:
        """Forget the cache: the next call reads the store."""
        self._cached = None


def advise(current: IssuedCertificate, profile: Profile,
           advisories: Iterable[RenewalAdvisory], now: dt.datetime) -> RenewalAdvice:
    """The renewal advice for `current`, a certificate of ours in `profile`.

    valid:    the profile's window, or an advisory's earlier one (core/renewal_window.py)
    expired:  within the profile's renewal.grace_after_expiry the certificate may still
              renew itself, so the (past) window stands: renew now; past the grace it
              cannot, and the device must enroll again, as after a revocation
    revoked:  now, and enroll again (the RA refuses a revoked certificate's re-enrollment)
    """
    status = current.status(now)
    renewal = profile.renewal
    window = suggested_window(profile.name, current.not_before, current.not_after, renewal,
                              advisories, issued_at=current.issued_at,
                              revoked=status is CertificateStatus.revoked, now=now)
    if status is CertificateStatus.expired:
        grace_ends = current.not_after + renewal.grace_after_expiry
        if now >= grace_ends:
            # Like a revoked certificate, it can no longer renew itself: core's immediate
            # window, with the reason that applies.
            immediate = suggested_window(profile.name, current.not_before, current.not_after,
                                         renewal, (), issued_at=current.issued_at, revoked=True,
                                         now=now)
            window = dataclasses.replace(immediate, explanation=(
                f"the certificate expired {current.not_after:%Y-%m-%d %H:%M}Z"
                + (f" and its renewal grace ended {grace_ends:%Y-%m-%d %H:%M}Z"
                   if renewal.grace_after_expiry else "") + f": {_ENROLL_AGAIN}"), advisory=None)
        elif window.explanation is None:
            window = dataclasses.replace(window, explanation=(
                f"the certificate expired {current.not_after:%Y-%m-%d %H:%M}Z; renew now: "
                f"re-enrollment with it is accepted until {grace_ends:%Y-%m-%d %H:%M}Z"))
    return RenewalAdvice(certificate=current, window=window, status=status,
                         retry_after=int(renewal.info_interval.total_seconds()))
