"""Device enrollment for the protocol front ends: authenticate, throttle, decide, issue or hold.

    1. throttle the client address           (before any database work)
    2. authenticate                          device_authentication.py: an Authorization or no
    3. throttle the credential
    4. pick the profile                      the label, or the credential's own profile
    5. plan                                  the issuance cycle's steps 1-2 (service.py)
    6. redeem a bootstrap use                atomically, only once the plan is sound
    7. issue, or hold for an operator        steps 3-6 of the cycle, or a pending record

Renewal advice (EST `renewalinfo`) identifies the certificate as step 2 does and answers from
renewal_info.py; it issues nothing and is not audited.

Every refusal is audited, except address throttling, which is logged: auditing each request of
an unauthenticated flood would let anyone fill the audit log. Every outcome (issued, held,
refused, throttled included) is also told to an observer (observer.py), which counts them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.core.clock import Clock
from fleetpki.core.csr import canonical_csr, load_csr, without_challenge_password
from fleetpki.core.enrollment_records import ApprovalState, PendingEnrollment
from fleetpki.core.errors import (
    BadInput,
    FleetPKIError,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
    StoreError,
)
from fleetpki.core.keys import KeySpec, preferred_key_spec
from fleetpki.core.profile import Profile
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.ra.api import (
    Authorization,
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
    RenewalAdvice,
)
from fleetpki.ra.ca_chain import issuer_chain
from fleetpki.ra.challenges import ChallengeCallback
from fleetpki.ra.device_authentication import (
    TRUST_REFRESH_SECONDS,
    Authenticated,
    AuthenticationStore,
    DeviceAuthenticator,
)
from fleetpki.ra.observer import NO_OBSERVER, UNKNOWN_PROFILE, EnrollmentObserver
from fleetpki.ra.rate_limits import RateLimit, RateLimiter
from fleetpki.ra.renewal_info import ActiveAdvisories, AdvisoryReader, advise
from fleetpki.ra.service import IssuanceService
from fleetpki.store.api import AuditEvent, PendingEnrollments

log = logging.getLogger(__name__)

class EnrollmentStore(AuthenticationStore, PendingEnrollments, AdvisoryReader, Protocol):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollmentLimits:
    """None: unlimited. Settings (config.py) supply the defaults operators see."""

    per_credential: RateLimit | None = None
    per_address: RateLimit | None = None


class EnrollmentService:
    def __init__(self, issuance: IssuanceService, store: EnrollmentStore,
                 profiles: Mapping[str, Profile], clock: Clock, limits: EnrollmentLimits,
                 default_profile: str, *, observer: EnrollmentObserver = NO_OBSERVER,
                 challenge_callback: ChallengeCallback | None = None) -> None:
        if default_profile not in profiles:
            raise NotFound(f"the default enrollment profile '{default_profile}' does not exist")
        self._issuance = issuance
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._default = default_profile
        self._advisories = ActiveAdvisories(store)
        self._authenticator = DeviceAuthenticator(store, profiles, self._advisories,
                                                  challenge_callback)
        self._by_address = RateLimiter(limits.per_address)
        self._by_credential = RateLimiter(limits.per_credential)
        self._chains: dict[str, tuple[float, list[x509.Certificate]]] = {}
        self._observer = observer

    # -- what any client may read --------------------------------------------------------

    def profile_for(self, label: str | None) -> Profile:
        """The profile a label selects (labels are profile names); no label: the default."""
        name = self._default if label is None else label
        profile = self._profiles.get(name)
        if profile is None:
            raise NotFound(f"no enrollment label '{label}' (labels: "
                           f"{', '.join(sorted(self._profiles))})")
        return profile

    def ca_certificates(self, label: str | None) -> list[x509.Certificate]:
        """The issuing CA of the label's profile and its parents up to the root, nearest
        first (RFC 7030 §4.1.3 wants the trust anchor; the intermediates let a device build
        the path without another round trip)."""
        issuer = self.profile_for(label).issuer
        cached = self._chains.get(issuer)
        if cached is not None and time.monotonic() - cached[0] < TRUST_REFRESH_SECONDS:
            return cached[1]
        chain = issuer_chain(self._store, issuer)
        self._chains[issuer] = (time.monotonic(), chain)
        return chain

    # -- renewal advice --------------------------------------------------------------------

    def renewal_advice(self, client_certificate: bytes, label: str | None = None
                       ) -> RenewalAdvice:
        """When the holder of `client_certificate` (DER, one of ours, possibly expired or
        revoked) should renew. A label must be the certificate's profile, as for
        simplereenroll, so that the advice never points at a renewal that would be refused."""
        labelled = None if label is None else self.profile_for(label)  # 404 first
        current = self._authenticator.identify(client_certificate)
        profile = self._authenticator.profile_of(current)
        if labelled is not None and labelled.name != profile.name:
            raise NotAuthorized(f"certificate {serial_hex(current.serial)} is in profile "
                                f"'{profile.name}', not '{labelled.name}': ask under "
                                f"/.well-known/est/{profile.name}/ or without a label")
        return advise(current, profile, self._advisories(), self._clock.now())

    def identify(self, client_certificate: bytes) -> IssuedCertificate:
        """The stored certificate for these DER bytes, if one of our CAs issued them (any
        status); NotAuthorized otherwise."""
        return self._authenticator.identify(client_certificate)

    def refresh_advisories(self) -> None:
        """Read the renewal advisories again on next use, instead of up to
        TRUST_REFRESH_SECONDS later (after an operator added or withdrew one)."""
        self._advisories.refresh()

    # -- enrollment ------------------------------------------------------------------------

    def enroll(self, request: EnrollmentRequest) -> Enrolled | EnrollmentPending:
        csr, proven = canonical_csr(request.csr)
        if proven:  # the signature of the bytes as sent was checked: see canonical_csr
            request = dataclasses.replace(request, csr=csr)
        proven = proven or request.possession_proven
        now = self._clock.now()
        counted = self._counted(request.label, UNKNOWN_PROFILE)
        try:
            who = self._admit(request, now)
            counted = self._counted(request.label, who.profile)
            return self._decide(request, who, now, proven)
        except FleetPKIError as refusal:
            self._tell(self._observer.refused, counted, request.protocol,
                       type(refusal).__name__)
            raise

    def _counted(self, label: str | None, otherwise: str) -> str:
        """The profile the observer is told: the label when it names a profile, else
        `otherwise`; never a label as the client wrote it (anyone's to choose, unbounded)."""
        return label if label is not None and label in self._profiles else otherwise

    def _admit(self, request: EnrollmentRequest, now: dt.datetime) -> Authenticated:
        """Steps 1-3: throttle the address, authenticate, throttle the credential."""
        wait = self._by_address.take(request.client_address)
        if wait is not None:
            log.warning("enrollment throttled", extra={"address": request.client_address})
            raise RateLimited(f"too many requests from {request.client_address}; retry in "
                              f"{wait} s", retry_after=wait)
        # A challenge password that is no bootstrap credential is the labelled profile's.
        labelled = (self.profile_for(request.label) if request.challenge_password is not None
                    else None)
        try:
            who = self._authenticator.authenticate(request, now, labelled)
        except NotAuthorized as refusal:
            asker = (_shown(request.basic.username) if request.basic
                     else "challenge" if request.challenge_password is not None else "anonymous")
            self._issuance.refuse(Authorization(actor=f"unauthenticated:{asker}"),
                                  request.label or "-", refusal)
            raise
        wait = self._by_credential.take(who.authorization.actor)
        if wait is not None:
            throttled = RateLimited(f"too many requests for {who.authorization.actor}; retry "
                                    f"in {wait} s", retry_after=wait)
            self._issuance.refuse(who.authorization, request.label or who.profile, throttled)
            raise throttled
        return who

    def _decide(self, request: EnrollmentRequest, who: Authenticated, now: dt.datetime,
                proven: bool) -> Enrolled | EnrollmentPending:
        """Steps 4-7: pick the profile, then issue or hold. `proven`: the CSR's proof of
        possession was checked on bytes other than request.csr (canonical_csr)."""
        profile = self._profile(request, who)
        if request.protocol == "scep" and not profile.enrollment.scep:
            refusal = NotAuthorized(f"profile '{profile.name}' does not enroll over SCEP "
                                    "(enrollment.scep = false)")
            self._issuance.refuse(who.authorization, profile.name, refusal)
            raise refusal
        if request.undecodable is not None:
            malformed = BadInput(request.undecodable)
            self._issuance.refuse(who.authorization, profile.name, malformed)
            raise malformed
        if request.refusal is not None:
            self._issuance.refuse(who.authorization, profile.name, request.refusal)
            raise request.refusal
        if profile.enrollment.manual_approval:
            return self._held(request, who, profile, now, proven)
        return self._issue(request, who, profile, proven)

    def _profile(self, request: EnrollmentRequest, who: Authenticated) -> Profile:
        if request.label is None:
            return self._profiles[who.profile]
        profile = self.profile_for(request.label)
        if profile.name != who.profile:
            refusal = NotAuthorized(f"{who.authorization.actor} enrolls in profile "
                                    f"'{who.profile}', not '{profile.name}'")
            self._issuance.refuse(who.authorization, profile.name, refusal)
            raise refusal
        return profile

    def _issue(self, request: EnrollmentRequest, who: Authenticated, profile: Profile,
               proven: bool) -> Enrolled:
        key = None
        if request.kind is EnrollmentKind.server_keygen:
            if not profile.enrollment.server_keygen:
                refusal = NotAuthorized(f"profile '{profile.name}' does not allow server-side "
                                        "key generation (enrollment.server_keygen)")
                self._issuance.refuse(who.authorization, profile.name, refusal)
                raise refusal
            try:
                spec = self._server_key_spec(request, profile)
            except PolicyViolation as refusal:
                self._issuance.refuse(who.authorization, profile.name, refusal)
                raise
            key = spec.generate()
        plan = self._issuance.prepare_csr(request.csr, profile.name, who.authorization,
                                          server_key=key.public_key() if key else None,
                                          possession_checked=proven)
        self._redeem(who, profile)
        try:
            record = self._issuance.issue_plan(plan, who.authorization,
                                               details=_advisory_details(who))
        except Exception:
            self._give_back(who)
            raise
        self._authenticator.issued(record)
        self._tell(self._observer.issued, profile.name, request.protocol)
        if key is None:
            return Enrolled(record)
        return Enrolled(record, private_key_pkcs8=key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    @staticmethod
    def _server_key_spec(request: EnrollmentRequest, profile: Profile) -> KeySpec:
        """The key type the device asked for, else the CSR's key type when the profile allows
        it (the device says what it can use), else the profile's preferred key type."""
        if request.server_key_type is not None:
            return _requested_key_spec(request.server_key_type, profile)
        try:
            return profile.keys.check(load_csr(request.csr).public_key())
        except (BadInput, PolicyViolation, ValueError):
            return preferred_key_spec(profile.keys)

    @staticmethod
    def _tell(event: Callable[..., None], *labels: str) -> None:
        """Counting never changes an outcome: the certificate is stored and audited by now,
        or the refusal must reach the client as it is."""
        try:
            event(*labels)
        except Exception:
            log.exception("enrollment observer failed")

    def _redeem(self, who: Authenticated, profile: Profile) -> None:
        if who.redeem is None:
            return
        now = self._clock.now()
        if not self._store.redeem_use(who.redeem, at=now):
            credential = self._store.get_credential(who.redeem)
            unusable = credential.unusable_reason(now) if credential else "it was deleted"
            used = f"{credential.uses} of {credential.max_uses}" if credential else "all"
            refusal = NotAuthorized(unusable or f"bootstrap credential '{who.redeem}' has no "
                                                f"uses left ({used} used)")
            self._issuance.refuse(who.authorization, profile.name, refusal)
            raise refusal

    def _give_back(self, who: Authenticated) -> None:
        if who.redeem is not None:
            try:
                self._store.return_use(who.redeem)
            except StoreError:
                log.exception("could not return a bootstrap use", extra={"id": who.redeem})

    # -- manual approval (RFC 7030 §4.2.3) -------------------------------------------------

    def _held(self, request: EnrollmentRequest, who: Authenticated, profile: Profile,
              now: dt.datetime, proven: bool) -> Enrolled | EnrollmentPending:
        retry_after = int(profile.enrollment.retry_after.total_seconds())
        if request.kind is EnrollmentKind.server_keygen:
            refusal = NotAuthorized(f"profile '{profile.name}' holds enrollments for approval; "
                                    "server-side key generation cannot wait (the key would have "
                                    "to be stored): generate the key on the device")
            self._issuance.refuse(who.authorization, profile.name, refusal)
            raise refusal
        plan = self._issuance.prepare_csr(request.csr, profile.name, who.authorization,
                                          possession_checked=proven)
        fingerprint = hashlib.sha256(plan.spki_der).hexdigest()
        earlier = self._store.find_pending(profile.name, fingerprint)
        if earlier is not None and earlier.actor == who.authorization.actor:
            return self._retried(earlier, retry_after)
        self._redeem(who, profile)
        # No secret rests in the database: a SCEP challengePassword leaves the stored CSR, whose
        # signature then no longer verifies (the approval knows: csr_altered).
        redacted = without_challenge_password(request.csr)
        pending = PendingEnrollment(
            id=secrets.token_hex(8), profile=profile.name, device_id=plan.device_id,
            actor=who.authorization.actor, key_fingerprint=fingerprint,
            csr_der=redacted or load_csr(request.csr).public_bytes(serialization.Encoding.DER),
            requested_at=now, csr_altered=redacted is not None or proven)
        try:
            self._store.add_pending(pending, AuditEvent(
                actor=who.authorization.actor, action="enrollment.held", subject=pending.id,
                details={"profile": profile.name, "device_id": plan.device_id,
                         **_advisory_details(who)}), at=now)
        except Exception:
            self._give_back(who)
            raise
        self._tell(self._observer.held, profile.name, request.protocol)
        return EnrollmentPending(pending.id, retry_after)

    def _retried(self, earlier: PendingEnrollment, retry_after: int
                 ) -> Enrolled | EnrollmentPending:
        if earlier.state is ApprovalState.pending:
            return EnrollmentPending(earlier.id, retry_after)
        if earlier.state is ApprovalState.rejected:
            raise NotAuthorized(f"enrollment {earlier.id} was rejected by {earlier.decided_by}"
                                + (f": {earlier.reason}" if earlier.reason else ""))
        assert earlier.serial is not None
        record = self._store.get_certificate(earlier.serial, earlier.issuer)
        if record is None:
            raise NotFound(f"the certificate of approved enrollment {earlier.id} is missing")
        return Enrolled(record)


def _requested_key_spec(key_type: str, profile: Profile) -> KeySpec:
    """PolicyViolation (field "key") unless the profile allows the key type asked for."""
    if key_type == "rsa":
        if "rsa" not in profile.keys.allowed:
            raise PolicyViolation(f"RSA keys are not allowed by profile '{profile.name}' "
                                  f"(allowed: {profile.keys.allowed_text()})", field="key")
        return preferred_key_spec(dataclasses.replace(profile.keys, allowed=frozenset({"rsa"})))
    if key_type not in profile.keys.allowed:
        raise PolicyViolation(f"{key_type} keys are not allowed by profile '{profile.name}' "
                              f"(allowed: {profile.keys.allowed_text()})", field="key")
    return KeySpec.parse(key_type)


def _advisory_details(who: Authenticated) -> dict[str, str]:
    """Audit details naming the renewal advisory that let a re-enrollment in early."""
    return {} if who.advisory is None else {"renewal_advisory": who.advisory}


_SHOWN_NAME = 64


def _shown(name: str) -> str:
    """A user name as the audit log and the logs record it: anyone can send one, of any
    length and content, before being authenticated."""
    printable = "".join(c if c.isprintable() else "?" for c in name[:_SHOWN_NAME])
    return printable + ("…" if len(name) > _SHOWN_NAME else "")
