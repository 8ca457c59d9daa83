"""CMP (RFC 9480/9483 over HTTP, RFC 6712) with the real client, `openssl cmp` (OpenSSL 3.0),
against `fleetpki serve`: ir with a bootstrap credential's MAC and with a factory identity,
cr, p10cr, kur, rr, genm, polling for a held request, implicit confirmation, over HTTP and
HTTPS. What OpenSSL 3.0 cannot send (the RFC 9483 §4.3 general messages it has no name for,
PBMAC1, broken messages) comes from support/cmp_messages.py.

Every issued certificate is checked with `openssl verify -x509_strict` and against the request
(subject, public key); every refusal shows its failInfo and that nothing was stored.

OpenSSL's client speaks HTTP/1.0 with keep-alive (its default, kept here) and OpenSSL 3.0
fails the second message of a transaction if the server closes the connection: these tests are
also what proves serving/http10_keep_alive.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from pyasn1_alt_modules import rfc9810  # type: ignore[import-untyped, unused-ignore]

from fleetpki.core import der
from fleetpki.core.clock import FakeClock
from fleetpki.core.enrollment_records import EnrollmentTransaction
from fleetpki.protocols.cmp.asn1 import (
    IT_CA_CERTS,
    IT_CERT_REQ_TEMPLATE,
    IT_CRL_STATUS_LIST,
    IT_CRLS,
    IT_ROOT_CA_CERT,
    IT_ROOT_CA_KEY_UPDATE,
    decode,
    encode,
)
from fleetpki.ra.transactions import RETENTION
from fleetpki.wiring import open_fleet
from support import cmp_messages
from support.cmp_messages import Mac
from support.est_home import Credential, Home, make_factory_pki, openssl, write_ca_files
from support.fleet_server import RunningServer, fleet_server
from support.lint import openssl_verify, require_tool

pytestmark = pytest.mark.slow

PROFILES = """
[profiles.cmpdev]
description = "CMP devices: EC keys, renew at any time"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256", "ec-p384"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true, pattern = "^[A-Za-z0-9-]{3,64}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 1.0 }

[profiles.cmpheld]
description = "held for an operator"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
enrollment = { approval = "manual", retry_after = "1s" }

[profiles.cmpkeygen]
description = "keys made by the server (central key generation)"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256", "ec-p384"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
enrollment = { server_keygen = true }

