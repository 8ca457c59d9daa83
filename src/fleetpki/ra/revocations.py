"""Revoking certificates, one or all of a device's, and lifting holds.

The store makes each change atomic with its audit entry; this desk decides what may be asked
(no invalidity date in the future, no revoking a device with nothing left to revoke) and tells
the CRL publisher when a profile wants its CRLs re-signed at once.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping

from fleetpki.core.clock import Clock
from fleetpki.core.errors import BadInput, FleetPKIError, NotFound
from fleetpki.core.profile import Profile
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import CertificateStatus, IssuedCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.ra.api import Authorization
from fleetpki.store.api import AuditEvent, CertificateQuery, CertificateReader, RevocationWriter

log = logging.getLogger(__name__)
_DEVICE_LIMIT = 1000


class RevocationDesk:
    def __init__(self, reader: CertificateReader, writer: RevocationWriter,
                 profiles: Mapping[str, Profile], clock: Clock, authorization: Authorization,
                 publish_now: Callable[[IssuedCertificate], None] | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._profiles = profiles
        self._clock = clock
        self._actor = authorization.actor
        self._publish_now = publish_now
        # Why CRLs a profile wanted re-signed at once were not. The revocations stand (they
        # are committed, and OCSP reports them): callers show these as warnings.
        self.publish_failures: list[str] = []

    def revoke(self, serial: int, reason: RevocationReason, *, issuer: str | None = None,
               invalidity_date: dt.datetime | None = None) -> IssuedCertificate:
        """NotFound for an unknown serial; Conflict (nothing changed) if already revoked,
        except that a certificate on hold may be revoked for good with another reason."""
        now = self._clock.now()
        self._check_invalidity(invalidity_date, now)
        found = self._find(serial, issuer)
        return self._revoke(found, reason, invalidity_date, now)

    def revoke_device(self, device_id: str, reason: RevocationReason, *,
                      invalidity_date: dt.datetime | None = None) -> list[IssuedCertificate]:
        """Every unexpired, unrevoked certificate of the device, in every profile."""
        now = self._clock.now()
        self._check_invalidity(invalidity_date, now)
        current = self._reader.find_certificates(CertificateQuery(
            device_id=device_id, status=CertificateStatus.valid, limit=_DEVICE_LIMIT), now=now)
        if not current:
            raise NotFound(f"device '{device_id}' has no valid certificate to revoke")
        # Every certificate first, then the CRLs: a CRL that cannot be signed must not leave
        # the device half revoked.
        revoked = [self._revoke(cert, reason, invalidity_date, now, publish=False)
                   for cert in current]
        published: set[tuple[str, str, int | None]] = set()
        for record in revoked:
            scope = (record.issuer, record.profile, record.crl_shard)
            if scope not in published:
                published.add(scope)
                self._after_change(record)
        return revoked

    def release_hold(self, serial: int, *, issuer: str | None = None) -> IssuedCertificate:
        """Lift a certificateHold; Conflict if the certificate is not on hold."""
        found = self._find(serial, issuer)
        event = AuditEvent(actor=self._actor, action="certificate.hold_released",
                           subject=serial_hex(serial),
                           details={"issuer": found.issuer, "device_id": found.device_id})
        released = self._writer.release_hold(found.issuer, serial, at=self._clock.now(),
                                             event=event)
        log.info("certificate hold released", extra={"actor": self._actor,
                                                     "serial": serial_hex(serial)})
        self._after_change(released)
        return released

    def _revoke(self, found: IssuedCertificate, reason: RevocationReason,
                invalidity_date: dt.datetime | None, now: dt.datetime, *,
                publish: bool = True) -> IssuedCertificate:
        details = {"issuer": found.issuer, "reason": reason.value,
                   "device_id": found.device_id}
        if invalidity_date is not None:
            if invalidity_date < found.not_before:
                # A certificate cannot have become invalid before it was valid, and to a
                # relying party "since notBefore" condemns exactly the same signatures as any
                # earlier date. Clamping per certificate lets one date ("the device was
                # stolen on ...") serve a device's whole history, and keeps year-1 dates
                # out of CRLs and OCSP answers.
                details["invalidity_date_given"] = invalidity_date.isoformat()
                invalidity_date = found.not_before
            details["invalidity_date"] = invalidity_date.isoformat()
        event = AuditEvent(actor=self._actor, action="certificate.revoked",
                           subject=serial_hex(found.serial), details=details)
        revoked = self._writer.revoke(found.issuer, found.serial, reason, at=now, event=event,
                                      invalidity_date=invalidity_date)
        log.info("certificate revoked", extra={"actor": self._actor,
                                               "serial": serial_hex(found.serial),
                                               "reason": reason.value})
        if publish:
            self._after_change(revoked)
        return revoked

    def _find(self, serial: int, issuer: str | None) -> IssuedCertificate:
        found = self._reader.get_certificate(serial, issuer)
        if found is None:
            raise NotFound(f"no certificate with serial {serial_hex(serial)}")
        return found

    def _after_change(self, record: IssuedCertificate) -> None:
        profile = self._profiles.get(record.profile)
        if self._publish_now is None or not profile or not profile.revocation.publish_on_revoke:
            return
        try:
            self._publish_now(record)
        except Exception as error:  # the change is committed: say so, go on
            change = "revoked" if record.revoked_at is not None else "no longer on hold"
            message = (f"certificate {serial_hex(record.serial)} is {change} (OCSP answers "
                       f"so now), but its CRL was not re-signed at once: {error}. "
                       f"The next scheduled publication lists it; `fleetpki crl publish` "
                       f"signs it now")
            # A key or disk problem is the operator's to fix and says so; anything else is
            # a bug, logged with its traceback (never shown to a client).
            log.warning("%s", message,
                        exc_info=not isinstance(error, FleetPKIError | OSError))
            self.publish_failures.append(message)

    @staticmethod
    def _check_invalidity(invalidity_date: dt.datetime | None, now: dt.datetime) -> None:
        # RFC 5280 §5.3.2: the date on which the key is known or suspected to have been
        # compromised; a date still to come cannot be known.
        if invalidity_date is not None and invalidity_date > now:
            raise BadInput("the invalidity date lies in the future; give the time the key was "
                           "known or suspected to be compromised")
