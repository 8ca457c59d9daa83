"""Domain errors as CMP failure information (RFC 9810 §5.2.3, RFC 9483 §3.6.4)."""

from __future__ import annotations

from fleetpki.core.errors import (
    BadInput,
    Conflict,
    FleetPKIError,
    NotAuthenticated,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
)
from fleetpki.protocols.cmp.asn1 import FailInfo


def to_fail_info(error: FleetPKIError, *, body_type: str) -> FailInfo | None:
    """The failInfo bit for a refusal, or None when the error is ours (systemFailure, with
    the details kept in our log)."""
    if isinstance(error, NotAuthenticated):
        return FailInfo.signer_not_trusted
    if isinstance(error, NotAuthorized):
        return FailInfo.not_authorized
    if isinstance(error, PolicyViolation):
        if error.field == "signature":
            return FailInfo.bad_pop
        if error.field == "key":
            return FailInfo.bad_alg
        return FailInfo.bad_cert_template
    if isinstance(error, Conflict):
        return FailInfo.transaction_id_in_use if body_type in ("ir", "cr", "kur", "p10cr") \
            else FailInfo.bad_request
    if isinstance(error, NotFound):
        return FailInfo.bad_cert_id if body_type in ("rr", "certConf", "pollReq") \
            else FailInfo.bad_request
    if isinstance(error, RateLimited):
        return FailInfo.system_unavail
    if isinstance(error, BadInput):
        return FailInfo.bad_data_format if body_type == "p10cr" else FailInfo.bad_request
    return None
