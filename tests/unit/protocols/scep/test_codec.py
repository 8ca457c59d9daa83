"""SCEP messages (protocols/scep/codec.py): a request read in three steps, each failure answered
as RFC 8894 asks (no SCEP answer, or a CertRep FAILURE with the right failInfo), and CertRep
replies read back attribute by attribute.

Requests come from tests/support/scep_messages.py where it builds what a test needs, and from
cms.sign with hand-picked attributes where a test needs one missing or wrong.
"""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.der import encoder as der_encoder
from pyasn1_alt_modules import rfc5652

from fleetpki.core import der
from fleetpki.protocols.scep import cms
from fleetpki.protocols.scep.cms import RsaRecipient, attribute, open_envelope, open_signed, verify
from fleetpki.protocols.scep.codec import (
    CAPABILITIES,
    FailInfo,
    IssuerAndSerial,
    MessageType,
    PkiStatus,
    ScepFailure,
    ScepMalformed,
    ScepReplyTo,
    ScepRequest,
    certs_only,
    check_request,
    decode_request,
    encode_cert_rep,
    open_request,
)
from support import scep_messages as sm

NOW = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
SKEW = dt.timedelta(minutes=10)

MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
PKI_STATUS = "2.16.840.1.113733.1.9.3"
FAIL_INFO = "2.16.840.1.113733.1.9.4"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
TRANSACTION = "2.16.840.1.113733.1.9.7"
FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"
SIGNING_TIME = "1.2.840.113549.1.9.5"
RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
TRIPLE_DES = "1.2.840.113549.3.7"


@pytest.fixture(scope="module")
def device() -> sm.Requester:
    return sm.requester(common_name="device-0001")


@pytest.fixture(scope="module")
def ra() -> RsaRecipient:
    key = rsa.generate_private_key(65537, 2048)
    return RsaRecipient(sm.self_signed(key, "scep-ra", NOW), key)


@pytest.fixture(scope="module")
def csr(device: sm.Requester) -> bytes:
    return sm.csr(device.key, "device-0001", "challenge-1")


def printable(text: str) -> bytes:
    return der.tlv(0x13, text.encode())


def signed_request(device: sm.Requester, ra: RsaRecipient, *attributes: bytes,
                   payload: bytes = b"payload") -> bytes:
    """A request signed with exactly `attributes` (besides contentType and messageDigest)."""
    return cms.sign(cms.seal_envelope(payload, ra.certificate), list(attributes),
                    device.certificate, device.key, hashes.SHA256(), [device.certificate])


def good_attributes(kind: str = MessageType.pkcs_req.value, tid: bytes = printable("tx-7"),
                    nonce: bytes = b"n" * 16) -> dict[str, bytes]:
    return {MESSAGE_TYPE: attribute(MESSAGE_TYPE, printable(kind)),
            TRANSACTION: attribute(TRANSACTION, tid),
            SENDER_NONCE: attribute(SENDER_NONCE, der.octet_string(nonce))}


def refused(data: bytes) -> ScepFailure:
    with pytest.raises(ScepFailure) as raised:
        decode_request(data)
    return raised.value


def value(message: cms.SignedMessage, oid: str) -> bytes:
    [encoded] = message.attributes[oid]
    return encoded


def text_of(encoded: bytes) -> str:
    return der.content(encoded).decode()


# -- decode_request ---------------------------------------------------------------------------

def test_a_request_is_decoded(device: sm.Requester, ra: RsaRecipient, csr: bytes) -> None:
    nonce = os.urandom(16)
    data = sm.message(device, MessageType.pkcs_req, csr, ra.certificate,
                      transaction_id="tx-abc", nonce=nonce, digest=hashes.SHA384(),
                      signing_time=NOW)
    request = decode_request(data)
    assert request.message_type is MessageType.pkcs_req
    assert request.transaction_id == "tx-abc"
    assert request.signing_time == NOW
    assert request.signer == device.certificate
    assert request.reply_to.transaction_id == printable("tx-abc")
    assert request.reply_to.sender_nonce == nonce
    assert isinstance(request.reply_to.digest, hashes.SHA384)


