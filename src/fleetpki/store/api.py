"""What the rest of fleetpki may ask of the store, as narrow Protocols.

Each consumer takes the smallest of these it needs: the inventory and the OCSP responder get a
`CertificateReader` and cannot write by accident; the RA gets an `IssuanceLedger`.

Every method that changes state takes the audit events describing the change and writes them in
the same transaction: an action is recorded if and only if it happened.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Protocol

from fleetpki.core.acme_records import (
    AccountStatus,
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationStatus,
    EabKey,
    Identifier,
    OrderStatus,
)
from fleetpki.core.api_tokens import ApiToken, OperatorCertificate
from fleetpki.core.audit_chain import canonical_details
from fleetpki.core.discovery_records import DiscoveredCertificate
from fleetpki.core.enrollment_records import (
    ApprovalState,
    BootstrapCredential,
    EnrollmentChallenge,
    EnrollmentTransaction,
    ManufacturerCA,
    PendingEnrollment,
)
from fleetpki.core.inventory_records import CertificateFact, DeviceSummary, StoredSummary
from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import (
    AuditEntry,
    CARecord,
    CertificateStatus,
    IssuedCertificate,
    RevocationStatus,
    RevokedEntry,
)
from fleetpki.core.renewal_window import RenewalAdvisory


@dataclasses.dataclass(frozen=True, slots=True)
class AuditEvent:
    """An entry to be appended; the store assigns sequence, time and hashes.

    The canonical JSON of the details is computed where the event is made, so a batch worker
    does that work in parallel and the process that chains the entries only hashes."""

    actor: str
    action: str
    subject: str
    details: dict[str, str] = dataclasses.field(default_factory=dict)
    details_json: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details_json", canonical_details(self.details))


@dataclasses.dataclass(frozen=True, slots=True)
class SerialReservation:
    """The intent to issue (DESIGN.md §2), written before anything is signed."""

    issuer: str
    serial: int
    device_id: str
    profile: str


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateQuery:
    device_id: str | None = None
    profile: str | None = None
    issuer: str | None = None
    status: CertificateStatus | None = None
    expiring_before: dt.datetime | None = None
    # Substrings of the subject / the SANs, taken literally and ignoring case.
    subject_contains: str | None = None
    san_contains: str | None = None
    key_spec: str | None = None
    expiring_after: dt.datetime | None = None
    issued_after: dt.datetime | None = None
    serial_prefix: str | None = None  # lower-case hex
    limit: int = 100
    offset: int = 0
    # Keyset pagination: only certificates after this (not_after, serial hex) in the list's
    # order. Unlike an offset, the thousandth page costs what the first does.
    after: tuple[dt.datetime, str] | None = None


class CertificateReader(Protocol):
    def get_certificate(self, serial: int, issuer: str | None = None
                        ) -> IssuedCertificate | None: ...

    def find_certificates(self, query: CertificateQuery, *, now: dt.datetime
                          ) -> list[IssuedCertificate]: ...

    def current_certificate(self, device_id: str, profile: str, *, now: dt.datetime
                            ) -> IssuedCertificate | None:
        """The newest valid (unrevoked, unexpired) certificate of a device in a profile."""
        ...


class CAReader(Protocol):
    def list_cas(self) -> list[CARecord]: ...

    def get_ca(self, name: str) -> CARecord | None: ...


class AuditWriter(Protocol):
    def audit(self, events: Sequence[AuditEvent], *, at: dt.datetime) -> None:
        """Append events that record something with no other state change (a refusal, a CRL)."""
        ...


class IssuanceLedger(CertificateReader, AuditWriter, Protocol):
    """The RA's slice: reserve serials, record what was signed, release what was refused."""

    def reserve_serials(self, reservations: Sequence[SerialReservation], *, at: dt.datetime
                        ) -> None:
        """Raise SerialCollision if any serial is already known for its issuer."""
        ...

    def record_issued(self, certificates: Sequence[IssuedCertificate],
                      released: Sequence[SerialReservation], events: Sequence[AuditEvent], *,
                      at: dt.datetime) -> None:
        """One transaction: certificates stored, refused reservations released, events chained."""
        ...


