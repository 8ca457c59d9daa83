"""SCEP challenge passwords (RFC 8894 §2.3): who a PKCSReq's challengePassword says asks.

Three kinds, tried in this order, the first that recognises the password deciding:
  1. a bootstrap credential written "<id>:<secret>": per device (one use) or per group, with
     the credential's expiry and use count (device_authentication.py checks it);
  2. the profile's static challenge: one secret for every device of the profile, as
     legacy routers and NDES-style deployments expect, stored as a hash;
  3. the profile's challenge callback: an HTTP service (an MDM) that issued a dynamic
     challenge and says whether this one, for this CSR, is good.
A password none of them accepts is refused. A callback that cannot be reached refuses too:
an enrollment is authorized or not, never "probably fine".
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Protocol

from fleetpki.core.clock import Clock
from fleetpki.core.enrollment_records import EnrollmentChallenge
from fleetpki.core.errors import NotAuthenticated, NotFound
from fleetpki.core.profile import Profile
from fleetpki.ra.api import Authorization
from fleetpki.ra.credentials import hash_secret, new_secret, secret_matches
from fleetpki.store.api import AuditEvent, EnrollmentChallenges

log = logging.getLogger(__name__)

MAX_CHALLENGE_LENGTH = 255  # PKCS #9 §5.4.1: challengePassword is a DirectoryString (1..255)


@dataclasses.dataclass(frozen=True, slots=True)
class ChallengeQuery:
    """What a callback is told: enough to match the challenge it issued to this request."""

    challenge: str = dataclasses.field(repr=False)
    profile: str
    csr_der: bytes
    client_address: str
    transaction_id: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChallengeVerdict:
    allowed: bool
    device_id: str | None = None  # the device the challenge was issued for, if the caller knows
    reason: str = ""  # why not, for the audit log


class ChallengeCallback(Protocol):
    """The outbound HTTP call (challenge_callback.py); raises nothing: an unreachable or
    confused service is a verdict of `allowed=False` with the reason."""

    def verify(self, url: str, query: ChallengeQuery) -> ChallengeVerdict: ...


class ChallengeStore(Protocol):
    def get_challenge(self, profile: str) -> EnrollmentChallenge | None: ...


def static_or_callback(password: str, profile: Profile, query: ChallengeQuery,
                       store: ChallengeStore, callback: ChallengeCallback | None
                       ) -> Authorization:
    """Kinds 2 and 3 for a password that names no bootstrap credential. NotAuthenticated when
    neither accepts it (the same words whichever failed: no probing for which exists)."""
    if not 0 < len(password) <= MAX_CHALLENGE_LENGTH:
        raise NotAuthenticated("the challenge password is empty or too long")
    static = store.get_challenge(profile.name)
    if static is not None and secret_matches(password, static.secret_hash):
        return Authorization(actor=f"challenge:{profile.name}",
                             profiles=frozenset({profile.name}))
    url = profile.enrollment.challenge_callback
    if url is not None and callback is not None:
        verdict = callback.verify(url, query)
        if verdict.allowed:
            actor = f"callback:{profile.name}" + (f":{verdict.device_id}"
                                                   if verdict.device_id else "")
            return Authorization(actor=actor, profiles=frozenset({profile.name}),
                                 device_id=verdict.device_id)
        log.info("challenge callback refused", extra={"profile": profile.name,
                                                       "reason": verdict.reason[:200]})
    raise NotAuthenticated(f"wrong challenge password for profile '{profile.name}'")


@dataclasses.dataclass(frozen=True, slots=True)
class NewChallenge:
    challenge: EnrollmentChallenge
    secret: str = dataclasses.field(repr=False)  # shown to the operator once, never stored


class ChallengeAdmin:
    """`fleetpki scep challenge`: set (a fresh random secret, shown once), list, clear."""

    def __init__(self, store: EnrollmentChallenges, profiles: Mapping[str, Profile],
                 clock: Clock, actor: str) -> None:
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._actor = actor

    def set(self, profile: str) -> NewChallenge:
        if profile not in self._profiles:
            raise NotFound(f"no profile named '{profile}' (profiles: "
                           f"{', '.join(sorted(self._profiles))})")
        now = self._clock.now()
        # Generated, never chosen: 192 random bits, so a SHA-256 hash keeps it safe at rest
        # (ra/credentials.py explains why no slow hash is needed).
        secret = new_secret()
        challenge = EnrollmentChallenge(profile=profile, secret_hash=hash_secret(secret),
                                        created_at=now, created_by=self._actor)
        self._store.set_challenge(challenge, AuditEvent(
            actor=self._actor, action="challenge.set", subject=profile), at=now)
        return NewChallenge(challenge, secret)

    def list(self) -> list[EnrollmentChallenge]:
        return self._store.list_challenges()

    def clear(self, profile: str) -> None:
        self._store.clear_challenge(profile, AuditEvent(
            actor=self._actor, action="challenge.cleared", subject=profile), at=self._clock.now())
