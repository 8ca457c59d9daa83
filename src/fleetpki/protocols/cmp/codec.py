"""CMP messages (RFC 9810 §5) as plain values: `decode_request` reads what a client sent,
the writers below make what the server answers. No I/O, no policy.

A request keeps the exact bytes its protection covers (`protected_part`) and, per certificate
request, the bytes its proof of possession covers: both are cut from the message as received.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from pyasn1_alt_modules import rfc4211, rfc5280  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.protocols.cmp.asn1 import (
    IT_IMPLICIT_CONFIRM,
    READ_ERRORS,
    REASON_CODE,
    REG_CTRL_OLD_CERT_ID,
    FailInfo,
    Malformed,
    PkiStatus,
    algorithm,
    as_sequence,
    bit_string,
    bits,
    decode,
    directory_name,
    encode,
    free_text,
    general_name_directory,
    itav,
    name_der,
    octets,
    pki_message,
    status_info,
)

MAX_REQUESTS = 8  # certificate requests or revocations in one message
REQUESTS = ("ir", "cr", "p10cr", "kur")
BODIES = (*REQUESTS, "rr", "certConf", "pollReq", "genm")
NULL_DN = der.sequence()


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    pvno: int
    sender: bytes | None  # Name DER when the sender is a directoryName
    sender_general_name: bytes  # GeneralName DER as sent: the reply's recipient
    recipient: bytes | None  # Name DER when a directoryName
    message_time: dt.datetime | None
    protection_algorithm: str | None
    protection_parameters: bytes | None
    sender_kid: bytes | None
    transaction_id: bytes | None
    sender_nonce: bytes | None
    recip_nonce: bytes | None
    implicit_confirm: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Possession:
    """ProofOfPossession (RFC 4211 §4): which kind, and for a signature what it covers."""

    kind: str  # raVerified, signature, keyEncipherment, keyAgreement
    algorithm: str = ""
    signature: bytes = b""
    signs_input: bool = False  # poposkInput present (only when the template lacks names)


@dataclasses.dataclass(frozen=True, slots=True)
class CertificateRequest:
    cert_req_id: int
    subject: bytes | None  # Name DER
    public_key: bytes | None  # SubjectPublicKeyInfo DER; None: the server is to make the key
    extensions: bytes | None  # Extensions DER
    unsupported: tuple[str, ...]  # template fields a client may not set (serialNumber, ...)
    possession: Possession | None
    signed_part: bytes  # the CertRequest DER a signature proof covers
    old_certificate: tuple[bytes | None, int] | None  # oldCertId control: (issuer, serial)
    # Central key generation (no public key): the algorithm the template names, if any, as
    # (OID, DER of the parameters or None).
    key_algorithm: tuple[str, bytes | None] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Confirmation:
    cert_req_id: int
    cert_hash: bytes
    accepted: bool
    reason: str
    hash_algorithm: str | None  # CMP v3 hashAlg; None: the certificate's signature hash


@dataclasses.dataclass(frozen=True, slots=True)
class RevocationDetails:
    serial: int | None
    issuer: bytes | None  # Name DER
    reason: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class InfoRequest:
    info_type: str
    value: bytes | None  # DER of infoValue, when sent


@dataclasses.dataclass(frozen=True, slots=True)
class CmpRequest:
    header: Header
    body_type: str
    protected_part: bytes  # DER SEQUENCE { header, body } as received
    protection: bytes | None
    extra_certs: tuple[bytes, ...]
    certificate_requests: tuple[CertificateRequest, ...] = ()
    p10: bytes | None = None
    confirmations: tuple[Confirmation, ...] = ()
    polled: tuple[int, ...] = ()
    revocations: tuple[RevocationDetails, ...] = ()
    infos: tuple[InfoRequest, ...] = ()


class CmpRejected(Exception):
    """A request refused before the RA saw it: the error message to answer, and as much of the
    header as was read (to address the answer)."""

    def __init__(self, fail: FailInfo, message: str, header: Header | None = None) -> None:
        super().__init__(message)
        self.fail = fail
        self.header = header


# -- reading --------------------------------------------------------------------------------

def decode_request(data: bytes) -> CmpRequest:
    """Malformed if the bytes are no PKIMessage; CmpRejected for a message of a kind this
    server does not take."""
    message = decode(data, pki_message(), "PKIMessage")
    try:
        parts = der.elements(data)
    except (ValueError, IndexError):
        raise Malformed("the PKIMessage is not DER") from None
    if len(parts) < 2:
        raise Malformed("the PKIMessage lacks a header or body")
    try:
        header = _header(message["header"])
    except READ_ERRORS as error:
        raise Malformed(f"the PKIHeader cannot be read: {str(error)[:160]}") from None
    body = message["body"]
    body_type = body.getName()
    if body_type not in BODIES:
        raise CmpRejected(FailInfo.bad_request, f"a server does not take '{body_type}' messages "
                          f"(it takes {', '.join(BODIES)})", header)
    content = body.getComponent()
    protection = bits(message["protection"]) if message["protection"].isValue else None
    extra = tuple(encode(c) for c in message["extraCerts"]) if message["extraCerts"].isValue \
        else ()
    request = CmpRequest(header=header, body_type=body_type,
                         protected_part=der.sequence(parts[0], parts[1]),
                         protection=protection, extra_certs=extra)
    try:
        return _with_body(request, content, parts[1])
    except CmpRejected:
        raise
    except (*READ_ERRORS, Malformed) as error:
        raise CmpRejected(FailInfo.bad_data_format, f"the {body_type} body cannot be read: "
                          f"{str(error)[:160]}", header) from None


def _header(value: Any) -> Header:
    info = value["generalInfo"]
    implicit = info.isValue and any(str(i["infoType"]) == IT_IMPLICIT_CONFIRM for i in info)
    time = value["messageTime"]
    moment = None
    if time.isValue:
        try:
            moment = time.asDateTime
        except READ_ERRORS:
            raise Malformed("messageTime is not a valid GeneralizedTime") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    protection = value["protectionAlg"]
    oid, params = algorithm(protection) if protection.isValue else (None, None)
    return Header(
        pvno=int(value["pvno"]), sender=general_name_directory(value["sender"]),
        sender_general_name=encode(value["sender"]),
        recipient=general_name_directory(value["recipient"]), message_time=moment,
        protection_algorithm=oid, protection_parameters=params,
        sender_kid=octets(value["senderKID"]), transaction_id=octets(value["transactionID"]),
        sender_nonce=octets(value["senderNonce"]), recip_nonce=octets(value["recipNonce"]),
        implicit_confirm=implicit)


def _with_body(request: CmpRequest, content: Any, body_tlv: bytes) -> CmpRequest:
    kind = request.body_type
    if kind in ("ir", "cr", "kur"):
        raw = der.elements(der.content(body_tlv))
        if not 1 <= len(raw) <= MAX_REQUESTS:
            raise CmpRejected(FailInfo.bad_request, f"{len(raw)} certificate requests in one "
                              f"message; 1-{MAX_REQUESTS} are taken", request.header)
        requests = tuple(_certificate_request(msg, der.elements(raw_msg)[0])
                         for msg, raw_msg in zip(content, raw, strict=True))
        return dataclasses.replace(request, certificate_requests=requests)
    if kind == "p10cr":
        return dataclasses.replace(request, p10=der.content(body_tlv))
    if kind == "certConf":
        return dataclasses.replace(request, confirmations=tuple(
            _confirmation(status) for status in content))
    if kind == "pollReq":
        return dataclasses.replace(request, polled=tuple(int(p["certReqId"]) for p in content))
    if kind == "rr":
        if not 1 <= len(content) <= MAX_REQUESTS:
            raise CmpRejected(FailInfo.bad_request, "an rr must name 1-8 certificates",
                              request.header)
        return dataclasses.replace(request, revocations=tuple(
            _revocation(details) for details in content))
    infos = tuple(InfoRequest(str(i["infoType"]),
                              bytes(i["infoValue"]) if i["infoValue"].isValue else None)
                  for i in content)
    return dataclasses.replace(request, infos=infos)


def _certificate_request(message: Any, signed_part: bytes) -> CertificateRequest:
    request = message["certReq"]
    template = request["certTemplate"]
    unsupported = tuple(name for name in ("serialNumber", "signingAlg", "issuerUID",
                                          "subjectUID") if template[name].isValue)
    public_key, key_algorithm = None, None
    if template["publicKey"].isValue:
        spki = template["publicKey"]
        # RFC 9483 §4.1.6: an algorithm with an empty key asks the server to make the key.
        if len(bits(spki["subjectPublicKey"])):
            public_key = as_sequence(spki)
        else:
            key_algorithm = algorithm(spki["algorithm"])
    return CertificateRequest(
        cert_req_id=int(request["certReqId"]),
        subject=name_der(template["subject"]) if template["subject"].isValue else None,
        public_key=public_key,
        extensions=as_sequence(template["extensions"]) if template["extensions"].isValue
        else None,
        unsupported=unsupported, possession=_possession(message["popo"]),
        signed_part=signed_part, old_certificate=_old_certificate(request["controls"]),
        key_algorithm=key_algorithm)


def _possession(popo: Any) -> Possession | None:
    if not popo.isValue:
        return None
    kind = popo.getName()
    if kind != "signature":
        return Possession(kind)
    signing = popo.getComponent()
    return Possession(kind, str(signing["algorithmIdentifier"]["algorithm"]),
                      bits(signing["signature"]), signing["poposkInput"].isValue)


def _old_certificate(controls: Any) -> tuple[bytes | None, int] | None:
    if not controls.isValue:
        return None
    for control in controls:
        if str(control["type"]) == REG_CTRL_OLD_CERT_ID:
            cert_id = decode(bytes(control["value"]), rfc4211.CertId(), "oldCertId")
            return general_name_directory(cert_id["issuer"]), int(cert_id["serialNumber"])
    return None


def _confirmation(status: Any) -> Confirmation:
    info = status["statusInfo"]
    accepted = not info.isValue or int(info["status"]) in (PkiStatus.accepted,
                                                          PkiStatus.granted_with_mods)
    reason = ""
    if info.isValue and info["statusString"].isValue:
        reason = "; ".join(str(text) for text in info["statusString"])[:300]
    hash_algorithm = str(status["hashAlg"]["algorithm"]) if status["hashAlg"].isValue else None
    return Confirmation(int(status["certReqId"]), bytes(status["certHash"]), accepted, reason,
                        hash_algorithm)


def _revocation(details: Any) -> RevocationDetails:
    template = details["certDetails"]
    serial = int(template["serialNumber"]) if template["serialNumber"].isValue else None
    issuer = name_der(template["issuer"]) if template["issuer"].isValue else None
    reason = None
    if details["crlEntryDetails"].isValue:
        for extension in details["crlEntryDetails"]:
            if str(extension["extnID"]) == REASON_CODE:
                reason = int(decode(bytes(extension["extnValue"]), rfc5280.CRLReason(),
                                    "reasonCode"))
    return RevocationDetails(serial, issuer, reason)


# -- writing --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class ReplyHeader:
    pvno: int
    sender: bytes  # Name DER
    recipient: bytes  # GeneralName DER
    protection_algorithm: bytes | None  # AlgorithmIdentifier DER
    sender_kid: bytes | None
    transaction_id: bytes | None
    sender_nonce: bytes
    recip_nonce: bytes | None
    implicit_confirm: bool
    message_time: dt.datetime

    def encode(self) -> bytes:
        parts = [der.integer(self.pvno), directory_name(self.sender), self.recipient,
                 der.context(0, der.generalized_time(self.message_time))]
        if self.protection_algorithm is not None:
            parts.append(der.context(1, self.protection_algorithm))
        if self.sender_kid is not None:
            parts.append(der.context(2, der.octet_string(self.sender_kid)))
        if self.transaction_id is not None:
            parts.append(der.context(4, der.octet_string(self.transaction_id)))
        parts.append(der.context(5, der.octet_string(self.sender_nonce)))
        if self.recip_nonce is not None:
            parts.append(der.context(6, der.octet_string(self.recip_nonce)))
        if self.implicit_confirm:
            parts.append(der.context(8, der.sequence(itav(IT_IMPLICIT_CONFIRM,
                                                          der.tlv(der.NULL, b"")))))
        return der.sequence(*parts)


BODY_TAGS = {"ip": 1, "cp": 3, "kup": 8, "rp": 12, "pkiconf": 19, "genp": 22, "error": 23,
             "pollRep": 26}
REPLY_TO = {"ir": "ip", "cr": "cp", "p10cr": "cp", "kur": "kup"}


def body(kind: str, content: bytes) -> bytes:
    return der.context(BODY_TAGS[kind], content)


def protected_part(header: bytes, body_der: bytes) -> bytes:
    return der.sequence(header, body_der)


def message(header: bytes, body_der: bytes, protection: bytes | None,
            extra_certs: Sequence[bytes] = ()) -> bytes:
    parts = [header, body_der]
    if protection is not None:
        parts.append(der.context(0, bit_string(protection)))
    if extra_certs:
        parts.append(der.context(1, der.sequence(*extra_certs)))
    return der.sequence(*parts)


def cert_response(cert_req_id: int, status: bytes, certificate: bytes | None = None,
                  enveloped_key: bytes | None = None) -> bytes:
    """CertResponse; `certificate` DER goes into certifiedKeyPair.certOrEncCert [0], a
    centrally generated key (EnvelopedData DER, key_delivery.py) into privateKey [0]."""
    if certificate is None:
        return der.sequence(der.signed_integer(cert_req_id), status)
    parts = [der.context(0, certificate)]
    if enveloped_key is not None:  # privateKey [0] EXPLICIT EncryptedKey: envelopedData [0]
        parts.append(der.context(0, der.context(0, der.content(enveloped_key))))
    return der.sequence(der.signed_integer(cert_req_id), status, der.sequence(*parts))


def cert_rep(responses: Sequence[bytes], ca_pubs: Sequence[bytes] = ()) -> bytes:
    pubs = [der.context(1, der.sequence(*ca_pubs))] if ca_pubs else []
    return der.sequence(*pubs, der.sequence(*responses))


def revocation_reply(statuses: Sequence[bytes]) -> bytes:
    return der.sequence(der.sequence(*statuses))


def poll_reply(cert_req_id: int, check_after: int, reason: str) -> bytes:
    return der.sequence(der.sequence(der.signed_integer(cert_req_id), der.integer(check_after),
                                     free_text(reason)))


def error_content(fail: FailInfo, text: str) -> bytes:
    return der.sequence(status_info(PkiStatus.rejection, text, fail))


def pkiconf() -> bytes:
    return der.tlv(der.NULL, b"")