@pytest.mark.parametrize("kind", [MessageType.pkcs_req, MessageType.renewal_req,
                                  MessageType.cert_poll, MessageType.get_cert,
                                  MessageType.get_crl])
def test_every_request_type_is_decoded(device: sm.Requester, ra: RsaRecipient,
                                       kind: MessageType) -> None:
    data = sm.message(device, kind, b"payload", ra.certificate)
    assert decode_request(data).message_type is kind


@pytest.mark.parametrize("missing", [TRANSACTION, SENDER_NONCE])
def test_a_request_without_transaction_or_nonce_cannot_be_answered(
        device: sm.Requester, ra: RsaRecipient, missing: str) -> None:
    attributes = good_attributes()
    del attributes[missing]
    with pytest.raises(ScepMalformed, match="transactionID or senderNonce"):
        decode_request(signed_request(device, ra, *attributes.values()))


def test_two_transaction_ids_cannot_be_answered(device: sm.Requester, ra: RsaRecipient) -> None:
    attributes = good_attributes()
    attributes[TRANSACTION] = der.sequence(der.oid(TRANSACTION),
                                           der.set_of(printable("tx-1"), printable("tx-2")))
    with pytest.raises(ScepMalformed):
        decode_request(signed_request(device, ra, *attributes.values()))


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"GET / HTTP/1.1", id="garbage"),
    pytest.param(b"\x30\x82\xff\xff", id="truncated"),
])
def test_what_is_not_cms_cannot_be_answered(data: bytes) -> None:
    with pytest.raises(ScepMalformed, match="not a SCEP message"):
        decode_request(data)


def test_malformed_cms_cannot_be_answered(device: sm.Requester, ra: RsaRecipient) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate)
    for mangled in (data[:-3], data + b"\x00", cms.seal_envelope(b"x", ra.certificate)):
        with pytest.raises(ScepMalformed):
            decode_request(mangled)


@pytest.mark.parametrize("kind", ["99", "3", "", "PKCSReq"])
def test_an_unknown_message_type_is_a_bad_request(device: sm.Requester, ra: RsaRecipient,
                                                  kind: str) -> None:
    nonce = os.urandom(16)
    failure = refused(signed_request(device, ra, *good_attributes(kind, nonce=nonce).values()))
    assert failure.fail_info is FailInfo.bad_request
    assert "messageType" in str(failure)
    # Answerable: the failure carries what the CertRep must repeat.
    assert failure.reply_to.transaction_id == printable("tx-7")
    assert failure.reply_to.sender_nonce == nonce


def test_a_missing_message_type_is_a_bad_request(device: sm.Requester, ra: RsaRecipient) -> None:
    attributes = good_attributes()
    del attributes[MESSAGE_TYPE]
    assert refused(signed_request(device, ra, *attributes.values())).fail_info is \
        FailInfo.bad_request


@pytest.mark.parametrize("size", [0, 8, 15, 17, 32])
def test_a_nonce_of_other_than_16_octets_is_a_bad_request(device: sm.Requester,
                                                          ra: RsaRecipient, size: int) -> None:
    failure = refused(signed_request(device, ra,
                                     *good_attributes(nonce=os.urandom(size)).values()))
    assert failure.fail_info is FailInfo.bad_request and "16 octets" in str(failure)


@pytest.mark.parametrize("tid", ["", "x" * 129, "tx\n1"])
def test_an_unusable_transaction_id_is_a_bad_request(device: sm.Requester, ra: RsaRecipient,
                                                     tid: str) -> None:
    encoded = der.tlv(0x0C, tid.encode())
    failure = refused(signed_request(device, ra, *good_attributes(tid=encoded).values()))
    assert failure.fail_info is FailInfo.bad_request
    assert failure.reply_to.transaction_id == encoded


# A value whose outer TLV reads (so open_signed accepts the attribute) but whose inside does
# not: a SEQUENCE holding an INTEGER longer than the SEQUENCE.
UNREADABLE = b"\x30\x03\x02\x05\x00"


