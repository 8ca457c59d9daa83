"""The operator's side of manual approval: approve (the certificate is issued now, for the
device to collect on its next retry) or reject (its next retry gets a refusal)."""

from __future__ import annotations

from fleetpki.core.clock import Clock
from fleetpki.core.enrollment_records import ApprovalState, PendingEnrollment
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.records import IssuedCertificate
from fleetpki.ra.api import Authorization
from fleetpki.ra.service import IssuanceService
from fleetpki.store.api import AuditEvent, PendingEnrollments


class ApprovalDesk:
    def __init__(self, issuance: IssuanceService, store: PendingEnrollments, clock: Clock,
                 operator: Authorization) -> None:
        self._issuance = issuance
        self._store = store
        self._clock = clock
        self._operator = operator

    def approve(self, pending_id: str) -> IssuedCertificate:
        pending = self._undecided(pending_id)
        # The device's own identity issues, constrained as it was when it asked; the plan is
        # made again so that a profile tightened in the meantime still applies.
        device = Authorization(actor=pending.actor, profiles=frozenset({pending.profile}),
                               device_id=pending.device_id)
        plan = self._issuance.prepare_csr(pending.csr_der, pending.profile, device,
                                          possession_checked=pending.csr_altered)
        record = self._issuance.issue_plan(plan, device)
        self._store.decide(pending_id, ApprovalState.issued, decided_by=self._operator.actor,
                           at=self._clock.now(), serial=record.serial, issuer=record.issuer,
                           event=AuditEvent(actor=self._operator.actor,
                                            action="enrollment.approved", subject=pending_id,
                                            details={"profile": pending.profile,
                                                     "device_id": pending.device_id}))
        return record

    def reject(self, pending_id: str, reason: str) -> None:
        pending = self._undecided(pending_id)
        self._store.decide(pending_id, ApprovalState.rejected, decided_by=self._operator.actor,
                           at=self._clock.now(), reason=reason,
                           event=AuditEvent(actor=self._operator.actor,
                                            action="enrollment.rejected", subject=pending_id,
                                            details={"profile": pending.profile,
                                                     "device_id": pending.device_id,
                                                     "reason": reason}))

    def _undecided(self, pending_id: str) -> PendingEnrollment:
        pending = self._store.get_pending(pending_id)
        if pending is None:
            raise NotFound(f"no pending enrollment with id '{pending_id}' "
                           "(`fleetpki approvals list` shows them)")
        if pending.state is not ApprovalState.pending:
            raise Conflict(f"enrollment '{pending_id}' was already decided "
                           f"({pending.state.value} by {pending.decided_by})")
        return pending
