"""EST against `fleetpki serve` with curl as the client and openssl as the judge.

One server for the module (starting one costs seconds); each test makes its own credentials
and devices, so tests do not depend on each other's state.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID, ObjectIdentifier

from fleetpki.core import der
from support.est_home import Home, make_factory_pki, new_csr, openssl, prepare_est_home
from support.fleet_server import RunningServer, fleet_server
from support.lint import lint_certificate, require_tool

SETTINGS = """
[est.rate_limits]
per_credential = "20/min"
"""
FACTORY_SERIALS = ["ACME-0001", "ACME-0002", "ACME-0003"]


@dataclass(frozen=True)
class Est:
    home: Home
    server: RunningServer
    work: Path
    factory: Path

    def curl(self, path: str, *args: str, body: Path | bytes | None = None,
             content_type: str | None = "application/pkcs10") -> tuple[int, dict[str, str], bytes]:
        """One request; returns (status, lower-cased headers, body)."""
        headers_file = self.work / "headers.txt"
        command = [require_tool("curl"), "-sS", "--max-time", "30", "--cacert",
                   str(self.server.tls_chain), "-D", str(headers_file), "-o", "-",
                   f"{self.server.base}/{path}", *args]
        data: bytes | None = None
        if body is not None:
            data = body.read_bytes() if isinstance(body, Path) else body
            command += ["--data-binary", "@-"]
            if content_type is not None:
                command += ["-H", f"Content-Type: {content_type}"]
        result = subprocess.run(command, input=data, capture_output=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        lines = headers_file.read_bytes().decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if ":" in line)}
        return status, headers, result.stdout

    def csr_b64(self, name: str, cn: str) -> tuple[Path, bytes]:
        key, csr = new_csr(self.work, name, cn)
        return key, base64.b64encode(csr.read_bytes())

    def certificate(self, response: bytes, name: str) -> Path:
        """The certs-only response as PEM, decoded by openssl (not by fleetpki)."""
        der = base64.b64decode(response)
        pem = openssl("pkcs7", "-inform", "DER", "-print_certs", input=der)
        path = self.work / f"{name}.pem"
        path.write_bytes(pem)
        return path

    def verify(self, leaf: Path) -> None:
        chain = self.work / "cacerts.pem"
        if not chain.exists():
            status, _, body = self.curl("cacerts")
            assert status == 200
            chain.write_bytes(openssl("pkcs7", "-inform", "DER", "-print_certs",
                                      input=base64.b64decode(body)))
        certs = x509.load_pem_x509_certificates(chain.read_bytes())
        roots = [c for c in certs if c.subject == c.issuer]
        others = [c for c in certs if c.subject != c.issuer]
        root, untrusted = self.work / "root.pem", self.work / "untrusted.pem"
        root.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in roots))
        untrusted.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                       for c in others))
        out = openssl("verify", "-CAfile", str(root), "-untrusted", str(untrusted),
                      "-purpose", "sslclient", str(leaf))
        assert b": OK" in out


@pytest.fixture(scope="module")
def est(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Est]:
    base = tmp_path_factory.mktemp("est-curl")
    home = prepare_est_home(initialised_home_template, base / "home", settings=SETTINGS)
    factory = base / "factory"
    maker_ca = make_factory_pki(factory, FACTORY_SERIALS)
    allow = base / "allowed.txt"
    allow.write_text("ACME-0001\nACME-0002\n")
    home.cli("manufacturers", "add", "acme", "--ca", str(maker_ca), "--profile", "renewable",
             "--allow-list", str(allow))
    work = base / "work"
    work.mkdir()
    with fleet_server(home.path, workers=2) as server:
        yield Est(home, server, work, factory)


def test_cacerts_returns_the_chain_as_base64_certs_only(est: Est) -> None:
    status, headers, body = est.curl("cacerts")
    assert status == 200
    assert headers["content-type"].startswith("application/pkcs7-mime")
    pem = openssl("pkcs7", "-inform", "DER", "-print_certs", input=base64.b64decode(body))
    assert pem.count(b"BEGIN CERTIFICATE") == 2
    assert b"\n" not in body  # single-line base64


def test_csrattrs_asks_for_the_profiles_key(est: Est) -> None:
    status, headers, body = est.curl("renewable/csrattrs")
    assert status == 200 and headers["content-type"] == "application/csrattrs"
    parsed = openssl("asn1parse", "-inform", "DER", input=base64.b64decode(body))
    assert b"prime256v1" in parsed and b"ecdsa-with-SHA256" in parsed


def test_first_enrollment_with_a_bootstrap_secret(est: Est) -> None:
    credential = est.home.credential()
    _, csr = est.csr_b64("boot", "sensor-0101")
    status, headers, body = est.curl("simpleenroll", "-u", f"{credential.id}:{credential.secret}",
                                     body=csr)
    assert status == 200, body
    assert headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    leaf = est.certificate(body, "boot")
    est.verify(leaf)
    cert = x509.load_pem_x509_certificate(leaf.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=sensor-0101"
    assert lint_certificate(cert.public_bytes(serialization.Encoding.DER)) == []


def test_reenrollment_with_the_obtained_certificate(est: Est) -> None:
    credential = est.home.credential("renewable")
    key, csr = est.csr_b64("first", "renew-0001")
    status, _, body = est.curl("renewable/simpleenroll", "-u",
                               f"{credential.id}:{credential.secret}", body=csr)
    assert status == 200, body
    current = est.certificate(body, "first")
    _, renewal_csr = est.csr_b64("second", "renew-0001")
    status, _, body = est.curl("renewable/simplereenroll", "--cert", str(current), "--key",
                               str(key), body=renewal_csr)
    assert status == 200, body
    renewed = est.certificate(body, "second")
    est.verify(renewed)
    old = x509.load_pem_x509_certificate(current.read_bytes())
    new = x509.load_pem_x509_certificate(renewed.read_bytes())
    assert new.subject == old.subject and new.serial_number != old.serial_number


def test_reenrollment_refused_when_the_subject_changes(est: Est) -> None:
    credential = est.home.credential("renewable")
    key, csr = est.csr_b64("keep", "renew-0002")
    _, _, body = est.curl("renewable/simpleenroll", "-u", f"{credential.id}:{credential.secret}",
                          body=csr)
    current = est.certificate(body, "keep")
    before = est.home.certificate_count()
    _, other = est.csr_b64("other", "renew-9999")
    status, _, body = est.curl("renewable/simplereenroll", "--cert", str(current), "--key",
                               str(key), body=other)
    assert status == 400 and b"RFC 7030" in body
    assert est.home.certificate_count() == before


def test_first_enrollment_with_a_factory_certificate(est: Est) -> None:
    _, csr = est.csr_b64("factory1", "ACME-0001")
    status, _, body = est.curl("simpleenroll", "--cert", str(est.factory / "ACME-0001.pem"),
                               "--key", str(est.factory / "ACME-0001.key"), body=csr)
    assert status == 200, body
    leaf = est.certificate(body, "factory1")
    est.verify(leaf)
    assert "idevid:acme:ACME-0001" in est.home.cli("audit", "list", "--limit", "100000")


def test_factory_certificate_not_on_the_allow_list_is_refused(est: Est) -> None:
    _, csr = est.csr_b64("factory3", "ACME-0003")
    status, _, body = est.curl("simpleenroll", "--cert", str(est.factory / "ACME-0003.pem"),
                               "--key", str(est.factory / "ACME-0003.key"), body=csr)
    assert status == 403 and b"allow list" in body


def test_server_side_key_generation(est: Est) -> None:
    credential = est.home.credential("renewable")
    _, csr = est.csr_b64("skg", "keygen-0001")
    status, headers, body = est.curl("renewable/serverkeygen", "-u",
                                     f"{credential.id}:{credential.secret}", body=csr)
    assert status == 200, body
    assert headers["content-type"].startswith("multipart/mixed")
    assert headers.get("cache-control") == "no-store"
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body)
    parts = list(message.iter_parts())  # type: ignore[attr-defined]
    assert [p.get_content_type() for p in parts] == ["application/pkcs8",
                                                     "application/pkcs7-mime"]
    key_der = base64.b64decode(parts[0].get_payload())
    cert_pem = est.certificate(parts[1].get_payload().encode(), "skg")
    key_pub = openssl("pkey", "-inform", "DER", "-pubout", input=key_der)
    cert_pub = openssl("x509", "-in", str(cert_pem), "-noout", "-pubkey")
    assert key_pub == cert_pub
    est.verify(cert_pem)


def keygen_request(cn: str, attribute: tuple[str, bytes] | None) -> bytes:
    """A serverkeygen CSR (its key is a throwaway: the server makes the real one), with an
    RFC 7030 §4.4.1 key identifier attribute when given, base64 as EST sends it."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if attribute is not None:
        builder = builder.add_attribute(ObjectIdentifier(attribute[0]), attribute[1],
                                        _tag=_ASN1Type.OctetString)
    csr = builder.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    return base64.b64encode(csr.public_bytes(serialization.Encoding.DER))