@pytest.mark.parametrize("unreadable", [TRANSACTION, SENDER_NONCE])
def test_an_unreadable_transaction_id_or_nonce_cannot_be_answered(
        device: sm.Requester, ra: RsaRecipient, unreadable: str) -> None:
    attributes = good_attributes()
    attributes[unreadable] = attribute(unreadable, UNREADABLE)
    with pytest.raises(ScepMalformed):
        decode_request(signed_request(device, ra, *attributes.values()))


def test_an_unreadable_message_type_is_a_bad_request(device: sm.Requester,
                                                     ra: RsaRecipient) -> None:
    attributes = good_attributes()
    attributes[MESSAGE_TYPE] = attribute(MESSAGE_TYPE, UNREADABLE)
    assert refused(signed_request(device, ra, *attributes.values())).fail_info is \
        FailInfo.bad_request


def test_a_nonce_that_is_not_an_octet_string_cannot_be_answered(device: sm.Requester,
                                                               ra: RsaRecipient) -> None:
    attributes = good_attributes()
    attributes[SENDER_NONCE] = attribute(SENDER_NONCE, der.integer(16))
    with pytest.raises(ScepMalformed):  # there is no nonce to echo as recipientNonce
        decode_request(signed_request(device, ra, *attributes.values()))


def test_a_transaction_id_of_128_characters_is_accepted(device: sm.Requester,
                                                        ra: RsaRecipient) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate,
                      transaction_id="T" * 128)
    assert decode_request(data).transaction_id == "T" * 128


def test_an_unreadable_signing_time_is_bad_time(device: sm.Requester, ra: RsaRecipient) -> None:
    attributes = [*good_attributes().values(), attribute(SIGNING_TIME, der.integer(5))]
    assert refused(signed_request(device, ra, *attributes)).fail_info is FailInfo.bad_time


def test_a_generalized_signing_time_is_read(device: sm.Requester, ra: RsaRecipient) -> None:
    attributes = [*good_attributes().values(),
                  attribute(SIGNING_TIME, der.generalized_time(NOW))]
    assert decode_request(signed_request(device, ra, *attributes)).signing_time == NOW


def test_an_unaccepted_digest_still_gets_an_answer_signed_with_sha256(
        device: sm.Requester, ra: RsaRecipient) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate)
    # Rename the digest (SHA-256 -> SHA-224 would be accepted; use an OID we refuse).
    renamed = data.replace(der.oid("2.16.840.1.101.3.4.2.1"), der.oid("2.16.840.1.101.3.4.2.8"))
    request = decode_request(renamed)
    assert isinstance(request.reply_to.digest, hashes.SHA256)
    with pytest.raises(ScepFailure) as raised:
        check_request(request, NOW, None)
    assert raised.value.fail_info is FailInfo.bad_alg


# -- check_request ----------------------------------------------------------------------------

def test_a_good_request_passes_the_check(device: sm.Requester, ra: RsaRecipient) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate, signing_time=NOW)
    check_request(decode_request(data), NOW + SKEW, SKEW)


def test_a_tampered_request_is_bad_message_check(device: sm.Requester, ra: RsaRecipient) -> None:
    data = sm.tamper_signature(sm.message(device, MessageType.pkcs_req, b"x", ra.certificate))
    request = decode_request(data)  # the signed layer still reads
    with pytest.raises(ScepFailure) as raised:
        check_request(request, NOW, None)
    assert raised.value.fail_info is FailInfo.bad_message_check
    assert raised.value.reply_to == request.reply_to


@pytest.mark.parametrize("offset", [SKEW + dt.timedelta(seconds=1),
                                    -SKEW - dt.timedelta(seconds=1), dt.timedelta(days=400)])
def test_a_signing_time_too_far_from_the_clock_is_bad_time(
        device: sm.Requester, ra: RsaRecipient, offset: dt.timedelta) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate,
                      signing_time=NOW + offset)
    with pytest.raises(ScepFailure, match="set the device's clock") as raised:
        check_request(decode_request(data), NOW, SKEW)
    assert raised.value.fail_info is FailInfo.bad_time