class RevocationWriter(Protocol):
    def revoke(self, issuer: str, serial: int, reason: RevocationReason, *, at: dt.datetime,
               event: AuditEvent, invalidity_date: dt.datetime | None = None
               ) -> IssuedCertificate:
        """NotFound for an unknown certificate, Conflict if it is already revoked (a hold may
        turn into a revocation for good, with a new change sequence for the delta CRL)."""
        ...

    def release_hold(self, issuer: str, serial: int, *, at: dt.datetime, event: AuditEvent
                     ) -> IssuedCertificate:
        """Lift a certificateHold (the next delta CRL says removeFromCRL); Conflict if the
        certificate is not on hold."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class RevokedQuery:
    """Which revoked entries a CRL lists.

    `profile`/`shard` narrow to one partition; `changed_after` makes it a delta: only rows
    whose revocation changed after that watermark, with lifted holds as removals (dated
    `valid_at`). Entries of certificates that expired before `expired_cutoff` are left out
    unless their profile is in `keep_expired`. RFC 5280 §3.3 wants an entry on at least one
    CRL issued after the certificate expired: the publisher sets the cutoff a CRL validity
    back, and re-signs at half of it."""

    issuer: str
    valid_at: dt.datetime
    expired_cutoff: dt.datetime
    profile: str | None = None
    shard: int | None = None
    changed_after: int | None = None
    keep_expired: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True, slots=True)
class CrlPublication:
    """The last CRL signed for one series (issuer, scope, kind)."""

    issuer: str
    scope: str  # CrlScope.key
    kind: str  # "full" or "delta"
    number: int
    this_update: dt.datetime
    next_update: dt.datetime
    watermark: int  # the issuer's revocation_seq the CRL reflects
    entries: int
    size: int
    base_number: int | None = None  # deltas: the full CRL they extend
    base_watermark: int | None = None


class RevocationReader(Protocol):
    """What the CRL publisher reads; streams, so a million entries never sit in a list."""

    def revocation_seq(self, issuer: str) -> int: ...

    def revoked_entries(self, query: RevokedQuery) -> Iterator[RevokedEntry]: ...

    def crl_publications(self, issuer: str) -> list[CrlPublication]: ...


class CrlLedger(RevocationReader, Protocol):
    def next_crl_number(self, issuer: str) -> int: ...

    def record_crl(self, publication: CrlPublication, event: AuditEvent, *, at: dt.datetime
                   ) -> None:
        """Replace the series' state; audited in the same transaction."""
        ...


class StatusReader(Protocol):
    """The OCSP responder's whole view of the store."""

    def certificate_status(self, issuer: str, serial: int) -> RevocationStatus | None: ...


class CARegistry(CAReader, AuditWriter, Protocol):
    def add_ca(self, record: CARecord, event: AuditEvent, *, at: dt.datetime) -> None: ...

    def set_ca_key_file(self, name: str, key_file: str | None, event: AuditEvent, *,
                        at: dt.datetime) -> None: ...

    def next_crl_number(self, issuer: str) -> int: ...


class SerialCollision(Exception):
    """A freshly drawn serial already exists for the issuer; draw again (astronomically rare)."""


class CARevocationWriter(Protocol):
    def revoke_ca(self, name: str, reason: RevocationReason, *, at: dt.datetime,
                  event: AuditEvent) -> None: ...


class BootstrapCredentials(Protocol):
    """Credentials for first enrollment. Only hashes of secrets are ever stored."""

    def add_credentials(self, credentials: Sequence[BootstrapCredential],
                        events: Sequence[AuditEvent], *, at: dt.datetime) -> None:
        """All or none, in one transaction: raise Conflict, adding nothing, if an id is taken
        (a factory's list of per-device secrets is either all usable or not written)."""
        ...

    def get_credential(self, credential_id: str) -> BootstrapCredential | None: ...

    def list_credentials(self, *, profile: str | None = None, include_disabled: bool = False
                         ) -> list[BootstrapCredential]: ...

    def redeem_use(self, credential_id: str, *, at: dt.datetime) -> bool:
        """Count one use, atomically, if the credential is enabled, unexpired and has uses
        left; False otherwise. Two devices racing for the last use cannot both win."""
        ...

    def return_use(self, credential_id: str) -> None:
        """Give back a use redeemed for an enrollment that then failed to issue."""
        ...

    def disable_credential(self, credential_id: str, event: AuditEvent, *, at: dt.datetime
                           ) -> None:
        """Raise NotFound for an unknown id, Conflict if already disabled."""
        ...


