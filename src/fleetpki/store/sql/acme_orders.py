"""The ACME order tables (RFC 8555 §7.1, §7.4-7.5): orders, their authorizations and
challenges, and spent nonces.

A mixin of SqlStore, so that one store object serves every Protocol of store/api.py. Orders and
their parts are not audited on their own (the issuance, refusal or revocation they lead to
is). Whatever two requests can race for (finalizing an order, starting a validation) is one
conditional UPDATE: the database lets exactly one through, and the row count tells each caller
which one it was.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fleetpki.core.acme_records import (
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationStatus,
    ChallengeStatus,
    Identifier,
    OrderStatus,
)
from fleetpki.core.errors import Conflict, NotFound
from fleetpki.core.serials import serial_hex
from fleetpki.store.sql.engine import integrity_is_conflict, translate_errors
from fleetpki.store.sql.schema import (
    acme_accounts,
    acme_authorizations,
    acme_challenges,
    acme_nonces,
    acme_order_authorizations,
    acme_orders,
)

# Expired orders are pruned this many per transaction, so that a backlog never holds the
# (SQLite) write lock for long.
_PRUNE_CHUNK = 500
_ORDER_LINKS = acme_order_authorizations


class AcmeOrderTables:
    _writer: sa.Engine
    _reader: sa.Engine

    # -- orders ------------------------------------------------------------------------------

    def add_order(self, order: AcmeOrder, authorizations: Sequence[AcmeAuthorization], *,
                  at: dt.datetime) -> None:
        # `at` is unused: orders are not audited, and every time they carry is in the records.
        new_ids = _check_new_authorizations(order, authorizations)
        reused = [i for i in dict.fromkeys(order.authorization_ids) if i not in new_ids]
        raced = (f"order '{order.id}' or one of its authorizations exists already, or a "
                 "reused authorization was deleted meanwhile; nothing was written, retry")
        with translate_errors(), integrity_is_conflict(raced), self._writer.begin() as c:
            _require_account(c, order.account_id)
            _lock_reused(c, order.account_id, reused)
            c.execute(acme_orders.insert().values(**_order_values(order)))
            _insert_authorizations(c, authorizations)
            if order.authorization_ids:
                c.execute(_ORDER_LINKS.insert(), [
                    {"order_id": order.id, "position": n, "authorization_id": authz_id}
                    for n, authz_id in enumerate(order.authorization_ids)])

    def get_order(self, order_id: str) -> AcmeOrder | None:
        t = acme_orders
        with translate_errors(), self._reader.connect() as c:
            return next(iter(_orders(c, sa.select(t).where(t.c.id == order_id))), None)

    def list_orders(self, account_id: str, *, after: str | None = None, limit: int = 100
                    ) -> list[AcmeOrder]:
        # RFC 8555 §7.1.2.1: the orders list is paged; the last id seen is the cursor, and
        # (account_id, id) is an index.
        t = acme_orders
        query = sa.select(t).where(t.c.account_id == account_id).order_by(t.c.id).limit(limit)
        if after is not None:
            query = query.where(t.c.id > after)
        with translate_errors(), self._reader.connect() as c:
            return _orders(c, query)

    def find_order_by_certificate(self, issuer: str, serial: int) -> AcmeOrder | None:
        t = acme_orders
        query = sa.select(t).where(t.c.issuer == issuer, t.c.serial == serial_hex(serial))
        with translate_errors(), self._reader.connect() as c:
            return next(iter(_orders(c, query.limit(1))), None)

    def transition_order(self, order_id: str, from_status: OrderStatus,
                         to_status: OrderStatus, *, error: str | None = None,
                         serial: int | None = None, issuer: str | None = None) -> bool:
        # RFC 8555 §7.4: of two finalize requests, one moves the order to "processing"; the
        # other finds it no longer "ready" and is refused.
        changes: dict[str, Any] = {"status": to_status.value}
        if error is not None:
            changes["error"] = error
        if serial is not None:
            changes["serial"] = serial_hex(serial)
        if issuer is not None:
            changes["issuer"] = issuer
        t = acme_orders
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(t.update().where(t.c.id == order_id,
                                              t.c.status == from_status.value).values(changes))
            return bool(done.rowcount == 1)

    # -- authorizations and challenges -------------------------------------------------------

    def get_authorization(self, authorization_id: str) -> AcmeAuthorization | None:
        found = self.get_authorizations([authorization_id])
        return found[0] if found else None

    def get_authorizations(self, authorization_ids: Sequence[str]
                           ) -> list[AcmeAuthorization]:
        t = acme_authorizations
        if not authorization_ids:
            return []
        query = sa.select(t).where(t.c.id.in_(list(dict.fromkeys(authorization_ids))))
        with translate_errors(), self._reader.connect() as c:
            found = _authorizations(c, query)
        by_id = {a.id: a for a in found}
        return [by_id[i] for i in authorization_ids if i in by_id]

    def find_reusable_authorizations(self, account_id: str,
                                     identifiers: Sequence[Identifier], *, valid_after: dt.datetime
                                     ) -> dict[Identifier, AcmeAuthorization]:
        """RFC 8555 §7.1.4: the authorization of a wildcard identifier "*.example.com" names
        "example.com" and says `wildcard`. So "*.x" finds only wildcard authorizations of
        "x", and "x" only non-wildcard ones: a name proved by http-01 never stands in for
        its wildcard, nor the other way round."""
        t = acme_authorizations
        found: dict[Identifier, AcmeAuthorization] = {}
        with translate_errors(), self._reader.connect() as c:
            for identifier in dict.fromkeys(identifiers):
                kind, value, wildcard = _reuse_key(identifier)
                # One seek on ix_acme_authorizations_reuse, newest expiry first.
                query = (sa.select(t).where(
                    t.c.account_id == account_id, t.c.identifier_type == kind,
                    t.c.identifier_value == value, t.c.wildcard == wildcard,
                    t.c.status == AuthorizationStatus.valid.value, t.c.expires > valid_after)
                    .order_by(t.c.expires.desc()).limit(1))
                for authorization in _authorizations(c, query):
                    found[identifier] = authorization
        return found

    def get_acme_challenge(self, challenge_id: str) -> AcmeChallenge | None:
        """Not get_challenge: SqlStore also serves EnrollmentChallenges, whose
        get_challenge(profile) is SCEP's static challenge password."""
        t = acme_challenges
        with translate_errors(), self._reader.connect() as c:
            row = c.execute(sa.select(t).where(t.c.id == challenge_id)).first()
        return _challenge(row) if row else None

    def start_challenge(self, challenge_id: str) -> bool:
        # RFC 8555 §7.5.1: a challenge is validated once at a time; a repeated POST while it
        # is processing starts nothing.
        t = acme_challenges
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(t.update().where(
                t.c.id == challenge_id, t.c.status == ChallengeStatus.pending.value)
                .values(status=ChallengeStatus.processing.value))
            return bool(done.rowcount == 1)

    def settle_challenge(self, challenge_id: str, *, valid: bool, at: dt.datetime,
                         error: str | None = None) -> None:
        """NotFound if unknown; Conflict if the challenge is not processing (settled by
        another validation, or never started), and then nothing changes."""
        outcome = ChallengeStatus.valid if valid else ChallengeStatus.invalid
        t = acme_challenges
        with translate_errors(), self._writer.begin() as c:
            done = c.execute(t.update().where(
                t.c.id == challenge_id, t.c.status == ChallengeStatus.processing.value)
                .values(status=outcome.value, error=error,
                        # RFC 8555 §8: `validated` is the time the server validated it.
                        validated_at=at if valid else None))
            row = c.execute(sa.select(t.c.authorization_id, t.c.status)
                            .where(t.c.id == challenge_id)).first()
            if row is None:
                raise NotFound(f"no ACME challenge with id '{challenge_id}'")
            if done.rowcount != 1:
                raise Conflict(f"ACME challenge '{challenge_id}' is {row.status}, not "
                               "processing: it was not settled again")
            # RFC 8555 §7.1.6: one valid challenge makes a pending authorization valid, a
            # failed one makes it invalid; an authorization that left "pending" stays put.
            _set_authorization(c, row.authorization_id, AuthorizationStatus.pending,
                               AuthorizationStatus(outcome.value))

    def set_authorization_status(self, authorization_id: str, from_status: AuthorizationStatus,
                                 to_status: AuthorizationStatus) -> bool:
        with translate_errors(), self._writer.begin() as c:
            return _set_authorization(c, authorization_id, from_status, to_status)

    # -- nonces and pruning -----------------------------------------------------------------

    def spend_nonce(self, nonce: str, *, expires: dt.datetime) -> bool:
        # RFC 8555 §6.5: a nonce is accepted once. Of two requests replaying one nonce at the
        # same time, the primary key lets exactly one INSERT through.
        with translate_errors(), self._writer.begin() as c:
            insert = sqlite.insert if c.dialect.name == "sqlite" else postgresql.insert
            # An INSERT's row count is kept only when asked for (otherwise -1 on PostgreSQL).
            statement = (insert(acme_nonces).values(nonce=nonce, expires=expires)
                         .on_conflict_do_nothing(index_elements=["nonce"])
                         .execution_options(preserve_rowcount=True))
            return bool(c.execute(statement).rowcount == 1)

    def prune_acme(self, now: dt.datetime, *, keep_orders: dt.timedelta) -> int:
        """Counts the rows of nonces, orders, authorizations and challenges deleted (not
        the rows linking orders to authorizations)."""
        t = acme_nonces
        with translate_errors(), self._writer.begin() as c:
            deleted = int(c.execute(t.delete().where(t.c.expires < now)).rowcount)
        while True:
            with translate_errors(), self._writer.begin() as c:
                pruned, more = _prune_orders(c, now - keep_orders)
            deleted += pruned
            if not more:
                return deleted


