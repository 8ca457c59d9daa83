"""The ASN.1 of CMP (RFC 9810, which folds in RFC 4210 and RFC 9480) and CRMF (RFC 4211), and
pyasn1's ways with it, kept in this one module.

CMP is read with pyasn1 (pyasn1-alt-modules rfc9810) and written as DER with core/der.py:
reading must cope with every client, writing needs only the handful of structures a server
sends, and hand-written DER is easier to check against the RFC than pyasn1's object building.
Protection and proof of possession cover exact bytes, which are cut from the message as
received (core/der.py `elements`), never re-encoded.
"""

from __future__ import annotations

import enum
from typing import Any

from pyasn1.codec.ber import decoder as ber_decoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.codec.der import encoder as der_encoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped, unused-ignore]
from pyasn1_alt_modules import rfc9810  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.protocols.ber_problems import ber_problem
from fleetpki.protocols.cms_parts import (  # CMP's structures use it throughout
    algorithm_identifier as algorithm_identifier,
)

# -- object identifiers -------------------------------------------------------------------

PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13"  # RFC 4210 §5.1.3.1
PBMAC1 = "1.2.840.113549.1.5.14"  # RFC 8018 §7.1, RFC 9481 §6.1.3
PBKDF2 = "1.2.840.113549.1.5.12"
HMAC_SHA1 = "1.3.6.1.5.5.8.1.2"  # RFC 4210's spelling of HMAC-SHA1 for PasswordBasedMac
HMAC_WITH = {  # RFC 8018 hmacWithSHA*: PBMAC1's PRF and MAC, and PasswordBasedMac's MAC
    "1.2.840.113549.2.7": "sha1", "1.2.840.113549.2.8": "sha224",
    "1.2.840.113549.2.9": "sha256", "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
DIGESTS = {  # one-way functions of PasswordBasedMac; hash algorithms of certConf
    "1.3.14.3.2.26": "sha1", "2.16.840.1.101.3.4.2.4": "sha224",
    "2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"

IT = "1.3.6.1.5.5.7.4"  # id-it, RFC 9810 §5.3.19
IT_SIGN_KEY_PAIR_TYPES = f"{IT}.2"
IT_CA_KEY_UPDATE_INFO = f"{IT}.5"
IT_CURRENT_CRL = f"{IT}.6"
IT_IMPLICIT_CONFIRM = f"{IT}.13"
IT_CONFIRM_WAIT_TIME = f"{IT}.14"
IT_CA_CERTS = f"{IT}.17"
IT_ROOT_CA_KEY_UPDATE = f"{IT}.18"
IT_CERT_REQ_TEMPLATE = f"{IT}.19"
IT_ROOT_CA_CERT = f"{IT}.20"
IT_CERT_PROFILE = f"{IT}.21"
IT_CRL_STATUS_LIST = f"{IT}.22"
IT_CRLS = f"{IT}.23"

REG_CTRL_OLD_CERT_ID = "1.3.6.1.5.5.7.5.1.5"  # RFC 4211 §6.5: the certificate a kur replaces
REG_CTRL_ALG_ID = "1.3.6.1.5.5.7.5.1.11"  # RFC 9810 §5.3.19.16 (certReqTemplate)
REG_CTRL_RSA_KEY_LEN = "1.3.6.1.5.5.7.5.1.12"
REASON_CODE = "2.5.29.21"


class FailInfo(enum.IntEnum):
    """PKIFailureInfo bit numbers (RFC 9810 §5.2.3)."""

    bad_alg = 0
    bad_message_check = 1
    bad_request = 2
    bad_time = 3
    bad_cert_id = 4
    bad_data_format = 5
    wrong_authority = 6
    incorrect_data = 7
    bad_pop = 9
    cert_revoked = 10
    cert_confirmed = 11
    wrong_integrity = 12
    bad_recipient_nonce = 13
    unaccepted_policy = 15
    unaccepted_extension = 16
    bad_sender_nonce = 18
    bad_cert_template = 19
    signer_not_trusted = 20
    transaction_id_in_use = 21
    unsupported_version = 22
    not_authorized = 23
    system_unavail = 24
    system_failure = 25


class PkiStatus(enum.IntEnum):
    accepted = 0
    granted_with_mods = 1
    rejection = 2
    waiting = 3
    revocation_warning = 4
    revocation_notification = 5


class Malformed(Exception):
    """The bytes are not the CMP structure they should be (badDataFormat)."""


# What reading a decoded value can raise beyond Malformed: pyasn1 checks some values (times,
# constraints) only when they are used.
READ_ERRORS = (PyAsn1Error, ValueError, TypeError, IndexError, KeyError)


# -- reading --------------------------------------------------------------------------------

def decode(data: bytes, spec: Any, what: str) -> Any:
    """Strictly one value of `spec`; Malformed naming `what` otherwise."""
    try:
        value, rest = ber_decoder.decode(data, asn1Spec=spec)
    except (PyAsn1Error, ValueError, TypeError, IndexError) as error:
        raise Malformed(f"{what} cannot be decoded: {ber_problem(data, error, what)}") from None
    if rest:
        raise Malformed(f"{len(rest)} bytes follow the {what}")
    return value


def encode(value: Any) -> bytes:
    """DER of a decoded value, with the tag it carries where it sits."""
    return bytes(der_encoder.encode(value))


def as_sequence(value: Any) -> bytes:
    """DER of an IMPLICITly tagged SEQUENCE (CertTemplate's publicKey [6], extensions [9]) as
    the plain SEQUENCE it stands for."""
    encoded = encode(value)
    return bytes((der.SEQUENCE,)) + encoded[1:]


def name_der(value: Any) -> bytes:
    """DER of a Name (a CHOICE, so tagged explicitly wherever it sits): its RDNSequence."""
    return encode(value.getComponent())


def general_name_directory(value: Any) -> bytes | None:
    """The Name DER of a GeneralName that is a directoryName; None for any other kind."""
    if value.getName() != "directoryName":
        return None
    return name_der(value.getComponent())


def algorithm(value: Any) -> tuple[str, bytes | None]:
    """(OID, DER of the parameters or None) of an AlgorithmIdentifier."""
    params = value["parameters"]
    return str(value["algorithm"]), (bytes(params) if params.isValue else None)


def octets(value: Any) -> bytes | None:
    return bytes(value) if value.isValue else None


def bits(value: Any) -> bytes:
    """The bytes of a BIT STRING (signatures, MACs, public keys)."""
    return bytes(value.asOctets())


def pki_message() -> Any:
    return rfc9810.PKIMessage()


# -- writing --------------------------------------------------------------------------------

def bit_string(data: bytes) -> bytes:
    return der.tlv(der.BIT_STRING, b"\x00" + data)


def named_bit(bit: int) -> bytes:
    """A BIT STRING with one named bit set, trailing zero bits removed (X.690 §11.2.2)."""
    size = bit // 8 + 1
    value = bytearray(size)
    value[-1] = 0x80 >> (bit % 8)
    return der.tlv(der.BIT_STRING, bytes((7 - bit % 8,)) + bytes(value))


def utf8(text: str) -> bytes:
    return der.tlv(0x0C, text.encode("utf-8"))


def free_text(text: str) -> bytes:
    return der.sequence(utf8(text[:1000]))


def directory_name(name: bytes) -> bytes:
    """GeneralName directoryName [4] (explicit: Name is a CHOICE)."""
    return der.context(4, name)


def itav(oid: str, value: bytes | None = None) -> bytes:
    return der.sequence(der.oid(oid), *([value] if value is not None else []))


def status_info(status: PkiStatus, text: str | None = None,
                fail: FailInfo | None = None) -> bytes:
    return der.sequence(der.integer(int(status)),
                        *([free_text(text)] if text else []),
                        *([named_bit(int(fail))] if fail is not None else []))
