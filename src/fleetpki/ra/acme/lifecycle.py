"""What an ACME order or authorization is at a given time (RFC 8555 §7.1.6).

The store keeps the status last written. Expiry and an order's readiness follow from the
records and the clock alone, so they are computed here on every read rather than written by a
timer: an order whose authorizations are all valid is "ready" the moment the last one became
valid, in every server process at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from fleetpki.core.acme_records import (
    AcmeAuthorization,
    AcmeOrder,
    AuthorizationStatus,
    OrderStatus,
)

# RFC 8555 §7.1.6: "pending" and "valid" authorizations expire; the other states are final.
_EXPIRING = (AuthorizationStatus.pending, AuthorizationStatus.valid)


def authorization_status(authorization: AcmeAuthorization, now: dt.datetime
                         ) -> AuthorizationStatus:
    if authorization.status in _EXPIRING and authorization.expires <= now:
        return AuthorizationStatus.expired
    return authorization.status


def order_status(order: AcmeOrder, authorizations: Sequence[AcmeAuthorization],
                 now: dt.datetime) -> OrderStatus:
    """pending -> ready once every authorization is valid; invalid if one cannot become
    valid any more, or if the order expired before it was finalized."""
    if order.status in (OrderStatus.valid, OrderStatus.invalid, OrderStatus.processing):
        return order.status
    if order.expires <= now:
        return OrderStatus.invalid
    statuses = [authorization_status(a, now) for a in authorizations]
    if len(statuses) != len(order.authorization_ids):
        return OrderStatus.invalid  # an authorization was pruned: it cannot be valid
    if any(s is not AuthorizationStatus.valid and s is not AuthorizationStatus.pending
           for s in statuses):
        return OrderStatus.invalid
    if all(s is AuthorizationStatus.valid for s in statuses):
        return OrderStatus.ready
    return OrderStatus.pending


def failure_reason(order: AcmeOrder, authorizations: Sequence[AcmeAuthorization],
                   now: dt.datetime) -> str:
    """Why an order computed as invalid is so, when no `error` document was stored."""
    if order.expires <= now:
        return f"the order expired at {order.expires:%Y-%m-%d %H:%M:%S}Z before it was finalized"
    for authorization in authorizations:
        status = authorization_status(authorization, now)
        if status not in (AuthorizationStatus.valid, AuthorizationStatus.pending):
            return (f"the authorization of {authorization.identifier} is {status.value}")
    return "an authorization of the order no longer exists"