# -- helpers that run inside a caller's transaction ------------------------------------------

def _check_new_authorizations(order: AcmeOrder, authorizations: Sequence[AcmeAuthorization]
                              ) -> set[str]:
    """Refuse what would leave rows no order could reach: pruning relies on every
    authorization being named by an order from the moment it is written."""
    named = set(order.authorization_ids)
    for authorization in authorizations:
        if authorization.id not in named:
            raise ValueError(f"authorization '{authorization.id}' is not one of order "
                             f"'{order.id}''s authorizations")
        if authorization.account_id != order.account_id:
            raise ValueError(f"authorization '{authorization.id}' belongs to another account "
                             f"than order '{order.id}'")
        for challenge in authorization.challenges:
            if challenge.authorization_id != authorization.id:
                raise ValueError(f"challenge '{challenge.id}' names authorization "
                                 f"'{challenge.authorization_id}', not '{authorization.id}'")
    return {a.id for a in authorizations}


def _require_account(c: sa.Connection, account_id: str) -> None:
    t = acme_accounts
    if c.execute(sa.select(t.c.id).where(t.c.id == account_id)).first() is None:
        raise NotFound(f"no ACME account with id '{account_id}'")


def _lock_reused(c: sa.Connection, account_id: str, authorization_ids: Sequence[str]) -> None:
    """RFC 8555 §7.4: an order reuses only its own account's authorizations. The rows are
    share-locked (PostgreSQL) until the order is written, so pruning cannot delete one in
    between; SQLite writers are serialised anyway (engine.py)."""
    if not authorization_ids:
        return
    t = acme_authorizations
    query = (sa.select(t.c.id).where(t.c.id.in_(authorization_ids), t.c.account_id == account_id)
             .with_for_update(read=True, key_share=True))
    missing = set(authorization_ids) - set(c.execute(query).scalars())
    if missing:
        raise NotFound(f"account '{account_id}' has no authorization '{sorted(missing)[0]}' "
                       "to reuse (pruned?); nothing was written")


