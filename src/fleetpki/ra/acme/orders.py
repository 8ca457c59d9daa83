"""ACME orders (RFC 8555 §7.4): creation, reading, and finalization through the issuance
cycle (docs/issuance-cycle.md).

Finalization is where the RA decides. The CSR must name exactly the order's identifiers (its
subjectAltNames, and a CN only if it is one of them, RFC 8555 §7.4); the profile then builds
the certificate as for every other protocol. Of two finalize requests racing for one order,
the store's compare-and-set lets exactly one issue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import ipaddress
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationStatus,
    ChallengeStatus,
    Identifier,
    OrderStatus,
    OrderView,
)
from fleetpki.core.clock import Clock
from fleetpki.core.csr import load_csr
from fleetpki.core.errors import BadInput, FleetPKIError, NotFound, PolicyViolation
from fleetpki.core.profile import Profile
from fleetpki.core.records import IssuedCertificate
from fleetpki.ra.acme.accounts import actor
from fleetpki.ra.acme.identifiers import checked, of_general_name
from fleetpki.ra.acme.lifecycle import failure_reason, order_status
from fleetpki.ra.api import Authorization
from fleetpki.ra.rate_limits import RateLimit, RateLimiter
from fleetpki.ra.service import IssuanceService
from fleetpki.store.api import AcmeOrders, CertificateReader

log = logging.getLogger(__name__)

# RFC 8555 §8 and RFC 8738 §7: the challenges offered per identifier type. A wildcard name can
# only be proven in the DNS (RFC 8555 §7.1.3).
CHALLENGES = {"dns": ("http-01", "tls-alpn-01", "dns-01"), "ip": ("http-01", "tls-alpn-01")}
WILDCARD_CHALLENGES = ("dns-01",)


@dataclasses.dataclass(frozen=True, slots=True)
class OrderTiming:
    order_lifetime: dt.timedelta
    authorization_lifetime: dt.timedelta  # how long a validated name may be reused


class OrderStore(AcmeOrders, CertificateReader, Protocol):
    pass


class OrderService:
    def __init__(self, store: OrderStore, issuance: IssuanceService,
                 profiles: Mapping[str, Profile], clock: Clock, timing: OrderTiming, *,
                 per_identifier: RateLimit | None) -> None:
        self._store = store
        self._issuance = issuance
        self._profiles = profiles
        self._clock = clock
        self._timing = timing
        self._by_identifier = RateLimiter(per_identifier)

    def acme_profile(self, name: str) -> Profile:
        profile = self._profiles.get(name)
        if profile is None or not profile.enrollment.acme:
            raise NotFound(f"no ACME directory for profile '{name}'")
        return profile

    def new_order(self, account: AcmeAccount, profile_name: str,
                  identifiers: Sequence[Identifier], *, replaces: str | None = None
                  ) -> OrderView:
        profile = self.acme_profile(profile_name)
        if account.profile is not None and account.profile != profile.name:
            raise AcmeProblem("unauthorized", f"account {account.id} orders in profile "
                              f"'{account.profile}' (its EAB key's), not '{profile.name}'",
                              status=403)
        wanted = checked(profile, identifiers)
        for identifier in wanted:
            wait = self._by_identifier.take(identifier.value)
            if wait is not None:
                raise AcmeProblem("rateLimited", f"too many orders for {identifier}; retry in "
                                  f"{wait} s", status=429, retry_after=wait)
        now = self._clock.now().replace(microsecond=0)
        reusable = self._store.find_reusable_authorizations(account.id, wanted, valid_after=now)
        fresh = {identifier: self._new_authorization(account, identifier, now)
                 for identifier in wanted if identifier not in reusable}
        by_identifier = {**reusable, **fresh}
        authorizations = tuple(by_identifier[i] for i in wanted)
        expires = min([now + self._timing.order_lifetime,
                       *(a.expires for a in authorizations)])
        order = AcmeOrder(id=secrets.token_urlsafe(12), account_id=account.id,
                          profile=profile.name, status=OrderStatus.pending, identifiers=wanted,
                          authorization_ids=tuple(a.id for a in authorizations),
                          expires=expires, created_at=now, replaces=replaces)
        self._store.add_order(order, list(fresh.values()), at=now)
        return OrderView(order, order_status(order, authorizations, now), authorizations)

    def _new_authorization(self, account: AcmeAccount, identifier: Identifier,
                           now: dt.datetime) -> AcmeAuthorization:
        authorization_id = secrets.token_urlsafe(12)
        wildcard = identifier.value.startswith("*.")
        kinds = WILDCARD_CHALLENGES if wildcard else CHALLENGES[identifier.type]
        # RFC 8555 §7.1.4: the authorization of a wildcard names the base domain.
        named = Identifier("dns", identifier.value[2:]) if wildcard else identifier
        challenges = tuple(AcmeChallenge(
            id=secrets.token_urlsafe(12), authorization_id=authorization_id, type=kind,
            token=secrets.token_urlsafe(32), status=ChallengeStatus.pending) for kind in kinds)
        return AcmeAuthorization(
            id=authorization_id, account_id=account.id, identifier=named,
            status=AuthorizationStatus.pending, wildcard=wildcard,
            expires=now + min(self._timing.order_lifetime, self._timing.authorization_lifetime),
            created_at=now, challenges=challenges)

    def view(self, account: AcmeAccount, order_id: str) -> OrderView:
        order = self._store.get_order(order_id)
        if order is None or order.account_id != account.id:
            # Another account's order looks exactly like no order (RFC 8555 §10.5).
            raise AcmeProblem("malformed", f"no order {order_id[:40]} for this account",
                              status=404)
        authorizations = tuple(self._store.get_authorizations(order.authorization_ids))
        now = self._clock.now()
        status = order_status(order, authorizations, now)
        error = None
        if status is OrderStatus.invalid:
            error = order.error or json.dumps(AcmeProblem(
                "malformed", failure_reason(order, authorizations, now)).document())
        return OrderView(order, status, authorizations, error)

    def list_orders(self, account: AcmeAccount, after: str | None, limit: int
                    ) -> list[AcmeOrder]:
        return self._store.list_orders(account.id, after=after, limit=limit)

    def finalize(self, account: AcmeAccount, order_id: str, csr_der: bytes) -> OrderView:
        current = self.view(account, order_id)
        if current.status is not OrderStatus.ready:
            raise AcmeProblem("orderNotReady", f"order {order_id} is {current.status.value}; "
                              "it can be finalized once it is ready (every authorization "
                              "valid)", status=403)
        order = current.order
        who = Authorization(actor=actor(account.id), profiles=frozenset({order.profile}))
        try:
            check_csr_names(csr_der, order.identifiers)
        except AcmeProblem as refusal:
            self._issuance.refuse(who, order.profile, refusal)
            raise
        if not self._store.transition_order(order.id, order.status, OrderStatus.processing):
            raise AcmeProblem("orderNotReady", f"order {order_id} is being finalized by "
                              "another request", status=403)
        try:
            plan = self._issuance.prepare_csr(csr_der, order.profile, who)
            record = self._issuance.issue_plan(plan, who, details={"acme_order": order.id})
        except (BadInput, PolicyViolation) as refusal:
            self._store.transition_order(order.id, OrderStatus.processing, order.status)
            raise AcmeProblem("badCSR", str(refusal)) from None
        except FleetPKIError:
            self._store.transition_order(order.id, OrderStatus.processing, order.status)
            raise
        except Exception:
            # Unknown state of the signing: nothing was returned, so the order may be tried
            # again; a reserved serial is never reused (service.py).
            log.exception("ACME finalization failed", extra={"order": order.id})
            self._store.transition_order(order.id, OrderStatus.processing, order.status)
            raise
        self._store.transition_order(order.id, OrderStatus.processing, OrderStatus.valid,
                                     serial=record.serial, issuer=record.issuer)
        return self.view(account, order_id)

    def certificate(self, account: AcmeAccount, order_id: str) -> IssuedCertificate:
        view = self.view(account, order_id)
        order = view.order
        if view.status is not OrderStatus.valid or order.serial is None:
            raise AcmeProblem("malformed", f"order {order_id} has no certificate "
                              f"({view.status.value})", status=404)
        record = self._store.get_certificate(order.serial, order.issuer)
        if record is None:
            raise AcmeProblem("serverInternal", f"the certificate of order {order_id} is "
                              "missing from the store", status=500)
        return record


def check_csr_names(csr_der: bytes, identifiers: Sequence[Identifier]) -> None:
    """RFC 8555 §7.4: the CSR's subjectAltNames are exactly the order's identifiers, and a
    CN, if any, is one of them. badCSR saying what differs."""
    try:
        csr = load_csr(csr_der)
        try:
            sans = list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                        .value)
        except x509.ExtensionNotFound:
            sans = []
        common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (BadInput, ValueError, x509.DuplicateExtension,
            x509.UnsupportedGeneralNameType) as exc:
        raise AcmeProblem("badCSR", f"the CSR cannot be read: {exc}") from None
    named = [of_general_name(name) for name in sans]
    if any(n is None for n in named):
        raise AcmeProblem("badCSR", "the CSR asks for subjectAltNames of a type ACME cannot "
                          "order (only DNS names and IP addresses)")
    requested = {n for n in named if n is not None}
    ordered = set(identifiers)
    if requested != ordered:
        missing = ", ".join(str(i) for i in sorted(ordered - requested)) or "none"
        extra = ", ".join(str(i) for i in sorted(requested - ordered)) or "none"
        raise AcmeProblem("badCSR", "the CSR's subjectAltNames must be exactly the order's "
                          f"identifiers: missing {missing}; not in the order {extra}")
    for attribute in common_names:
        value = attribute.value if isinstance(attribute.value, str) else ""
        candidates = {Identifier("dns", value.lower().rstrip("."))}
        with contextlib.suppress(ValueError):
            candidates.add(Identifier("ip", str(ipaddress.ip_address(value))))
        if not candidates & ordered:
            raise AcmeProblem("badCSR", f"the CSR's common name {value[:80]!r} is not one of "
                              "the order's identifiers")