[profiles.factory]
description = "devices enrolling with their IDevID"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
"""

SERIALS = ["CMP0001", "CMP0002"]


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str


@dataclass(frozen=True)
class Cmp:
    home: Home
    server: RunningServer
    work: Path
    root: Path
    issuing: Path
    factory: Path

    def url(self, label: str) -> str:
        return f"{self.server.revocation_base}/.well-known/cmp/p/{label}"

    def run(self, label: str, *args: str, secret: str | None = None, tls: bool = False,
            timeout: float = 90) -> Run:
        """`openssl cmp` against the label; MAC-protected with `secret` (via the environment,
        never the command line), else signed with the -cert/-key in `args`."""
        port = self.server.port if tls else self.server.revocation_port
        command = [require_tool("openssl"), "cmp", "-server", f"127.0.0.1:{port}",
                   "-path", f"/.well-known/cmp/p/{label}", "-msg_timeout", "30",
                   "-total_timeout", "60",
                   "-trusted", str(self.root), "-untrusted", str(self.issuing), *args]
        if "-certout" not in args and {"ir", "cr", "kur", "p10cr"} & set(args):
            command += ["-certout", str(self.work / "refused.pem")]  # openssl insists
        if secret is not None:
            command += ["-secret", "env:CMP_TEST_SECRET"]
        if tls:
            command += ["-tls_used", "-tls_trusted", str(self.root), "-tls_host", "127.0.0.1"]
        env = {**os.environ, "CMP_TEST_SECRET": secret or ""}
        result = subprocess.run(command, capture_output=True, timeout=timeout, check=False,
                                env=env, cwd=self.work)
        return Run(result.returncode, (result.stdout + result.stderr).decode(errors="replace"))

    def key(self, name: str) -> Path:
        path = self.work / f"{name}.key"
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", str(path))
        return path

    def verify(self, certificate: Path, key: Path, cn: str) -> x509.Certificate:
        openssl_verify(certificate, [self.issuing], self.root)
        cert = x509.load_pem_x509_certificate(certificate.read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        private = serialization.load_pem_private_key(key.read_bytes(), None)
        assert _spki(cert.public_key()) == _spki(private.public_key())
        return cert

    def count(self) -> int:
        return self.home.certificate_count()


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture(scope="module")
def cmp(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Cmp]:
    base = tmp_path_factory.mktemp("cmp")
    shutil.copytree(initialised_home_template, base / "home")
    home = Home(base / "home")
    with (home.path / "profiles.toml").open("a") as handle:
        handle.write(PROFILES)
    factory = base / "factory"
    maker_ca = make_factory_pki(factory, SERIALS, maker="Cmpco")
    home.cli("manufacturers", "add", "cmpco", "--ca", str(maker_ca), "--profile", "factory",
             "--device-id-from", "serialNumber")
    work = base / "work"
    work.mkdir()
    write_ca_files(home, work)
    with fleet_server(home.path, workers=2) as server:
        yield Cmp(home, server, work, work / "root.pem", work / "issuing.pem", factory)


def _credential(cmp: Cmp, profile: str = "cmpdev") -> Credential:
    return cmp.home.credential(profile)


def _ir(cmp: Cmp, name: str, *, profile: str = "cmpdev", extra: tuple[str, ...] = ()
        ) -> tuple[Run, Path, Path, Credential]:
    credential = _credential(cmp, profile)
    key, out = cmp.key(name), cmp.work / f"{name}.pem"
    run = cmp.run(profile, "-cmd", "ir", "-ref", credential.id, "-newkey", str(key),
                  "-subject", f"/CN={name}", "-certout", str(out), *extra,
                  secret=credential.secret)
    return run, key, out, credential


# -- enrollment ------------------------------------------------------------------------------

def test_ir_with_a_bootstrap_credential_mac(cmp: Cmp) -> None:
    capubs = cmp.work / "capubs.pem"
    run, key, out, credential = _ir(cmp, "mac-dev-1", extra=("-cacertsout", str(capubs)))
    assert run.returncode == 0, run.output
    assert "received IP" in run.output and "received PKICONF" in run.output
    cmp.verify(out, key, "mac-dev-1")
    # RFC 9483 §4.1.1: a MAC-protected ip brings the root for the device to trust.
    assert x509.load_pem_x509_certificate(capubs.read_bytes()) == \
        x509.load_pem_x509_certificate(cmp.root.read_bytes())
    # The one-time credential is used up: a second ir with it is refused, nothing issued.
    before = cmp.count()
    again = cmp.run("cmpdev", "-cmd", "ir", "-ref", credential.id, "-newkey",
                    str(cmp.key("mac-dev-1b")), "-subject", "/CN=mac-dev-1b",
                    secret=credential.secret)
    assert again.returncode != 0 and "notAuthorized" in again.output, again.output
    assert cmp.count() == before


def test_ir_with_a_factory_identity_signature(cmp: Cmp) -> None:
    serial = SERIALS[0]
    key, out = cmp.key("idevid-new"), cmp.work / "idevid-new.pem"
    # openssl addresses an IDevID-signed ir to the IDevID's issuer unless told the CA's name,
    # which `fleetpki cmp server` prints.
    servers = json.loads(cmp.home.cli("cmp", "server", "--json"))
    (recipient,) = [s["recipient"] for s in servers if "factory" in s["profiles"]]
    run = cmp.run("factory", "-cmd", "ir", "-recipient", recipient,
                  "-cert", str(cmp.factory / f"{serial}.pem"),
                  "-key", str(cmp.factory / f"{serial}.key"), "-newkey", str(key),
                  "-subject", f"/CN={serial}", "-certout", str(out))
    assert run.returncode == 0, run.output
    cmp.verify(out, key, serial)
    actions = cmp.home.cli("audit", "list", "--limit", "100000")
    assert f"idevid:cmpco:{serial}" in actions


def test_cr_and_kur_with_the_current_certificate_over_https(cmp: Cmp) -> None:
    run, key, out, _ = _ir(cmp, "renew-dev")
    assert run.returncode == 0, run.output
    current = cmp.verify(out, key, "renew-dev")
    new_key, new_out = cmp.key("renew-dev-kur"), cmp.work / "renew-dev-kur.pem"
    kur = cmp.run("cmpdev", "-cmd", "kur", "-cert", str(out), "-key", str(key),
                  "-newkey", str(new_key), "-certout", str(new_out), tls=True)
    assert kur.returncode == 0, kur.output
    assert "received KUP" in kur.output
    renewed = cmp.verify(new_out, new_key, "renew-dev")
    assert renewed.serial_number != current.serial_number
    cr_key, cr_out = cmp.key("renew-dev-cr"), cmp.work / "renew-dev-cr.pem"
    cr = cmp.run("cmpdev", "-cmd", "cr", "-cert", str(new_out), "-key", str(new_key),
                 "-newkey", str(cr_key), "-subject", "/CN=renew-dev", "-certout", str(cr_out),
                 tls=True)
    assert cr.returncode == 0, cr.output
    assert "received CP" in cr.output
    cmp.verify(cr_out, cr_key, "renew-dev")


def test_kur_must_keep_the_subject(cmp: Cmp) -> None:
    run, key, out, _ = _ir(cmp, "keep-name")
    assert run.returncode == 0, run.output
    before = cmp.count()
    kur = cmp.run("cmpdev", "-cmd", "kur", "-cert", str(out), "-key", str(key),
                  "-newkey", str(cmp.key("keep-name-2")), "-subject", "/CN=other-name",
                  "-certout", str(cmp.work / "never.pem"))
    assert kur.returncode != 0 and "badCertTemplate" in kur.output, kur.output
    assert cmp.count() == before


def test_p10cr_with_a_csr(cmp: Cmp) -> None:
    credential = _credential(cmp)
    key, csr = cmp.work / "p10.key", cmp.work / "p10.csr"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", "/CN=p10-dev")
    out = cmp.work / "p10.pem"
    run = cmp.run("cmpdev", "-cmd", "p10cr", "-ref", credential.id, "-csr", str(csr),
                  "-certout", str(out), secret=credential.secret)
    assert run.returncode == 0, run.output
    cmp.verify(out, key, "p10-dev")


def test_implicit_confirmation_when_asked(cmp: Cmp) -> None:
    run, key, out, _ = _ir(cmp, "implicit-dev", extra=("-implicit_confirm",))
    assert run.returncode == 0, run.output
    assert "sending CERTCONF" not in run.output
    cmp.verify(out, key, "implicit-dev")


def test_a_held_request_is_polled_until_approved(cmp: Cmp) -> None:
    credential = _credential(cmp, "cmpheld")
    key, out = cmp.key("held-dev"), cmp.work / "held-dev.pem"
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(cmp.run, "cmpheld", "-cmd", "ir", "-ref", credential.id,
                             "-newkey", str(key), "-subject", "/CN=held-dev",
                             "-certout", str(out), secret=credential.secret)
        deadline = time.monotonic() + 30
        approved = False
        while time.monotonic() < deadline and not approved and not client.done():
            for line in cmp.home.cli("approvals", "list", "--json").splitlines():
                if '"held-dev"' in line and '"pending"' in line:
                    request_id = line.split('"id": "')[1].split('"')[0]
                    cmp.home.cli("approvals", "approve", request_id)
                    approved = True
            time.sleep(0.3)
        run = client.result(timeout=90)
    assert approved, run.output
    assert run.returncode == 0, run.output
    assert "received POLLREP" in run.output or "polling" in run.output.lower(), run.output
    cmp.verify(out, key, "held-dev")


# -- revocation ------------------------------------------------------------------------------

def test_rr_revokes_the_signing_certificate_and_no_other(cmp: Cmp) -> None:
    run_a, key_a, out_a, _ = _ir(cmp, "rr-dev-a")
    run_b, _, out_b, _ = _ir(cmp, "rr-dev-b")
    assert run_a.returncode == 0 and run_b.returncode == 0, run_a.output + run_b.output
    other = cmp.run("cmpdev", "-cmd", "rr", "-cert", str(out_a), "-key", str(key_a),
                    "-oldcert", str(out_b), "-revreason", "1")
    assert other.returncode != 0 and "notAuthorized" in other.output, other.output
    own = cmp.run("cmpdev", "-cmd", "rr", "-cert", str(out_a), "-key", str(key_a),
                  "-oldcert", str(out_a), "-revreason", "1")
    assert own.returncode == 0, own.output
    serial_a = x509.load_pem_x509_certificate(out_a.read_bytes()).serial_number
    serial_b = x509.load_pem_x509_certificate(out_b.read_bytes()).serial_number
    shown = cmp.home.cli("certs", "show", f"{serial_a:x}")
    assert "revoked" in shown and "keyCompromise" in shown, shown
    assert "revoked" not in cmp.home.cli("certs", "show", f"{serial_b:x}")


# -- general messages ------------------------------------------------------------------------

def test_genm_with_openssl_infotypes(cmp: Cmp) -> None:
    credential = _credential(cmp)
    for infotype in ("signKeyPairTypes", "currentCRL"):
        run = cmp.run("cmpdev", "-cmd", "genm", "-infotype", infotype, "-ref", credential.id,
                      secret=credential.secret)
        assert run.returncode == 0, run.output
        assert f"genp contains ITAV of type: id-it-{infotype}" in run.output, run.output


def _genp(cmp: Cmp, credential: Credential, *infos: tuple[str, bytes | None]) -> Any:
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        cmp_messages.genm(*infos), Mac(credential.id, credential.secret)))
    assert status == 200, reply[:200]
    message = decode(reply, rfc9810.PKIMessage(), "reply")
    assert message["body"].getName() == "genp", message["body"].getName()
    return message["body"].getComponent()


def test_genm_for_ca_certificates_template_root_update_and_crls(cmp: Cmp) -> None:
    credential = _credential(cmp)
    root_der = x509.load_pem_x509_certificate(cmp.root.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    genp = _genp(cmp, credential, (IT_CA_CERTS, None), (IT_ROOT_CA_CERT, root_der),
                 (IT_CERT_REQ_TEMPLATE, None))
    answers = {str(item["infoType"]): item["infoValue"] for item in genp}
    ca_certs = der.elements(bytes(answers[IT_CA_CERTS]))
    issuing_pem = cmp.work / "cacerts-issuing.pem"
    issuing_pem.write_bytes(x509.load_der_x509_certificate(ca_certs[0]).public_bytes(
        serialization.Encoding.PEM))
    assert "OK" in openssl("verify", "-x509_strict", "-CAfile", str(cmp.root),
                           str(issuing_pem)).decode()
    assert x509.load_der_x509_certificate(ca_certs[-1]).public_bytes(
        serialization.Encoding.DER) == root_der
    assert IT_ROOT_CA_KEY_UPDATE in answers and not answers[IT_ROOT_CA_KEY_UPDATE].isValue
    assert IT_CERT_REQ_TEMPLATE in answers
    # crlStatusList without a thisUpdate: the device holds no CRL, so it gets the current one.
    status_list = der.sequence(der.sequence(der.context(1, der.sequence(
        der.context(4, x509.load_pem_x509_certificate(cmp.issuing.read_bytes())
                    .subject.public_bytes())))))
    genp = _genp(cmp, credential, (IT_CRL_STATUS_LIST, status_list))
    crls = {str(item["infoType"]): item["infoValue"] for item in genp}[IT_CRLS]
    crl = x509.load_der_x509_crl(der.elements(bytes(crls))[0])
    issuing = x509.load_pem_x509_certificate(cmp.issuing.read_bytes())
    assert crl.issuer == issuing.subject and crl.is_signature_valid(issuing.public_key())


def test_pbmac1_protection_is_accepted(cmp: Cmp) -> None:
    credential = _credential(cmp)
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        cmp_messages.genm((IT_CA_CERTS, None)), Mac(credential.id, credential.secret,
                                                    pbmac1=True)))
    assert status == 200
    message = decode(reply, rfc9810.PKIMessage(), "reply")
    assert message["body"].getName() == "genp"
    assert str(message["header"]["protectionAlg"]["algorithm"]) == "1.2.840.113549.1.5.14"


# -- bad input -------------------------------------------------------------------------------

def _error(reply: bytes) -> tuple[str, str]:
    """(failInfo bits as a string of 0/1, statusString) of an error PKIMessage."""
    message = decode(reply, rfc9810.PKIMessage(), "reply")
    assert message["body"].getName() == "error", message["body"].getName()
    info = message["body"]["error"]["pKIStatusInfo"]
    assert int(info["status"]) == 2  # rejection
    return str(info["failInfo"]), " ".join(str(t) for t in info["statusString"])


def _bit(bits: str, number: int) -> bool:
    return len(bits) > number and bits[number] == "1"


def test_wrong_secret_unknown_kid_and_malformed_der_change_nothing(cmp: Cmp) -> None:
    before = cmp.count()
    credential = _credential(cmp)
    wrong = cmp.run("cmpdev", "-cmd", "ir", "-ref", credential.id, "-newkey",
                    str(cmp.key("wrong-secret")), "-subject", "/CN=wrong-secret",
                    secret=credential.secret + "x")
    assert wrong.returncode != 0 and "badMessageCheck" in wrong.output, wrong.output
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        cmp_messages.ir_with_bad_pop("unknown-kid"), Mac("no-such-credential", "x" * 32)))
    assert status == 200 and _bit(_error(reply)[0], 1)  # badMessageCheck
    status, reply = cmp_messages.post(cmp.url("cmpdev"), b"\x30\x03\x02\x01\x02")
    assert status == 400 and _bit(_error(reply)[0], 5)  # badDataFormat
    status, _ = cmp_messages.post(cmp.url("cmpdev"), b"\x30\x00", content_type="text/plain")
    assert status == 415
    assert cmp.count() == before


def test_bad_pop_and_tampered_mac_are_refused(cmp: Cmp) -> None:
    before = cmp.count()
    credential = _credential(cmp)
    mac = Mac(credential.id, credential.secret)
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        cmp_messages.ir_with_bad_pop("bad-pop-dev"), mac))
    bits, text = _error(reply)
    assert status == 200 and _bit(bits, 9), text  # badPOP
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        cmp_messages.ir_with_bad_pop("tampered"), mac, tamper=True))
    assert _bit(_error(reply)[0], 1)  # badMessageCheck
    assert cmp.count() == before


def test_replayed_ir_and_foreign_recip_nonce_are_refused(cmp: Cmp) -> None:
    credential = _credential(cmp)
    key = cmp.key("replayed")
    saved = cmp.work / "replayed-ir.der"
    run = cmp.run("cmpdev", "-cmd", "ir", "-ref", credential.id, "-newkey", str(key),
                  "-subject", "/CN=replayed", "-certout", str(cmp.work / "replayed.pem"),
                  "-reqout", f"{saved},{cmp.work / 'replayed-cc.der'}",
                  secret=credential.secret)
    assert run.returncode == 0, run.output
    before = cmp.count()
    status, reply = cmp_messages.post(cmp.url("cmpdev"), saved.read_bytes())
    bits, text = _error(reply)
    assert status == 200 and _bit(bits, 21), text  # transactionIdInUse
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        der.context(24, der.sequence()), Mac(credential.id, credential.secret),
        recip_nonce=os.urandom(16)))
    assert status == 200 and _bit(_error(reply)[0], 13)  # badRecipientNonce
    assert cmp.count() == before


def test_wrong_recipient_is_wrong_authority(cmp: Cmp) -> None:
    credential = _credential(cmp)
    run = cmp.run("cmpdev", "-cmd", "ir", "-ref", credential.id, "-newkey",
                  str(cmp.key("wrong-ca")), "-subject", "/CN=wrong-ca",
                  "-recipient", "/CN=Some Other CA", secret=credential.secret)
    assert run.returncode != 0 and "wrongAuthority" in run.output, run.output


def _exchange_twice(port: int, connection_header: bytes) -> list[bytes]:
    """Two HTTP/1.0 POSTs on one connection, as OpenSSL's client sends them; what came back
    for each (empty once the server closed the connection)."""
    request = (b"POST /.well-known/cmp/p/cmpdev HTTP/1.0\r\nHost: 127.0.0.1\r\n"
               b"Content-Type: application/pkixcmp\r\n" + connection_header +
               b"Content-Length: 2\r\n\r\n\x30\x00")
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for _ in range(2):
            try:
                connection.sendall(request)
                replies.append(_read_response(connection))
            except OSError:
                replies.append(b"")
    return replies


def _read_response(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head


def test_http10_keep_alive_is_honoured_and_only_when_asked(cmp: Cmp) -> None:
    kept = _exchange_twice(cmp.server.revocation_port, b"Connection: keep-alive\r\n")
    assert all(b" 400 " in reply.split(b"\r\n")[0] for reply in kept), kept
    assert b"connection: keep-alive" in kept[0].lower()
    closed = _exchange_twice(cmp.server.revocation_port, b"")
    assert b" 400 " in closed[0].split(b"\r\n")[0] and closed[1] == b"", closed


def _ip(reply: bytes) -> Any:
    message = decode(reply, rfc9810.PKIMessage(), "reply")
    assert message["body"].getName() == "ip", message["body"].prettyPrint()[:600]
    return message["body"]["ip"]["response"][0]


def test_central_key_generation_with_a_mac(cmp: Cmp) -> None:
    """The key comes back enveloped to the shared secret (PWRI) and signed by the CMP server
    certificate; openssl, not fleetpki, opens and checks it."""
    credential = _credential(cmp, "cmpkeygen")
    status, reply = cmp_messages.post(cmp.url("cmpkeygen"), cmp_messages.request(
        cmp_messages.ir_for_central_key("keygen-dev", "1.3.132.0.34"),
        Mac(credential.id, credential.secret)))
    assert status == 200
    response = _ip(reply)
    pair = response["certifiedKeyPair"]
    certificate = x509.load_der_x509_certificate(
        der.content(encode(pair["certOrEncCert"]["certificate"])))
    enveloped = der.content(encode(pair["privateKey"]))  # [0] EXPLICIT EncryptedKey
    assert enveloped[0] == 0xA0  # envelopedData [0] IMPLICIT
    content_info = der.sequence(der.oid("1.2.840.113549.1.7.3"),  # as a SEQUENCE again
                                der.context(0, bytes((der.SEQUENCE,)) + enveloped[1:]))
    (cmp.work / "keygen-env.der").write_bytes(content_info)
    signed = openssl("cms", "-decrypt", "-inform", "DER", "-in", str(cmp.work / "keygen-env.der"),
                     "-pwri_password", credential.secret, "-binary")
    (cmp.work / "keygen-signed.der").write_bytes(der.sequence(
        der.oid("1.2.840.113549.1.7.2"), der.context(0, signed)))
    # openssl 3.0 cms builds the signer's path only from -CAfile: root and issuing CA there.
    anchors = cmp.work / "root-and-issuing.pem"
    anchors.write_bytes(cmp.root.read_bytes() + cmp.issuing.read_bytes())
    package = openssl("cms", "-verify", "-inform", "DER", "-in",
                      str(cmp.work / "keygen-signed.der"), "-CAfile", str(anchors),
                      "-purpose", "any", "-binary")
    key = serialization.load_der_private_key(der.elements(package)[0], None)
    assert _spki(key.public_key()) == _spki(certificate.public_key())
    assert certificate.public_key().curve.name == "secp384r1"  # as the template asked
    pem = cmp.work / "keygen-dev.pem"
    pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    openssl_verify(pem, [cmp.issuing], cmp.root)


def test_central_key_generation_needs_the_profile_to_allow_it(cmp: Cmp) -> None:
    credential = _credential(cmp)
    before = cmp.count()
    status, reply = cmp_messages.post(cmp.url("cmpdev"), cmp_messages.request(
        cmp_messages.ir_for_central_key("no-keygen-dev", None),
        Mac(credential.id, credential.secret)))
    bits, text = _error(reply)
    assert status == 200 and _bit(bits, 23) and "server_keygen" in text, text  # notAuthorized
    assert cmp.count() == before


def test_mutated_messages_get_cmp_errors_and_change_nothing(cmp: Cmp) -> None:
    """Byte flips, truncations and insertions in a real OpenSSL ir: every answer is a CMP error
    message (HTTP 200 or 400), never a server error, and nothing is issued."""
    credential = _credential(cmp)
    saved = cmp.work / "mutated-source.der"
    run = cmp.run("cmpdev", "-cmd", "ir", "-ref", credential.id, "-newkey",
                  str(cmp.key("mutated-source")), "-subject", "/CN=mutated-source",
                  "-reqout", f"{saved},{cmp.work / 'mutated-cc.der'}", secret=credential.secret)
    assert run.returncode == 0, run.output
    original = saved.read_bytes()
    before = cmp.count()
    generator = random.Random(9483)
    for round_number in range(150):
        data = bytearray(original)
        position = generator.randrange(len(data))
        if round_number % 3 == 0:
            data[position] ^= 1 << generator.randrange(8)
        elif round_number % 3 == 1:
            del data[position:]
        else:
            data[position:position] = bytes([generator.randrange(256)])
        status, reply = cmp_messages.post(cmp.url("cmpdev"), bytes(data))
        assert status in (200, 400), (round_number, status, reply[:200])
        message = decode(reply, rfc9810.PKIMessage(), "reply")
        assert message["body"].getName() == "error", (round_number, message["body"].getName())
    assert cmp.count() == before


def test_the_publishing_round_prunes_old_transactions(home: Path) -> None:
    """Every CMP request leaves a transaction row (transactionIdInUse); the server's background
    round forgets them after RETENTION, so the table does not grow with the fleet's age."""
    clock = FakeClock(dt.datetime.now(dt.UTC))
    fleet = open_fleet(home, clock=clock)
    name = "ab" * 16
    try:
        fleet.store.reserve_transaction(EnrollmentTransaction(
            protocol="cmp", transaction_id=name, profile="sensor", key_fingerprint="0" * 64,
            requester_fingerprint="1" * 64, request_fingerprint="2" * 64,
            created_at=clock.now()), stale_before=clock.now())
        fleet.publish_due()
        assert fleet.store.get_transaction("cmp", name) is not None
        clock.advance(RETENTION + dt.timedelta(hours=1))
        fleet.publish_due()
        assert fleet.store.get_transaction("cmp", name) is None
    finally:
        fleet.close()