class ManufacturerRegistry(Protocol):
    """CAs that sign factory identities (IDevIDs), and their optional device allow lists."""

    def add_manufacturer(self, manufacturer: ManufacturerCA, event: AuditEvent, *,
                         at: dt.datetime) -> None: ...

    def list_manufacturers(self) -> list[ManufacturerCA]: ...

    def allow_devices(self, manufacturer: str, device_ids: Sequence[str], event: AuditEvent, *,
                      at: dt.datetime) -> int:
        """Add ids to the allow list (existing ones are kept); returns how many were new."""
        ...

    def is_allowed(self, manufacturer: str, device_id: str) -> bool: ...


class PendingEnrollments(Protocol):
    """Enrollments held for an operator's decision."""

    def add_pending(self, pending: PendingEnrollment, event: AuditEvent, *, at: dt.datetime
                    ) -> None: ...

    def get_pending(self, pending_id: str) -> PendingEnrollment | None: ...

    def find_pending(self, profile: str, key_fingerprint: str) -> PendingEnrollment | None:
        """The newest held enrollment for this key in this profile, in any state."""
        ...

    def list_pending(self, state: ApprovalState | None = ApprovalState.pending
                     ) -> list[PendingEnrollment]: ...

    def decide(self, pending_id: str, state: ApprovalState, *, decided_by: str,
               at: dt.datetime, event: AuditEvent, serial: int | None = None,
               issuer: str | None = None, reason: str = "") -> None:
        """Move a pending enrollment to issued or rejected; Conflict if already decided."""
        ...


class EnrollmentChallenges(Protocol):
    """Static per-profile challenge passwords (hashes only)."""

    def set_challenge(self, challenge: EnrollmentChallenge, event: AuditEvent, *,
                      at: dt.datetime) -> None:
        """Create or replace the profile's challenge."""

    def get_challenge(self, profile: str) -> EnrollmentChallenge | None: ...

    def list_challenges(self) -> list[EnrollmentChallenge]:
        """By profile name."""
        ...

    def clear_challenge(self, profile: str, event: AuditEvent, *, at: dt.datetime) -> None:
        """NotFound if the profile has none."""


class EnrollmentTransactions(Protocol):
    """Protocol transactions (core/enrollment_records.py EnrollmentTransaction)."""

    def reserve_transaction(self, transaction: EnrollmentTransaction, *,
                            stale_before: dt.datetime) -> EnrollmentTransaction | None:
        """Record a new transaction, atomically. None if it was recorded; otherwise the
        transaction already recorded under that (protocol, transaction_id), which is left as
        it is, unless it was still being decided and was created before `stale_before` (its
        process died): then `transaction` replaces it and None is returned."""
        ...

    def get_transaction(self, protocol: str, transaction_id: str
                        ) -> EnrollmentTransaction | None: ...

    def settle_transaction(self, protocol: str, transaction_id: str, *,
                           pending_id: str | None = None, serial: int | None = None,
                           issuer: str | None = None) -> None:
        """Record the outcome: held (pending_id) or issued (serial and issuer)."""

    def release_transaction(self, protocol: str, transaction_id: str) -> None:
        """Forget a transaction that was refused, so that nothing of it stays stored."""

    def prune_transactions(self, before: dt.datetime) -> int:
        """Delete transactions created before `before`; returns how many."""
        ...


class RenewalAdvisories(Protocol):
    """Operators' decisions to pull renewals forward (core/renewal_window.py)."""

    def add_advisory(self, advisory: RenewalAdvisory, event: AuditEvent, *, at: dt.datetime
                     ) -> None:
        """Conflict if an advisory with that id exists."""

    def list_advisories(self, *, profile: str | None = None, include_withdrawn: bool = False
                        ) -> list[RenewalAdvisory]:
        """Oldest first."""
        ...

    def withdraw_advisory(self, advisory_id: str, event: AuditEvent, *, at: dt.datetime
                          ) -> RenewalAdvisory:
        """The advisory as withdrawn; NotFound for an unknown id, Conflict if it was
        withdrawn already."""
        ...


