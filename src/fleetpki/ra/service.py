"""The issuance cycle (docs/issuance-cycle.md):

  1. authorize        the Authorization says who asks and what they may ask for
  2. plan             the profile decides the certificate (core.issuance_plan); refusals stop here,
                      audited, with nothing stored and no serial drawn
  3. reserve          a fresh random serial is in the ledger as an intent (written ahead in
                      blocks: ra/serial_pool.py)
  4. sign             exactly once, in memory
  5. record           certificate + audit entry in one transaction
  6. return           only now does the certificate leave the RA

A crash between 3 and 5 leaves a reserved serial that is never reused and no certificate anyone
has seen; a crash after 5 leaves a certificate the store knows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from fleetpki.ca.certificate_template import CertificateTemplate
from fleetpki.ca.signer import SignerSource
from fleetpki.core.clock import Clock
from fleetpki.core.csr import check_proof_of_possession, load_csr
from fleetpki.core.errors import BadInput, NotAuthorized, NotFound, PolicyViolation
from fleetpki.core.issuance_plan import IssuancePlan, Request, plan_issuance
from fleetpki.core.names import san_text
from fleetpki.core.profile import Profile
from fleetpki.core.records import IssuedCertificate
from fleetpki.core.serials import SerialSource, serial_hex
from fleetpki.ra.api import Authorization
from fleetpki.ra.serial_pool import SerialPool
from fleetpki.store.api import AuditEvent, IssuanceLedger

log = logging.getLogger(__name__)


class IssuanceService:
    def __init__(self, ledger: IssuanceLedger,
                 profiles: Mapping[str, Profile], signers: SignerSource, clock: Clock,
                 serials: SerialSource) -> None:
        self._ledger = ledger
        self._profiles = profiles
        self._signers = signers
        self._clock = clock
        self._pool = SerialPool(ledger, serials)
        self._templates: dict[str, CertificateTemplate] = {}

    def template(self, profile_name: str) -> CertificateTemplate:
        template = self._templates.get(profile_name)
        if template is None:
            profile = self.profile(profile_name)
            template = CertificateTemplate(profile, self._signers.signer(profile.issuer))
            self._templates[profile_name] = template
        return template

    def profile(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            known = ", ".join(sorted(self._profiles))
            raise NotFound(f"no profile named '{name}' (profiles: {known})") from None

    def issue_csr(self, data: bytes, profile: str, authorization: Authorization,
                  validity: dt.timedelta | None = None) -> IssuedCertificate:
        """What front ends call with the bytes they received: parse, check proof of
        possession, then the cycle. Unreadable input is a refusal like any other, and audited."""
        plan = self.prepare_csr(data, profile, authorization, validity)
        return self.issue_plan(plan, authorization)

    def prepare_csr(self, data: bytes, profile: str, authorization: Authorization,
                    validity: dt.timedelta | None = None, *,
                    server_key: CertificatePublicKeyTypes | None = None,
                    possession_checked: bool = False) -> IssuancePlan:
        """Steps 1-2 for CSR bytes: the plan, or an audited refusal. Front ends that must do
        something between deciding and issuing (redeem a credential use, hold the request for
        approval) call this, then `issue_plan`.

        With `server_key`, the server generated the key pair (RFC 7030 §4.4): the CSR only
        contributes names, and its own key need not prove anything. `possession_checked`: the
        RA verified the signature when the request arrived, and has since altered the CSR
        (a held SCEP request stored without its challenge password)."""
        try:
            csr = load_csr(data)
            request = Request.from_csr(csr, validity)
            if server_key is not None:
                request = dataclasses.replace(request, public_key=server_key)
            elif not possession_checked:
                check_proof_of_possession(csr, request.public_key)
        except (BadInput, PolicyViolation) as refusal:
            self._refused(authorization, profile, refusal)
            raise
        return self.prepare(request, profile, authorization)

    def prepare(self, request: Request, profile: str, authorization: Authorization
                ) -> IssuancePlan:
        try:
            return self.plan(request, profile, authorization, self._clock.now())
        except (PolicyViolation, NotAuthorized, NotFound) as refusal:
            self._refused(authorization, profile, refusal)
            raise

    def issue(self, request: Request, profile: str, authorization: Authorization
              ) -> IssuedCertificate:
        return self.issue_plan(self.prepare(request, profile, authorization), authorization)

    def issue_plan(self, plan: IssuancePlan, authorization: Authorization, *,
                   details: Mapping[str, str] | None = None) -> IssuedCertificate:
        """Steps 3-6 for a plan made by `prepare`: reserve, sign once, record, return.
        `details` are added to the audit entry (why a caller let the request through)."""
        now = self._clock.now()
        serial = self.reserve(plan, now)
        record = issued_record(plan, serial, self.template(plan.profile).sign(plan, serial), now)
        self._ledger.record_issued([record], [], [issued_event(authorization.actor, record,
                                                               details)], at=now)
        log.info("certificate issued", extra={
            "actor": authorization.actor, "profile": plan.profile, "device_id": record.device_id,
            "serial": serial_hex(serial), "not_after": record.not_after.isoformat()})
        return record

    def refuse(self, authorization: Authorization, profile: str, refusal: Exception) -> None:
        """Audit a refusal decided outside the cycle (authentication, rate limits)."""
        self._refused(authorization, profile, refusal)

    def _refused(self, authorization: Authorization, profile: str, refusal: Exception) -> None:
        self._ledger.audit([refusal_event(authorization.actor, profile, str(refusal))],
                           at=self._clock.now())
        log.info("certificate refused", extra={"actor": authorization.actor,
                                               "profile": profile, "reason": str(refusal)})

    def plan(self, request: Request, profile_name: str, authorization: Authorization,
             now: dt.datetime) -> IssuancePlan:
        if authorization.profiles is not None and profile_name not in authorization.profiles:
            raise NotAuthorized(f"{authorization.actor} may not enroll in profile "
                                f"'{profile_name}'")
        template = self.template(profile_name)
        plan = plan_issuance(template.profile, request, now=now,
                             issuer_not_after=template.signer.certificate.not_valid_after_utc)
        if authorization.subject is not None \
                and plan.subject.rfc4514_string() != authorization.subject:
            raise PolicyViolation(f"re-enrollment must keep the subject '{authorization.subject}'"
                                  f" (RFC 7030 §4.2.2); the request asks for "
                                  f"'{plan.subject.rfc4514_string()}'", field="subject")
        if authorization.sans is not None and san_strings(plan.sans) != authorization.sans:
            raise PolicyViolation("re-enrollment must keep the subjectAltName of the current "
                                  "certificate (RFC 7030 §4.2.2): expected "
                                  f"{', '.join(authorization.sans) or 'none'}, the request asks "
                                  f"for {', '.join(san_strings(plan.sans)) or 'none'}",
                                  field="san")
        if authorization.device_id is not None and plan.device_id != authorization.device_id:
            raise NotAuthorized(f"the request names device '{plan.device_id}' but the "
                                f"credential is for '{authorization.device_id}'")
        return plan

    def reserve(self, plan: IssuancePlan, now: dt.datetime) -> int:
        return self._pool.take(plan.issuer, plan.device_id, plan.profile, now)

    def release_serials(self) -> None:
        """Give back the serials reserved ahead and never used (before the store closes)."""
        self._pool.release(self._clock.now())


def issued_record(plan: IssuancePlan, serial: int, der: bytes, now: dt.datetime
                  ) -> IssuedCertificate:
    return IssuedCertificate(
        serial=serial, issuer=plan.issuer, device_id=plan.device_id, profile=plan.profile,
        subject=plan.subject.rfc4514_string(),
        sans=san_strings(plan.sans),
        key_spec=str(plan.key_spec), key_fingerprint=hashlib.sha256(plan.spki_der).hexdigest(),
        not_before=plan.not_before, not_after=plan.not_after, issued_at=now, der=der,
        crl_shard=plan.crl_shard(serial),
    )


def san_strings(sans: tuple[x509.GeneralName, ...]) -> tuple[str, ...]:
    """SANs as the store and the audit log write them: 'type:value'."""
    return tuple(f"{t.value}:{v}" for t, v in (san_text(n) for n in sans))


def issued_event(actor: str, record: IssuedCertificate,
                 details: Mapping[str, str] | None = None) -> AuditEvent:
    return AuditEvent(actor=actor, action="certificate.issued", subject=serial_hex(record.serial),
                      details={"issuer": record.issuer, "profile": record.profile,
                               "device_id": record.device_id, "subject": record.subject,
                               "not_after": record.not_after.isoformat(),
                               "key_fingerprint": record.key_fingerprint, **(details or {})})


def refusal_event(actor: str, profile: str, reason: str, device_id: str = "") -> AuditEvent:
    return AuditEvent(actor=actor, action="certificate.refused", subject=device_id or "-",
                      details={"profile": profile, "reason": reason})
