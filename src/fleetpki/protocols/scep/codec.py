"""SCEP messages (RFC 8894 §3): bytes <-> frozen values, no I/O.

A request is read in three steps, so that each failure can be answered as SCEP asks:
`decode_request` reads the signed layer (a failure here cannot be answered in SCEP: HTTP 400),
`check_request` verifies the signature and the signing time, `open_request` decrypts the
payload. After the first step every failure is a CertRep FAILURE with a failInfo (ScepFailure).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

# pyasn1 and its modules ship no type information; the ignores are scoped to these imports.
from pyasn1.codec.ber import decoder as ber_decoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.codec.der import encoder as der_encoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped, unused-ignore]
from pyasn1.type import univ, useful  # type: ignore[import-untyped, unused-ignore]
from pyasn1_alt_modules import rfc5652, rfc8894  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.protocols.scep.cms import (
    CmsError,
    CmsProblem,
    RsaRecipient,
    SignedMessage,
    attribute,
    decode_value,
    open_envelope,
    open_signed,
    seal_envelope,
    sign,
    verify,
)

__all__ = [
    "CAPABILITIES", "CT_CA_CERT", "CT_CA_RA_CERT", "CT_PKI_MESSAGE", "FailInfo",
    "IssuerAndSerial", "MessageType", "PkiStatus", "ScepFailure", "ScepMalformed", "ScepPayload",
    "ScepReplyTo", "ScepRequest", "certs_only", "check_request", "decode_request",
    "encode_cert_rep",
    "open_request",
]

CT_CA_CERT = "application/x-x509-ca-cert"
CT_CA_RA_CERT = "application/x-x509-ca-ra-cert"
CT_PKI_MESSAGE = "application/x-pki-message"
# RFC 8894 §3.5.2. AES is advertised with SHA-384 as well: strongSwan uses AES only when both
# are listed. DES3 is accepted from clients that never ask (RFC 8894 §3.5.2 "DES3") but not
# advertised, so that a client reading the list picks AES.
CAPABILITIES = ("POSTPKIOperation", "Renewal", "AES", "SHA-256", "SHA-384", "SHA-512",
                "SCEPStandard")

_ID_TRANSACTION = str(rfc8894.id_transactionID)
_ID_MESSAGE_TYPE = str(rfc8894.id_messageType)
_ID_PKI_STATUS = str(rfc8894.id_pkiStatus)
_ID_FAIL_INFO = str(rfc8894.id_failInfo)
_ID_SENDER_NONCE = str(rfc8894.id_senderNonce)
_ID_RECIPIENT_NONCE = str(rfc8894.id_recipientNonce)
_ID_FAIL_INFO_TEXT = str(rfc8894.id_scep_failInfoText)
_ID_SIGNING_TIME = "1.2.840.113549.1.9.5"
_MAX_TRANSACTION_ID = 128


class MessageType(enum.Enum):
    cert_rep = "3"
    renewal_req = "17"  # RFC 8894 §3.3.1.2
    pkcs_req = "19"
    cert_poll = "20"  # GetCertInitial in the drafts
    get_cert = "21"
    get_crl = "22"


class PkiStatus(enum.Enum):
    success = "0"
    failure = "2"
    pending = "3"


class FailInfo(enum.Enum):
    bad_alg = "0"
    bad_message_check = "1"
    bad_request = "2"
    bad_time = "3"
    bad_cert_id = "4"


class ScepMalformed(Exception):
    """Not a SCEP message we can answer in SCEP: no transaction to reply to."""


@dataclasses.dataclass(frozen=True, slots=True)
class ScepReplyTo:
    """What any reply to a request repeats or needs: RFC 8894 §3.2.1.4."""

    transaction_id: bytes  # the attribute value's DER, echoed as it came
    sender_nonce: bytes
    digest: hashes.HashAlgorithm  # the reply is signed with the request's digest when we can


class ScepFailure(Exception):
    """A request we answer with CertRep FAILURE and this failInfo."""

    def __init__(self, fail_info: FailInfo, message: str, reply_to: ScepReplyTo) -> None:
        super().__init__(message)
        self.fail_info = fail_info
        self.reply_to = reply_to


@dataclasses.dataclass(frozen=True, slots=True)
class ScepRequest:
    message_type: MessageType
    transaction_id: str
    signing_time: dt.datetime | None
    reply_to: ScepReplyTo
    signed: SignedMessage

    @property
    def signer(self) -> x509.Certificate:
        return self.signed.signer


@dataclasses.dataclass(frozen=True, slots=True)
class IssuerAndSerial:
    issuer: bytes  # DER of the Name
    serial: int


@dataclasses.dataclass(frozen=True, slots=True)
class ScepPayload:
    """The decrypted messageData (RFC 8894 §3.3)."""

    cipher: str  # OID, for the reply's envelope
    csr: bytes | None = None  # PKCSReq, RenewalReq: the PKCS #10 DER
    subject: bytes | None = None  # CertPoll: the Name DER of IssuerAndSubject
    certificate: IssuerAndSerial | None = None  # GetCert, GetCRL


def decode_request(data: bytes) -> ScepRequest:
    try:
        signed = open_signed(data)
    except CmsError as error:
        raise ScepMalformed(f"not a SCEP message: {error}") from None
    transaction = _single(signed, _ID_TRANSACTION)
    nonce = _single(signed, _ID_SENDER_NONCE)
    if transaction is None or nonce is None:
        raise ScepMalformed("the message lacks a transactionID or senderNonce (RFC 8894 "
                            "§3.2.1.4)")
    try:
        digest = signed.digest
    except CmsError:
        digest = hashes.SHA256()
    try:
        nonce_decoded = decode_value(nonce)
        transaction_id = str(decode_value(transaction))
    except CmsError as error:
        raise ScepMalformed(f"unreadable transactionID or senderNonce: {error}") from None
    if not isinstance(nonce_decoded, univ.OctetString):
        raise ScepMalformed("senderNonce must be an OCTET STRING (RFC 8894 §3.2.1.5)")
    nonce_value = bytes(nonce_decoded)
    reply_to = ScepReplyTo(transaction, nonce_value, digest)
    if not 1 <= len(transaction_id) <= _MAX_TRANSACTION_ID or not transaction_id.isprintable():
        raise ScepFailure(FailInfo.bad_request, f"transactionID must be 1 to "
                                                f"{_MAX_TRANSACTION_ID} printable characters",
                          reply_to)
    if len(nonce_value) != 16:
        raise ScepFailure(FailInfo.bad_request, "senderNonce must be 16 octets (RFC 8894 "
                                                "§3.2.1.5)", reply_to)
    message_type = _single(signed, _ID_MESSAGE_TYPE)
    try:
        kind = MessageType(str(decode_value(message_type))) if message_type else None
    except (ValueError, CmsError):
        kind = None
    if kind is None or kind is MessageType.cert_rep:
        raise ScepFailure(FailInfo.bad_request, "unknown or missing messageType (expected "
                                                "PKCSReq, RenewalReq, CertPoll, GetCert or "
                                                "GetCRL)", reply_to)
    return ScepRequest(kind, transaction_id, _signing_time(signed, reply_to), reply_to, signed)


def check_request(request: ScepRequest, now: dt.datetime, max_skew: dt.timedelta | None
                  ) -> None:
    """The signature (badMessageCheck, badAlg) and the signing time (badTime)."""
    try:
        verify(request.signed)
    except CmsError as error:
        raise _failure(error, request.reply_to) from None
    if max_skew is not None and request.signing_time is not None \
            and abs(request.signing_time - now) > max_skew:
        when = f"{request.signing_time:%Y-%m-%d %H:%M:%S}Z"
        raise ScepFailure(FailInfo.bad_time, f"signingTime {when} is more than {max_skew} from "
                                             "the server's clock: set the device's clock",
                          request.reply_to)


def open_request(request: ScepRequest, recipients: Sequence[RsaRecipient]) -> ScepPayload:
    """Decrypt and parse the messageData the request's type calls for."""
    if request.signed.content is None:
        raise ScepFailure(FailInfo.bad_request, "the request carries no pkcsPKIEnvelope",
                          request.reply_to)
    try:
        opened = open_envelope(request.signed.content, recipients)
    except CmsError as error:
        raise _failure(error, request.reply_to) from None
    content = opened.content
    kind = request.message_type
    try:
        if kind in (MessageType.pkcs_req, MessageType.renewal_req):
            return ScepPayload(opened.cipher, csr=content)
        if kind is MessageType.cert_poll:
            value = _strict(content, rfc8894.IssuerAndSubject())
            return ScepPayload(opened.cipher, subject=der_encoder.encode(value["subject"]))
        value = _strict(content, rfc5652.IssuerAndSerialNumber())
        return ScepPayload(opened.cipher, certificate=IssuerAndSerial(
            der_encoder.encode(value["issuer"]), int(value["serialNumber"])))
    except (PyAsn1Error, ValueError, TypeError):
        raise ScepFailure(FailInfo.bad_request, f"the {kind.name} messageData cannot be parsed",
                          request.reply_to) from None