class ApiTokens(Protocol):
    """Admin API tokens (core/api_tokens.py); only hashes of their secrets are stored."""

    def add_token(self, token: ApiToken, event: AuditEvent, *, at: dt.datetime) -> None:
        """Conflict if the id is taken."""
        ...

    def get_token(self, token_id: str) -> ApiToken | None: ...

    def list_tokens(self, *, include_revoked: bool = False) -> list[ApiToken]:
        """Oldest first."""
        ...

    def revoke_token(self, token_id: str, event: AuditEvent, *, at: dt.datetime) -> ApiToken:
        """NotFound for an unknown id, Conflict if it was revoked already."""
        ...


class OperatorCertificates(Protocol):
    """TLS client certificates admitted to the admin API (core/api_tokens.py)."""

    def add_operator_certificate(self, record: OperatorCertificate, event: AuditEvent, *,
                                 at: dt.datetime) -> None:
        """Conflict if that certificate is registered already."""
        ...

    def get_operator_certificate(self, fingerprint: str) -> OperatorCertificate | None: ...

    def list_operator_certificates(self, *, include_revoked: bool = False
                                   ) -> list[OperatorCertificate]: ...

    def revoke_operator_certificate(self, fingerprint: str, event: AuditEvent, *,
                                    at: dt.datetime) -> OperatorCertificate:
        """NotFound for an unknown fingerprint, Conflict if revoked already."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class AuditQuery:
    """Newest first; `before_seq` pages back through the log."""

    actor: str | None = None
    action: str | None = None
    subject: str | None = None
    before_seq: int | None = None
    limit: int = 50


class InventoryReader(CertificateReader, CAReader, Protocol):
    """What the admin API and dashboard read: lists that stay fast at millions of rows
    (every one is an index range with a limit), and the fleet summary computed apart."""

    def list_devices(self, *, prefix: str | None = None, after: str | None = None,
                     limit: int = 50, now: dt.datetime) -> list[DeviceSummary]:
        """Devices in id order."""
        ...

    def get_device(self, device_id: str, *, now: dt.datetime) -> DeviceSummary | None: ...

    def audit_page(self, query: AuditQuery) -> list[AuditEntry]: ...

    def audit_head(self) -> tuple[int, str]: ...

    def audit_entries(self, *, since_seq: int = 1) -> Iterator[AuditEntry]: ...

    def latest_summary(self) -> StoredSummary | None: ...


class SummaryLedger(Protocol):
    """The fleet summary's pass over every certificate, and where its result is kept."""

    def certificate_facts(self, *, with_der: bool = False) -> Iterator[CertificateFact]:
        """Every certificate, grouped by device and profile, oldest issue first within a
        group; streamed."""
        ...

    def save_summary(self, summary: StoredSummary, *, keep: int = 48) -> None:
        """Store it and prune all but the newest `keep`."""
        ...

    def latest_summary(self) -> StoredSummary | None: ...


class CertificateNameIndex(Protocol):
    """The subject and SAN search index, filled off the issuance path by the background
    round; searches stay correct however far behind it is, only slower."""

    def index_certificate_names(self, *, limit: int = ...) -> int:
        """Index up to `limit` more certificates in one transaction; how many."""
        ...


class DiscoveredCertificates(Protocol):
    """Certificates found at TLS endpoints by discovery scans (core/discovery_records.py)."""

    def record_discovered(self, findings: Sequence[DiscoveredCertificate], event: AuditEvent,
                          *, at: dt.datetime) -> None:
        """Upsert by (host, port, fingerprint): new rows are first and last seen `at`, known
        ones get `at` as their last_seen and their new position; one transaction with the
        event."""
        ...

    def list_discovered(self, *, host: str | None = None,
                        expiring_before: dt.datetime | None = None, limit: int = 100,
                        offset: int = 0) -> list[DiscoveredCertificate]:
        """Soonest to expire first."""
        ...