@pytest.mark.parametrize("offset", [SKEW, -SKEW, dt.timedelta(0)])
def test_a_signing_time_within_the_skew_is_accepted(
        device: sm.Requester, ra: RsaRecipient, offset: dt.timedelta) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate,
                      signing_time=NOW + offset)
    check_request(decode_request(data), NOW, SKEW)


def test_the_signing_time_is_not_checked_without_a_skew_or_a_time(
        device: sm.Requester, ra: RsaRecipient) -> None:
    late = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate,
                      signing_time=NOW - dt.timedelta(days=900))
    check_request(decode_request(late), NOW, None)
    timeless = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate)
    check_request(decode_request(timeless), NOW, SKEW)


# -- open_request -----------------------------------------------------------------------------

def opened(device: sm.Requester, ra: RsaRecipient, kind: MessageType, payload: bytes,
           cipher: str = cms.AES128_CBC) -> ScepRequest:
    return decode_request(sm.message(device, kind, payload, ra.certificate, cipher=cipher))


def test_pkcs_req_payload_is_the_csr(device: sm.Requester, ra: RsaRecipient, csr: bytes) -> None:
    payload = open_request(opened(device, ra, MessageType.pkcs_req, csr, TRIPLE_DES), [ra])
    assert payload.csr == csr and payload.cipher == TRIPLE_DES
    assert payload.subject is None and payload.certificate is None


def test_cert_poll_payload_is_the_subject(device: sm.Requester, ra: RsaRecipient) -> None:
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Issuing")])
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-0001")])
    request = opened(device, ra, MessageType.cert_poll, sm.issuer_and_subject(issuer, subject))
    assert open_request(request, [ra]).subject == subject.public_bytes()


@pytest.mark.parametrize("kind", [MessageType.get_cert, MessageType.get_crl])
def test_get_cert_and_get_crl_payload_is_issuer_and_serial(
        device: sm.Requester, ra: RsaRecipient, kind: MessageType) -> None:
    request = opened(device, ra, kind, sm.issuer_and_serial(ra.certificate))
    assert open_request(request, [ra]).certificate == IssuerAndSerial(
        ra.certificate.issuer.public_bytes(), ra.certificate.serial_number)


@pytest.mark.parametrize("kind", [MessageType.cert_poll, MessageType.get_cert])
@pytest.mark.parametrize("payload", [b"garbage", b"\x30\x00", b"trailing"])
def test_an_unreadable_payload_is_a_bad_request(device: sm.Requester, ra: RsaRecipient,
                                                kind: MessageType, payload: bytes) -> None:
    if payload == b"trailing":
        payload = sm.issuer_and_serial(ra.certificate) + b"\x00\x00"
    with pytest.raises(ScepFailure, match="cannot be parsed") as raised:
        open_request(opened(device, ra, kind, payload), [ra])
    assert raised.value.fail_info is FailInfo.bad_request


def test_a_request_without_an_envelope_is_a_bad_request(device: sm.Requester,
                                                        ra: RsaRecipient) -> None:
    data = cms.sign(None, list(good_attributes().values()), device.certificate, device.key,
                    hashes.SHA256(), [device.certificate])
    with pytest.raises(ScepFailure, match="pkcsPKIEnvelope") as raised:
        open_request(decode_request(data), [ra])
    assert raised.value.fail_info is FailInfo.bad_request


def test_an_envelope_to_another_ra_is_a_bad_request(device: sm.Requester,
                                                    ra: RsaRecipient) -> None:
    other = sm.requester(common_name="other-ra")
    data = sm.message(device, MessageType.pkcs_req, b"x", other.certificate)
    with pytest.raises(ScepFailure, match="GetCACert") as raised:
        open_request(decode_request(data), [ra])
    assert raised.value.fail_info is FailInfo.bad_request


