"""CMS (RFC 5652) as SCEP uses it: one signer over SignedData, EnvelopedData with RSA key
transport (RFC 8894 §3.1). Pure functions: bytes and keys in, bytes or frozen values out.

Reading goes through pyasn1 (clients send BER: indefinite lengths, constructed OCTET STRINGs),
and pyasn1's quirks stay in this module. Writing is plain DER (core/der.py): a reply is a few
fixed nesting levels, and building them directly costs a fraction of pyasn1's encoder.

Anything wrong with a message raises CmsError with the reason a SCEP failInfo is chosen from
(codec.py), never a pyasn1 or cryptography exception.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac
import os
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# pyasn1 and its modules ship no type information; the ignores are scoped to these imports.
from pyasn1.codec.ber import decoder as ber_decoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.codec.der import encoder as der_encoder  # type: ignore[import-untyped, unused-ignore]
from pyasn1.error import PyAsn1Error  # type: ignore[import-untyped, unused-ignore]
from pyasn1_alt_modules import rfc4055, rfc5652  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.protocols.ber_problems import ber_problem
from fleetpki.protocols.cms_parts import attribute, issuer_and_serial

__all__ = [
    "CIPHERS", "SINGLE_DES", "CmsError", "CmsProblem", "Opened", "RsaRecipient",
    "SignedMessage", "attribute", "decode_value", "issuer_and_serial", "open_envelope",
    "open_signed", "seal_envelope", "sign", "verify",
]

ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_RSAES_OAEP = "1.2.840.113549.1.1.7"
_RSASSA_PSS = "1.2.840.113549.1.1.10"

DIGESTS: Mapping[str, type[hashes.HashAlgorithm]] = {
    "1.3.14.3.2.26": hashes.SHA1,  # legacy firmware still signs with it; see codec.py
    "2.16.840.1.101.3.4.2.4": hashes.SHA224,
    "2.16.840.1.101.3.4.2.1": hashes.SHA256,
    "2.16.840.1.101.3.4.2.2": hashes.SHA384,
    "2.16.840.1.101.3.4.2.3": hashes.SHA512,
}
_DIGEST_OIDS = {algorithm().name: oid for oid, algorithm in DIGESTS.items()}
# sha*WithRSAEncryption: some clients name the hash in the signature algorithm as well.
_RSA_SIGNATURES: Mapping[str, type[hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.5": hashes.SHA1,
    "1.2.840.113549.1.1.14": hashes.SHA224,
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}


@dataclasses.dataclass(frozen=True, slots=True)
class _CipherSpec:
    name: str
    key_size: int  # bytes
    block_size: int  # bytes, also the IV size


# RFC 8894 §3.5.2: AES (128 and 256 bit keys) and triple DES; single DES is refused (badAlg).
CIPHERS: Mapping[str, _CipherSpec] = {
    "2.16.840.1.101.3.4.1.2": _CipherSpec("aes128-cbc", 16, 16),
    "2.16.840.1.101.3.4.1.22": _CipherSpec("aes192-cbc", 24, 16),
    "2.16.840.1.101.3.4.1.42": _CipherSpec("aes256-cbc", 32, 16),
    "1.2.840.113549.3.7": _CipherSpec("des-ede3-cbc", 24, 8),
}
AES128_CBC = "2.16.840.1.101.3.4.1.2"
# Single DES (56-bit keys), read only: legacy clients still send it (micromdm's scepclient always
# does). Whether to accept it is the handler's decision; replies never use it.
SINGLE_DES = "1.3.14.3.2.7"
_READ_ONLY_CIPHERS: Mapping[str, _CipherSpec] = {SINGLE_DES: _CipherSpec("des-cbc", 8, 8)}


class CmsProblem(enum.Enum):
    malformed = "malformed"  # not the structure SCEP uses
    algorithm = "algorithm"  # a digest, signature, key transport or cipher we do not accept
    signature = "signature"  # the signature or the message digest does not verify
    recipient = "recipient"  # encrypted to someone else
    decryption = "decryption"  # addressed to us, but it does not decrypt


class CmsError(Exception):
    def __init__(self, problem: CmsProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclasses.dataclass(frozen=True, slots=True)
class SignedMessage:
    """A SignedData with one signer, as received; `verify` checks it."""

    content: bytes | None  # the encapsulated content's octets
    signer: x509.Certificate
    digest_algorithm: str  # OID; `digest` says whether it is accepted
    # Signed attributes: OID (dotted) -> the DER of each value, in order of appearance.
    attributes: Mapping[str, tuple[bytes, ...]]
    signed_attributes: bytes = dataclasses.field(repr=False)  # DER SET OF, as signed
    signature_algorithm: str = ""
    signature_parameters: bytes | None = dataclasses.field(default=None, repr=False)
    signature: bytes = dataclasses.field(default=b"", repr=False)

    @property
    def digest(self) -> hashes.HashAlgorithm:
        algorithm = DIGESTS.get(self.digest_algorithm)
        if algorithm is None:
            raise CmsError(CmsProblem.algorithm, f"digest algorithm {self.digest_algorithm} is not "
                                                 "accepted (SHA-1 or SHA-2 only)")
        return algorithm()


@dataclasses.dataclass(frozen=True, slots=True)
class RsaRecipient:
    """A certificate and its RSA key that envelopes may be addressed to."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class Opened:
    content: bytes = dataclasses.field(repr=False)
    cipher: str  # OID of the content encryption algorithm, for the reply to use again
    recipient: x509.Certificate


