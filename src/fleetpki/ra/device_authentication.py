"""Who is this device? Bootstrap secret, factory identity (IDevID), current certificate, or a
SCEP challenge password (challenges.py).

Each path ends in an `Authorization` (who asks, and the constraints their credential puts on
the certificate) or an exception: NotAuthenticated when the credential is missing or does not
check out (the device should authenticate again), NotAuthorized when we know who asks and the
answer is no. There is no third outcome (DESIGN.md §2).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fleetpki.core.enrollment_records import BootstrapCredential, ManufacturerCA
from fleetpki.core.errors import NotAuthenticated, NotAuthorized
from fleetpki.core.profile import Profile
from fleetpki.core.records import CertificateStatus, IssuedCertificate
from fleetpki.core.renewal_window import RenewalAdvisory, accepts_renewal_from
from fleetpki.core.serials import serial_hex
from fleetpki.ra.api import Authorization, BasicCredentials, EnrollmentKind, EnrollmentRequest
from fleetpki.ra.challenges import (
    ChallengeCallback,
    ChallengeQuery,
    ChallengeStore,
    static_or_callback,
)
from fleetpki.ra.credentials import secret_matches
from fleetpki.ra.manufacturers import factory_device_id
from fleetpki.store.api import (
    BootstrapCredentials,
    CAReader,
    CertificateReader,
    ManufacturerRegistry,
)

# Trust material (our CAs, manufacturer CAs) is re-read at most this often, so that a CA
# registered from the CLI is honoured by a running server without a restart.
TRUST_REFRESH_SECONDS = 30.0
# Bootstrap credentials are looked up at most this often per process. Safe to cache: the
# database re-checks disabled, expired and used-up atomically when a use is redeemed, so a
# credential disabled from the CLI stops enrolling at once; only its 401/403 wording can lag.
CREDENTIAL_CACHE_SECONDS = 5.0
_CREDENTIAL_CACHE_SIZE = 10_000
_SIGNER_CACHE_SIZE = 200_000


class AuthenticationStore(BootstrapCredentials, ManufacturerRegistry, CertificateReader,
                          CAReader, ChallengeStore, Protocol):
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Authenticated:
    authorization: Authorization
    profile: str  # the profile the credential enrolls into
    redeem: str | None = None  # bootstrap credential whose use an issuance consumes
    renewing: IssuedCertificate | None = None
    # The renewal advisory that opened re-enrollment before the profile's renewal period.
    advisory: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Trust:
    ours: tuple[tuple[str, x509.Certificate], ...]
    manufacturers: tuple[tuple[ManufacturerCA, x509.Certificate], ...]
    loaded_at: float
    # Which CA signed a certificate, by SHA-256 of its DER: ("ours", CA name), ("maker",
    # index into manufacturers) or ("", ""). A device presents the same certificate several
    # times per renewal (renewalinfo, simplereenroll, the confirmation of the new one), and a
    # signature check costs more than the rest of the lookup. A signature does not change, so
    # only the trust it was checked against can make an entry stale: the cache lives and
    # dies with this snapshot of our CAs and the manufacturers'.
    signers: dict[bytes, tuple[str, str | int]] = dataclasses.field(default_factory=dict)

    def same_anchors(self, other: _Trust) -> bool:
        return ([(name, ca) for name, ca in self.ours] == [(n, c) for n, c in other.ours]
                and [ca for _, ca in self.manufacturers] == [c for _, c in other.manufacturers])

    def signer_of(self, der: bytes, device: x509.Certificate) -> tuple[str, str | int]:
        key = hashlib.sha256(der).digest()
        found = self.signers.get(key)
        if found is None:
            found = next((("ours", name) for name, ca in self.ours if _issued_by(device, ca)),
                         None) or next((("maker", index) for index, (_, ca)
                                        in enumerate(self.manufacturers)
                                        if _issued_by(device, ca)), ("", ""))
            self.remember(der, found, key)
        return found

    def remember(self, der: bytes, signer: tuple[str, str | int], key: bytes | None = None
                 ) -> None:
        if len(self.signers) >= _SIGNER_CACHE_SIZE:
            self.signers.clear()
        self.signers[key or hashlib.sha256(der).digest()] = signer


class DeviceAuthenticator:
    def __init__(self, store: AuthenticationStore, profiles: Mapping[str, Profile],
                 advisories: Callable[[], Iterable[RenewalAdvisory]],
                 callback: ChallengeCallback | None = None) -> None:
        """`advisories`: the operators' active renewal advisories (cached by the caller).
        `callback`: asks a profile's challenge service about SCEP challenge passwords."""
        self._store = store
        self._profiles = profiles
        self._advisories = advisories
        self._callback = callback
        self._trust: _Trust | None = None
        self._credentials: dict[str, tuple[float, BootstrapCredential | None]] = {}

    def authenticate(self, request: EnrollmentRequest, now: dt.datetime,
                     profile: Profile | None = None) -> Authenticated:
        """`profile`: the one the request's label selects, which a SCEP challenge password
        other than a bootstrap credential is checked against."""
        secret = request.basic is not None or request.challenge_password is not None
        if request.client_certificate is not None:
            try:
                found = self._by_certificate(request.client_certificate, request.kind, now)
            except NotAuthorized:
                # A device whose certificate expired, was revoked or is outside its renewal
                # window may still hold a bootstrap secret: on a first enrollment, try that.
                if request.kind is EnrollmentKind.reenroll or not secret:
                    raise
                found = None
            if found is not None:
                return found
        if request.kind is EnrollmentKind.reenroll:
            raise NotAuthenticated("re-enrollment needs the current certificate (RFC 7030 "
                                   "§4.2.2: as the TLS client certificate; RFC 8894 §3.3.1.2: "
                                   "as the signer of the RenewalReq)")
        if request.basic is not None:
            return self._by_secret(request.basic, now)
        if request.challenge_password is not None and profile is not None:
            return self._by_challenge(request, request.challenge_password, profile, now)
        if request.client_certificate is not None:
            raise NotAuthorized("the client certificate was issued neither by this CA nor by a "
                                "registered manufacturer CA, and no bootstrap credential was "
                                "sent")
        if request.protocol == "scep":
            raise NotAuthenticated("the request carries no challengePassword: put "
                                   "'<credential id>:<secret>' of a bootstrap credential (or "
                                   "the profile's challenge) in the CSR, or sign the request "
                                   "with the device's current certificate to renew")
        raise NotAuthenticated("authenticate with a bootstrap credential (HTTP Basic), a "
                               "factory certificate or the current certificate (TLS)")

    def _by_secret(self, basic: BasicCredentials, now: dt.datetime) -> Authenticated:
        credential = self._credential(basic.username)
        # The same answer for an unknown id and a wrong secret: no probing for valid ids.
        if credential is None or not secret_matches(basic.password, credential.secret_hash):
            raise NotAuthenticated("unknown bootstrap credential or wrong secret")
        unusable = credential.unusable_reason(now)
        if unusable is not None:
            raise NotAuthorized(unusable)
        return Authenticated(
            Authorization(actor=f"bootstrap:{credential.id}",
                          profiles=frozenset({credential.profile}),
                          device_id=credential.device_id),
            profile=credential.profile, redeem=credential.id)

    def _by_challenge(self, request: EnrollmentRequest, password: str, profile: Profile,
                      now: dt.datetime) -> Authenticated:
        """challenges.py: "<credential id>:<secret>" names a bootstrap credential (ids hold no
        ':'); anything else is the profile's static challenge or its callback's to judge."""
        credential_id, colon, secret = password.partition(":")
        if colon and self._credential(credential_id) is not None:
            return self._by_secret(BasicCredentials(credential_id, secret), now)
        authorization = static_or_callback(
            password, profile, ChallengeQuery(password, profile.name, request.csr,
                                              request.client_address),
            self._store, self._callback)
        return Authenticated(authorization, profile=profile.name)

    def _credential(self, credential_id: str) -> BootstrapCredential | None:
        cached = self._credentials.get(credential_id)
        if cached is not None and time.monotonic() - cached[0] < CREDENTIAL_CACHE_SECONDS:
            return cached[1]
        credential = self._store.get_credential(credential_id)
        if len(self._credentials) >= _CREDENTIAL_CACHE_SIZE:
            self._credentials.clear()
        self._credentials[credential_id] = (time.monotonic(), credential)
        return credential

    def _by_certificate(self, der: bytes, kind: EnrollmentKind, now: dt.datetime
                        ) -> Authenticated | None:
        device = _parse(der)
        trust = self._current_trust()
        source, signer = trust.signer_of(der, device)
        if source == "ours":
            return self._renewal(self._stored(device, str(signer)), now)
        if source == "maker":
            # A factory certificate asks for a first enrollment whichever EST operation
            # carries it: strongSwan's `pki --est` sends every certificate-authenticated
            # request to simplereenroll.
            return self._factory(device, trust.manufacturers[int(signer)][0], now)
        return None

    def identify(self, der: bytes) -> IssuedCertificate:
        """The certificate as the store knows it, when one of our CAs issued these exact
        bytes, whatever its status (expired, revoked). NotAuthenticated if it cannot be
        parsed; NotAuthorized if another CA issued it or the store does not know it."""
        device = _parse(der)
        trust = self._current_trust()
        source, signer = trust.signer_of(der, device)
        if source == "ours":
            return self._stored(device, str(signer))
        serial = serial_hex(device.serial_number)
        if source == "maker":
            manufacturer = trust.manufacturers[int(signer)][0]
            raise NotAuthorized(f"certificate {serial} is a factory identity (manufacturer "
                                f"'{manufacturer.name}'), not one this CA issued: enroll "
                                "with it first (simpleenroll)")
        raise NotAuthorized(f"certificate {serial} was not issued by this CA "
                            f"(issuer {device.issuer.rfc4514_string()[:200]!r})")

    def issued(self, record: IssuedCertificate) -> None:
        """Note a certificate this process just signed, so that the device's first use of it
        (confirming it, then renewing with it) needs no signature check: we know who signed
        these bytes."""
        trust = self._current_trust()
        if any(name == record.issuer for name, _ in trust.ours):
            trust.remember(record.der, ("ours", record.issuer))

    def profile_of(self, current: IssuedCertificate) -> Profile:
        """The profile a certificate of ours was issued in; NotAuthorized if it is gone."""
        profile = self._profiles.get(current.profile)
        if profile is None:
            raise NotAuthorized(f"certificate {serial_hex(current.serial)} belongs to profile "
                                f"'{current.profile}', which no longer exists")
        return profile

    def _stored(self, device: x509.Certificate, ca_name: str) -> IssuedCertificate:
        serial = device.serial_number
        current = self._store.get_certificate(serial, ca_name)
        if current is None or current.der != device.public_bytes(serialization.Encoding.DER):
            raise NotAuthorized(f"certificate {serial_hex(serial)} is not one this CA issued")
        return current

    def _renewal(self, current: IssuedCertificate, now: dt.datetime) -> Authenticated:
        serial = current.serial
        if current.status(now) is CertificateStatus.revoked:
            reason = current.revocation_reason.value if current.revocation_reason else "unknown"
            raise NotAuthorized(f"certificate {serial_hex(serial)} was revoked ({reason}); "
                                "the device must enroll again with a bootstrap credential")
        profile = self.profile_of(current)
        opens, advisory = accepts_renewal_from(profile.name, current.not_before,
                                               current.not_after, profile.renewal,
                                               self._advisories(), issued_at=current.issued_at)
        grace_ends = current.not_after + profile.renewal.grace_after_expiry
        if now < opens:
            early = ("" if advisory is None
                     else f"; renewal advisory '{advisory.id}' brought it forward")
            raise NotAuthorized(f"renewal of {serial_hex(serial)} opens at "
                                f"{opens:%Y-%m-%d %H:%M}Z (profile '{profile.name}' renews in the "
                                f"last {profile.renewal.window_fraction:.0%} of the lifetime"
                                f"{early})")
        if now >= grace_ends:
            grace = ("" if not profile.renewal.grace_after_expiry
                     else f" and its renewal grace ended {grace_ends:%Y-%m-%d %H:%M}Z")
            raise NotAuthorized(f"certificate {serial_hex(serial)} expired "
                                f"{current.not_after:%Y-%m-%d %H:%M}Z{grace}; enroll again with "
                                "a bootstrap credential or the factory identity")
        return Authenticated(
            Authorization(actor=f"device:{current.device_id}",
                          profiles=frozenset({current.profile}), device_id=current.device_id,
                          subject=current.subject, sans=current.sans),
            profile=current.profile, renewing=current,
            advisory=advisory.id if advisory is not None else None)

    def _factory(self, device: x509.Certificate, manufacturer: ManufacturerCA,
                 now: dt.datetime) -> Authenticated:
        device_id = factory_device_id(device, manufacturer, now)
        if manufacturer.allow_list and not self._store.is_allowed(manufacturer.name, device_id):
            raise NotAuthorized(f"device '{device_id}' is not on the allow list of "
                                f"manufacturer '{manufacturer.name}'")
        return Authenticated(
            Authorization(actor=f"idevid:{manufacturer.name}:{device_id}",
                          profiles=frozenset({manufacturer.profile}), device_id=device_id),
            profile=manufacturer.profile)

    def _current_trust(self) -> _Trust:
        trust = self._trust
        if trust is None or time.monotonic() - trust.loaded_at > TRUST_REFRESH_SECONDS:
            ours = tuple((ca.name, x509.load_der_x509_certificate(ca.certificate_der))
                         for ca in self._store.list_cas() if ca.revoked_at is None)
            makers = tuple((m, x509.load_der_x509_certificate(m.certificate_der))
                           for m in self._store.list_manufacturers())
            fresh = _Trust(ours, makers, time.monotonic())
            if trust is not None and fresh.same_anchors(trust):
                # Nothing changed: what was checked against these CAs still holds.
                fresh.signers.update(trust.signers)
            trust = self._trust = fresh
        return trust


def _parse(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise NotAuthenticated("the client certificate cannot be parsed") from None


def _issued_by(device: x509.Certificate, ca: x509.Certificate) -> bool:
    if device.issuer != ca.subject:
        return False
    try:
        device.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
