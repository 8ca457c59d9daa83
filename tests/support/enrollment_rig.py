"""An RA enrollment service on a real store with an issuing CA, for the RA's and the EST
front end's unit tests: the same construction both need, in one place."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

from fleetpki.core.clock import FakeClock
from fleetpki.core.profile import Profile
from fleetpki.core.serials import RandomSerials
from fleetpki.profiles_loader import load_profiles
from fleetpki.ra.enrollment import EnrollmentLimits, EnrollmentService
from fleetpki.ra.service import IssuanceService
from fleetpki.store.sql.store import SqlStore
from support.ca_store import OneSigner, store_with_cas

# A profile held for an operator's approval (RFC 7030 §4.2.3), used by both suites.
HELD_PROFILE = """
[profiles.held]
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
enrollment = { approval = "manual", retry_after = "2m" }
"""


@dataclasses.dataclass(frozen=True)
class EnrollmentParts:
    service: EnrollmentService
    issuance: IssuanceService
    store: SqlStore
    clock: FakeClock
    profiles: dict[str, Profile]


def enrollment_parts(directory: Path, profiles_toml: str, start: dt.datetime, *,
                     limits: EnrollmentLimits | None = None,
                     default_profile: str = "sensor") -> EnrollmentParts:
    clock = FakeClock(start)
    store, issuing = store_with_cas(directory, start)
    path = directory / "profiles.toml"
    path.write_text(profiles_toml)
    profiles = load_profiles(path, known_issuers={"issuing"})
    issuance = IssuanceService(store, profiles, OneSigner(issuing), clock, RandomSerials())
    service = EnrollmentService(issuance, store, profiles, clock,
                                limits or EnrollmentLimits(), default_profile)
    return EnrollmentParts(service, issuance, store, clock, profiles)