# -- reading ---------------------------------------------------------------------------------

def open_signed(data: bytes) -> SignedMessage:
    """Parse ContentInfo(SignedData) with exactly one signer whose certificate is included."""
    signed = _decode(_content_of(data, ID_SIGNED_DATA, "SignedData"), rfc5652.SignedData())
    infos = list(signed["signerInfos"])
    if len(infos) != 1:
        raise CmsError(CmsProblem.malformed, f"SignedData has {len(infos)} signers; SCEP messages "
                                             "have exactly one")
    info = infos[0]
    certificates = _certificates(signed)
    signer = _find_signer(info["sid"], certificates)
    if not info["signedAttrs"].isValue:
        raise CmsError(CmsProblem.malformed, "the signer has no signed attributes, which carry "
                                             "the SCEP message type and transaction")
    encoded = der_encoder.encode(info["signedAttrs"])
    attributes: dict[str, list[bytes]] = {}
    for item in info["signedAttrs"]:
        attributes.setdefault(str(item["attrType"]), []).extend(
            bytes(value) for value in item["attrValues"])
    encapsulated = signed["encapContentInfo"]
    content = (bytes(encapsulated["eContent"]) if encapsulated["eContent"].isValue else None)
    parameters = info["signatureAlgorithm"]["parameters"]
    return SignedMessage(
        content=content, signer=signer,
        digest_algorithm=str(info["digestAlgorithm"]["algorithm"]),
        attributes={oid: tuple(values) for oid, values in attributes.items()},
        # RFC 5652 §5.4: the signature covers the DER of the attributes with a SET OF tag.
        signed_attributes=bytes((der.SET,)) + encoded[1:],
        signature_algorithm=str(info["signatureAlgorithm"]["algorithm"]),
        signature_parameters=bytes(parameters) if parameters.isValue else None,
        signature=bytes(info["signature"]))


def verify(message: SignedMessage) -> None:
    """RFC 5652 §5.6: the message digest attribute matches the content, and the signer's key
    signed the attributes. Raises CmsError (signature or algorithm) otherwise."""
    digests = message.attributes.get(_MESSAGE_DIGEST, ())
    if len(digests) != 1:
        raise CmsError(CmsProblem.malformed, "the signed attributes carry no message digest")
    expected = _decode_value(digests[0])
    digest = message.digest
    computed = hashes.Hash(digest)
    computed.update(message.content or b"")
    if not hmac.compare_digest(bytes(expected), computed.finalize()):
        raise CmsError(CmsProblem.signature, "the message digest does not match the content: the "
                                             "message was altered")
    key = message.signer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CmsError(CmsProblem.algorithm, "SCEP requesters sign with RSA keys (RFC 8894 §2.1); "
                                             "this signer's key is not RSA")
    scheme, signed_with = _signature_scheme(message, digest)
    try:
        key.verify(message.signature, message.signed_attributes, scheme, signed_with)
    except InvalidSignature:
        raise CmsError(CmsProblem.signature, "the signature does not verify with the signer's "
                                             "certificate") from None


