"""CmpHandler driven in process with CmpCall objects, over a real RA and SQLite store on a
fake clock: what a device receives, without HTTP. The checks OpenSSL's client never trips
(versions, lengths, times, protection, unsupported bodies and proofs) live here;
tests/integration/test_cmp.py drives the same server with `openssl cmp`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyasn1_alt_modules import rfc9810  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.core.records import CertificateStatus
from fleetpki.protocols.cmp.asn1 import FailInfo, decode, encode
from fleetpki.protocols.cmp.exchange import CmpCall, CmpIdentity, CmpReply
from fleetpki.protocols.cmp.handler import CmpHandler, CmpSettings
from fleetpki.protocols.cmp.protection import IterationBounds, read_mac
from fleetpki.ra.credentials import CredentialAdmin
from fleetpki.ra.revocations import RevocationDesk
from fleetpki.ra.self_revocation import SelfRevocation
from fleetpki.ra.shared_secrets import SecretDeriver, SharedSecrets
from fleetpki.ra.transactions import TransactionalEnrollment
from fleetpki.store.api import CertificateQuery
from support import cmp_messages as cm
from support.enrollment_rig import EnrollmentParts, enrollment_parts

START = dt.datetime(2030, 1, 15, 8, 0, tzinfo=dt.UTC)
PROFILES = """
[profiles.sensor]
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = { default = "90d", maximum = "90d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
"""
CT = "application/pkixcmp"


@dataclasses.dataclass(frozen=True)
class Rig:
    parts: EnrollmentParts
    handler: CmpHandler
    credentials: CredentialAdmin

    def call(self, body: bytes | None, *, method: str = "POST", content_type: str = CT,
             label: str | None = "sensor") -> CmpReply:
        return self.handler.handle(CmpCall(method, label, content_type, body, "192.0.2.9"))

    def mac(self) -> cm.Mac:
        made = self.credentials.create("sensor", lifetime=dt.timedelta(days=1), max_uses=1)
        return cm.Mac(made.credential.id, made.secret)


def _count(parts: EnrollmentParts) -> int:
    return len(parts.store.find_certificates(CertificateQuery(limit=1000), now=START))


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    parts = enrollment_parts(tmp_path, PROFILES, START)
    deriver = SecretDeriver(os.urandom(32))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CMP server")])
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(1)
                   .not_valid_before(START - dt.timedelta(days=1))
                   .not_valid_after(START + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
    desk = lambda who: RevocationDesk(parts.store, parts.store, parts.profiles,  # noqa: E731
                                      parts.clock, who)
    handler = CmpHandler(
        parts.service, TransactionalEnrollment(parts.service, parts.store, parts.clock),
        SelfRevocation(parts.service.identify, desk),
        SharedSecrets(parts.store, deriver).secret_for, lambda _: CmpIdentity(certificate, key),
        lambda _: None,
        CmpSettings(dt.timedelta(hours=1), IterationBounds(500, 100_000), os.urandom(32)),
        parts.clock.now)
    credentials = CredentialAdmin(parts.store, parts.profiles, parts.clock, "operator:test",
                                  derive=deriver.secret)
    return Rig(parts, handler, credentials)


def _message(reply: CmpReply) -> Any:
    assert reply.headers[0] == ("Content-Type", CT), reply
    return decode(reply.body, rfc9810.PKIMessage(), "reply")


def _fail(reply: CmpReply) -> tuple[FailInfo, str]:
    message = _message(reply)
    assert message["body"].getName() == "error", message["body"].getName()
    info = message["body"]["error"]["pKIStatusInfo"]
    bits = str(info["failInfo"])
    [bit] = [number for number, value in enumerate(bits) if value == "1"]
    return FailInfo(bit), " ".join(str(t) for t in info["statusString"])


def _ir(rig: Rig, mac: cm.Mac, cn: str = "dev-1", **options: Any) -> tuple[CmpReply, bytes, bytes]:
    """(reply, transactionID, the device's senderNonce)."""
    transaction, nonce = options.pop("transaction_id", os.urandom(16)), os.urandom(16)
    body = cm.cert_request(cn, ec.generate_private_key(ec.SECP256R1()))
    reply = rig.call(cm.request(body, mac, transaction_id=transaction, sender_nonce=nonce,
                                message_time=START, **options))
    return reply, transaction, nonce


# -- HTTP-level refusals ------------------------------------------------------------------------

def test_http_level_refusals_name_what_to_do(rig: Rig) -> None:
    assert rig.call(b"", method="GET").status == 405
    assert rig.call(b"\x30\x00", content_type="application/json").status == 415
    assert rig.call(None).status == 413
    assert rig.call(b"\x30\x00", label="../x").status == 404
    missing = rig.call(b"\x30\x00", label="nosuch")
    assert missing.status == 404 and b"nosuch" in missing.body


# -- a whole transaction ------------------------------------------------------------------------

def test_ir_then_certconf_with_a_mac(rig: Rig) -> None:
    mac = rig.mac()
    reply, transaction, nonce = _ir(rig, mac)
    message = _message(reply)
    header = message["header"]
    assert message["body"].getName() == "ip"
    assert bytes(header["transactionID"]) == transaction
    assert bytes(header["recipNonce"]) == nonce
    # The reply is MAC-protected with the same secret, under a fresh salt.
    scheme = read_mac(str(header["protectionAlg"]["algorithm"]),
                      bytes(header["protectionAlg"]["parameters"]), IterationBounds(1, 10**6))
    parts = der.elements(reply.body)
    protection = der.content(der.content(parts[2]))[1:]  # [0] BIT STRING, no unused bits
    assert scheme.verify(mac.secret.encode(), der.sequence(parts[0], parts[1]), protection)
    response = message["body"]["ip"]["response"][0]
    certificate = der.content(encode(response["certifiedKeyPair"]["certOrEncCert"]
                                     ["certificate"]))
    server_nonce = bytes(header["senderNonce"])

    def confirm(cert_hash: bytes, rejected: bool = False) -> CmpReply:
        status = der.sequence(der.integer(2)) if rejected else b""
        body = der.context(24, der.sequence(der.sequence(
            der.octet_string(cert_hash), der.integer(0), *([status] if status else []))))
        return rig.call(cm.request(body, mac, transaction_id=transaction,
                                   sender_nonce=os.urandom(16), recip_nonce=server_nonce,
                                   message_time=START))

    assert _fail(confirm(b"\x00" * 32))[0] is FailInfo.bad_cert_id
    assert _message(confirm(hashlib.sha256(certificate).digest()))["body"].getName() == \
        "pkiconf"
    # A device that refuses its certificate gets it revoked.
    assert _message(confirm(hashlib.sha256(certificate).digest(), rejected=True))[
        "body"].getName() == "pkiconf"
    serial = x509.load_der_x509_certificate(certificate).serial_number
    record = rig.parts.store.get_certificate(serial, "issuing")
    assert record is not None and record.status(START) is CertificateStatus.revoked


def test_a_transaction_id_serves_one_request(rig: Rig) -> None:
    first, transaction, _ = _ir(rig, rig.mac())
    assert _message(first)["body"].getName() == "ip"
    again, _, _ = _ir(rig, rig.mac(), cn="dev-2", transaction_id=transaction)
    assert _fail(again)[0] is FailInfo.transaction_id_in_use
    assert _count(rig.parts) == 1


# -- header and protection checks ---------------------------------------------------------------

@pytest.mark.parametrize(("options", "fail"), [
    ({"pvno": 1}, FailInfo.unsupported_version),
    ({"transaction_id": b"short"}, FailInfo.bad_request),
    ({"sender_nonce": b"short"}, FailInfo.bad_sender_nonce),
    ({"message_time": START - dt.timedelta(hours=3)}, FailInfo.bad_time),
    ({"recipient": x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Other CA")])
      .public_bytes()}, FailInfo.wrong_authority),
    ({"tamper": True}, FailInfo.bad_message_check),
])
def test_header_and_protection_refusals(rig: Rig, options: dict[str, Any],
                                        fail: FailInfo) -> None:
    body = cm.cert_request("dev-1", ec.generate_private_key(ec.SECP256R1()))
    values = {"message_time": START, **options}
    reply = rig.call(cm.request(body, rig.mac(), **values))
    assert _fail(reply)[0] is fail
    assert _count(rig.parts) == 0


def test_unprotected_and_out_of_bounds_macs_are_refused(rig: Rig) -> None:
    body = cm.cert_request("dev-1", ec.generate_private_key(ec.SECP256R1()))
    assert _fail(rig.call(cm.request(body, None, message_time=START)))[0] is \
        FailInfo.bad_message_check
    weak = dataclasses.replace(rig.mac(), iterations=10)
    assert _fail(rig.call(cm.request(body, weak, message_time=START)))[0] is FailInfo.bad_alg


# -- what a MAC may not do, and proofs that do not count ------------------------------------------

def test_kur_and_rr_need_a_signature(rig: Rig) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    kur = rig.call(cm.request(cm.cert_request("dev-1", key, body_tag=7), rig.mac(),
                              message_time=START))
    assert _fail(kur)[0] is FailInfo.not_authorized
    rr = der.context(11, der.sequence(der.sequence(der.sequence(
        der.context(1, der.integer(5), constructed=False)))))
    assert _fail(rig.call(cm.request(rr, rig.mac(), message_time=START)))[0] is \
        FailInfo.not_authorized


@pytest.mark.parametrize(("kwargs", "fail"), [
    ({"popo": der.context(0, b"", constructed=False)}, FailInfo.bad_pop),  # raVerified
    ({"requests": 2}, FailInfo.bad_request),
])
def test_requests_the_server_does_not_take(rig: Rig, kwargs: dict[str, Any],
                                           fail: FailInfo) -> None:
    body = cm.cert_request("dev-1", ec.generate_private_key(ec.SECP256R1()), **kwargs)
    assert _fail(rig.call(cm.request(body, rig.mac(), message_time=START)))[0] is fail
    assert _count(rig.parts) == 0


def test_a_body_a_server_does_not_take_is_a_bad_request(rig: Rig) -> None:
    pkiconf_from_a_client = der.context(19, der.tlv(der.NULL, b""))
    fail, text = _fail(rig.call(cm.request(pkiconf_from_a_client, rig.mac(),
                                           message_time=START)))
    assert fail is FailInfo.bad_request and "pkiconf" in text


def test_polling_needs_this_servers_nonce(rig: Rig) -> None:
    poll = der.context(25, der.sequence(der.sequence(der.integer(0))))
    reply = rig.call(cm.request(poll, rig.mac(), recip_nonce=os.urandom(16),
                                message_time=START))
    assert _fail(reply)[0] is FailInfo.bad_recipient_nonce
