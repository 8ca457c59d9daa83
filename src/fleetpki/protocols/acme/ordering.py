"""The ACME resources of ordering a certificate (RFC 8555 §7.4-7.6): newOrder, orders,
authorizations, challenges, finalization, certificate download and revocation.

A challenge is validated while its POST waits (bounded by the validation settings' total
timeout), rather than by a background job: the client's next poll then finds it settled, and
a server process that dies mid-validation leaves nothing half-done but a challenge in
"processing", which the client may give up on by creating a new order.
"""

from __future__ import annotations

import asyncio
import json

from cryptography import x509

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import (
    AcmeAccount,
    AcmeChallenge,
    AuthorizationView,
    ChallengeStatus,
    OrderStatus,
    OrderView,
)
from fleetpki.core.csr import load_csr
from fleetpki.core.errors import BadInput, FleetPKIError
from fleetpki.core.records import IssuedCertificate
from fleetpki.protocols.acme import codec
from fleetpki.protocols.acme.account_keys import jwk_of, thumbprint
from fleetpki.protocols.acme.base import AcmeBase
from fleetpki.protocols.acme.challenges import validate
from fleetpki.protocols.acme.errors import to_problem
from fleetpki.protocols.acme.service_api import AcmeCall, AcmeReply

PEM_CHAIN_TYPE = "application/pem-certificate-chain"
# How long the client is asked to wait before polling an order or a challenge again.
POLL_SECONDS = "1"