def open_envelope(data: bytes, recipients: Sequence[RsaRecipient]) -> Opened:
    """Decrypt ContentInfo(EnvelopedData) addressed to one of `recipients`."""
    enveloped = _decode(_content_of(data, ID_ENVELOPED_DATA, "EnvelopedData"),
                        rfc5652.EnvelopedData())
    for info in enveloped["recipientInfos"]:
        if info.getName() != "ktri":
            continue
        ktri = info["ktri"]
        recipient = _addressed_to(ktri["rid"], recipients)
        if recipient is not None:
            break
    else:
        raise CmsError(CmsProblem.recipient, "the request is not encrypted to this server's SCEP "
                                             "certificate: fetch it again with GetCACert")
    transport = str(ktri["keyEncryptionAlgorithm"]["algorithm"])
    encrypted = enveloped["encryptedContentInfo"]
    cipher_oid = str(encrypted["contentEncryptionAlgorithm"]["algorithm"])
    spec = CIPHERS.get(cipher_oid) or _READ_ONLY_CIPHERS.get(cipher_oid)
    if spec is None:
        raise CmsError(CmsProblem.algorithm, f"content encryption {cipher_oid} is not accepted "
                                             "(AES-CBC or triple DES)")
    if not encrypted["encryptedContent"].isValue:
        raise CmsError(CmsProblem.malformed, "the envelope has no encrypted content")
    iv = _decode_value(bytes(encrypted["contentEncryptionAlgorithm"]["parameters"]))
    ciphertext = bytes(encrypted["encryptedContent"])
    # One error for every way decryption fails, so that a requester learns nothing about the
    # key transport's padding (Bleichenbacher) from the answer.
    try:
        key = recipient.key.decrypt(bytes(ktri["encryptedKey"]), _transport_padding(
            transport, ktri["keyEncryptionAlgorithm"]["parameters"]))
        if len(key) != spec.key_size or len(bytes(iv)) != spec.block_size:
            raise ValueError("key or IV size")
        decryptor = Cipher(_algorithm(spec, key), modes.CBC(bytes(iv))).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(spec.block_size * 8).unpadder()
        content = unpadder.update(padded) + unpadder.finalize()
    except CmsError:
        raise
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CmsError(CmsProblem.decryption, "the request does not decrypt with this server's "
                                              "SCEP key") from None
    return Opened(content, cipher_oid, recipient.certificate)


# -- writing ---------------------------------------------------------------------------------

def sign(content: bytes | None, attributes: Sequence[bytes], signer: x509.Certificate,
         key: rsa.RSAPrivateKey, digest: hashes.HashAlgorithm,
         certificates: Sequence[x509.Certificate] = ()) -> bytes:
    """ContentInfo(SignedData) over id-data `content` (None: no content, as SCEP's PENDING and
    FAILURE replies), with `attributes` signed beside contentType and messageDigest.

    The signature algorithm is named plain rsaEncryption, the digest being given apart: the
    form RFC 8894 clients have always received (strongSwan accepts no other)."""
    computed = hashes.Hash(digest)
    computed.update(content or b"")
    signed = [attribute(_CONTENT_TYPE, der.oid(ID_DATA)),
              attribute(_MESSAGE_DIGEST, der.octet_string(computed.finalize())), *attributes]
    signed_set = der.set_of(*signed)
    signature = key.sign(signed_set, asymmetric_padding.PKCS1v15(), digest)
    digest_algorithm = der.sequence(der.oid(_DIGEST_OIDS[digest.name]))
    signer_info = der.sequence(
        der.integer(1), issuer_and_serial(signer), digest_algorithm,
        der.context(0, der.content(signed_set)),  # [0] IMPLICIT SET OF Attribute
        der.sequence(der.oid(_RSA_ENCRYPTION), der.tlv(der.NULL, b"")),
        der.octet_string(signature))
    encapsulated = der.sequence(der.oid(ID_DATA)) if content is None else der.sequence(
        der.oid(ID_DATA), der.context(0, der.octet_string(content)))
    certificate_set = b"".join(c.public_bytes(_DER) for c in certificates)
    signed_data = der.sequence(
        der.integer(1), der.set_of(digest_algorithm), encapsulated,
        der.context(0, certificate_set) if certificates else b"", der.set_of(signer_info))
    return der.sequence(der.oid(ID_SIGNED_DATA), der.context(0, signed_data))


