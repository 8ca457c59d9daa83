"""ACME errors (RFC 8555 §6.7): a refusal that knows its ACME error type.

Raised by the ACME front end (protocols/acme/) and by the RA's ACME service (ra/acme/) where
the generic domain errors cannot say which of RFC 8555's error types applies; the front end
renders it as an application/problem+json document (RFC 7807). Other domain errors are mapped
to a type at the edge (protocols/acme/errors.py).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fleetpki.core.errors import FleetPKIError

ERROR_NAMESPACE = "urn:ietf:params:acme:error:"


@dataclasses.dataclass(frozen=True, slots=True)
class Subproblem:
    """RFC 8555 §6.7.1: the error of one identifier of a request about several."""

    kind: str
    detail: str
    identifier: tuple[str, str] | None = None  # (type, value)

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"type": ERROR_NAMESPACE + self.kind, "detail": self.detail}
        if self.identifier is not None:
            document["identifier"] = {"type": self.identifier[0], "value": self.identifier[1]}
        return document


class AcmeProblem(FleetPKIError):
    """`kind` is the last part of the error type URN, e.g. "badNonce", "rejectedIdentifier"."""

    def __init__(self, kind: str, detail: str, *, status: int = 400,
                 subproblems: tuple[Subproblem, ...] = (), retry_after: int | None = None,
                 ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.subproblems = subproblems
        self.retry_after = retry_after

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"type": ERROR_NAMESPACE + self.kind, "detail": self.detail,
                                    "status": self.status}
        if self.subproblems:
            document["subproblems"] = [s.document() for s in self.subproblems]
        return document
