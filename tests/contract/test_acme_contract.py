"""The ACME tables (RFC 8555) behave the same on SQLite and PostgreSQL: every record field
round-trips, a key or an EAB key names one account, compare-and-set changes have exactly
one winner under races, a nonce is spent once, and pruning deletes only what is dead."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import fleetpki.store.migrations as migrations
from fleetpki.core.acme_records import (
    AccountStatus,
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationStatus,
    ChallengeStatus,
    EabKey,
    Identifier,
    OrderStatus,
)
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.store.api import AcmeAccounts, AcmeOrders, AuditEvent, AuditQuery
from fleetpki.store.sql import schema
from fleetpki.store.sql.store import SqlStore

NOW = dt.datetime(2031, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
CEST = dt.timezone(dt.timedelta(hours=2))
DAY = dt.timedelta(days=1)
SERIAL = (1 << 126) | 0xABCDEF  # a full-size serial: 127 bits, as RandomSerials draws them
DNS = Identifier("dns", "gw-1.example.net")
IP = Identifier("ip", "2001:db8::1")
ACME_TABLES = ("acme_eab_keys", "acme_accounts", "acme_orders", "acme_authorizations",
               "acme_order_authorizations", "acme_challenges", "acme_nonces")


def event(action: str = "acme.test", subject: str = "acme") -> AuditEvent:
    return AuditEvent(actor="op", action=action, subject=subject)


def eab_key(key_id: str = "kid-1", *, profile: str | None = "gateway",
            at: dt.datetime = NOW) -> EabKey:
    return EabKey(key_id=key_id, profile=profile, created_at=at, created_by="op",
                  expires_at=at + 30 * DAY)


def account(account_id: str = "acct-1", *, thumbprint: str | None = None,
            eab_key_id: str | None = None, profile: str | None = None) -> AcmeAccount:
    return AcmeAccount(id=account_id, key_thumbprint=thumbprint or f"tp-{account_id}",
                       key_jwk='{"kty":"EC","crv":"P-256","x":"x","y":"y"}',
                       status=AccountStatus.valid,
                       contact=("mailto:ops@example.net", "mailto:oncall@example.net"),
                       created_at=NOW, eab_key_id=eab_key_id, profile=profile)


def challenge(challenge_id: str, authorization_id: str, kind: str = "http-01"
              ) -> AcmeChallenge:
    return AcmeChallenge(id=challenge_id, authorization_id=authorization_id, type=kind,
                         token=f"token-{challenge_id}", status=ChallengeStatus.pending)


def authorization(authz_id: str = "az-1", *, account_id: str = "acct-1",
                  identifier: Identifier = DNS,
                  status: AuthorizationStatus = AuthorizationStatus.pending,
                  expires: dt.datetime = NOW + 7 * DAY, wildcard: bool = False
                  ) -> AcmeAuthorization:
    return AcmeAuthorization(
        id=authz_id, account_id=account_id, identifier=identifier, status=status,
        expires=expires, created_at=NOW, wildcard=wildcard,
        challenges=(challenge(f"{authz_id}-tls", authz_id, "tls-alpn-01"),
                    challenge(f"{authz_id}-http", authz_id)))


def order(order_id: str = "ord-1", *, account_id: str = "acct-1",
          authorization_ids: tuple[str, ...] = ("az-1",), expires: dt.datetime = NOW + DAY,
          identifiers: tuple[Identifier, ...] = (DNS,)) -> AcmeOrder:
    return AcmeOrder(id=order_id, account_id=account_id, profile="gateway",
                     status=OrderStatus.pending, identifiers=identifiers,
                     authorization_ids=authorization_ids, expires=expires, created_at=NOW)


def with_order(store: SqlStore, *authorizations: AcmeAuthorization, order_id: str = "ord-1",
               expires: dt.datetime = NOW + DAY) -> AcmeOrder:
    """An order of acct-1 with these new authorizations."""
    placed = order(order_id, authorization_ids=tuple(a.id for a in authorizations),
                   identifiers=tuple(sorted(a.identifier for a in authorizations)),
                   expires=expires)
    store.add_order(placed, authorizations, at=NOW)
    return placed


@pytest.fixture
def acme(store: SqlStore) -> SqlStore:
    """The store with one account, acct-1."""
    store.add_account(account(), event(), at=NOW)
    return store


def race(workers: int, attempt: Callable[[int], bool]) -> list[bool]:
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(workers)

    def run(n: int) -> None:
        start.wait(timeout=30)
        outcome = attempt(n)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_the_sql_store_has_every_method_of_both_acme_protocols(store: SqlStore) -> None:
    wanted = {name for protocol in (AcmeAccounts, AcmeOrders) for name in vars(protocol)
              if not name.startswith("_")}
    assert {name for name in wanted if not callable(getattr(store, name, None))} == set()
    # The store also serves EnrollmentChallenges, whose get_challenge(profile) is SCEP's.
    assert store.get_challenge("no-such-profile") is None
    assert store.get_acme_challenge("no-such-challenge") is None


# -- EAB keys ---------------------------------------------------------------------------------

def test_eab_keys_round_trip_with_aware_utc_times_and_list_oldest_first(store: SqlStore) -> None:
    later = eab_key("kid-b", profile=None, at=(NOW + DAY).astimezone(CEST))
    store.add_eab_key(later, event(), at=NOW)
    store.add_eab_key(eab_key("kid-a"), event(), at=NOW)
    stored = store.get_eab_key("kid-b")
    assert stored == later and stored.profile is None and stored.account_id is None
    assert stored.created_at.tzinfo == dt.UTC and stored.disabled_at is None
    assert stored.created_at.microsecond == 123456
    assert [k.key_id for k in store.list_eab_keys()] == ["kid-a", "kid-b"]
    assert store.get_eab_key("kid-c") is None


def test_a_second_eab_key_with_one_id_conflicts_and_is_not_audited(store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event("eab.added"), at=NOW)
    before = store.audit_head()[0]
    with pytest.raises(Conflict, match="'kid-1' exists already"):
        store.add_eab_key(eab_key(profile="other"), event("eab.added"), at=NOW)
    assert store.get_eab_key("kid-1") == eab_key()
    assert store.audit_head()[0] == before == 1


def test_disabling_an_eab_key_once_is_audited_and_hides_it(store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event(), at=NOW)
    disabled = store.disable_eab_key("kid-1", event("eab.disabled", "kid-1"), at=NOW + DAY)
    assert disabled == dataclasses.replace(eab_key(), disabled_at=NOW + DAY)
    assert store.get_eab_key("kid-1") == disabled
    assert store.list_eab_keys() == []
    assert store.list_eab_keys(include_disabled=True) == [disabled]
    before = store.audit_head()[0]
    with pytest.raises(Conflict, match="disabled already"):
        store.disable_eab_key("kid-1", event(), at=NOW + 2 * DAY)
    with pytest.raises(NotFound, match="'kid-9'"):
        store.disable_eab_key("kid-9", event(), at=NOW)
    assert store.get_eab_key("kid-1") == disabled  # the first time holds
    assert store.audit_head()[0] == before
    assert [e.action for e in store.audit_page(AuditQuery(subject="kid-1"))] == ["eab.disabled"]


# -- accounts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("contact", [(), ("mailto:a@example.net",)])
def test_accounts_round_trip_every_field(store: SqlStore, contact: tuple[str, ...]) -> None:
    plain = dataclasses.replace(account(), contact=contact)
    store.add_account(plain, event(), at=NOW)
    assert store.get_account("acct-1") == plain
    assert store.find_account("tp-acct-1") == plain
    stored = store.get_account("acct-1")
    assert stored is not None and stored.eab_key_id is None and stored.profile is None
    assert stored.created_at.tzinfo == dt.UTC
    assert store.get_account("acct-2") is None and store.find_account("tp-acct-2") is None


def test_an_account_created_with_an_eab_key_binds_it(store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event(), at=NOW)
    bound = account(eab_key_id="kid-1", profile="gateway")
    store.add_account(bound, event("acme.account.created"), at=NOW)
    assert store.get_account("acct-1") == bound
    assert store.get_eab_key("kid-1") == dataclasses.replace(eab_key(), account_id="acct-1")
    assert store.audit_head()[0] == 2


def test_a_second_account_with_a_bound_eab_key_conflicts_and_is_not_stored(
        store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event(), at=NOW)
    store.add_account(account(eab_key_id="kid-1"), event(), at=NOW)
    before = store.audit_head()[0]
    with pytest.raises(Conflict, match="already bound"):
        store.add_account(account("acct-2", eab_key_id="kid-1"), event(), at=NOW)
    assert store.get_account("acct-2") is None and store.find_account("tp-acct-2") is None
    assert store.get_eab_key("kid-1").account_id == "acct-1"  # type: ignore[union-attr]
    assert store.audit_head()[0] == before


def test_a_disabled_eab_key_binds_no_account(store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event(), at=NOW)
    store.disable_eab_key("kid-1", event(), at=NOW)
    with pytest.raises(Conflict, match="was disabled"):
        store.add_account(account(eab_key_id="kid-1"), event(), at=NOW)
    assert store.get_account("acct-1") is None
    assert store.get_eab_key("kid-1").account_id is None  # type: ignore[union-attr]


def test_an_unknown_eab_key_binds_no_account(store: SqlStore) -> None:
    with pytest.raises(NotFound, match="'kid-9'"):
        store.add_account(account(eab_key_id="kid-9"), event(), at=NOW)
    assert store.get_account("acct-1") is None


def test_a_second_account_with_one_key_conflicts_and_leaves_its_eab_key_unbound(
        store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event(), at=NOW)
    store.add_account(account(), event(), at=NOW)
    before = store.audit_head()[0]
    with pytest.raises(Conflict, match="tp-acct-1 exists already"):
        store.add_account(account("acct-2", thumbprint="tp-acct-1", eab_key_id="kid-1"),
                          event(), at=NOW)
    assert store.get_account("acct-2") is None
    assert store.get_eab_key("kid-1").account_id is None  # type: ignore[union-attr]
    assert store.audit_head()[0] == before


def test_accounts_racing_for_one_eab_key_have_one_winner(store: SqlStore) -> None:
    store.add_eab_key(eab_key(), event(), at=NOW)

    def create(n: int) -> bool:
        try:
            store.add_account(account(f"acct-{n}", eab_key_id="kid-1"), event(), at=NOW)
        except Conflict:
            return False
        return True

    assert sorted(race(6, create)) == [False] * 5 + [True]
    winner = store.get_eab_key("kid-1").account_id  # type: ignore[union-attr]
    assert [n for n in range(6) if store.get_account(f"acct-{n}")] == [int(winner[-1])]


def test_update_account_changes_what_is_given_and_is_audited(acme: SqlStore) -> None:
    before = acme.audit_head()[0]
    changed = acme.update_account("acct-1", event(), at=NOW, contact=("mailto:new@x.net",))
    assert changed == dataclasses.replace(account(), contact=("mailto:new@x.net",))
    gone = acme.update_account("acct-1", event(), at=NOW, status=AccountStatus.deactivated)
    assert gone == dataclasses.replace(changed, status=AccountStatus.deactivated)
    assert acme.update_account("acct-1", event(), at=NOW) == gone
    assert acme.get_account("acct-1") == gone
    assert acme.audit_head()[0] == before + 3
    with pytest.raises(NotFound, match="'acct-9'"):
        acme.update_account("acct-9", event(), at=NOW, status=AccountStatus.revoked)
    assert acme.audit_head()[0] == before + 3


def test_change_account_key_moves_the_account_to_the_new_key(acme: SqlStore) -> None:
    rolled = acme.change_account_key("acct-1", "tp-new", '{"kty":"OKP"}', event(), at=NOW)
    assert rolled == dataclasses.replace(account(), key_thumbprint="tp-new",
                                         key_jwk='{"kty":"OKP"}')
    assert acme.find_account("tp-new") == rolled and acme.find_account("tp-acct-1") is None
    assert acme.change_account_key("acct-1", "tp-new", '{"kty":"OKP"}', event(),
                                   at=NOW) == rolled  # its own key again: no conflict


def test_change_account_key_to_another_accounts_key_conflicts(acme: SqlStore) -> None:
    acme.add_account(account("acct-2"), event(), at=NOW)
    before = acme.audit_head()[0]
    with pytest.raises(Conflict, match="another account holds the key tp-acct-2"):
        acme.change_account_key("acct-1", "tp-acct-2", "{}", event(), at=NOW)
    with pytest.raises(NotFound, match="'acct-9'"):
        acme.change_account_key("acct-9", "tp-free", "{}", event(), at=NOW)
    assert acme.get_account("acct-1") == account()
    assert acme.audit_head()[0] == before


# -- orders -----------------------------------------------------------------------------------

def test_orders_round_trip_every_field(acme: SqlStore) -> None:
    authorizations = (authorization("az-1"), authorization("az-2", identifier=IP))
    placed = with_order(acme, *authorizations)
    assert placed.identifiers == (DNS, IP) and placed.authorization_ids == ("az-1", "az-2")
    stored = acme.get_order("ord-1")
    assert stored == placed
    assert stored.error is None and stored.serial is None and stored.replaces is None
    assert stored.expires.tzinfo == dt.UTC
    full = dataclasses.replace(
        order("ord-2", authorization_ids=("az-2", "az-1"), identifiers=(IP, DNS)),
        status=OrderStatus.valid, error='{"type":"urn:ietf:params:acme:error:x"}',
        serial=SERIAL, issuer="issuing", replaces="aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE",
        expires=(NOW + DAY).astimezone(CEST))
    acme.add_order(full, [], at=NOW)  # reuses both
    assert acme.get_order("ord-2") == full
    assert acme.get_authorizations(["az-2", "nope", "az-1"]) == [authorizations[1],
                                                                 authorizations[0]]
    assert acme.get_authorization("az-1") == authorizations[0]
    assert acme.get_authorization("nope") is None and acme.get_order("nope") is None
    assert acme.get_authorizations([]) == []


def test_a_duplicate_order_conflicts_and_writes_nothing(acme: SqlStore) -> None:
    with_order(acme, authorization("az-1"))
    with pytest.raises(Conflict, match="'ord-1'"):
        acme.add_order(order(authorization_ids=("az-2",)), [authorization("az-2")], at=NOW)
    assert acme.get_authorization("az-2") is None
    assert acme.get_acme_challenge("az-2-http") is None
    assert acme.get_order("ord-1").authorization_ids == ("az-1",)  # type: ignore[union-attr]


def test_an_order_reuses_only_existing_authorizations_of_its_account(acme: SqlStore) -> None:
    acme.add_account(account("acct-2"), event(), at=NOW)
    acme.add_order(order("theirs", account_id="acct-2", authorization_ids=("az-2",)),
                   [authorization("az-2", account_id="acct-2")], at=NOW)
    for reused in ("az-2", "az-9"):
        with pytest.raises(NotFound, match=f"no authorization '{reused}'"):
            acme.add_order(order(authorization_ids=(reused,)), [], at=NOW)
    with pytest.raises(NotFound, match="'acct-9'"):
        acme.add_order(order(account_id="acct-9"), [authorization(account_id="acct-9")],
                       at=NOW)
    assert acme.get_order("ord-1") is None and acme.get_authorization("az-1") is None


def test_list_orders_pages_an_accounts_orders_by_id(acme: SqlStore) -> None:
    acme.add_account(account("acct-2"), event(), at=NOW)
    with_order(acme, authorization("az-0"), order_id="ord-0")
    for n in range(1, 5):
        acme.add_order(order(f"ord-{n}", authorization_ids=("az-0",)), [], at=NOW)
    acme.add_order(order("ord-x", account_id="acct-2", authorization_ids=("az-x",)),
                   [authorization("az-x", account_id="acct-2")], at=NOW)
    first = acme.list_orders("acct-1", limit=2)
    assert [o.id for o in first] == ["ord-0", "ord-1"]
    assert first[0] == acme.get_order("ord-0")
    assert [o.id for o in acme.list_orders("acct-1", after="ord-1", limit=2)] == ["ord-2",
                                                                                  "ord-3"]
    assert [o.id for o in acme.list_orders("acct-1", after="ord-3")] == ["ord-4"]
    assert acme.list_orders("acct-1", after="ord-4") == []
    assert [o.id for o in acme.list_orders("acct-2")] == ["ord-x"]
    assert acme.list_orders("acct-9") == []


def test_find_order_by_certificate_names_issuer_and_serial(acme: SqlStore) -> None:
    with_order(acme, authorization())
    acme.add_order(order("ord-2", authorization_ids=("az-1",)), [], at=NOW)
    assert acme.find_order_by_certificate("issuing", SERIAL) is None
    assert acme.transition_order("ord-2", OrderStatus.pending, OrderStatus.valid,
                                 serial=SERIAL, issuer="issuing")
    found = acme.find_order_by_certificate("issuing", SERIAL)
    assert found is not None and found.id == "ord-2" and found.serial == SERIAL
    assert acme.find_order_by_certificate("other", SERIAL) is None
    assert acme.find_order_by_certificate("issuing", SERIAL + 1) is None


def test_transition_order_is_compare_and_set(acme: SqlStore) -> None:
    placed = with_order(acme, authorization())
    assert acme.transition_order("ord-1", OrderStatus.pending, OrderStatus.ready)
    assert not acme.transition_order("ord-1", OrderStatus.pending, OrderStatus.ready)
    assert acme.transition_order("ord-1", OrderStatus.ready, OrderStatus.processing)
    assert not acme.transition_order("ord-1", OrderStatus.ready, OrderStatus.processing,
                                     serial=1, issuer="x", error="e")
    assert acme.get_order("ord-1") == dataclasses.replace(placed,
                                                          status=OrderStatus.processing)
    assert acme.transition_order("ord-1", OrderStatus.processing, OrderStatus.invalid,
                                 error='{"detail":"signing failed"}')
    assert acme.get_order("ord-1") == dataclasses.replace(
        placed, status=OrderStatus.invalid, error='{"detail":"signing failed"}')
    assert not acme.transition_order("ord-9", OrderStatus.pending, OrderStatus.ready)


def test_racing_finalizations_have_one_winner(acme: SqlStore) -> None:
    with_order(acme, authorization())
    acme.transition_order("ord-1", OrderStatus.pending, OrderStatus.ready)
    wins = race(8, lambda n: acme.transition_order("ord-1", OrderStatus.ready,
                                                   OrderStatus.processing))
    assert sorted(wins) == [False] * 7 + [True]


def test_orders_are_not_audited(acme: SqlStore) -> None:
    before = acme.audit_head()[0]
    with_order(acme, authorization())
    acme.transition_order("ord-1", OrderStatus.pending, OrderStatus.ready)
    acme.start_challenge("az-1-http")
    acme.settle_challenge("az-1-http", valid=True, at=NOW)
    acme.spend_nonce("n", expires=NOW)
    acme.prune_acme(NOW + 9 * DAY, keep_orders=DAY)
    assert acme.audit_head()[0] == before


# -- authorizations and challenges ------------------------------------------------------------

def test_challenges_start_once(acme: SqlStore) -> None:
    with_order(acme, authorization())
    assert acme.start_challenge("az-1-http")
    assert not acme.start_challenge("az-1-http")
    assert not acme.start_challenge("nope")
    started = acme.get_acme_challenge("az-1-http")
    assert started == dataclasses.replace(challenge("az-1-http", "az-1"),
                                          status=ChallengeStatus.processing)
    assert acme.get_acme_challenge("az-1-tls").status is ChallengeStatus.pending  # type: ignore[union-attr]


def test_racing_validations_start_once(acme: SqlStore) -> None:
    with_order(acme, authorization())
    assert sorted(race(8, lambda n: acme.start_challenge("az-1-http"))) == [False] * 7 + [True]


def test_a_valid_challenge_makes_its_pending_authorization_valid(acme: SqlStore) -> None:
    with_order(acme, authorization())
    acme.start_challenge("az-1-http")
    at = (NOW + dt.timedelta(seconds=5)).astimezone(CEST)
    acme.settle_challenge("az-1-http", valid=True, at=at)
    settled = acme.get_acme_challenge("az-1-http")
    assert settled == dataclasses.replace(challenge("az-1-http", "az-1"),
                                          status=ChallengeStatus.valid, validated_at=at)
    assert settled.validated_at.tzinfo == dt.UTC  # type: ignore[union-attr]
    authz = acme.get_authorization("az-1")
    assert authz is not None and authz.status is AuthorizationStatus.valid
    assert authz.challenges[1] == settled
    assert authz.challenges[0].status is ChallengeStatus.pending


def test_a_failed_challenge_makes_its_pending_authorization_invalid(acme: SqlStore) -> None:
    with_order(acme, authorization())
    acme.start_challenge("az-1-tls")
    problem = '{"type":"urn:ietf:params:acme:error:connection"}'
    acme.settle_challenge("az-1-tls", valid=False, at=NOW, error=problem)
    assert acme.get_acme_challenge("az-1-tls") == dataclasses.replace(
        challenge("az-1-tls", "az-1", "tls-alpn-01"), status=ChallengeStatus.invalid,
        error=problem)
    assert acme.get_authorization("az-1").status is AuthorizationStatus.invalid  # type: ignore[union-attr]


def test_a_settled_challenge_leaves_an_authorization_that_left_pending(acme: SqlStore) -> None:
    with_order(acme, authorization())
    acme.start_challenge("az-1-http")
    assert acme.set_authorization_status("az-1", AuthorizationStatus.pending,
                                         AuthorizationStatus.deactivated)
    acme.settle_challenge("az-1-http", valid=True, at=NOW)
    assert acme.get_acme_challenge("az-1-http").status is ChallengeStatus.valid  # type: ignore[union-attr]
    assert acme.get_authorization("az-1").status is AuthorizationStatus.deactivated  # type: ignore[union-attr]


def test_only_a_processing_challenge_is_settled(acme: SqlStore) -> None:
    with_order(acme, authorization())
    with pytest.raises(Conflict, match="is pending, not processing"):
        acme.settle_challenge("az-1-http", valid=True, at=NOW)
    acme.start_challenge("az-1-http")
    acme.settle_challenge("az-1-http", valid=False, at=NOW, error="{}")
    with pytest.raises(Conflict, match="is invalid, not processing"):
        acme.settle_challenge("az-1-http", valid=True, at=NOW)
    with pytest.raises(NotFound, match="'nope'"):
        acme.settle_challenge("nope", valid=True, at=NOW)
    authz = acme.get_authorization("az-1")
    assert authz is not None and authz.status is AuthorizationStatus.invalid
    assert authz.challenges[1].validated_at is None


def test_set_authorization_status_is_compare_and_set(acme: SqlStore) -> None:
    with_order(acme, authorization())
    assert acme.set_authorization_status("az-1", AuthorizationStatus.pending,
                                         AuthorizationStatus.valid)
    assert not acme.set_authorization_status("az-1", AuthorizationStatus.pending,
                                             AuthorizationStatus.invalid)
    assert not acme.set_authorization_status("nope", AuthorizationStatus.pending,
                                             AuthorizationStatus.valid)
    assert acme.get_authorization("az-1").status is AuthorizationStatus.valid  # type: ignore[union-attr]
    deactivations = race(6, lambda n: acme.set_authorization_status(
        "az-1", AuthorizationStatus.valid, AuthorizationStatus.deactivated))
    assert sorted(deactivations) == [False] * 5 + [True]


def test_reusable_authorization_is_the_valid_one_expiring_last(acme: SqlStore) -> None:
    acme.add_account(account("acct-2"), event(), at=NOW)
    valid = AuthorizationStatus.valid
    mine = [authorization("soon", status=valid, expires=NOW + DAY),
            authorization("last", status=valid, expires=NOW + 5 * DAY),
            authorization("mid", status=valid, expires=NOW + 3 * DAY),
            authorization("pending", expires=NOW + 9 * DAY),
            authorization("revoked", status=AuthorizationStatus.revoked, expires=NOW + 9 * DAY),
            authorization("ip-old", identifier=IP, status=valid, expires=NOW + DAY)]
    acme.add_order(order(authorization_ids=tuple(a.id for a in mine)), mine, at=NOW)
    acme.add_order(order("theirs", account_id="acct-2", authorization_ids=("other",)),
                   [authorization("other", account_id="acct-2", status=valid,
                                  expires=NOW + 9 * DAY)], at=NOW)
    found = acme.find_reusable_authorizations("acct-1", [DNS, IP], valid_after=NOW)
    assert found == {DNS: acme.get_authorization("last"), IP: acme.get_authorization("ip-old")}
    later = acme.find_reusable_authorizations("acct-1", [DNS, IP], valid_after=NOW + DAY)
    assert set(later) == {DNS}  # ip-old expires exactly then: not after it
    assert acme.find_reusable_authorizations("acct-1", [DNS], valid_after=NOW + 5 * DAY) == {}
    assert acme.find_reusable_authorizations("acct-9", [DNS], valid_after=NOW) == {}
    other = acme.find_reusable_authorizations("acct-2", [DNS], valid_after=NOW)
    assert [a.id for a in other.values()] == ["other"]


def test_wildcard_and_plain_names_never_reuse_each_others_authorizations(
        acme: SqlStore) -> None:
    valid = AuthorizationStatus.valid
    wildcard = Identifier("dns", "*.example.net")
    base = Identifier("dns", "example.net")
    # RFC 8555 §7.1.4: the authorization of "*.example.net" names "example.net".
    authorizations = [authorization("wild", identifier=base, wildcard=True, status=valid),
                      authorization("plain", identifier=base, status=valid)]
    acme.add_order(order(identifiers=(wildcard, base), authorization_ids=("wild", "plain")),
                   authorizations, at=NOW)
    found = acme.find_reusable_authorizations("acct-1", [wildcard, base], valid_after=NOW)
    assert {i: a.id for i, a in found.items()} == {wildcard: "wild", base: "plain"}
    assert found[wildcard].wildcard and not found[base].wildcard


# -- nonces and pruning -----------------------------------------------------------------------

def test_a_nonce_is_spent_once(store: SqlStore) -> None:
    assert store.spend_nonce("n-1", expires=NOW)
    assert not store.spend_nonce("n-1", expires=NOW + DAY)
    assert store.spend_nonce("n-2", expires=NOW)


def test_a_nonce_replayed_at_once_is_accepted_once(store: SqlStore) -> None:
    assert sorted(race(8, lambda n: store.spend_nonce("n-1", expires=NOW))) == [False] * 7 + [True]


def test_prune_deletes_expired_nonces_and_dead_orders_and_leaves_live_rows(
        acme: SqlStore) -> None:
    acme.spend_nonce("old", expires=NOW - dt.timedelta(seconds=1))
    acme.spend_nonce("live", expires=NOW)
    # ord-old expired 3 days ago; az-shared is reused by ord-live, az-own is not.
    with_order(acme, authorization("az-own"), authorization("az-shared", identifier=IP),
               order_id="ord-old", expires=NOW - 3 * DAY)
    acme.add_order(order("ord-live", authorization_ids=("az-shared",), identifiers=(IP,)),
                   [], at=NOW)
    # ord-recent expired yesterday: within the two days kept.
    with_order(acme, authorization("az-recent"), order_id="ord-recent", expires=NOW - DAY)
    # nonce + order + authorization + its two challenges
    assert acme.prune_acme(NOW, keep_orders=2 * DAY) == 5
    assert acme.get_order("ord-old") is None and acme.get_authorization("az-own") is None
    assert acme.get_acme_challenge("az-own-http") is None
    assert acme.get_order("ord-live") is not None and acme.get_order("ord-recent") is not None
    assert acme.get_authorizations(["az-shared", "az-recent"]) == [
        authorization("az-shared", identifier=IP), authorization("az-recent")]
    assert not acme.spend_nonce("live", expires=NOW)  # still known: still refused
    assert acme.spend_nonce("old", expires=NOW)  # forgotten: it could not be accepted anyway
    assert acme.prune_acme(NOW, keep_orders=2 * DAY) == 0


def test_prune_keeps_an_authorization_that_an_order_being_placed_reuses(
        acme: SqlStore) -> None:
    with_order(acme, authorization("az-old"), order_id="ord-old", expires=NOW - 3 * DAY)
    pruned: list[int] = []
    engine = sa.create_engine(acme.url)
    try:
        with engine.connect() as c, c.begin():
            # What add_order does when it reuses az-old, stopped before its commit.
            authz = schema.acme_authorizations
            c.execute(sa.select(authz.c.id).where(authz.c.id == "az-old")
                      .with_for_update(read=True, key_share=True)).all()
            c.execute(schema.acme_orders.insert().values(
                id="ord-new", account_id="acct-1", profile="gateway", status="pending",
                identifiers="[]", expires=NOW + DAY, created_at=NOW))
            c.execute(schema.acme_order_authorizations.insert().values(
                order_id="ord-new", position=0, authorization_id="az-old"))
            pruning = threading.Thread(
                target=lambda: pruned.append(acme.prune_acme(NOW, keep_orders=DAY)))
            pruning.start()
            pruning.join(timeout=1)
            assert pruning.is_alive()  # waiting for the order's transaction
        pruning.join(timeout=60)
    finally:
        engine.dispose()
    assert pruned == [1]  # ord-old alone
    assert acme.get_order("ord-old") is None
    assert acme.get_order("ord-new").authorization_ids == ("az-old",)  # type: ignore[union-attr]
    assert acme.get_authorization("az-old") == authorization("az-old")


def test_prune_works_through_a_backlog_in_chunks(acme: SqlStore) -> None:
    authorizations = [authorization(f"az-{n:04}") for n in range(600)]
    for n, authz in enumerate(authorizations):
        acme.add_order(order(f"ord-{n:04}", authorization_ids=(authz.id,),
                             expires=NOW - 2 * DAY), [authz], at=NOW)
    assert acme.prune_acme(NOW, keep_orders=DAY) == 600 * 4
    assert acme.list_orders("acct-1") == []


# -- the schema -------------------------------------------------------------------------------

def _shape(inspector: sa.Inspector, table: str) -> dict[str, object]:
    return {
        "columns": {(c["name"], c["nullable"]) for c in inspector.get_columns(table)},
        "key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
        "indexes": {(i["name"], tuple(i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(table)},
        "foreign_keys": {(tuple(f["constrained_columns"]), f["referred_table"],
                          tuple(f["referred_columns"]))
                         for f in inspector.get_foreign_keys(table)},
    }


def _declared(table: sa.Table) -> dict[str, object]:
    return {
        "columns": {(c.name, bool(c.nullable)) for c in table.columns},
        "key": tuple(c.name for c in table.primary_key.columns),
        "indexes": {(i.name, tuple(c.name for c in i.columns), bool(i.unique))
                    for i in table.indexes},
        "foreign_keys": {((f.parent.name,), f.column.table.name, (f.column.name,))
                         for f in table.foreign_keys},
    }


def test_the_migration_builds_the_tables_schema_py_declares(store: SqlStore) -> None:
    engine = sa.create_engine(store.url)
    try:
        inspector = sa.inspect(engine)
        for name in ACME_TABLES:
            assert _shape(inspector, name) == _declared(schema.metadata.tables[name]), name
    finally:
        engine.dispose()


def test_the_migration_downgrades_and_upgrades_again(store_url: str) -> None:
    SqlStore(store_url).close()
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0007")
        assert not set(ACME_TABLES) & set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    upgraded = SqlStore(store_url)
    try:
        assert upgraded.spend_nonce("n", expires=NOW)
    finally:
        upgraded.close()
