"""SCEP's CMS (protocols/scep/cms.py): SignedData with one signer and RSA-enveloped data, read
back and checked; every way a message is wrong ends in a CmsError naming the problem.

The variants a client may send but fleetpki never writes (sha256WithRSAEncryption, RSASSA-PSS,
two signers, an MD5 digest, single DES, BER lengths) are built here by hand with core/der.py.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as rsa_padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

from fleetpki.core import der
from fleetpki.protocols.scep import cms
from fleetpki.protocols.scep.cms import (
    AES128_CBC,
    CIPHERS,
    CmsError,
    CmsProblem,
    RsaRecipient,
    attribute,
    open_envelope,
    open_signed,
    seal_envelope,
    sign,
    verify,
)
from support.scep_messages import self_signed, tamper_signature

NOW = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
CONTENT = b"the encapsulated content: " + bytes(range(64))
CUSTOM = "2.16.840.1.113733.1.9.7"  # transactionID, as any signed attribute
CUSTOM_VALUE = der.tlv(0x13, b"tx-cms-1")

SHA = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384,
       "sha512": hashes.SHA512}
DIGEST_OIDS = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1",
               "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
SHA256_WITH_RSA = "1.2.840.113549.1.1.11"
SHA384_WITH_RSA = "1.2.840.113549.1.1.12"
RSASSA_PSS = "1.2.840.113549.1.1.10"
MGF1 = "1.2.840.113549.1.1.8"
MD5 = "1.2.840.113549.2.5"
SINGLE_DES = "1.3.14.3.2.7"
AES128_GCM = "2.16.840.1.101.3.4.1.6"  # same length as AES128_CBC's OID
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


@dataclasses.dataclass(frozen=True)
class Party:
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @property
    def recipient(self) -> RsaRecipient:
        return RsaRecipient(self.certificate, self.key)


def party(cn: str, key: rsa.RSAPrivateKey | None = None) -> Party:
    key = key or rsa.generate_private_key(65537, 2048)
    return Party(key, self_signed(key, cn, NOW))


@pytest.fixture(scope="module")
def device() -> Party:
    return party("device")


@pytest.fixture(scope="module")
def ra() -> Party:
    return party("scep-ra")


@pytest.fixture(scope="module")
def stranger() -> Party:
    return party("stranger")


# -- building what fleetpki never writes --------------------------------------------------------

def signed_attributes(content: bytes | None, digest: hashes.HashAlgorithm,
                      *extra: bytes) -> bytes:
    """The DER SET OF the signature covers: contentType, messageDigest and `extra`."""
    computed = hashes.Hash(digest)
    computed.update(content or b"")
    return der.set_of(attribute(CONTENT_TYPE, der.oid(cms.ID_DATA)),
                      attribute(MESSAGE_DIGEST, der.octet_string(computed.finalize())), *extra)


def signer_info(who: Party, attributes: bytes | None, digest_oid: str, algorithm: bytes,
                signature: bytes) -> bytes:
    return der.sequence(
        der.integer(1), cms.issuer_and_serial(who.certificate), der.sequence(der.oid(digest_oid)),
        der.context(0, der.content(attributes)) if attributes is not None else b"",
        algorithm, der.octet_string(signature))


def signed_data(infos: list[bytes], *, content: bytes | None = CONTENT,
                certificates: tuple[x509.Certificate, ...] = (),
                digest_oid: str = DIGEST_OIDS["sha256"], encapsulated: bytes | None = None
                ) -> bytes:
    if encapsulated is None:
        encapsulated = der.sequence(der.oid(cms.ID_DATA)) if content is None else der.sequence(
            der.oid(cms.ID_DATA), der.context(0, der.octet_string(content)))
    certs = b"".join(c.public_bytes(serialization.Encoding.DER) for c in certificates)
    body = der.sequence(der.integer(1), der.set_of(der.sequence(der.oid(digest_oid))),
                        encapsulated, der.context(0, certs) if certs else b"",
                        der.set_of(*infos))
    return der.sequence(der.oid(cms.ID_SIGNED_DATA), der.context(0, body))


def by_hand(who: Party, *, algorithm: bytes,
            signer: Callable[[bytes], bytes], digest: str = "sha256",
            content: bytes = CONTENT) -> bytes:
    """A SignedData over `content` whose SignerInfo names `algorithm` and carries
    `signer(signed attributes)`."""
    attributes = signed_attributes(content, SHA[digest](), attribute(CUSTOM, CUSTOM_VALUE))
    info = signer_info(who, attributes, DIGEST_OIDS[digest], algorithm, signer(attributes))
    return signed_data([info], content=content, certificates=(who.certificate,),
                       digest_oid=DIGEST_OIDS[digest])


def pkcs1(who: Party, digest: hashes.HashAlgorithm) -> Callable[[bytes], bytes]:
    return lambda data: who.key.sign(data, rsa_padding.PKCS1v15(), digest)


def pss_parameters(digest: str, salt: int) -> bytes:
    hash_id = der.sequence(der.oid(DIGEST_OIDS[digest]))
    return der.sequence(der.context(0, hash_id),
                        der.context(1, der.sequence(der.oid(MGF1), hash_id)),
                        der.context(2, der.integer(salt)))


def algorithm(oid: str, parameters: bytes | None = der.tlv(der.NULL, b"")) -> bytes:
    return der.sequence(der.oid(oid), parameters or b"")


def envelope_by_hand(content: bytes, recipient: x509.Certificate, cipher_oid: str,
                     key: bytes, iv: bytes, cipher: Cipher[modes.CBC], block_bits: int, *,
                     transport: bytes | None = None,
                     transport_padding: rsa_padding.AsymmetricPadding | None = None) -> bytes:
    public_key = recipient.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    padder = padding.PKCS7(block_bits).padder()
    encryptor = cipher.encryptor()
    ciphertext = encryptor.update(padder.update(content) + padder.finalize()) + \
        encryptor.finalize()
    info = der.sequence(der.integer(0), cms.issuer_and_serial(recipient),
                        transport or algorithm(RSA_ENCRYPTION),
                        der.octet_string(public_key.encrypt(
                            key, transport_padding or rsa_padding.PKCS1v15())))
    encrypted = der.sequence(der.oid(cms.ID_DATA),
                             der.sequence(der.oid(cipher_oid), der.octet_string(iv)),
                             der.context(0, ciphertext, constructed=False))
    enveloped = der.sequence(der.integer(0), der.set_of(info), encrypted)
    return der.sequence(der.oid(cms.ID_ENVELOPED_DATA), der.context(0, enveloped))


def single_des_envelope(content: bytes, recipient: x509.Certificate) -> bytes:
    """DES-CBC (56-bit keys) as legacy scepclient writes it: triple DES with one key thrice
    is single DES."""
    key, iv = os.urandom(8), os.urandom(8)
    return envelope_by_hand(content, recipient, SINGLE_DES, key, iv,
                            Cipher(TripleDES(key * 3), modes.CBC(iv)), 64)


def problem(call: Callable[[], object]) -> CmsProblem:
    with pytest.raises(CmsError) as raised:
        call()
    return raised.value.problem


# -- SignedData round trips ---------------------------------------------------------------------

@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha384", "sha512"])
def test_signed_round_trip_with_each_digest(device: Party, digest: str) -> None:
    data = sign(CONTENT, [attribute(CUSTOM, CUSTOM_VALUE)], device.certificate, device.key,
                SHA[digest](), [device.certificate])
    message = open_signed(data)
    verify(message)
    assert message.content == CONTENT
    assert message.signer == device.certificate
    assert message.digest_algorithm == DIGEST_OIDS[digest]
    assert isinstance(message.digest, SHA[digest])
    assert message.attributes[CUSTOM] == (CUSTOM_VALUE,)
    assert message.attributes[CONTENT_TYPE] == (der.oid(cms.ID_DATA),)
    # fleetpki names the signature plain rsaEncryption, the digest given apart.
    assert message.signature_algorithm == RSA_ENCRYPTION


def test_signed_without_content_verifies(ra: Party) -> None:
    message = open_signed(sign(None, [], ra.certificate, ra.key, hashes.SHA256(),
                               [ra.certificate]))
    verify(message)
    assert message.content is None


def test_signer_is_found_among_several_certificates(device: Party, ra: Party) -> None:
    data = sign(CONTENT, [], device.certificate, device.key, hashes.SHA256(),
                [ra.certificate, device.certificate])
    assert open_signed(data).signer == device.certificate


def test_sha256_with_rsa_encryption_is_accepted(device: Party) -> None:
    data = by_hand(device, algorithm=algorithm(SHA256_WITH_RSA),
                   signer=pkcs1(device, hashes.SHA256()))
    message = open_signed(data)
    assert message.signature_algorithm == SHA256_WITH_RSA
    verify(message)


def test_a_signature_algorithm_naming_another_hash_than_the_digest_is_refused(
        device: Party) -> None:
    data = by_hand(device, algorithm=algorithm(SHA384_WITH_RSA),
                   signer=pkcs1(device, hashes.SHA384()))
    assert problem(lambda: verify(open_signed(data))) is CmsProblem.algorithm


@pytest.mark.parametrize("digest", ["sha256", "sha512"])
def test_rsassa_pss_is_accepted(device: Party, digest: str) -> None:
    salt = SHA[digest].digest_size
    scheme = rsa_padding.PSS(rsa_padding.MGF1(SHA[digest]()), salt)
    data = by_hand(device, digest=digest,
                   algorithm=algorithm(RSASSA_PSS, pss_parameters(digest, salt)),
                   signer=lambda signed: device.key.sign(signed, scheme, SHA[digest]()))
    message = open_signed(data)
    assert message.signature_algorithm == RSASSA_PSS
    verify(message)


def test_rsassa_pss_with_another_salt_length_than_named_does_not_verify(device: Party) -> None:
    scheme = rsa_padding.PSS(rsa_padding.MGF1(hashes.SHA256()), 20)
    data = by_hand(device, algorithm=algorithm(RSASSA_PSS, pss_parameters("sha256", 32)),
                   signer=lambda signed: device.key.sign(signed, scheme, hashes.SHA256()))
    assert problem(lambda: verify(open_signed(data))) is CmsProblem.signature


def test_an_ecdsa_signature_algorithm_is_refused(device: Party) -> None:
    data = by_hand(device, algorithm=algorithm("1.2.840.10045.4.3.2", None),
                   signer=pkcs1(device, hashes.SHA256()))
    assert problem(lambda: verify(open_signed(data))) is CmsProblem.algorithm


def test_an_md5_digest_is_refused(device: Party) -> None:
    attributes = der.set_of(attribute(CONTENT_TYPE, der.oid(cms.ID_DATA)),
                            attribute(MESSAGE_DIGEST, der.octet_string(b"\x00" * 16)))
    info = signer_info(device, attributes, MD5, algorithm(RSA_ENCRYPTION),
                       pkcs1(device, hashes.SHA256())(attributes))
    message = open_signed(signed_data([info], certificates=(device.certificate,),
                                      digest_oid=MD5))
    assert message.digest_algorithm == MD5
    assert problem(lambda: message.digest) is CmsProblem.algorithm
    assert problem(lambda: verify(message)) is CmsProblem.algorithm


def test_a_signer_whose_key_is_not_rsa_is_refused(device: Party) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec-device")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(7)
                   .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    # Parsed, then refused when verified: SCEP's key transport is RSA.
    data = sign(CONTENT, [], device.certificate, device.key, hashes.SHA256(), [device.certificate])
    message = dataclasses.replace(open_signed(data), signer=certificate)
    assert problem(lambda: verify(message)) is CmsProblem.algorithm


def test_ber_with_indefinite_lengths_and_a_chunked_content_is_read(device: Party) -> None:
    attributes = signed_attributes(CONTENT, hashes.SHA256())
    info = signer_info(device, attributes, DIGEST_OIDS["sha256"], algorithm(RSA_ENCRYPTION),
                       pkcs1(device, hashes.SHA256())(attributes))
    # eContent as a constructed OCTET STRING of two chunks, with indefinite lengths.
    chunks = (der.octet_string(CONTENT[:10]) + der.octet_string(CONTENT[10:]))
    encapsulated = der.sequence(der.oid(cms.ID_DATA),
                                b"\xa0\x80" + b"\x24\x80" + chunks + b"\x00\x00" + b"\x00\x00")
    data = signed_data([info], certificates=(device.certificate,), encapsulated=encapsulated)
    ber = b"\x30\x80" + der.content(data) + b"\x00\x00"
    message = open_signed(ber)
    assert message.content == CONTENT
    verify(message)


# -- SignedData tampering --------------------------------------------------------------------

def test_altered_content_is_a_signature_problem(device: Party) -> None:
    data = sign(CONTENT, [], device.certificate, device.key, hashes.SHA256(), [device.certificate])
    altered = data.replace(CONTENT, CONTENT.upper())
    assert altered != data
    message = open_signed(altered)
    with pytest.raises(CmsError, match="message digest does not match") as raised:
        verify(message)
    assert raised.value.problem is CmsProblem.signature


def test_altered_signature_is_a_signature_problem(device: Party) -> None:
    data = sign(CONTENT, [], device.certificate, device.key, hashes.SHA256(), [device.certificate])
    with pytest.raises(CmsError, match="does not verify") as raised:
        verify(open_signed(tamper_signature(data)))
    assert raised.value.problem is CmsProblem.signature


def test_altered_signed_attribute_is_a_signature_problem(device: Party) -> None:
    data = sign(CONTENT, [attribute(CUSTOM, CUSTOM_VALUE)], device.certificate, device.key,
                hashes.SHA256(), [device.certificate])
    altered = data.replace(b"tx-cms-1", b"tx-cms-2")
    assert altered != data
    assert problem(lambda: verify(open_signed(altered))) is CmsProblem.signature


def test_a_certificate_swapped_for_one_with_the_same_name_does_not_verify(
        device: Party) -> None:
    impostor = party("device")
    same_name = (x509.CertificateBuilder().subject_name(device.certificate.subject)
                 .issuer_name(device.certificate.issuer).public_key(impostor.key.public_key())
                 .serial_number(device.certificate.serial_number)
                 .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
                 .sign(impostor.key, hashes.SHA256()))
    data = sign(CONTENT, [], device.certificate, device.key, hashes.SHA256(), [same_name])
    assert problem(lambda: verify(open_signed(data))) is CmsProblem.signature


def test_no_message_digest_attribute_is_malformed(device: Party) -> None:
    attributes = der.set_of(attribute(CONTENT_TYPE, der.oid(cms.ID_DATA)))
    info = signer_info(device, attributes, DIGEST_OIDS["sha256"], algorithm(RSA_ENCRYPTION),
                       pkcs1(device, hashes.SHA256())(attributes))
    message = open_signed(signed_data([info], certificates=(device.certificate,)))
    assert problem(lambda: verify(message)) is CmsProblem.malformed


# -- SignedData that is not what SCEP sends ---------------------------------------------------

def test_two_signers_are_malformed(device: Party, ra: Party) -> None:
    attributes = signed_attributes(CONTENT, hashes.SHA256())
    infos = [signer_info(who, attributes, DIGEST_OIDS["sha256"], algorithm(RSA_ENCRYPTION),
                         pkcs1(who, hashes.SHA256())(attributes)) for who in (device, ra)]
    data = signed_data(infos, certificates=(device.certificate, ra.certificate))
    with pytest.raises(CmsError, match="2 signers") as raised:
        open_signed(data)
    assert raised.value.problem is CmsProblem.malformed


def test_no_signer_is_malformed(device: Party) -> None:
    data = signed_data([], certificates=(device.certificate,))
    assert problem(lambda: open_signed(data)) is CmsProblem.malformed


def test_a_signer_whose_certificate_is_missing_is_malformed(device: Party) -> None:
    data = sign(CONTENT, [], device.certificate, device.key, hashes.SHA256(), [])
    with pytest.raises(CmsError, match="certificate is not in the message") as raised:
        open_signed(data)
    assert raised.value.problem is CmsProblem.malformed


def test_a_signer_without_signed_attributes_is_malformed(device: Party) -> None:
    info = signer_info(device, None, DIGEST_OIDS["sha256"], algorithm(RSA_ENCRYPTION),
                       pkcs1(device, hashes.SHA256())(CONTENT))
    data = signed_data([info], certificates=(device.certificate,))
    assert problem(lambda: open_signed(data)) is CmsProblem.malformed


@pytest.fixture(scope="module")
def a_signed_message(device: Party) -> bytes:
    return sign(CONTENT, [attribute(CUSTOM, CUSTOM_VALUE)], device.certificate, device.key,
                hashes.SHA256(), [device.certificate])


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda data: b"", id="empty"),
    pytest.param(lambda data: b"garbage, not DER", id="garbage"),
    pytest.param(lambda data: data[:len(data) // 2], id="truncated"),
    pytest.param(lambda data: data[:-1], id="last-byte-missing"),
    pytest.param(lambda data: data + b"\x00\x00", id="trailing-bytes"),
    pytest.param(lambda data: data + data, id="twice"),
    pytest.param(lambda data: der.sequence(der.oid(cms.ID_DATA), der.context(0, b"\x04\x00")),
                 id="id-data-content-info"),
])
def test_malformed_signed_data_is_a_cms_error(a_signed_message: bytes,
                                              mangle: Callable[[bytes], bytes]) -> None:
    assert problem(lambda: open_signed(mangle(a_signed_message))) is CmsProblem.malformed


def test_an_envelope_is_not_signed_data(ra: Party) -> None:
    with pytest.raises(CmsError, match="expected a SignedData") as raised:
        open_signed(seal_envelope(CONTENT, ra.certificate))
    assert raised.value.problem is CmsProblem.malformed


# -- EnvelopedData ---------------------------------------------------------------------------

@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_envelope_round_trip_with_each_cipher(ra: Party, cipher: str) -> None:
    opened = open_envelope(seal_envelope(CONTENT, ra.certificate, cipher), [ra.recipient])
    assert opened.content == CONTENT
    assert opened.cipher == cipher
    assert opened.recipient == ra.certificate


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17])
def test_envelope_round_trip_at_block_boundaries(ra: Party, size: int) -> None:
    content = os.urandom(size)
    assert open_envelope(seal_envelope(content, ra.certificate), [ra.recipient]).content == \
        content


def test_default_cipher_is_aes128_cbc(ra: Party) -> None:
    assert open_envelope(seal_envelope(CONTENT, ra.certificate), [ra.recipient]).cipher == \
        AES128_CBC == "2.16.840.1.101.3.4.1.2"


def test_an_envelope_to_a_previous_certificate_is_opened(ra: Party, stranger: Party) -> None:
    opened = open_envelope(seal_envelope(CONTENT, stranger.certificate),
                           [ra.recipient, stranger.recipient])
    assert opened.content == CONTENT and opened.recipient == stranger.certificate


def test_an_envelope_to_someone_else_is_a_recipient_problem(ra: Party, stranger: Party) -> None:
    sealed = seal_envelope(CONTENT, stranger.certificate)
    with pytest.raises(CmsError, match="GetCACert") as raised:
        open_envelope(sealed, [ra.recipient])
    assert raised.value.problem is CmsProblem.recipient


def test_an_envelope_addressed_to_us_that_does_not_decrypt(ra: Party) -> None:
    # A certificate with our issuer and serial but another key: addressed to us, encrypted
    # to a key we do not hold.
    other = rsa.generate_private_key(65537, 2048)
    look_alike = (x509.CertificateBuilder().subject_name(ra.certificate.subject)
                  .issuer_name(ra.certificate.issuer).public_key(other.public_key())
                  .serial_number(ra.certificate.serial_number)
                  .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
                  .sign(other, hashes.SHA256()))
    sealed = seal_envelope(CONTENT, look_alike)
    with pytest.raises(CmsError, match="does not decrypt") as raised:
        open_envelope(sealed, [ra.recipient])
    assert raised.value.problem is CmsProblem.decryption


def test_an_envelope_with_a_wrong_key_length_for_its_cipher_does_not_decrypt(ra: Party) -> None:
    key, iv = os.urandom(16), os.urandom(16)  # an AES-128 key named AES-256
    sealed = envelope_by_hand(CONTENT, ra.certificate, "2.16.840.1.101.3.4.1.42", key, iv,
                              Cipher(algorithms.AES(key), modes.CBC(iv)), 128)
    assert problem(lambda: open_envelope(sealed, [ra.recipient])) is CmsProblem.decryption


def test_an_unknown_cipher_is_an_algorithm_problem(ra: Party) -> None:
    sealed = seal_envelope(CONTENT, ra.certificate, AES128_CBC)
    renamed = sealed.replace(der.oid(AES128_CBC), der.oid(AES128_GCM))
    assert renamed != sealed
    with pytest.raises(CmsError, match=AES128_GCM) as raised:
        open_envelope(renamed, [ra.recipient])
    assert raised.value.problem is CmsProblem.algorithm


def test_single_des_is_read_for_the_handler_to_judge(ra: Party) -> None:
    """Legacy clients (micromdm's scepclient) send DES-CBC: cms.py opens it and names it, and
    the handler decides (badAlg unless configured)."""
    opened = open_envelope(single_des_envelope(CONTENT, ra.certificate), [ra.recipient])
    assert opened.content == CONTENT and opened.cipher == cms.SINGLE_DES == SINGLE_DES


def test_single_des_is_never_written(ra: Party) -> None:
    assert SINGLE_DES not in CIPHERS
    with pytest.raises((KeyError, CmsError)):
        seal_envelope(CONTENT, ra.certificate, SINGLE_DES)


def test_an_unknown_key_transport_is_an_algorithm_problem(ra: Party) -> None:
    sealed = seal_envelope(CONTENT, ra.certificate)
    # rsaEncryption -> md5WithRSAEncryption, both nine octets long.
    renamed = sealed.replace(der.oid(RSA_ENCRYPTION), der.oid("1.2.840.113549.1.1.4"), 1)
    assert problem(lambda: open_envelope(renamed, [ra.recipient])) is CmsProblem.algorithm


RSAES_OAEP = "1.2.840.113549.1.1.7"


def oaep_envelope(ra: Party, parameters: bytes | None, hash_algorithm: hashes.HashAlgorithm,
                  mgf_hash: hashes.HashAlgorithm) -> bytes:
    key, iv = os.urandom(16), os.urandom(16)
    return envelope_by_hand(
        CONTENT, ra.certificate, AES128_CBC, key, iv,
        Cipher(algorithms.AES(key), modes.CBC(iv)), 128,
        transport=algorithm(RSAES_OAEP, parameters),
        transport_padding=rsa_padding.OAEP(rsa_padding.MGF1(mgf_hash), hash_algorithm, None))


def oaep_parameters(digest: str, mgf_digest: str) -> bytes:
    return der.sequence(
        der.context(0, der.sequence(der.oid(DIGEST_OIDS[digest]))),
        der.context(1, der.sequence(der.oid(MGF1), der.sequence(der.oid(DIGEST_OIDS[mgf_digest])))))


def test_rsaes_oaep_with_default_parameters_is_opened(ra: Party) -> None:
    sealed = oaep_envelope(ra, None, hashes.SHA1(), hashes.SHA1())  # noqa: S303 - the default
    assert open_envelope(sealed, [ra.recipient]).content == CONTENT


def test_rsaes_oaep_with_sha256_is_opened(ra: Party) -> None:
    sealed = oaep_envelope(ra, oaep_parameters("sha256", "sha256"), hashes.SHA256(),
                           hashes.SHA256())
    assert open_envelope(sealed, [ra.recipient]).content == CONTENT


def test_rsaes_oaep_with_sha256_and_mgf1_sha1_is_opened(ra: Party) -> None:
    sealed = oaep_envelope(ra, oaep_parameters("sha256", "sha1"), hashes.SHA256(),
                           hashes.SHA1())  # noqa: S303 - what the parameters name
    assert open_envelope(sealed, [ra.recipient]).content == CONTENT


def test_rsaes_oaep_with_an_unaccepted_hash_is_an_algorithm_problem(ra: Party) -> None:
    parameters = der.sequence(der.context(0, der.sequence(der.oid(MD5))))
    sealed = oaep_envelope(ra, parameters, hashes.SHA256(), hashes.SHA256())
    assert problem(lambda: open_envelope(sealed, [ra.recipient])) is CmsProblem.algorithm


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda data: b"garbage", id="garbage"),
    pytest.param(lambda data: data[:-20], id="truncated"),
    pytest.param(lambda data: data + b"\x00", id="trailing-byte"),
])
def test_malformed_envelopes_are_a_cms_error(ra: Party, mangle: Callable[[bytes], bytes]) -> None:
    sealed = seal_envelope(CONTENT, ra.certificate)
    assert problem(lambda: open_envelope(mangle(sealed), [ra.recipient])) is CmsProblem.malformed


def test_signed_data_is_not_an_envelope(ra: Party) -> None:
    data = sign(CONTENT, [], ra.certificate, ra.key, hashes.SHA256(), [ra.certificate])
    with pytest.raises(CmsError, match="EnvelopedData"):
        open_envelope(data, [ra.recipient])


def test_sealing_to_a_certificate_without_an_rsa_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    assert problem(lambda: seal_envelope(CONTENT, certificate)) is CmsProblem.algorithm


def test_rsa_recipient_repr_hides_the_key(ra: Party) -> None:
    assert "key" not in repr(ra.recipient).replace("public_key", "")