def _insert_authorizations(c: sa.Connection, authorizations: Sequence[AcmeAuthorization]
                           ) -> None:
    if not authorizations:
        return
    c.execute(acme_authorizations.insert(), [_authorization_values(a) for a in authorizations])
    challenges = [_challenge_values(x, n) for a in authorizations
                  for n, x in enumerate(a.challenges)]
    if challenges:
        c.execute(acme_challenges.insert(), challenges)


def _set_authorization(c: sa.Connection, authorization_id: str,
                       from_status: AuthorizationStatus, to_status: AuthorizationStatus
                       ) -> bool:
    t = acme_authorizations
    done = c.execute(t.update().where(t.c.id == authorization_id,
                                      t.c.status == from_status.value)
                     .values(status=to_status.value))
    return bool(done.rowcount == 1)


def _prune_orders(c: sa.Connection, expired_before: dt.datetime) -> tuple[int, bool]:
    """Delete up to _PRUNE_CHUNK orders that expired before `expired_before`, and the
    authorizations (with their challenges) they alone used. Returns (rows deleted, whether
    more expired orders may remain)."""
    o, links, a, ch = acme_orders, _ORDER_LINKS, acme_authorizations, acme_challenges
    order_ids = list(c.execute(sa.select(o.c.id).where(o.c.expires < expired_before)
                               .order_by(o.c.expires).limit(_PRUNE_CHUNK)).scalars())
    if not order_ids:
        return 0, False
    candidates = sorted(set(c.execute(sa.select(links.c.authorization_id)
                                      .where(links.c.order_id.in_(order_ids))).scalars()))
    c.execute(links.delete().where(links.c.order_id.in_(order_ids)))
    deleted = int(c.execute(o.delete().where(o.c.id.in_(order_ids))).rowcount)
    if candidates:
        # Locked before asking whether another order uses them: a new order reusing one
        # (which share-locks it, _lock_reused) either committed before, and is seen below,
        # or waits and then finds it gone.
        c.execute(sa.select(a.c.id).where(a.c.id.in_(candidates)).with_for_update()).all()
        used = set(c.execute(sa.select(links.c.authorization_id)
                             .where(links.c.authorization_id.in_(candidates))).scalars())
        unused = [i for i in candidates if i not in used]
        if unused:
            deleted += int(c.execute(ch.delete().where(ch.c.authorization_id.in_(unused)))
                           .rowcount)
            deleted += int(c.execute(a.delete().where(a.c.id.in_(unused))).rowcount)
    return deleted, len(order_ids) == _PRUNE_CHUNK