def encode_cert_rep(reply_to: ScepReplyTo, status: PkiStatus, *, signer: RsaRecipient,
                    sender_nonce: bytes, fail_info: FailInfo | None = None, text: str = "",
                    certificates: Sequence[x509.Certificate] = (), crl: bytes | None = None,
                    recipient: x509.Certificate | None = None, cipher: str | None = None
                    ) -> bytes:
    """CertRep (RFC 8894 §3.3.2): SUCCESS carries a certs-only SignedData (the certificates or
    the CRL) enveloped to `recipient`; PENDING and FAILURE carry no content."""
    attributes = [
        attribute(_ID_MESSAGE_TYPE, _printable(MessageType.cert_rep.value)),
        attribute(_ID_PKI_STATUS, _printable(status.value)),
        attribute(_ID_TRANSACTION, reply_to.transaction_id),
        attribute(_ID_SENDER_NONCE, der.octet_string(sender_nonce)),
        attribute(_ID_RECIPIENT_NONCE, der.octet_string(reply_to.sender_nonce)),
    ]
    if fail_info is not None:
        attributes.append(attribute(_ID_FAIL_INFO, _printable(fail_info.value)))
        if text:  # RFC 8894 §3.2.1.4.4: a human-readable reason beside the code
            attributes.append(attribute(_ID_FAIL_INFO_TEXT, _utf8(text[:400])))
    content = None
    if status is PkiStatus.success:
        assert recipient is not None and cipher is not None
        content = seal_envelope(certs_only(certificates, crl), recipient, cipher)
    return sign(content, attributes, signer.certificate, signer.key, reply_to.digest,
                [signer.certificate])


