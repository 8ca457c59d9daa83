"""The ACME resources that need no order (RFC 8555 §7.1-7.3, RFC 9773): the directory,
nonces, renewal information and accounts. Orders and what hangs off them are in ordering.py.

Each operation takes what the HTTP adapter (server.py) read and returns an AcmeReply; none
touches the HTTP framework. Calls into the RA read and write the store, so they run in a
worker thread (`blocking`); challenge validation is network I/O and runs on the event loop.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fleetpki.core.acme_problems import AcmeProblem
from fleetpki.core.acme_records import AccountStatus, AcmeAccount, AcmeOrder
from fleetpki.protocols.acme import codec
from fleetpki.protocols.acme.account_keys import thumbprint
from fleetpki.protocols.acme.base import JSON_TYPE
from fleetpki.protocols.acme.jws import (
    verify_external_account_binding,
    verify_key_change,
)
from fleetpki.protocols.acme.ordering import OrderOperations
from fleetpki.protocols.acme.service_api import AcmeCall, AcmeReply
from fleetpki.ra.api import RenewalAdvice

ORDERS_PAGE = 100


class AcmeHandler(OrderOperations):
    # -- unauthenticated ---------------------------------------------------------------------

    async def directory(self, call: AcmeCall) -> AcmeReply:
        urls = call.urls
        return self._json(call, 200, {
            "newNonce": urls.new_nonce, "newAccount": urls.new_account,
            "newOrder": urls.new_order(call.profile), "revokeCert": urls.revoke_cert,
            "keyChange": urls.key_change, "renewalInfo": urls.renewal_info,
            "meta": {"externalAccountRequired": self._s.accounts.eab_required,
                     "profile": call.profile}})

    async def new_nonce(self, call: AcmeCall, *, get: bool) -> AcmeReply:
        # RFC 8555 §7.2: 200 for HEAD, 204 for GET.
        return AcmeReply(204 if get else 200, b"", self._headers(call))

    async def renewal_info(self, call: AcmeCall) -> AcmeReply:
        """RFC 9773 §4.1: GET <renewalInfo>/<base64url(AKI keyIdentifier)>.<base64url(serial)>"""
        key_id, dot, serial = call.resource_id.partition(".")
        if not dot:
            raise AcmeProblem("malformed", "a certificate identifier is "
                              "base64url(authority key identifier).base64url(serial number)")
        key_identifier = codec.b64url_decode(key_id, "the key identifier")
        serial_bytes = codec.b64url_decode(serial, "the serial number")
        if not serial_bytes or len(serial_bytes) > 21:
            raise AcmeProblem("malformed", "the serial number must be 1 to 21 bytes")
        advice: RenewalAdvice = await self._blocking(
            self._s.certificates.renewal_info, key_identifier,
            int.from_bytes(serial_bytes, "big"))
        document: dict[str, Any] = {"suggestedWindow": {
            "start": codec.timestamp(advice.window.start),
            "end": codec.timestamp(advice.window.end)}}
        if advice.window.explanation:
            document["explanation"] = advice.window.explanation
        return AcmeReply(200, json.dumps(document).encode(), (
            ("Content-Type", JSON_TYPE), ("Retry-After", str(advice.retry_after))))

    # -- accounts ----------------------------------------------------------------------------

    async def new_account(self, call: AcmeCall) -> AcmeReply:
        verified = await self._verified(call, jwk_allowed=True)
        if verified.account is not None:
            raise AcmeProblem("malformed", "newAccount is signed with the new account's key "
                              "(jwk), not an account URL (RFC 8555 §7.3)")
        request = codec.new_account(verified.payload)
        existing: AcmeAccount | None = await self._blocking(self._s.accounts.find,
                                                            verified.thumbprint)
        if existing is not None:
            if existing.status is not AccountStatus.valid:
                raise AcmeProblem("unauthorized", f"the account of this key is "
                                  f"{existing.status.value} (RFC 8555 §7.3.6)", status=403)
            # RFC 8555 §7.3.1: the key's account, unchanged, with 200.
            return self._json(call, 200, codec.account_resource(existing, call.urls),
                              ("Location", call.urls.account(existing.id)))
        if request.only_return_existing:
            raise AcmeProblem("accountDoesNotExist", "no account has this key")
        eab_key_id = None
        if request.external_account_binding is not None:
            key_ids: list[str] = []

            def mac_key(key_id: str) -> bytes | None:
                key_ids.append(key_id)
                return self._s.accounts.eab_mac_key(key_id)

            eab_key_id = await self._blocking(
                verify_external_account_binding, request.external_account_binding,
                verified.jwk, call.url, mac_key)
        account: AcmeAccount = await self._blocking(
            self._s.accounts.register, json.dumps(verified.jwk, sort_keys=True),
            verified.thumbprint, request.contact, eab_key_id)
        return self._json(call, 201, codec.account_resource(account, call.urls),
                          ("Location", call.urls.account(account.id)))

    async def account(self, call: AcmeCall) -> AcmeReply:
        verified = await self._verified(call)
        account = self._account(verified)
        if account.id != call.resource_id:
            raise AcmeProblem("unauthorized", "a request may only read or change its own "
                              "account", status=403)
        if not verified.post_as_get:
            update = codec.account_update(verified.payload)
            if update.deactivate:
                account = await self._blocking(self._s.accounts.deactivate, account)
            elif update.contact is not None:
                account = await self._blocking(self._s.accounts.update_contact, account,
                                               update.contact)
        return self._json(call, 200, codec.account_resource(account, call.urls),
                          ("Location", call.urls.account(account.id)))

    async def orders(self, call: AcmeCall) -> AcmeReply:
        """RFC 8555 §7.1.2.1: the account's orders, a page at a time (Link rel="next")."""
        verified = await self._verified(call)
        account = self._account(verified)
        if account.id != call.resource_id or not verified.post_as_get:
            raise AcmeProblem("unauthorized", "POST-as-GET to your own account's orders",
                              status=403)
        after = call.url.partition("?after=")[2] or None
        page: list[AcmeOrder] = await self._blocking(self._s.orders.list_orders, account,
                                                     after, ORDERS_PAGE + 1)
        extra = []
        if len(page) > ORDERS_PAGE:
            page = page[:ORDERS_PAGE]
            extra.append(("Link", f'<{call.urls.orders(account.id)}?after={page[-1].id}>;'
                                  'rel="next"'))
        return self._json(call, 200, {"orders": [call.urls.order(o.id) for o in page]}, *extra)

    async def key_change(self, call: AcmeCall) -> AcmeReply:
        verified = await self._verified(call)
        account = self._account(verified)
        inner = codec.json_object(verified.payload, "keyChange")
        new_jwk = verify_key_change(inner, verified.jws, call.urls.account(account.id),
                                    verified.jwk)
        new_thumbprint = thumbprint(new_jwk)
        holder: AcmeAccount | None = await self._blocking(self._s.accounts.find,
                                                          new_thumbprint)
        if holder is not None:
            # RFC 8555 §7.3.5: 409 with the Location of the account that has the key.
            reply = self.problem(call, AcmeProblem(
                "malformed", "the new key already belongs to an account", status=409))
            return dataclasses.replace(reply, headers=(
                *reply.headers, ("Location", call.urls.account(holder.id))))
        # A request racing for the same key loses in the store: Conflict, 409 as well.
        changed = await self._blocking(self._s.accounts.change_key, account,
                                       json.dumps(new_jwk, sort_keys=True), new_thumbprint)
        return self._json(call, 200, codec.account_resource(changed, call.urls),
                          ("Location", call.urls.account(changed.id)))
