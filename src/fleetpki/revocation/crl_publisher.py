"""The CRL pipeline (DESIGN.md §2): read revoked entries from the store as a stream, have the
CA sign, write the file atomically, record the series' new state.

Runs as `fleetpki crl publish` and on a timer inside `fleetpki serve`; both decide the same
way what is due, so running it often is cheap and running it twice is harmless:
- a full CRL is re-signed when it is missing, when half its validity has passed, when asked
  (--force), or at once after a revocation in a profile that asks for it;
- a delta CRL (RFC 5280 §5.2.4) is re-signed with every new full CRL, when half its validity
  has passed, and whenever an entry of its series changed since its own watermark.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from fleetpki.ca.crl_signing import CrlFields, sign_crl
from fleetpki.ca.keyfiles import write_atomically
from fleetpki.ca.signer import Signer, SignerSource
from fleetpki.core.clock import Clock
from fleetpki.core.profile import Profile
from fleetpki.core.records import CARole, IssuedCertificate, RevokedEntry
from fleetpki.core.revocation_policy import CrlScope
from fleetpki.revocation.crl_scopes import ScopePolicy, half_life_passed, scope_policies
from fleetpki.store.api import AuditEvent, CAReader, CrlLedger, CrlPublication, RevokedQuery

log = logging.getLogger(__name__)
FULL, DELTA = "full", "delta"


@dataclasses.dataclass(frozen=True, slots=True)
class CrlTiming:
    full_validity: dt.timedelta
    delta_validity: dt.timedelta


@dataclasses.dataclass(frozen=True, slots=True)
class PublishedCrl:
    scope: CrlScope
    kind: str
    number: int
    entries: int
    size: int
    path: Path
    next_update: dt.datetime


class CrlPublisher:
    def __init__(self, ledger: CrlLedger, cas: CAReader, signers: SignerSource,
                 profiles: Mapping[str, Profile], directory: Path, clock: Clock,
                 timing: CrlTiming, *, actor: str) -> None:
        self._ledger = ledger
        self._cas = cas
        self._signers = signers
        self._profiles = profiles
        self.directory = directory
        self._clock = clock
        self._timing = timing
        self._actor = actor

    def issuers(self) -> list[str]:
        """Issuing CAs whose key is online: the offline root's CRL is the ceremony's job."""
        return [ca.name for ca in self._cas.list_cas()
                if ca.role is CARole.issuing and ca.key_file is not None]

    def publish(self, *, force: bool = False, issuers: list[str] | None = None
                ) -> list[PublishedCrl]:
        """Sign what is due (everything with `force`); returns what was written."""
        written: list[PublishedCrl] = []
        for issuer in issuers if issuers is not None else self.issuers():
            signer = self._signers.signer(issuer)
            state = {(p.scope, p.kind): p for p in self._ledger.crl_publications(issuer)}
            for policy in scope_policies(issuer, self._profiles.values()):
                written += self._publish_scope(signer, policy, state, force=force)
        return written

    def publish_after_revocation(self, record: IssuedCertificate) -> list[PublishedCrl]:
        """Re-sign the series that list this certificate, now (profile publish_on_revoke)."""
        signer = self._signers.signer(record.issuer)
        state = {(p.scope, p.kind): p for p in self._ledger.crl_publications(record.issuer)}
        written: list[PublishedCrl] = []
        for policy in scope_policies(record.issuer, self._profiles.values()):
            scope = policy.scope
            if scope.profile is None or (scope.profile, scope.shard) == (record.profile,
                                                                          record.crl_shard):
                written += self._publish_scope(signer, policy, state, force=True)
        return written

    def _publish_scope(self, signer: Signer, policy: ScopePolicy,
                       state: Mapping[tuple[str, str], CrlPublication], *, force: bool
                       ) -> list[PublishedCrl]:
        now = self._clock.now().replace(microsecond=0)
        key = policy.scope.key
        full, delta = state.get((key, FULL)), state.get((key, DELTA))
        written = []
        if force or self._full_due(policy, full, now):
            published, full = self._sign(signer, policy, now, base=None)
            written.append(published)
        if policy.delta_url is not None and full is not None and (
                written or self._delta_due(policy, full, delta, now)):
            written.append(self._sign(signer, policy, now, base=full)[0])
        return written

    def _full_due(self, policy: ScopePolicy, full: CrlPublication | None,
                  now: dt.datetime) -> bool:
        if full is None or not (self.directory / policy.scope.file_name()).exists():
            return True
        if half_life_passed(full.this_update, full.next_update, now):
            return True
        return policy.publish_on_revoke and self._changed_since(policy, full.watermark, now)

    def _delta_due(self, policy: ScopePolicy, full: CrlPublication,
                   delta: CrlPublication | None, now: dt.datetime) -> bool:
        if (delta is None or delta.base_number != full.number
                or not (self.directory / policy.scope.file_name(delta=True)).exists()):
            return True
        if half_life_passed(delta.this_update, delta.next_update, now):
            return True
        return self._changed_since(policy, delta.watermark, now)

    def _changed_since(self, policy: ScopePolicy, watermark: int, now: dt.datetime) -> bool:
        if self._ledger.revocation_seq(policy.scope.issuer) <= watermark:
            return False  # nothing at all changed for this issuer: no query per shard
        query = self._query(policy, now, changed_after=watermark)
        return next(iter(self._ledger.revoked_entries(query)), None) is not None

    def _query(self, policy: ScopePolicy, now: dt.datetime, *, changed_after: int | None
               ) -> RevokedQuery:
        scope = policy.scope
        return RevokedQuery(issuer=scope.issuer, valid_at=now,
                            expired_cutoff=now - self._timing.full_validity,
                            profile=scope.profile, shard=scope.shard,
                            changed_after=changed_after, keep_expired=policy.keep_expired)

    def _sign(self, signer: Signer, policy: ScopePolicy, now: dt.datetime,
              base: CrlPublication | None) -> tuple[PublishedCrl, CrlPublication]:
        scope, kind = policy.scope, DELTA if base else FULL
        # Read the watermark before the entries: a revocation landing in between is listed
        # now and again in the next delta, never missed.
        watermark = self._ledger.revocation_seq(scope.issuer)
        validity = self._timing.delta_validity if base else self._timing.full_validity
        fields = CrlFields(
            number=self._ledger.next_crl_number(scope.issuer),
            this_update=now, next_update=now + validity,
            distribution_point=policy.distribution_point,
            only_user_certs=policy.only_user_certs,
            delta_of=base.number if base else None,
            freshest=policy.delta_url if base is None else None,
            expired_certs_since=(signer.certificate.not_valid_before_utc
                                 if policy.expired_certs_on_crl else None))
        counter = _Counter(self._ledger.revoked_entries(
            self._query(policy, now, changed_after=base.watermark if base else None)))
        der = sign_crl(signer, fields, counter)
        path = self.directory / scope.file_name(delta=base is not None)
        write_atomically(path, der, mode=0o644)
        publication = CrlPublication(
            issuer=scope.issuer, scope=scope.key, kind=kind, number=fields.number,
            this_update=now, next_update=fields.next_update, watermark=watermark,
            entries=counter.count, size=len(der),
            base_number=base.number if base else None,
            base_watermark=base.watermark if base else None)
        self._ledger.record_crl(publication, AuditEvent(
            actor=self._actor, action=f"crl.{kind}_signed", subject=scope.issuer,
            details={"scope": scope.key or "complete", "number": str(fields.number),
                     "entries": str(counter.count)}), at=now)
        log.info("CRL signed", extra={"issuer": scope.issuer, "scope": scope.key or "complete",
                                      "kind": kind, "number": fields.number,
                                      "entries": counter.count, "bytes": len(der)})
        return (PublishedCrl(scope, kind, fields.number, counter.count, len(der), path,
                             fields.next_update), publication)


class _Counter:
    """Passes a stream through and counts it, so a CRL of a million entries is never a list."""

    def __init__(self, entries: Iterable[RevokedEntry]) -> None:
        self._entries = entries
        self.count = 0

    def __iter__(self) -> Iterator[RevokedEntry]:
        for entry in self._entries:
            self.count += 1
            yield entry
