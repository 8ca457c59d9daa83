"""A device revoking its own certificate (CMP rr, RFC 9483 §4.2), or a certificate it refused
to accept (a negative CMP certConf).

The request is signed with the very certificate it revokes: holding its key is what entitles
the device. A device may say why (reasonCode) within what concerns itself; reasons that speak
for the CA (cACompromise, aACompromise, privilegeWithdrawn) or suspend rather than revoke
(certificateHold) stay with operators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from fleetpki.core.errors import Conflict, NotAuthorized
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.ra.api import Authorization

DEVICE_REASONS = frozenset({
    RevocationReason.unspecified, RevocationReason.key_compromise,
    RevocationReason.affiliation_changed, RevocationReason.superseded,
    RevocationReason.cessation_of_operation,
})


class Revoker(Protocol):
    def revoke(self, serial: int, reason: RevocationReason, *, issuer: str | None = None
               ) -> IssuedCertificate: ...


class SelfRevocation:
    def __init__(self, identify: Callable[[bytes], IssuedCertificate],
                 desk: Callable[[Authorization], Revoker]) -> None:
        """`identify`: the stored certificate for DER bytes one of our CAs issued
        (EnrollmentService.identify); `desk`: a revocation desk acting for an actor."""
        self._identify = identify
        self._desk = desk

    def revoke_own(self, signer: bytes, serial: int, reason: RevocationReason
                   ) -> IssuedCertificate:
        """Revoke certificate `serial`, which must be `signer` (DER), the certificate whose
        key signed the request. NotAuthorized otherwise; Conflict if already revoked."""
        current = self._identify(signer)
        if current.serial != serial:
            raise NotAuthorized(f"the request is signed with certificate "
                                f"{serial_hex(current.serial)} but asks to revoke "
                                f"{serial_hex(serial)}: a device revokes only the certificate "
                                "it signs with")
        if reason not in DEVICE_REASONS:
            raise NotAuthorized(f"a device may not revoke for '{reason.value}' (it may give: "
                                f"{', '.join(sorted(r.value for r in DEVICE_REASONS))})")
        if current.revoked_at is not None and current.revocation_reason \
                is not RevocationReason.certificate_hold:
            raise Conflict(f"certificate {serial_hex(serial)} is already revoked")
        return self._desk(Authorization(actor=f"device:{current.device_id}")).revoke(
            current.serial, reason, issuer=current.issuer)

    def refused_by_device(self, record: IssuedCertificate) -> IssuedCertificate | None:
        """The device refused the certificate it was just sent (negative certConf): nobody
        will use it, so it is revoked (cessationOfOperation) rather than left valid. None if
        it is revoked already."""
        if record.revoked_at is not None:
            return None
        return self._desk(Authorization(actor=f"device:{record.device_id}")).revoke(
            record.serial, RevocationReason.cessation_of_operation, issuer=record.issuer)