def subject_key_id(certificate: Path) -> bytes:
    """The key identifier a device without a subjectKeyIdentifier extension (these IDevIDs,
    made by `openssl x509 -req`, have none) computes: the SHA-1 of its public key's bits
    (RFC 5280 §4.2.1.2, method 1), from openssl's DER of the public key."""
    text = openssl("x509", "-in", str(certificate), "-noout", "-ext", "subjectKeyIdentifier")
    assert b"Subject Key Identifier" not in text, "this test expects a certificate without one"
    spki = openssl("pkey", "-pubin", "-outform", "DER", input=openssl(
        "x509", "-in", str(certificate), "-noout", "-pubkey"))
    bits = der.content(der.elements(spki)[1])[1:]  # the BIT STRING, less its unused-bits octet
    return hashlib.sha1(bits, usedforsecurity=False).digest()


def test_server_side_key_generation_encrypted_to_the_device(est: Est) -> None:
    """RFC 7030 §4.4.2 with additional encryption: the key comes back as an EnvelopedData for
    the IDevID the device authenticated with, around a key package signed by the server;
    openssl opens and checks both layers."""
    device = est.factory / "ACME-0002"
    csr = keygen_request("ACME-0002", ("1.2.840.113549.1.9.16.2.54",
                                       subject_key_id(Path(f"{device}.pem"))))
    status, headers, body = est.curl("serverkeygen", "--cert", f"{device}.pem", "--key",
                                     f"{device}.key", body=csr)
    assert status == 200, body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {headers['content-type']}\r\n\r\n".encode() + body)
    key_part, cert_part = list(message.iter_parts())  # type: ignore[attr-defined]
    assert key_part.get_content_type() == "application/pkcs7-mime"
    assert key_part.get_param("smime-type") == "server-generated-key"
    enveloped = est.work / "skg-enc.der"
    enveloped.write_bytes(base64.b64decode(key_part.get_payload()))
    signed = openssl("cms", "-decrypt", "-inform", "DER", "-in", str(enveloped), "-recip",
                     f"{device}.pem", "-inkey", f"{device}.key", "-binary")
    signed_file = est.work / "skg-signed.der"
    signed_file.write_bytes(der.sequence(der.oid("1.2.840.113549.1.7.2"),
                                         der.context(0, signed)))
    est.verify(est.certificate(cert_part.get_payload().encode(), "skg-enc"))
    anchors = est.work / "anchors.pem"  # openssl cms builds the signer's path from -CAfile
    anchors.write_bytes((est.work / "root.pem").read_bytes()
                        + (est.work / "untrusted.pem").read_bytes())
    package = openssl("cms", "-verify", "-inform", "DER", "-in", str(signed_file), "-CAfile",
                      str(anchors), "-purpose", "any", "-binary")
    key_der = der.elements(package)[0]  # AsymmetricKeyPackage: SEQUENCE OF OneAsymmetricKey
    key_pub = openssl("pkey", "-inform", "DER", "-pubout", input=key_der)
    cert_pub = openssl("x509", "-in", str(est.work / "skg-enc.pem"), "-noout", "-pubkey")
    assert key_pub == cert_pub


