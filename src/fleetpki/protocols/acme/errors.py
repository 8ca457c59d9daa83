"""Domain errors as ACME problem documents (RFC 8555 §6.7, RFC 7807)."""

from __future__ import annotations

import json

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.errors import (
    BadInput,
    Conflict,
    FleetPKIError,
    NotAuthorized,
    NotFound,
    PolicyViolation,
    RateLimited,
)

PROBLEM_TYPE = "application/problem+json"


def to_problem(error: FleetPKIError) -> AcmeProblem:
    if isinstance(error, AcmeProblem):
        return error
    if isinstance(error, RateLimited):
        return AcmeProblem("rateLimited", str(error), status=429, retry_after=error.retry_after)
    if isinstance(error, NotAuthorized):
        return AcmeProblem("unauthorized", str(error), status=403)
    if isinstance(error, PolicyViolation):
        return AcmeProblem("badCSR", str(error))
    if isinstance(error, BadInput):
        return AcmeProblem("malformed", str(error))
    if isinstance(error, NotFound):
        return AcmeProblem("malformed", str(error), status=404)
    if isinstance(error, Conflict):
        return AcmeProblem("malformed", str(error), status=409)
    return AcmeProblem("serverInternal", "the server could not complete the request; the "
                       "operator's log has the details", status=500)


def problem_json(problem: AcmeProblem) -> bytes:
    return json.dumps(problem.document()).encode()
