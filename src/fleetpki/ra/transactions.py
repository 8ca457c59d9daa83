"""Enrollment under a protocol's own transaction name (SCEP transactionID, RFC 8894 §3.2.1.1).

A SCEP client that lost a reply, or was told PENDING, sends its request again, or a CertPoll,
under the same transactionID: it gets the first outcome (the same certificate, the same
pending state), never a second certificate, and needs no second use of a one-time challenge.
A transactionID that comes back with a different key is refused (§3.2.1.1 binds the name to
the key). Only the requester that signed the first message may collect: the requester
fingerprint is the key that signed it.

    reserve (atomic) -> decide (enrollment.py) -> settle: issued or held
                     \\-> refused: release, so that nothing of the refusal stays stored
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.core import der
from fleetpki.core.clock import Clock
from fleetpki.core.csr import canonical_csr, load_csr, without_challenge_password
from fleetpki.core.enrollment_records import ApprovalState, EnrollmentTransaction
from fleetpki.core.errors import BadInput, Conflict, NotAuthorized, NotFound
from fleetpki.core.records import IssuedCertificate
from fleetpki.ra.api import (
    Enrolled,
    EnrollmentPending,
    EnrollmentRequest,
    Transaction,
)
from fleetpki.ra.enrollment import EnrollmentService
from fleetpki.store.api import (
    CertificateReader,
    EnrollmentTransactions,
    PendingEnrollments,
)

# A reservation this old that never settled belongs to a process that died mid-request.
STALE_AFTER = dt.timedelta(minutes=2)
# What a client retrying while its first request is still being decided is told to wait.
BUSY_RETRY_SECONDS = 5
# How long a transaction is remembered: far longer than any retry, poll or clock skew a
# client may have (SCEP polling, CMP certConf and pollReq, CMP's transactionIdInUse), short
# enough that the table stays small. Pruned by the server's background publishing round.
RETENTION = dt.timedelta(days=30)


class TransactionStore(EnrollmentTransactions, PendingEnrollments, CertificateReader, Protocol):
    pass


def fingerprints(csr: bytes) -> tuple[str, str]:
    """SHA-256 hex of the CSR's SubjectPublicKeyInfo and of what it asks for: its
    CertificationRequestInfo without the challenge password, so that the same request signed
    again, or sent with another password, is the same request. BadInput if unreadable."""
    parsed = load_csr(canonical_csr(csr)[0])
    spki = parsed.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    whole = parsed.public_bytes(serialization.Encoding.DER)
    asked = der.elements(without_challenge_password(whole) or whole)[0]
    return hashlib.sha256(spki).hexdigest(), hashlib.sha256(asked).hexdigest()


def _is_new_request(request: EnrollmentRequest, request_fingerprint: str,
                    earlier: EnrollmentTransaction) -> bool:
    """Whether a request under an issued transaction's name is a new one rather than a retry:
    another CSR (strongSwan derives the transactionID from the key alone), or a renewal signed
    with the very certificate the transaction produced (micromdm's scepclient reuses its
    transactionID, key and CSR for every renewal)."""
    if earlier.serial is None:
        return False
    if earlier.request_fingerprint != request_fingerprint:
        return True
    if request.client_certificate is None:
        return False
    try:
        signer = x509.load_der_x509_certificate(request.client_certificate)
    except ValueError:
        return False
    return signer.serial_number == earlier.serial


class TransactionalEnrollment:
    def __init__(self, enrollment: EnrollmentService, store: TransactionStore,
                 clock: Clock) -> None:
        self._enrollment = enrollment
        self._store = store
        self._clock = clock

    def enroll(self, request: EnrollmentRequest, transaction: Transaction, *,
               retries: bool = True) -> Enrolled | EnrollmentPending:
        """`retries`: a request under a name already used is a retry (SCEP). Without, the
        name must be new (CMP, RFC 9810 §5.1.1: transactionIdInUse), and a reuse is refused
        with Conflict before anything else is decided."""
        if not retries and self._store.get_transaction(transaction.protocol,
                                                       transaction.transaction_id):
            raise Conflict(f"transactionID {transaction.transaction_id} is already in use: "
                           "start each transaction with a fresh one")
        try:
            fingerprint, request_fingerprint = fingerprints(request.csr)
        except (BadInput, ValueError):
            # Unreadable: the enrollment service refuses it, audited under the requester.
            return self._enrollment.enroll(request)
        now = self._clock.now()
        profile = self._enrollment.profile_for(request.label).name
        record = EnrollmentTransaction(
            protocol=transaction.protocol, transaction_id=transaction.transaction_id,
            profile=profile, key_fingerprint=fingerprint,
            requester_fingerprint=transaction.requester,
            request_fingerprint=request_fingerprint, created_at=now)
        earlier = self._store.reserve_transaction(record, stale_before=now - STALE_AFTER)
        if earlier is not None and not retries:  # raced with another request of that name
            raise Conflict(f"transactionID {transaction.transaction_id} is already in use")
        if earlier is not None and earlier.key_fingerprint == fingerprint \
                and _is_new_request(request, request_fingerprint, earlier):
            self._store.release_transaction(transaction.protocol, transaction.transaction_id)
            earlier = self._store.reserve_transaction(record, stale_before=now - STALE_AFTER)
        if earlier is not None:
            if earlier.key_fingerprint != fingerprint:
                raise BadInput(f"transactionID '{transaction.transaction_id}' was used for "
                               "another public key; a new key needs a new transactionID "
                               "(RFC 8894 §3.2.1.1)")
            if earlier.request_fingerprint != request_fingerprint:
                raise BadInput(f"transactionID '{transaction.transaction_id}' has another "
                               "request waiting for approval; poll for it, or send this one "
                               "once it is decided")
            return self._outcome(earlier, transaction)
        try:
            outcome = self._enrollment.enroll(request)
        except Exception:  # refused, or our side failed: either way nothing was issued
            self._store.release_transaction(transaction.protocol, transaction.transaction_id)
            raise
        if isinstance(outcome, Enrolled):
            self._store.settle_transaction(
                transaction.protocol, transaction.transaction_id,
                serial=outcome.certificate.serial, issuer=outcome.certificate.issuer)
        else:
            self._store.settle_transaction(transaction.protocol, transaction.transaction_id,
                                           pending_id=outcome.request_id)
        return outcome

    def poll(self, transaction: Transaction) -> Enrolled | EnrollmentPending:
        """RFC 8894 §3.3.3 CertPoll: the outcome of an earlier request of this requester."""
        earlier = self._store.get_transaction(transaction.protocol, transaction.transaction_id)
        if earlier is None:
            raise NotFound(f"no request with transactionID '{transaction.transaction_id}': "
                           "send the PKCSReq again")
        return self._outcome(earlier, transaction)

    def _outcome(self, earlier: EnrollmentTransaction, transaction: Transaction
                 ) -> Enrolled | EnrollmentPending:
        if transaction.requester not in (earlier.requester_fingerprint, earlier.key_fingerprint):
            raise NotAuthorized(f"transactionID '{transaction.transaction_id}' belongs to another "
                                "requester: sign with the key of the first request")
        if earlier.serial is not None and earlier.issuer is not None:
            return Enrolled(self._certificate(earlier.serial, earlier.issuer))
        retry = int(self._enrollment.profile_for(earlier.profile).enrollment.retry_after
                    .total_seconds())
        if earlier.pending_id is None:  # still being decided by another request
            return EnrollmentPending(transaction.transaction_id, BUSY_RETRY_SECONDS)
        pending = self._store.get_pending(earlier.pending_id)
        if pending is None:
            raise NotFound(f"held enrollment {earlier.pending_id} no longer exists: enroll again")
        if pending.state is ApprovalState.pending:
            return EnrollmentPending(pending.id, retry)
        if pending.state is ApprovalState.rejected:
            raise NotAuthorized(f"enrollment {pending.id} was rejected by {pending.decided_by}"
                                + (f": {pending.reason}" if pending.reason else ""))
        assert pending.serial is not None and pending.issuer is not None
        return Enrolled(self._certificate(pending.serial, pending.issuer))

    def _certificate(self, serial: int, issuer: str) -> IssuedCertificate:
        record = self._store.get_certificate(serial, issuer)
        if record is None:
            raise NotFound("the certificate of this transaction is missing from the store")
        return record