@pytest.mark.parametrize(("attribute", "status", "reason"), [
    (("1.2.840.113549.1.9.16.2.37", b"\x01\x02"), 501, b"pre-shared symmetric key"),
    (("1.2.840.113549.1.9.16.2.54", b"\x01\x02"), 400, b"does not name the TLS client"),
])
def test_encrypted_key_generation_that_cannot_be_done_issues_nothing(
        est: Est, attribute: tuple[str, bytes], status: int, reason: bytes) -> None:
    device = est.factory / "ACME-0002"
    before = est.home.certificate_count()
    got, _, body = est.curl("serverkeygen", "--cert", f"{device}.pem", "--key",
                            f"{device}.key", body=keygen_request("ACME-0002", attribute))
    assert (got, reason in body) == (status, True), body
    assert est.home.certificate_count() == before
    audit = est.home.cli("audit", "list", "--limit", "100000")
    assert reason.decode() in audit  # refused under the device's name, as every refusal is


def test_manual_approval_202_then_certificate_after_approve(est: Est) -> None:
    credential = est.home.credential("held")
    _, csr = est.csr_b64("held", "held-0001")
    auth = f"{credential.id}:{credential.secret}"
    status, headers, body = est.curl("held/simpleenroll", "-u", auth, body=csr)
    assert status == 202 and headers["retry-after"] == "5"
    pending_id = body.split()[1].decode()
    assert f'"id": "{pending_id}"' in est.home.cli("approvals", "list", "--json")
    est.home.cli("approvals", "approve", pending_id)
    status, _, body = est.curl("held/simpleenroll", "-u", auth, body=csr)
    assert status == 200, body
    est.verify(est.certificate(body, "held"))


