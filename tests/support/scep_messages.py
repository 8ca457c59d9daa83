"""A SCEP requester for tests: builds the messages a client sends, with the choices a test
wants to get wrong (another recipient, a tampered signature, an old digest).

It signs and envelopes with fleetpki's own CMS writer; the real clients (strongSwan `pki`,
micromdm `scepclient`) in tests/integration are the independent check of that writer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fleetpki.core import der
from fleetpki.protocols.scep.cms import AES128_CBC, attribute, seal_envelope, sign
from fleetpki.protocols.scep.codec import MessageType

_TRANSACTION = "2.16.840.1.113733.1.9.7"
_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
_SIGNING_TIME = "1.2.840.113549.1.9.5"


@dataclasses.dataclass(frozen=True)
class Requester:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate  # self-signed, or the current certificate when renewing


def self_signed(key: rsa.RSAPrivateKey, common_name: str = "scep-requester",
                now: dt.datetime | None = None) -> x509.Certificate:
    now = now or dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))


def requester(bits: int = 2048, common_name: str = "scep-requester") -> Requester:
    key = rsa.generate_private_key(65537, bits)
    return Requester(key, self_signed(key, common_name))


def csr(key: rsa.RSAPrivateKey, common_name: str, challenge: str | None = None,
        sans: list[x509.GeneralName] | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if challenge is not None:
        builder = builder.add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD,
                                        challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def issuer_and_serial(certificate: x509.Certificate) -> bytes:
    return der.sequence(certificate.issuer.public_bytes(),
                        der.signed_integer(certificate.serial_number))


def issuer_and_subject(issuer: x509.Name, subject: x509.Name) -> bytes:
    return der.sequence(issuer.public_bytes(), subject.public_bytes())


def message(who: Requester, kind: MessageType, payload: bytes, recipient: x509.Certificate, *,
            transaction_id: str = "tx-1", nonce: bytes | None = None,
            digest: hashes.HashAlgorithm | None = None, cipher: str = AES128_CBC,
            signing_time: dt.datetime | None = None) -> bytes:
    attributes = [
        attribute(_MESSAGE_TYPE, der.tlv(0x13, kind.value.encode())),
        attribute(_TRANSACTION, der.tlv(0x13, transaction_id.encode())),
        attribute(_SENDER_NONCE, der.octet_string(nonce or os.urandom(16))),
    ]
    if signing_time is not None:
        attributes.append(attribute(_SIGNING_TIME, der.time(signing_time)))
    envelope = seal_envelope(payload, recipient, cipher)
    return sign(envelope, attributes, who.certificate, who.key, digest or hashes.SHA256(),
                [who.certificate])


def tamper_signature(data: bytes) -> bytes:
    """Flip a bit in the last byte: the SignerInfo's signature is the final element."""
    return data[:-1] + bytes((data[-1] ^ 0x01,))
