"""Domain errors -> SCEP answers. The only place SCEP failInfo codes and HTTP statuses are chosen.

RFC 8894 §3.3.2.2: a refused request is a CertRep FAILURE with a failInfo; our text goes beside
it in failInfoText. A failure on our side (store, keys) is no verdict on the request, so it is
an HTTP 503 the client may retry, not a FAILURE it would take as final.
"""

from __future__ import annotations

import dataclasses

from fleetpki.core.errors import (
    BadInput,
    Conflict,
    FleetPKIError,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
)
from fleetpki.protocols.scep.codec import FailInfo


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    fail_info: FailInfo
    text: str


def to_fail_info(error: FleetPKIError, *, retrieving: bool = False) -> Refusal | None:
    """The failInfo for a domain error, or None when the error is ours (answer HTTP 503).
    `retrieving`: GetCert or GetCRL, where an unknown certificate is badCertId."""
    text = str(error)
    if isinstance(error, NotFound):
        return Refusal(FailInfo.bad_cert_id if retrieving else FailInfo.bad_request, text)
    if isinstance(error, RateLimited):
        return Refusal(FailInfo.bad_request, text)
    if isinstance(error, NotAuthorized | BadInput | PolicyViolation | Conflict):
        return Refusal(FailInfo.bad_request, text)
    return None