def test_an_unknown_cipher_is_bad_alg(device: sm.Requester, ra: RsaRecipient) -> None:
    data = sm.message(device, MessageType.pkcs_req, b"x", ra.certificate)
    # AES-128-CBC renamed AES-128-GCM inside the envelope, which is then signed again (the
    # message digest covers it): the request verifies and only its cipher is wrong.
    request = decode_request(data)
    assert request.signed.content is not None
    envelope = request.signed.content.replace(der.oid(cms.AES128_CBC),
                                              der.oid("2.16.840.1.101.3.4.1.6"))
    resigned = cms.sign(envelope, list(good_attributes().values()), device.certificate,
                        device.key, hashes.SHA256(), [device.certificate])
    with pytest.raises(ScepFailure) as raised:
        open_request(decode_request(resigned), [ra])
    assert raised.value.fail_info is FailInfo.bad_alg


# -- encode_cert_rep --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def issued(device: sm.Requester, ra: RsaRecipient) -> x509.Certificate:
    """A certificate for the device's key, issued by the RA key (any issuer will do here)."""
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-0001")]))
            .issuer_name(ra.certificate.subject).public_key(device.key.public_key())
            .serial_number(0x1234).not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(days=90)).sign(ra.key, hashes.SHA256()))


@pytest.fixture(scope="module")
def reply_to() -> ScepReplyTo:
    # A transactionID sent as a UTF8String: echoed as it came, tag included.
    return ScepReplyTo(der.tlv(0x0C, "tx-ü-1".encode()), os.urandom(16), hashes.SHA512())


def check_common(message: cms.SignedMessage, reply_to: ScepReplyTo, ra: RsaRecipient,
                 sender_nonce: bytes, status: PkiStatus) -> None:
    verify(message)
    assert message.signer == ra.certificate
    assert message.signature_algorithm == RSA_ENCRYPTION
    assert message.digest_algorithm == "2.16.840.1.101.3.4.2.3"  # the request's SHA-512
    assert text_of(value(message, MESSAGE_TYPE)) == "3"
    assert value(message, MESSAGE_TYPE)[0] == 0x13  # PrintableString
    assert text_of(value(message, PKI_STATUS)) == status.value
    assert value(message, TRANSACTION) == reply_to.transaction_id
    assert value(message, RECIPIENT_NONCE) == der.octet_string(reply_to.sender_nonce)
    assert value(message, SENDER_NONCE) == der.octet_string(sender_nonce)


def test_success_carries_the_certificate_enveloped_to_the_requester(
        device: sm.Requester, ra: RsaRecipient, issued: x509.Certificate,
        reply_to: ScepReplyTo) -> None:
    nonce = os.urandom(16)
    data = encode_cert_rep(reply_to, PkiStatus.success, signer=ra, sender_nonce=nonce,
                           certificates=[issued, ra.certificate],
                           recipient=device.certificate, cipher=TRIPLE_DES)
    message = open_signed(data)
    check_common(message, reply_to, ra, nonce, PkiStatus.success)
    assert text_of(value(message, PKI_STATUS)) == "0"
    assert FAIL_INFO not in message.attributes and FAIL_INFO_TEXT not in message.attributes
    assert message.content is not None
    inner = open_envelope(message.content, [RsaRecipient(device.certificate, device.key)])
    assert inner.cipher == TRIPLE_DES
    assert certificates_in(inner.content) == [issued, ra.certificate]
    # Not for the RA to read: only the requester's key opens it.
    with pytest.raises(cms.CmsError):
        open_envelope(message.content, [ra])


def test_pending_carries_no_content(ra: RsaRecipient, reply_to: ScepReplyTo) -> None:
    nonce = os.urandom(16)
    message = open_signed(encode_cert_rep(reply_to, PkiStatus.pending, signer=ra,
                                          sender_nonce=nonce))
    check_common(message, reply_to, ra, nonce, PkiStatus.pending)
    assert text_of(value(message, PKI_STATUS)) == "3"
    assert message.content is None and FAIL_INFO not in message.attributes