def certs_only(certificates: Sequence[x509.Certificate], crl: bytes | None = None) -> bytes:
    """A degenerate SignedData (no signers): certificates in the order given, or one CRL."""
    body = [der.integer(1), der.set_of(), der.sequence(der.oid("1.2.840.113549.1.7.1"))]
    if certificates:
        body.append(der.context(0, b"".join(c.public_bytes(serialization.Encoding.DER)
                                            for c in certificates)))
    if crl is not None:
        body.append(der.context(1, crl))
    body.append(der.set_of())
    return der.sequence(der.oid("1.2.840.113549.1.7.2"), der.context(0, der.sequence(*body)))


def _failure(error: CmsError, reply_to: ScepReplyTo) -> ScepFailure:
    fail_info = {
        CmsProblem.algorithm: FailInfo.bad_alg,
        CmsProblem.signature: FailInfo.bad_message_check,
        CmsProblem.decryption: FailInfo.bad_message_check,
    }.get(error.problem, FailInfo.bad_request)
    return ScepFailure(fail_info, str(error), reply_to)


def _single(signed: SignedMessage, oid: str) -> bytes | None:
    values = signed.attributes.get(oid, ())
    return values[0] if len(values) == 1 else None


def _signing_time(signed: SignedMessage, reply_to: ScepReplyTo) -> dt.datetime | None:
    value = _single(signed, _ID_SIGNING_TIME)
    if value is None:
        return None
    try:
        decoded = decode_value(value)
        if isinstance(decoded, useful.UTCTime | useful.GeneralizedTime):
            moment: dt.datetime = decoded.asDateTime
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except (CmsError, PyAsn1Error, ValueError):
        pass
    raise ScepFailure(FailInfo.bad_time, "signingTime cannot be read", reply_to)


def _strict(data: bytes, spec: univ.Sequence) -> univ.Sequence:
    value, rest = ber_decoder.decode(data, asn1Spec=spec)
    if rest:
        raise ValueError("trailing bytes")
    return value


def _printable(text: str) -> bytes:
    return der.tlv(0x13, text.encode("ascii"))


def _utf8(text: str) -> bytes:
    return der.tlv(0x0C, text.encode("utf-8"))


