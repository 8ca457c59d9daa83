"""SCEP without I/O: one call in, one reply out (RFC 8894 §4: `?operation=...` on one URL).

Routes are `/scep` (the default SCEP profile) and `/scep/<label>`, each also with Cisco's
`/pkiclient.exe` suffix. GetCACaps and GetCACert answer from memory; PKIOperation decodes the
message (codec.py), lets the RA decide, and signs the CertRep with the RA certificate of the
profile's issuing CA (scep_identity.py makes it: RSA, because SCEP's key transport is RSA).

`handle` is synchronous and may block on the RA: an asynchronous caller runs PKIOperation off
its event loop.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fleetpki.core.csr import challenge_password
from fleetpki.core.errors import FleetPKIError, NotFound
from fleetpki.core.profile import Profile
from fleetpki.core.records import IssuedCertificate
from fleetpki.protocols.scep.cms import SINGLE_DES, RsaRecipient
from fleetpki.protocols.scep.codec import (
    CAPABILITIES,
    CT_CA_RA_CERT,
    CT_PKI_MESSAGE,
    FailInfo,
    MessageType,
    PkiStatus,
    ScepFailure,
    ScepMalformed,
    ScepPayload,
    ScepReplyTo,
    ScepRequest,
    certs_only,
    check_request,
    decode_request,
    encode_cert_rep,
    open_request,
)
from fleetpki.protocols.scep.errors import to_fail_info
from fleetpki.ra.api import (
    Enrolled,
    EnrollmentKind,
    EnrollmentPending,
    EnrollmentRequest,
    Transaction,
)

__all__ = ["PREFIX", "ScepCall", "ScepHandler", "ScepIdentity", "ScepReply", "ScepSettings"]

log = logging.getLogger(__name__)

PREFIX = "/scep"
MAX_MESSAGE_BYTES = 64 * 1024
_LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TEXT = "text/plain; charset=utf-8"
_TRIPLE_DES = "1.2.840.113549.3.7"


class ScepAuthority(Protocol):
    """What the SCEP front end asks of the RA (DESIGN.md §1: declared on the consumer's side)."""

    def profile_for(self, label: str | None) -> Profile: ...

    def ca_certificates(self, label: str | None) -> list[x509.Certificate]: ...


class ScepTransactions(Protocol):
    def enroll(self, request: EnrollmentRequest, transaction: Transaction
               ) -> Enrolled | EnrollmentPending: ...

    def poll(self, transaction: Transaction) -> Enrolled | EnrollmentPending: ...


class ScepRetrieval(Protocol):
    def certificate(self, issuer: bytes, serial: int, requester: bytes) -> IssuedCertificate: ...

    def crl(self, issuer: bytes, serial: int) -> bytes: ...


@dataclasses.dataclass(frozen=True, slots=True)
class ScepIdentity:
    """The RA certificate of one issuing CA: `current` signs replies and is what GetCACert
    shows; requests may be encrypted to it or to a predecessor clients still hold."""

    current: RsaRecipient
    previous: tuple[RsaRecipient, ...] = ()

    @property
    def recipients(self) -> tuple[RsaRecipient, ...]:
        return (self.current, *self.previous)


@dataclasses.dataclass(frozen=True, slots=True)
class ScepSettings:
    default_profile: str | None  # what `/scep` without a label enrolls into
    max_clock_skew: dt.timedelta | None  # signingTime tolerance (badTime); None: not checked
    # Single DES (56-bit keys) from legacy clients, e.g. micromdm's scepclient: refused (badAlg)
    # unless an operator accepts it. Replies to such a client use triple DES.
    accept_single_des: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class ScepCall:
    method: str
    label: str | None  # from the path; None: the default SCEP profile
    query: Mapping[str, str]
    body: bytes | None  # POST only; None: larger than MAX_MESSAGE_BYTES
    client_address: str


@dataclasses.dataclass(frozen=True, slots=True)
class ScepReply:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


class ScepHandler:
    def __init__(self, authority: ScepAuthority, transactions: ScepTransactions,
                 retrieval: ScepRetrieval, identities: Callable[[str], ScepIdentity],
                 settings: ScepSettings, now: Callable[[], dt.datetime]) -> None:
        """`identities`: the RA identity of an issuing CA, by CA name."""
        self._authority = authority
        self._transactions = transactions
        self._retrieval = retrieval
        self._identities = identities
        self._settings = settings
        self._now = now

    def handle(self, call: ScepCall) -> ScepReply:
        try:
            return self._handle(call)
        except Exception as error:  # noqa: BLE001 - never a stack trace to the client
            return _error_reply(error)

    def _handle(self, call: ScepCall) -> ScepReply:
        operation = call.query.get("operation", "")
        if call.label is not None and not _LABEL.match(call.label):
            return _text(404, "no such SCEP label")
        if operation == "GetCACaps":
            self._profile(call.label)
            return ScepReply(200, ("\n".join(CAPABILITIES) + "\n").encode(),
                             (("content-type", _TEXT),))
        if operation == "GetCACert":
            profile = self._profile(call.label)
            identity = self._identities(profile.issuer)
            chain = self._authority.ca_certificates(profile.name)
            # RFC 8894 §4.2.1.2: the RA and CA certificates as a certs-only SignedData. The
            # root is included: strongSwan's --scepca refuses a bundle without one.
            return ScepReply(200, certs_only([identity.current.certificate, *chain]),
                             (("content-type", CT_CA_RA_CERT),))
        if operation == "PKIOperation":
            return self._pki_operation(call)
        if not operation:
            return _text(400, "the 'operation' query parameter is missing (GetCACaps, "
                              "GetCACert, PKIOperation)")
        return _text(400, f"unknown SCEP operation {operation[:40]!r} (GetCACaps, GetCACert, "
                          "PKIOperation)")

    def _profile(self, label: str | None) -> Profile:
        name = label if label is not None else self._settings.default_profile
        if name is None:
            raise NotFound("no profile enrolls over SCEP here: set enrollment.scep = true in "
                           "a profile and use /scep/<profile>")
        profile = self._authority.profile_for(name)
        if not profile.enrollment.scep:
            raise NotFound(f"profile '{profile.name}' does not enroll over SCEP "
                           "(enrollment.scep = false)")
        return profile

    # -- PKIOperation --------------------------------------------------------------------

    def _pki_operation(self, call: ScepCall) -> ScepReply:
        message = self._message(call)
        if isinstance(message, ScepReply):
            return message
        profile = self._profile(call.label)
        identity = self._identities(profile.issuer)
        try:
            request = decode_request(message)
        except ScepMalformed as error:
            return _text(400, str(error))
        except ScepFailure as failure:
            return self._failure(failure.reply_to, failure.fail_info, str(failure), identity)
        try:
            check_request(request, self._now(), self._settings.max_clock_skew)
            payload = open_request(request, identity.recipients)
            cipher = self._reply_cipher(payload, request.reply_to)
            return self._answer(request, payload, profile, identity, cipher, call)
        except ScepFailure as failure:
            log.info("scep request refused", extra={
                "transaction": request.transaction_id, "fail_info": failure.fail_info.name,
                "reason": str(failure)[:200]})
            return self._failure(failure.reply_to, failure.fail_info, str(failure), identity)
        except FleetPKIError as error:
            retrieving = request.message_type in (MessageType.get_cert, MessageType.get_crl)
            refusal = to_fail_info(error, retrieving=retrieving)
            if refusal is None:
                return _error_reply(error)
            return self._failure(request.reply_to, refusal.fail_info, refusal.text, identity)

    def _message(self, call: ScepCall) -> bytes | ScepReply:
        if call.method == "POST":
            if call.body is None or len(call.body) > MAX_MESSAGE_BYTES:
                return _text(413, f"SCEP messages are limited to {MAX_MESSAGE_BYTES} bytes")
            return call.body
        text = call.query.get("message", "")
        # A '+' that the client did not percent-encode arrives as a space (form decoding).
        text = "".join(text.replace(" ", "+").split())
        if len(text) > MAX_MESSAGE_BYTES * 4 // 3 + 4:
            return _text(413, f"SCEP messages are limited to {MAX_MESSAGE_BYTES} bytes")
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4),
                                    altchars=b"-_" if "-" in text or "_" in text else None,
                                    validate=True)
        except (binascii.Error, ValueError):
            return _text(400, "the message parameter is not base64 (RFC 8894 §4.3)")

    def _reply_cipher(self, payload: ScepPayload, reply_to: ScepReplyTo) -> str:
        if payload.cipher != SINGLE_DES:
            return payload.cipher
        if not self._settings.accept_single_des:
            raise ScepFailure(FailInfo.bad_alg, "single DES is refused: encrypt with AES or "
                                                "triple DES (the server may be configured with "
                                                "scep.accept_single_des for legacy clients)",
                              reply_to)
        return _TRIPLE_DES

    def _answer(self, request: ScepRequest, payload: ScepPayload, profile: Profile,
                identity: ScepIdentity, cipher: str, call: ScepCall) -> ScepReply:
        kind = request.message_type
        transaction = Transaction("scep", request.transaction_id, _fingerprint(request.signer))
        if kind in (MessageType.pkcs_req, MessageType.renewal_req):
            assert payload.csr is not None
            renewal = kind is MessageType.renewal_req
            signer = request.signer.public_bytes(serialization.Encoding.DER)
            enrollment = EnrollmentRequest(
                csr=payload.csr, kind=EnrollmentKind.reenroll if renewal else EnrollmentKind.enroll,
                client_address=call.client_address, label=profile.name,
                client_certificate=signer if renewal or not _self_signed(request.signer) else None,
                challenge_password=None if renewal else challenge_password(payload.csr),
                protocol="scep")
            outcome = self._transactions.enroll(enrollment, transaction)
        elif kind is MessageType.cert_poll:
            outcome = self._transactions.poll(transaction)
        elif kind is MessageType.get_cert:
            assert payload.certificate is not None
            record = self._retrieval.certificate(
                payload.certificate.issuer, payload.certificate.serial,
                request.signer.public_bytes(serialization.Encoding.DER))
            outcome = Enrolled(record)
        else:
            assert payload.certificate is not None
            crl = self._retrieval.crl(payload.certificate.issuer, payload.certificate.serial)
            return self._success(request, identity, cipher, crl=crl)
        if isinstance(outcome, EnrollmentPending):
            return self._reply(encode_cert_rep(request.reply_to, PkiStatus.pending,
                                               signer=identity.current,
                                               sender_nonce=os.urandom(16)))
        issued = x509.load_der_x509_certificate(outcome.certificate.der)
        return self._success(request, identity, cipher, certificates=[issued])

    def _success(self, request: ScepRequest, identity: ScepIdentity, cipher: str, *,
                 certificates: list[x509.Certificate] | None = None,
                 crl: bytes | None = None) -> ScepReply:
        # RFC 8894 §3.3.2: enveloped to the certificate that signed the request (the
        # self-signed one, or the current certificate of a renewal). Only the issued
        # certificate: clients take the first (scepclient) or the last non-CA one (strongSwan).
        return self._reply(encode_cert_rep(
            request.reply_to, PkiStatus.success, signer=identity.current,
            sender_nonce=os.urandom(16), certificates=certificates or [], crl=crl,
            recipient=request.signer, cipher=cipher))

    def _failure(self, reply_to: ScepReplyTo, fail_info: FailInfo, text: str,
                 identity: ScepIdentity) -> ScepReply:
        return self._reply(encode_cert_rep(reply_to, PkiStatus.failure, signer=identity.current,
                                           sender_nonce=os.urandom(16), fail_info=fail_info,
                                           text=text))

    @staticmethod
    def _reply(body: bytes) -> ScepReply:
        return ScepReply(200, body, (("content-type", CT_PKI_MESSAGE),))


def _fingerprint(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def _text(status: int, message: str) -> ScepReply:
    return ScepReply(status, (message + "\n").encode(), (("content-type", _TEXT),))


def _error_reply(error: Exception) -> ScepReply:
    """Outside a SCEP transaction (GetCACert, an unknown label) or on our side's failure."""
    if isinstance(error, FleetPKIError):
        refusal = to_fail_info(error)
        if refusal is not None:
            status = 404 if isinstance(error, NotFound) else 400
            return _text(status, str(error))
        log.error("scep request failed on the server side: %s", error)
    else:
        log.exception("scep request failed unexpectedly")
    return ScepReply(503, b"the CA cannot serve this request now; try again later\n",
                     (("content-type", _TEXT), ("retry-after", "60")))
