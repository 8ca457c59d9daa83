"""What ACME does with certificates once issued: revocation (RFC 8555 §7.6) and renewal
information (RFC 9773).

Revocation is allowed to the holder of the certificate's key, to the account that ordered it,
and to an account that holds valid authorizations for every name in it. The reasons a
subscriber may give are those that concern its own key and use (RFC 8555 §7.6 leaves the
choice to the server; the same set as a device revoking over CMP, ra/self_revocation.py).

Renewal information comes from ra/renewal_info.py, the policy that also drives the EST agent's
`renewalinfo`: an operator's advisory pulls renewals forward for EST devices and ACME clients
alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import AcmeAccount, AuthorizationStatus
from fleetpki.core.clock import Clock
from fleetpki.core.errors import NotAuthorized
from fleetpki.core.profile import Profile
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import serial_hex
from fleetpki.ra.acme.accounts import actor
from fleetpki.ra.acme.identifiers import of_general_name
from fleetpki.ra.acme.lifecycle import authorization_status
from fleetpki.ra.api import Authorization, RenewalAdvice
from fleetpki.ra.ca_chain import issuer_chain
from fleetpki.ra.renewal_info import ActiveAdvisories, AdvisoryReader, advise
from fleetpki.ra.self_revocation import DEVICE_REASONS, Revoker
from fleetpki.store.api import AcmeOrders, CAReader, CertificateReader

# RFC 5280 §5.3.1 CRLReason codes, as ACME carries them (RFC 8555 §7.6).
REASON_CODES = {0: RevocationReason.unspecified, 1: RevocationReason.key_compromise,
                2: RevocationReason.ca_compromise, 3: RevocationReason.affiliation_changed,
                4: RevocationReason.superseded, 5: RevocationReason.cessation_of_operation,
                6: RevocationReason.certificate_hold, 9: RevocationReason.privilege_withdrawn,
                10: RevocationReason.aa_compromise}


class CertificateStore(AcmeOrders, CertificateReader, CAReader, AdvisoryReader, Protocol):
    pass


class AcmeCertificates:
    def __init__(self, store: CertificateStore, profiles: Mapping[str, Profile], clock: Clock,
                 identify: Callable[[bytes], IssuedCertificate],
                 desk: Callable[[Authorization], Revoker]) -> None:
        """`identify`: the stored certificate for DER bytes one of our CAs issued
        (EnrollmentService.identify); `desk`: a revocation desk acting for an actor."""
        self._store = store
        self._profiles = profiles
        self._clock = clock
        self._identify = identify
        self._desk = desk
        self._advisories = ActiveAdvisories(store)

    def chain_pem(self, record: IssuedCertificate) -> bytes:
        """The certificate, then its issuers without the root, as PEM: what a TLS server
        sends (RFC 8555 §7.4.2, application/pem-certificate-chain)."""
        chain = issuer_chain(self._store, record.issuer)
        issuers = chain[:-1] if len(chain) > 1 else chain
        leaf = x509.load_der_x509_certificate(record.der)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, *issuers))

    def identify(self, der: bytes) -> IssuedCertificate:
        try:
            return self._identify(der)
        except NotAuthorized as refusal:
            raise AcmeProblem("malformed", str(refusal), status=404) from None

    def revoke(self, der: bytes, reason_code: int, account: AcmeAccount | None
               ) -> IssuedCertificate:
        """`account` None: the request was signed with the certificate's own key."""
        record = self.identify(der)
        reason = REASON_CODES.get(reason_code)
        if reason is None or reason not in DEVICE_REASONS:
            allowed = ", ".join(str(code) for code, r in sorted(REASON_CODES.items())
                                if r in DEVICE_REASONS)
            raise AcmeProblem("badRevocationReason", f"reason {reason_code} may not be given "
                              f"by a subscriber (allowed: {allowed})")
        if account is not None:
            self._check_account(account, record)
        if record.revoked_at is not None \
                and record.revocation_reason is not RevocationReason.certificate_hold:
            raise AcmeProblem("alreadyRevoked", f"certificate {serial_hex(record.serial)} is "
                              "already revoked")
        who = actor(account.id) if account is not None else f"acme-key:{record.device_id}"
        return self._desk(Authorization(actor=who)).revoke(record.serial, reason,
                                                            issuer=record.issuer)

    def _check_account(self, account: AcmeAccount, record: IssuedCertificate) -> None:
        order = self._store.find_order_by_certificate(record.issuer, record.serial)
        if order is not None and order.account_id == account.id:
            return
        names = [of_general_name(n) for n in _sans(record)]
        if names and all(n is not None for n in names):
            now = self._clock.now()
            held = self._store.find_reusable_authorizations(
                account.id, [n for n in names if n is not None], valid_after=now)
            if len(held) == len(names) and all(
                    authorization_status(a, now) is AuthorizationStatus.valid
                    for a in held.values()):
                return
        raise AcmeProblem("unauthorized", f"account {account.id} neither ordered certificate "
                          f"{serial_hex(record.serial)} nor holds authorizations for all its "
                          "names", status=403)

    def renewal_info(self, key_identifier: bytes, serial: int) -> RenewalAdvice:
        """RFC 9773 §4: the certificate is named by its issuer's key identifier and serial."""
        record = self._store.get_certificate(serial)
        if record is None or _subject_key_id(self._store, record.issuer) != key_identifier:
            raise AcmeProblem("malformed", "no certificate of this server has that "
                              "certificate identifier", status=404)
        profile = self._profiles.get(record.profile)
        if profile is None:
            raise AcmeProblem("malformed", f"certificate {serial_hex(serial)} belongs to a "
                              "profile this server no longer has", status=404)
        return advise(record, profile, self._advisories(), self._clock.now())


def _sans(record: IssuedCertificate) -> list[x509.GeneralName]:
    certificate = x509.load_der_x509_certificate(record.der)
    try:
        return list(certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _subject_key_id(cas: CAReader, issuer: str) -> bytes | None:
    record = cas.get_ca(issuer)
    if record is None:
        return None
    certificate = x509.load_der_x509_certificate(record.certificate_der)
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return None

