"""Signing CRLs (RFC 5280 §5). The root's CRL, covering its issuing CAs, is signed here during the
offline step; the per-issuer publishing pipeline builds on the same function."""

from __future__ import annotations

import dataclasses
import datetime as dt

from cryptography import x509

from fleetpki.ca.signer import Signer
from fleetpki.core.reasons import RevocationReason


@dataclasses.dataclass(frozen=True, slots=True)
class RevokedEntry:
    serial: int
    revoked_at: dt.datetime
    reason: RevocationReason


def sign_crl(signer: Signer, entries: list[RevokedEntry], *, number: int, now: dt.datetime,
             next_update: dt.timedelta) -> x509.CertificateRevocationList:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(signer.certificate.subject)
        .last_update(now.replace(microsecond=0))
        .next_update((now + next_update).replace(microsecond=0))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(signer.authority_key_identifier(), critical=False)
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at.replace(microsecond=0))
        )
        # RFC 5280 §5.3.1: the reason code is absent rather than 'unspecified'.
        if entry.reason is not RevocationReason.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason.x509_flag),
                                            critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(signer.private_key, signer.hash_algorithm)