class AcmeAccounts(Protocol):
    """ACME accounts and their external account binding keys (core/acme_records.py)."""

    def add_eab_key(self, key: EabKey, event: AuditEvent, *, at: dt.datetime) -> None:
        """Conflict if the key id exists."""

    def get_eab_key(self, key_id: str) -> EabKey | None: ...

    def list_eab_keys(self, *, include_disabled: bool = False) -> list[EabKey]:
        """By creation time, oldest first."""
        ...

    def disable_eab_key(self, key_id: str, event: AuditEvent, *, at: dt.datetime) -> EabKey:
        """NotFound if unknown; Conflict if already disabled."""
        ...

    def add_account(self, account: AcmeAccount, event: AuditEvent, *, at: dt.datetime
                    ) -> None:
        """Insert the account; with `account.eab_key_id`, bind that key to it in the same
        transaction, only if the key is still unbound and not disabled (Conflict otherwise,
        and nothing is written). Conflict too if an account has the same key thumbprint."""

    def get_account(self, account_id: str) -> AcmeAccount | None: ...

    def find_account(self, key_thumbprint: str) -> AcmeAccount | None: ...

    def update_account(self, account_id: str, event: AuditEvent, *, at: dt.datetime,
                       contact: tuple[str, ...] | None = None,
                       status: AccountStatus | None = None) -> AcmeAccount:
        """Change what is given; NotFound if unknown."""
        ...

    def change_account_key(self, account_id: str, key_thumbprint: str, key_jwk: str,
                           event: AuditEvent, *, at: dt.datetime) -> AcmeAccount:
        """RFC 8555 §7.3.5. Conflict if another account holds that key; NotFound if unknown."""
        ...


class AcmeOrders(Protocol):
    """ACME orders, authorizations, challenges and spent nonces. Orders are not audited on
    their own: the issuance, refusal or revocation they lead to is."""

    def add_order(self, order: AcmeOrder, authorizations: Sequence[AcmeAuthorization], *,
                  at: dt.datetime) -> None:
        """The order and its new authorizations (with their challenges), in one transaction.
        `order.authorization_ids` may also name existing authorizations (reused)."""

    def get_order(self, order_id: str) -> AcmeOrder | None: ...

    def list_orders(self, account_id: str, *, after: str | None = None, limit: int = 100
                    ) -> list[AcmeOrder]:
        """The account's orders by id, from after `after`."""
        ...

    def find_order_by_certificate(self, issuer: str, serial: int) -> AcmeOrder | None: ...

    def transition_order(self, order_id: str, from_status: OrderStatus,
                         to_status: OrderStatus, *, error: str | None = None,
                         serial: int | None = None, issuer: str | None = None) -> bool:
        """Compare and set: change the status (and set what is given) only if the order is
        still in `from_status`. True if it changed. Two finalize requests race here and only
        one wins."""
        ...

    def get_authorization(self, authorization_id: str) -> AcmeAuthorization | None: ...

    def get_authorizations(self, authorization_ids: Sequence[str]
                           ) -> list[AcmeAuthorization]:
        """Those that exist, in the order asked for."""
        ...

    def find_reusable_authorizations(self, account_id: str,
                                     identifiers: Sequence[Identifier], *, valid_after: dt.datetime
                                     ) -> dict[Identifier, AcmeAuthorization]:
        """For each identifier, the account's valid authorization of it that expires last,
        if it expires after `valid_after` (RFC 8555 §7.4 lets an order reuse them)."""
        ...

    def get_acme_challenge(self, challenge_id: str) -> AcmeChallenge | None:
        """Named apart from EnrollmentChallenges.get_challenge (SCEP): one store serves both."""
        ...

    def start_challenge(self, challenge_id: str) -> bool:
        """pending -> processing, only if still pending (one validation at a time)."""
        ...

    def settle_challenge(self, challenge_id: str, *, valid: bool, at: dt.datetime,
                         error: str | None = None) -> None:
        """processing -> valid or invalid, and the authorization with it, in one transaction
        (RFC 8555 §7.1.6: one valid challenge makes the authorization valid, a failed one
        makes it invalid). The authorization changes only if it is still pending."""

    def set_authorization_status(self, authorization_id: str, from_status: AuthorizationStatus,
                                 to_status: AuthorizationStatus) -> bool:
        """Compare and set, as transition_order."""
        ...

    def spend_nonce(self, nonce: str, *, expires: dt.datetime) -> bool:
        """Record a nonce as used; False if it was used before (RFC 8555 §6.5: each nonce is
        accepted once). `expires`: when it could no longer be accepted anyway."""
        ...

    def prune_acme(self, now: dt.datetime, *, keep_orders: dt.timedelta) -> int:
        """Delete spent nonces past their expiry, and orders (with authorizations no order
        uses any more) that expired more than `keep_orders` ago; returns how many rows."""
        ...