def seal_envelope(content: bytes, recipient: x509.Certificate, cipher: str = AES128_CBC) -> bytes:
    """ContentInfo(EnvelopedData) of id-data `content` for `recipient`'s RSA key (PKCS #1 v1.5
    key transport, the one every SCEP client decrypts)."""
    public_key = recipient.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CmsError(CmsProblem.algorithm, "the requester's certificate has no RSA key to "
                                             "encrypt the reply to (RFC 8894 §2.1)")
    spec = CIPHERS[cipher]
    key, iv = os.urandom(spec.key_size), os.urandom(spec.block_size)
    padder = padding.PKCS7(spec.block_size * 8).padder()
    encryptor = Cipher(_algorithm(spec, key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padder.update(content) + padder.finalize()) + \
        encryptor.finalize()
    recipient_info = der.sequence(
        der.integer(0), issuer_and_serial(recipient),
        der.sequence(der.oid(_RSA_ENCRYPTION), der.tlv(der.NULL, b"")),
        der.octet_string(public_key.encrypt(key, asymmetric_padding.PKCS1v15())))
    encrypted_content = der.sequence(
        der.oid(ID_DATA), der.sequence(der.oid(cipher), der.octet_string(iv)),
        der.context(0, ciphertext, constructed=False))  # [0] IMPLICIT OCTET STRING
    enveloped = der.sequence(der.integer(0), der.set_of(recipient_info), encrypted_content)
    return der.sequence(der.oid(ID_ENVELOPED_DATA), der.context(0, enveloped))


# -- internals -------------------------------------------------------------------------------

_DER = serialization.Encoding.DER


def _decode(data: bytes, spec: Any) -> Any:
    try:
        value, rest = ber_decoder.decode(data, asn1Spec=spec)
    except (PyAsn1Error, ValueError, TypeError) as error:
        raise CmsError(CmsProblem.malformed,
                       f"not valid CMS: {ber_problem(data, error, 'CMS message')}") from None
    if rest:
        raise CmsError(CmsProblem.malformed, f"{len(rest)} bytes after the CMS structure")
    return value


def _decode_value(data: bytes) -> Any:
    try:
        value, rest = ber_decoder.decode(data)
    except (PyAsn1Error, ValueError, TypeError) as error:
        raise CmsError(CmsProblem.malformed, f"not a valid attribute value: {str(error)[:160]}"
                       ) from None
    if rest:
        raise CmsError(CmsProblem.malformed, "bytes after an attribute value")
    return value


def decode_value(data: bytes) -> Any:
    """A signed attribute's value (DER from SignedMessage.attributes), decoded generically."""
    return _decode_value(data)


def _content_of(data: bytes, expected: str, name: str) -> bytes:
    info = _decode(data, rfc5652.ContentInfo())
    content_type = str(info["contentType"])
    if content_type != expected:
        raise CmsError(CmsProblem.malformed, f"expected a {name} ContentInfo, got content type "
                                             f"{content_type}")
    return bytes(info["content"])


def _certificates(signed: Any) -> list[tuple[bytes, x509.Certificate]]:
    found = []
    for choice in signed["certificates"]:
        if choice.getName() != "certificate":
            continue
        encoded = der_encoder.encode(choice["certificate"])
        try:
            found.append((encoded, x509.load_der_x509_certificate(encoded)))
        except ValueError:
            raise CmsError(CmsProblem.malformed, "a certificate in the message cannot be parsed"
                           ) from None
    return found


def _find_signer(sid: Any, certificates: list[tuple[bytes, x509.Certificate]]
                 ) -> x509.Certificate:
    for _, certificate in certificates:
        if _identifies(sid, certificate):
            return certificate
    raise CmsError(CmsProblem.malformed, "the signer's certificate is not in the message; SCEP "
                                         "requests carry it (RFC 8894 §3.2.1)")


def _identifies(identifier: Any, certificate: x509.Certificate) -> bool:
    """Whether a SignerIdentifier or RecipientIdentifier names `certificate`."""
    kind = identifier.getName()
    if kind == "issuerAndSerialNumber":
        named = identifier["issuerAndSerialNumber"]
        return (int(named["serialNumber"]) == certificate.serial_number
                and der_encoder.encode(named["issuer"]) == certificate.issuer.public_bytes())
    if kind == "subjectKeyIdentifier":
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return False
        return bytes(identifier["subjectKeyIdentifier"]) == ski.value.digest
    return False


def _addressed_to(identifier: Any, recipients: Sequence[RsaRecipient]) -> RsaRecipient | None:
    return next((r for r in recipients if _identifies(identifier, r.certificate)), None)


def _signature_scheme(message: SignedMessage, digest: hashes.HashAlgorithm
                      ) -> tuple[asymmetric_padding.AsymmetricPadding, hashes.HashAlgorithm]:
    algorithm = message.signature_algorithm
    if algorithm == _RSA_ENCRYPTION:
        return asymmetric_padding.PKCS1v15(), digest
    if algorithm in _RSA_SIGNATURES:
        named = _RSA_SIGNATURES[algorithm]()
        if named.name != digest.name:
            raise CmsError(CmsProblem.algorithm, f"the signature algorithm's hash ({named.name}) "
                                                 f"differs from the digest ({digest.name})")
        return asymmetric_padding.PKCS1v15(), named
    if algorithm == _RSASSA_PSS and message.signature_parameters is not None:
        params = _decode(message.signature_parameters, rfc4055.RSASSA_PSS_params())
        pss_hash = DIGESTS.get(str(params["hashAlgorithm"]["algorithm"]))
        mgf_hash = _mgf1_hash(params["maskGenAlgorithm"])
        if pss_hash is None or mgf_hash is None:
            raise CmsError(CmsProblem.algorithm, "RSASSA-PSS with a hash that is not accepted")
        salt = int(params["saltLength"])
        return asymmetric_padding.PSS(asymmetric_padding.MGF1(mgf_hash()), salt), pss_hash()
    raise CmsError(CmsProblem.algorithm, f"signature algorithm {algorithm} is not accepted "
                                         "(RSA PKCS #1 v1.5 or RSASSA-PSS)")


def _mgf1_hash(mask: Any) -> type[hashes.HashAlgorithm] | None:
    if str(mask["algorithm"]) != "1.2.840.113549.1.1.8":
        return None
    parameters = mask["parameters"]
    if not parameters.isValue:
        return hashes.SHA1
    inner = _decode(bytes(parameters), rfc5652.DigestAlgorithmIdentifier())
    return DIGESTS.get(str(inner["algorithm"]))


def _transport_padding(oid: str, parameters: Any) -> asymmetric_padding.AsymmetricPadding:
    if oid == _RSA_ENCRYPTION:
        return asymmetric_padding.PKCS1v15()
    if oid == _RSAES_OAEP:
        hash_algorithm: type[hashes.HashAlgorithm] = hashes.SHA1
        if parameters.isValue:
            params = _decode(bytes(parameters), rfc4055.RSAES_OAEP_params())
            named = DIGESTS.get(str(params["hashFunc"]["algorithm"]))
            generator = params["maskGenFunc"]  # RFC 4055 §4.1: absent means MGF1 with SHA-1
            mask = _mgf1_hash(generator) if generator.isValue else hashes.SHA1
            if named is None or mask is None:
                raise CmsError(CmsProblem.algorithm, "RSAES-OAEP with a hash that is not accepted")
            hash_algorithm, mask_hash = named, mask
        else:
            mask_hash = hash_algorithm
        return asymmetric_padding.OAEP(asymmetric_padding.MGF1(mask_hash()),
                                       hash_algorithm(), None)
    raise CmsError(CmsProblem.algorithm, f"key transport {oid} is not accepted (RSA PKCS #1 v1.5 "
                                         "or RSAES-OAEP)")


def _algorithm(spec: _CipherSpec, key: bytes) -> algorithms.AES | TripleDES:
    if spec.name == "des-cbc":
        key = key * 3  # K1 = K2 = K3: triple DES computes single DES
    return TripleDES(key) if spec.name.startswith("des") else algorithms.AES(key)