# -- rows <-> records ------------------------------------------------------------------------

def _reuse_key(identifier: Identifier) -> tuple[str, str, bool]:
    """(type, value, wildcard) as an authorization of `identifier` stores them."""
    if identifier.type == "dns" and identifier.value.startswith("*."):
        return identifier.type, identifier.value[2:], True
    return identifier.type, identifier.value, False


def _orders(c: sa.Connection, query: sa.Select[Any]) -> list[AcmeOrder]:
    """The orders `query` selects, each with its authorization ids (one more query)."""
    rows = c.execute(query).all()
    if not rows:
        return []
    links = _ORDER_LINKS
    named: dict[str, list[str]] = {row.id: [] for row in rows}
    for link in c.execute(sa.select(links.c.order_id, links.c.authorization_id)
                          .where(links.c.order_id.in_(list(named)))
                          .order_by(links.c.order_id, links.c.position)):
        named[link.order_id].append(link.authorization_id)
    return [_order(row, tuple(named[row.id])) for row in rows]


def _authorizations(c: sa.Connection, query: sa.Select[Any]) -> list[AcmeAuthorization]:
    """The authorizations `query` selects, each with its challenges (one more query)."""
    rows = c.execute(query).all()
    if not rows:
        return []
    t = acme_challenges
    challenges: dict[str, list[AcmeChallenge]] = {row.id: [] for row in rows}
    for row in c.execute(sa.select(t).where(t.c.authorization_id.in_(list(challenges)))
                         .order_by(t.c.authorization_id, t.c.position)):
        challenges[row.authorization_id].append(_challenge(row))
    return [_authorization(row, tuple(challenges[row.id])) for row in rows]


def _order_values(order: AcmeOrder) -> dict[str, Any]:
    identifiers = [{"type": i.type, "value": i.value} for i in order.identifiers]
    return {"id": order.id, "account_id": order.account_id, "profile": order.profile,
            "status": order.status.value, "identifiers": json.dumps(identifiers),
            "expires": order.expires, "created_at": order.created_at, "error": order.error,
            "serial": serial_hex(order.serial) if order.serial is not None else None,
            "issuer": order.issuer, "replaces": order.replaces}


def _order(row: Any, authorization_ids: tuple[str, ...]) -> AcmeOrder:
    return AcmeOrder(
        id=row.id, account_id=row.account_id, profile=row.profile,
        status=OrderStatus(row.status),
        identifiers=tuple(Identifier(i["type"], i["value"]) for i in json.loads(row.identifiers)),
        authorization_ids=authorization_ids, expires=row.expires, created_at=row.created_at,
        error=row.error, serial=int(row.serial, 16) if row.serial else None, issuer=row.issuer,
        replaces=row.replaces)


def _authorization_values(authorization: AcmeAuthorization) -> dict[str, Any]:
    return {"id": authorization.id, "account_id": authorization.account_id,
            "identifier_type": authorization.identifier.type,
            "identifier_value": authorization.identifier.value,
            "wildcard": authorization.wildcard, "status": authorization.status.value,
            "expires": authorization.expires, "created_at": authorization.created_at}


def _authorization(row: Any, challenges: tuple[AcmeChallenge, ...]) -> AcmeAuthorization:
    return AcmeAuthorization(
        id=row.id, account_id=row.account_id,
        identifier=Identifier(row.identifier_type, row.identifier_value),
        status=AuthorizationStatus(row.status), expires=row.expires,
        created_at=row.created_at, challenges=challenges, wildcard=bool(row.wildcard))


def _challenge_values(challenge: AcmeChallenge, position: int) -> dict[str, Any]:
    return {"id": challenge.id, "authorization_id": challenge.authorization_id,
            "position": position, "type": challenge.type, "token": challenge.token,
            "status": challenge.status.value, "validated_at": challenge.validated_at,
            "error": challenge.error}


def _challenge(row: Any) -> AcmeChallenge:
    return AcmeChallenge(id=row.id, authorization_id=row.authorization_id, type=row.type,
                         token=row.token, status=ChallengeStatus(row.status),
                         validated_at=row.validated_at, error=row.error)