class OrderOperations(AcmeBase):
    def _order_reply(self, call: AcmeCall, view: OrderView, status: int = 200,
                     *extra: tuple[str, str]) -> AcmeReply:
        error = json.loads(view.error) if view.error else None
        headers = list(extra)
        if view.status is OrderStatus.processing:
            headers.append(("Retry-After", POLL_SECONDS))
        return self._json(call, status, codec.order_resource(view.order, view.status, call.urls,
                                                             error), *headers)

    async def new_order(self, call: AcmeCall) -> AcmeReply:
        verified = await self._verified(call)
        account = self._account(verified)
        request = codec.new_order(verified.payload)
        identifiers = [self._s.normalise(type_, value) for type_, value in request.identifiers]
        view: OrderView = await self._blocking(self._s.orders.new_order, account, call.profile,
                                               identifiers, replaces=request.replaces)
        return self._order_reply(call, view, 201, ("Location", call.urls.order(view.order.id)))

    async def order(self, call: AcmeCall) -> AcmeReply:
        account = await self._reader(call)
        view: OrderView = await self._blocking(self._s.orders.view, account, call.resource_id)
        return self._order_reply(call, view)

    async def finalize(self, call: AcmeCall) -> AcmeReply:
        verified = await self._verified(call)
        account = self._account(verified)
        csr_der = codec.finalize(verified.payload)
        self._check_key_differs(csr_der, verified.thumbprint)
        view: OrderView = await self._blocking(self._s.orders.finalize, account,
                                               call.resource_id, csr_der)
        return self._order_reply(call, view, 200, ("Location", call.urls.order(view.order.id)))

    @staticmethod
    def _check_key_differs(csr_der: bytes, account_thumbprint: str) -> None:
        """RFC 8555 §11.1: the certificate's key must not be the account key."""
        try:
            public_key = load_csr(csr_der).public_key()
        except (BadInput, ValueError):
            return  # the RA refuses an unreadable CSR, and audits it
        try:
            same = thumbprint(jwk_of(public_key)) == account_thumbprint
        except (AcmeProblem, ValueError, TypeError):
            return  # a key type no account can have
        if same:
            raise AcmeProblem("badCSR", "the CSR's key is the account key: use a separate key "
                              "for the certificate (RFC 8555 §11.1)")

    async def certificate(self, call: AcmeCall) -> AcmeReply:
        account = await self._reader(call)
        record: IssuedCertificate = await self._blocking(self._s.orders.certificate, account,
                                                         call.resource_id)
        chain: bytes = await self._blocking(self._s.certificates.chain_pem, record)
        return AcmeReply(200, chain, self._headers(call, ("Content-Type", PEM_CHAIN_TYPE)))

    async def authorization(self, call: AcmeCall) -> AcmeReply:
        verified = await self._verified(call)
        account = self._account(verified)
        if verified.post_as_get:
            view: AuthorizationView = await self._blocking(self._s.authorizations.view,
                                                           account, call.resource_id)
        else:
            codec.deactivation(verified.payload)
            view = await self._blocking(self._s.authorizations.deactivate, account,
                                        call.resource_id)
        return self._json(call, 200, codec.authorization_resource(
            view.authorization, view.status, call.urls))

    async def challenge(self, call: AcmeCall) -> AcmeReply:
        """POST-as-GET reads it; any JSON object (RFC 8555 §7.5.1: "{}") asks the server to
        validate it."""
        verified = await self._verified(call)
        account = self._account(verified)
        if verified.post_as_get:
            challenge, view = await self._blocking(self._s.authorizations.challenge, account,
                                                   call.resource_id)
        else:
            codec.json_object(verified.payload, "challenge response")
            challenge, view, start = await self._blocking(
                self._s.authorizations.begin_validation, account, call.resource_id)
            if start:
                challenge = await self._validate(challenge, view, verified.thumbprint, account)
        up = ("Link", f'<{call.urls.authorization(view.authorization.id)}>;rel="up"')
        extra = [up]
        if challenge.status is ChallengeStatus.processing:
            extra.append(("Retry-After", POLL_SECONDS))
        return self._json(call, 200, codec.challenge_resource(challenge, call.urls), *extra)

    async def _validate(self, challenge: AcmeChallenge, view: AuthorizationView,
                        key_thumbprint: str, account: AcmeAccount) -> AcmeChallenge:
        identifier = view.authorization.identifier
        error = None
        try:
            await asyncio.wait_for(
                validate(challenge.type, identifier, challenge.token, key_thumbprint,
                         self._validation, wildcard=view.authorization.wildcard),
                self._validation.total_timeout + 1.0)
        except FleetPKIError as failure:
            error = json.dumps(to_problem(failure).document())
        except TimeoutError:
            error = json.dumps(AcmeProblem(
                "connection", f"validating {identifier} took longer than "
                f"{self._validation.total_timeout:.0f} s").document())
        await self._blocking(self._s.authorizations.record_validation, challenge.id,
                             error=error)
        settled, _ = await self._blocking(self._s.authorizations.challenge, account,
                                          challenge.id)
        result: AcmeChallenge = settled
        return result

    async def revoke(self, call: AcmeCall) -> AcmeReply:
        """RFC 8555 §7.6: signed by the account (kid) or by the certificate's key (jwk)."""
        verified = await self._verified(call, jwk_allowed=True)
        request = codec.revocation(verified.payload)
        if verified.account is None:
            record: IssuedCertificate = await self._blocking(self._s.certificates.identify,
                                                             request.certificate_der)
            key = x509.load_der_x509_certificate(record.der).public_key()
            if thumbprint(jwk_of(key)) != verified.thumbprint:
                raise AcmeProblem("unauthorized", "a revocation signed with a jwk must be "
                                  "signed with the certificate's own key", status=403)
        await self._blocking(self._s.certificates.revoke, request.certificate_der,
                             request.reason, verified.account)
        return AcmeReply(200, b"", self._headers(call))

    async def _reader(self, call: AcmeCall) -> AcmeAccount:
        """POST-as-GET only (RFC 8555 §6.3)."""
        verified = await self._verified(call)
        if not verified.post_as_get:
            raise AcmeProblem("malformed", "this resource is read with POST-as-GET: an empty "
                              "payload")
        return self._account(verified)