@pytest.mark.parametrize(("path", "args", "body", "content_type", "status", "says"), [
    ("simpleenroll", [], b"MIIB", "application/pkcs10", 401, b"authenticate"),
    ("simpleenroll", ["-u", "bt-nobody:wrong"], b"MIIB", "application/pkcs10", 401,
     b"wrong secret"),
    ("simpleenroll", [], b"MIIB", "text/plain", 415, b"application/pkcs10"),
    ("simpleenroll", [], b"A" * 70_000, "application/pkcs10", 413, b"larger than"),
    ("nolabel/simpleenroll", [], b"MIIB", "application/pkcs10", 404, b"no enrollment label"),
    ("NOT_A_LABEL/cacerts", [], None, None, 400, b"not a valid label"),
    # a wrong path, not a redirect (whose Location would echo the Host header)
    ("cacerts/", ["-H", "Host: elsewhere.example"], None, None, 404, b"Not Found"),
    ("simpleenroll/", [], b"MIIB", "application/pkcs10", 404, b"Not Found"),
])
def test_refusals_have_the_right_status_and_say_why(
        est: Est, path: str, args: list[str], body: bytes | None, content_type: str | None,
        status: int, says: bytes) -> None:
    before = est.home.certificate_count()
    got, headers, text = est.curl(path, *args, body=body, content_type=content_type)
    assert got == status and says in text, text
    if status == 401:
        assert headers["www-authenticate"].startswith("Basic realm=")
    assert b"Traceback" not in text and est.home.certificate_count() == before


def test_bad_requests_with_a_valid_secret_are_400_and_spend_nothing(est: Est) -> None:
    credential = est.home.credential()
    auth = f"{credential.id}:{credential.secret}"
    before = est.home.certificate_count()
    refused_before = est.home.audit_actions().count("certificate.refused")
    status, _, text = est.curl("simpleenroll", "-u", auth, body=b"%%% not base64 %%%")
    assert status == 400 and b"not base64" in text
    _, csr = est.csr_b64("bad-cn", "NOT VALID CN!")
    status, _, text = est.curl("simpleenroll", "-u", auth, body=csr)
    assert status == 400 and b"CN" in text
    assert est.home.certificate_count() == before
    _, csr = est.csr_b64("good", "sensor-0102")
    status, _, _ = est.curl("simpleenroll", "-u", auth, body=csr)
    assert status == 200  # the one use was still there
    assert est.home.audit_actions().count("certificate.refused") == refused_before + 2


def test_a_group_secret_is_rate_limited(est: Est) -> None:
    credential = est.home.credential(uses=100)
    auth = f"{credential.id}:{credential.secret}"
    statuses = []
    for n in range(45):  # 20/min per worker process, two workers
        _, csr = est.csr_b64(f"rl{n}", f"sensor-{1000 + n}")
        status, headers, _ = est.curl("simpleenroll", "-u", auth, body=csr)
        statuses.append(status)
        if status == 429:
            assert int(headers["retry-after"]) >= 1
            break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}