@pytest.mark.parametrize("fail_info", list(FailInfo))
def test_failure_carries_the_fail_info_and_its_text(ra: RsaRecipient, reply_to: ScepReplyTo,
                                                    fail_info: FailInfo) -> None:
    nonce = os.urandom(16)
    message = open_signed(encode_cert_rep(reply_to, PkiStatus.failure, signer=ra,
                                          sender_nonce=nonce, fail_info=fail_info,
                                          text="wrong challenge password: Gerät refused"))
    check_common(message, reply_to, ra, nonce, PkiStatus.failure)
    assert text_of(value(message, PKI_STATUS)) == "2"
    assert text_of(value(message, FAIL_INFO)) == fail_info.value
    assert value(message, FAIL_INFO_TEXT) == der.tlv(
        0x0C, "wrong challenge password: Gerät refused".encode())
    assert message.content is None


def test_failure_text_is_cut_and_optional(ra: RsaRecipient, reply_to: ScepReplyTo) -> None:
    long = open_signed(encode_cert_rep(reply_to, PkiStatus.failure, signer=ra,
                                       sender_nonce=os.urandom(16),
                                       fail_info=FailInfo.bad_request, text="x" * 1000))
    assert text_of(value(long, FAIL_INFO_TEXT)) == "x" * 400
    bare = open_signed(encode_cert_rep(reply_to, PkiStatus.failure, signer=ra,
                                       sender_nonce=os.urandom(16),
                                       fail_info=FailInfo.bad_time))
    assert FAIL_INFO_TEXT not in bare.attributes
    assert text_of(value(bare, FAIL_INFO)) == "3"


def test_reply_to_a_request_repeats_its_transaction_and_nonce(
        device: sm.Requester, ra: RsaRecipient) -> None:
    nonce = os.urandom(16)
    request = decode_request(sm.message(device, MessageType.pkcs_req, b"x", ra.certificate,
                                        transaction_id="tx-echo", nonce=nonce))
    reply = open_signed(encode_cert_rep(request.reply_to, PkiStatus.pending, signer=ra,
                                        sender_nonce=os.urandom(16)))
    assert value(reply, TRANSACTION) == printable("tx-echo")
    assert value(reply, RECIPIENT_NONCE) == der.octet_string(nonce)


# -- certs-only ------------------------------------------------------------------------------

def parse_certs_only(data: bytes) -> rfc5652.SignedData:
    info, rest = ber_decoder.decode(data, asn1Spec=rfc5652.ContentInfo())
    assert not rest and str(info["contentType"]) == cms.ID_SIGNED_DATA
    signed, rest = ber_decoder.decode(bytes(info["content"]), asn1Spec=rfc5652.SignedData())
    assert not rest
    return signed


def certificates_in(data: bytes) -> list[x509.Certificate]:
    """In the order written. (cryptography's PKCS #7 loader warns on a certificates SET that is
    not in DER order: SCEP clients read the order, so certs_only keeps the one given.)"""
    return [x509.load_der_x509_certificate(der_encoder.encode(choice["certificate"]))
            for choice in parse_certs_only(data)["certificates"]]


def test_certs_only_keeps_the_order_given(ra: RsaRecipient, issued: x509.Certificate) -> None:
    for order in ([ra.certificate, issued], [issued, ra.certificate]):
        assert certificates_in(certs_only(order)) == order
    signed = parse_certs_only(certs_only([ra.certificate, issued]))
    assert len(signed["signerInfos"]) == 0 and len(signed["digestAlgorithms"]) == 0
    assert not signed["crls"].isValue


def test_certs_only_carries_a_crl(ra: RsaRecipient) -> None:
    crl = (x509.CertificateRevocationListBuilder().issuer_name(ra.certificate.subject)
           .last_update(NOW).next_update(NOW + dt.timedelta(days=1))
           .sign(ra.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    signed = parse_certs_only(certs_only([], crl))
    [choice] = list(signed["crls"])
    assert der_encoder.encode(choice["crl"]) == crl
    assert not signed["certificates"].isValue


def test_capabilities_advertise_aes_and_sha2_and_not_des() -> None:
    assert CAPABILITIES == ("POSTPKIOperation", "Renewal", "AES", "SHA-256", "SHA-384",
                            "SHA-512", "SCEPStandard")
    assert "DES3" not in CAPABILITIES and "SHA-1" not in CAPABILITIES
