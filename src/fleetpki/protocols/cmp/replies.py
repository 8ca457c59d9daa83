"""CMP replies (RFC 9810 §5.1): addressed back to the requester, protected as its request
was (a MAC with the same secret, else a signature by the CMP server certificate), with a
senderNonce that later messages of the transaction must return.

The nonce carries an HMAC tag over the transactionID and says which request kind began the
transaction, so that certConf and pollReq are recognised as answers to this server without any
state kept between messages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import logging
import os
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.protocols.cmp.asn1 import FailInfo
from fleetpki.protocols.cmp.codec import (
    NULL_DN,
    Header,
    ReplyHeader,
    body,
    error_content,
    message,
    protected_part,
)
from fleetpki.protocols.cmp.exchange import CmpReply, Exchange, MacAuth
from fleetpki.protocols.cms_parts import sign

CONTENT_TYPE = "application/pkixcmp"
_TEXT = "text/plain; charset=utf-8"
_NONCE_BODY = {"ir": 1, "cr": 2, "p10cr": 3, "kur": 4}
_BODY_OF_NONCE = {v: k for k, v in _NONCE_BODY.items()}

log = logging.getLogger(__name__)


class Replies:
    def __init__(self, nonce_key: bytes, now: Callable[[], dt.datetime]) -> None:
        self._nonce_key = nonce_key
        self._now = now

    def reply(self, exchange: Exchange, kind: str, content: bytes, *,
              implicit_confirm: bool = False, transaction_kind: str | None = None
              ) -> CmpReply:
        """`transaction_kind`: the request kind that began the transaction, for the nonce."""
        return self._protected(exchange, body(kind, content), 200, implicit_confirm,
                               transaction_kind)

    def error(self, exchange: Exchange, fail: FailInfo, reason: str, *,
              status: int = 200) -> CmpReply:
        log.info("CMP request refused", extra={"fail_info": fail.name, "reason": reason})
        return self._protected(exchange, body("error", error_content(fail, reason)), status,
                               False, None)

    def _nonce(self, header: Header | None, kind: str | None) -> bytes:
        """16 bytes: 7 random, the request kind this transaction began with, and a tag over
        them and the transactionID, so that a later message of the transaction shows it
        answers this server's reply (and says what the transaction was) without stored
        state."""
        head = os.urandom(7) + bytes((_NONCE_BODY.get(kind or "", 0),))
        transaction = header.transaction_id if header and header.transaction_id else b""
        return head + self._tag(transaction, head)

    def transaction_kind(self, header: Header) -> str | None:
        """The request kind named by a recipNonce this server made for this transaction;
        None if it did not make it. ("ir" when the kind was not recorded.)"""
        nonce = header.recip_nonce
        if nonce is None or len(nonce) != 16 or header.transaction_id is None:
            return None
        if not hmac.compare_digest(nonce[8:], self._tag(header.transaction_id, nonce[:8])):
            return None
        return _BODY_OF_NONCE.get(nonce[7], "ir")

    def _tag(self, transaction: bytes, head: bytes) -> bytes:
        return hmac.new(self._nonce_key, transaction + head, hashlib.sha256).digest()[:8]

    def _protected(self, exchange: Exchange, body_der: bytes, status: int,
                   implicit_confirm: bool, kind: str | None) -> CmpReply:
        header = exchange.header
        identity = exchange.identity
        auth = exchange.auth
        mac = auth.scheme.fresh() if isinstance(auth, MacAuth) else None
        sender = (exchange.chain[0].subject if mac is not None
                  else identity.certificate.subject).public_bytes()
        reply_header = ReplyHeader(
            pvno=header.pvno if header is not None and header.pvno in (2, 3) else 2,
            sender=sender,
            recipient=header.sender_general_name if header is not None
            else b"\xa4\x02" + NULL_DN,
            protection_algorithm=None, sender_kid=None,
            transaction_id=header.transaction_id if header is not None else None,
            sender_nonce=self._nonce(header, kind),
            recip_nonce=header.sender_nonce if header is not None else None,
            implicit_confirm=implicit_confirm, message_time=self._now())
        if mac is not None:
            assert isinstance(auth, MacAuth)
            reply_header = dataclasses.replace(
                reply_header, protection_algorithm=mac.algorithm_identifier(),
                sender_kid=auth.credential.encode())
            encoded = reply_header.encode()
            protection = mac.mac(auth.secret.encode(), protected_part(encoded, body_der))
            extra = [c.public_bytes(serialization.Encoding.DER) for c in exchange.chain]
            return _pkix(status, message(encoded, body_der, protection, extra))
        algorithm_der, _ = sign(identity.key, b"")
        reply_header = dataclasses.replace(
            reply_header, protection_algorithm=algorithm_der,
            sender_kid=_key_id(identity.certificate))
        encoded = reply_header.encode()
        _, signature = sign(identity.key, protected_part(encoded, body_der))
        extra = [identity.certificate.public_bytes(serialization.Encoding.DER),
                 *(c.public_bytes(serialization.Encoding.DER) for c in exchange.chain)]
        return _pkix(status, message(encoded, body_der, signature, extra))


def _key_id(certificate: x509.Certificate) -> bytes:
    try:
        return certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest


def _pkix(status: int, data: bytes) -> CmpReply:
    return CmpReply(status, data, (("Content-Type", CONTENT_TYPE), ("Cache-Control", "no-store")))


def text(status: int, message_text: str, *extra: tuple[str, str]) -> CmpReply:
    return CmpReply(status, (message_text + "\n").encode(),
                    (("Content-Type", _TEXT), *extra))
