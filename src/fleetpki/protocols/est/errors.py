"""Domain errors -> EST (HTTP) responses. The only place EST statuses are chosen.

RFC 7030 §4.2.3: a refused enrollment is a 4xx with a human-readable body; 401 carries an HTTP
authentication challenge (RFC 7030 §3.2.3). Messages are the domain's own: they say what is
wrong and what to do, and never include a stack trace or anything secret.
"""

from __future__ import annotations

import dataclasses

from fleetpki.core.errors import (
    BadInput,
    Conflict,
    FleetPKIError,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
    Unsupported,
)

BASIC_CHALLENGE = 'Basic realm="fleetpki EST", charset="UTF-8"'


@dataclasses.dataclass(frozen=True, slots=True)
class HttpError:
    status: int
    message: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def to_http(error: FleetPKIError) -> HttpError:
    message = str(error)
    if isinstance(error, NotAuthenticated):  # before NotAuthorized: it is a subclass
        return HttpError(401, message, {"WWW-Authenticate": BASIC_CHALLENGE})
    if isinstance(error, NotAuthorized):
        return HttpError(403, message)
    if isinstance(error, BadInput | PolicyViolation):
        return HttpError(400, message)
    if isinstance(error, NotFound):
        return HttpError(404, message)
    if isinstance(error, RateLimited):
        return HttpError(429, message, {"Retry-After": str(error.retry_after)})
    if isinstance(error, Conflict):
        return HttpError(409, message)
    if isinstance(error, Unsupported):
        return HttpError(501, message)
    # KeyAccessError, StoreError, ConfigError: our side is broken, not the request. The
    # details (paths, database messages) go to the server log, not to the device.
    return HttpError(503, "the CA cannot serve this request now; try again later",
                     {"Retry-After": "60"})

