"""What every ACME operation does alike (RFC 8555 §6): verify the POST, answer JSON or a
problem document, and give every reply a fresh Replay-Nonce and a link to the directory."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import AcmeAccount
from fleetpki.core.errors import FleetPKIError
from fleetpki.protocols.acme.challenges import ValidationSettings
from fleetpki.protocols.acme.errors import PROBLEM_TYPE, problem_json, to_problem
from fleetpki.protocols.acme.requests import Verified
from fleetpki.protocols.acme.service_api import AcmeCall, AcmeReply, AcmeServices

log = logging.getLogger(__name__)
JSON_TYPE = "application/json"

Blocking = Callable[..., Awaitable[Any]]


class AcmeBase:
    def __init__(self, services: AcmeServices, validation: ValidationSettings,
                 blocking: Blocking) -> None:
        self._s = services
        self._validation = validation
        self._blocking = blocking

    # -- plumbing ----------------------------------------------------------------------------

    def _headers(self, call: AcmeCall, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        return (("Replay-Nonce", self._s.mint.new()), ("Cache-Control", "no-store"),
                ("Link", f'<{call.urls.directory(call.profile)}>;rel="index"'), *extra)

    def _json(self, call: AcmeCall, status: int, document: object, *extra: tuple[str, str]
              ) -> AcmeReply:
        return AcmeReply(status, json.dumps(document).encode(),
                         self._headers(call, ("Content-Type", JSON_TYPE), *extra))

    def problem(self, call: AcmeCall, error: FleetPKIError) -> AcmeReply:
        problem = to_problem(error)
        if problem.kind == "serverInternal" and not isinstance(error, AcmeProblem):
            log.error("ACME request failed: %s", error)
        extra = [("Content-Type", PROBLEM_TYPE)]
        if problem.retry_after is not None:
            extra.append(("Retry-After", str(problem.retry_after)))
        return AcmeReply(problem.status, problem_json(problem), self._headers(call, *extra))

    async def _verified(self, call: AcmeCall, *, jwk_allowed: bool = False) -> Verified:
        result: Verified = await self._blocking(self._s.nonces.verify, call.body,
                                                call.content_type, call.url, call.urls,
                                                jwk_allowed=jwk_allowed)
        return result

    @staticmethod
    def _account(verified: Verified) -> AcmeAccount:
        assert verified.account is not None  # jwk_allowed=False: the verifier named one
        return verified.account

    async def run(self, call: AcmeCall, operation: Callable[[AcmeCall], Awaitable[AcmeReply]]
                  ) -> AcmeReply:
        """Any failure becomes a problem document; nothing else reaches the client. A
        failure of ours is logged with its traceback, and the client gets serverInternal
        with a fresh nonce (RFC 8555 §6.5), as for every other problem."""
        try:
            return await operation(call)
        except FleetPKIError as error:
            return self.problem(call, error)
        except Exception:
            log.exception("ACME request failed", extra={"url": call.url})
            return self.problem(call, AcmeProblem(
                "serverInternal", "the server could not complete the request; the operator's "
                "log has the details", status=500))
