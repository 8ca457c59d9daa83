"""CMP requests that `openssl cmp` 3.0 cannot or will not send: the RFC 9483 §4.3 general
messages it has no name for (caCerts, rootCaCert, certReqTemplate, crlStatusList), PBMAC1
protection, and deliberately broken messages (bad proof of possession, a foreign recipNonce).

Written with core/der.py and checked against the server's answers; the positive paths are
exercised with the real client in tests/integration/test_cmp.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import urllib.error
import urllib.request
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetpki.core import der
from fleetpki.protocols.cmp.asn1 import (
    HMAC_WITH,
    PASSWORD_BASED_MAC,
    PBKDF2,
    PBMAC1,
    algorithm_identifier,
    bit_string,
    directory_name,
    itav,
)

SHA256 = "2.16.840.1.101.3.4.2.1"
HMAC_SHA256 = next(oid for oid, name in HMAC_WITH.items() if name == "sha256")
CONTENT_TYPE = "application/pkixcmp"


@dataclass(frozen=True)
class Mac:
    """A MAC protection computed here with hashlib, independently of the server's code."""

    kid: str
    secret: str
    pbmac1: bool = False
    iterations: int = 1000

    def algorithm(self, salt: bytes) -> bytes:
        if self.pbmac1:
            kdf = algorithm_identifier(PBKDF2, der.sequence(
                der.octet_string(salt), der.integer(self.iterations), der.integer(32),
                algorithm_identifier(HMAC_SHA256)))
            return algorithm_identifier(PBMAC1, der.sequence(
                kdf, algorithm_identifier(HMAC_SHA256)))
        return algorithm_identifier(PASSWORD_BASED_MAC, der.sequence(
            der.octet_string(salt), algorithm_identifier(SHA256), der.integer(self.iterations),
            algorithm_identifier(HMAC_SHA256)))

    def tag(self, salt: bytes, data: bytes) -> bytes:
        if self.pbmac1:
            key = hashlib.pbkdf2_hmac("sha256", self.secret.encode(), salt, self.iterations, 32)
        else:
            key = hashlib.sha256(self.secret.encode() + salt).digest()
            for _ in range(self.iterations - 1):
                key = hashlib.sha256(key).digest()
        return hmac.new(key, data, hashlib.sha256).digest()


def request(body: bytes, mac: Mac | None, *, transaction_id: bytes | None = None,
            sender_nonce: bytes | None = None, recip_nonce: bytes | None = None,
            recipient: bytes | None = None, pvno: int = 2, tamper: bool = False,
            message_time: dt.datetime | None = None, implicit_confirm: bool = False) -> bytes:
    """A PKIMessage around `body` (the tagged PKIBody DER), MAC-protected unless `mac` is None.
    `tamper` flips a bit of the MAC."""
    salt = os.urandom(16)
    parts = [der.integer(pvno), directory_name(der.sequence()),
             directory_name(recipient if recipient is not None else der.sequence()),
             der.context(0, der.generalized_time(message_time or dt.datetime.now(dt.UTC)))]
    if mac is not None:
        parts += [der.context(1, mac.algorithm(salt)),
                  der.context(2, der.octet_string(mac.kid.encode()))]
    parts += [der.context(4, der.octet_string(
                  os.urandom(16) if transaction_id is None else transaction_id)),
              der.context(5, der.octet_string(
                  os.urandom(16) if sender_nonce is None else sender_nonce))]
    if recip_nonce is not None:
        parts.append(der.context(6, der.octet_string(recip_nonce)))
    if implicit_confirm:
        parts.append(der.context(8, der.sequence(itav("1.3.6.1.5.5.7.4.13",
                                                      der.tlv(der.NULL, b"")))))
    header = der.sequence(*parts)
    if mac is None:
        return der.sequence(header, body)
    tag = mac.tag(salt, der.sequence(header, body))
    if tamper:
        tag = bytes([tag[0] ^ 1]) + tag[1:]
    return der.sequence(header, body, der.context(0, bit_string(tag)))


def genm(*infos: tuple[str, bytes | None]) -> bytes:
    return der.context(21, der.sequence(*(itav(oid, value) for oid, value in infos)))


def cert_request(subject_cn: str, key: ec.EllipticCurvePrivateKey, *, body_tag: int = 0,
                 pop_key: ec.EllipticCurvePrivateKey | None = None,
                 popo: bytes | None = None, requests: int = 1) -> bytes:
    """An ir (body_tag 0; cr 2, kur 7) for `key` with a signature proof of possession made
    with `pop_key` (default: `key` itself), or the given ProofOfPossession DER."""
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]).public_bytes()
    template = der.sequence(der.context(5, name), b"\xa6" + spki[1:])
    messages = []
    for number in range(requests):
        certificate_request = der.sequence(der.integer(number), template)
        signature = (pop_key or key).sign(certificate_request, ec.ECDSA(hashes.SHA256()))
        proof = popo if popo is not None else der.context(
            1, algorithm_identifier("1.2.840.10045.4.3.2") + bit_string(signature))
        messages.append(der.sequence(certificate_request, proof))
    return der.context(body_tag, der.sequence(*messages))


def ir_with_bad_pop(subject_cn: str) -> bytes:
    """An ir whose proof of possession is signed with another key than the template's."""
    return cert_request(subject_cn, ec.generate_private_key(ec.SECP256R1()),
                        pop_key=ec.generate_private_key(ec.SECP256R1()))


def ir_for_central_key(subject_cn: str, curve: str | None = "1.2.840.10045.3.1.7") -> bytes:
    """An ir asking the server to make the key (RFC 9483 §4.1.6): the template's publicKey
    names the algorithm (EC on `curve`; None: no publicKey at all) with an empty key, and
    there is no proof of possession."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]).public_bytes()
    fields = [der.context(5, name)]
    if curve is not None:  # [6] IMPLICIT SubjectPublicKeyInfo with a zero-length key
        fields.append(der.context(6, algorithm_identifier("1.2.840.10045.2.1", der.oid(curve))
                                  + der.tlv(der.BIT_STRING, b"\x00")))
    cert_request = der.sequence(der.integer(0), der.sequence(*fields))
    return der.context(0, der.sequence(der.sequence(cert_request)))


def post(url: str, body: bytes, content_type: str = CONTENT_TYPE) -> tuple[int, bytes]:
    # Only http URLs built by the tests from the server's port reach urllib (S310).
    call = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
    call.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:  # noqa: S310
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()
