"""SCEP (RFC 8894) with the real clients: strongSwan's `pki --scepca/--scep` and micromdm's
`scepclient`, each with its own CMS stack, against `fleetpki serve` on its plain-HTTP listener;
openssl checks a CertRep; the requester of support/scep_messages.py sends what the real clients
never would (tampered, misaddressed, stale, oversized).

One server for the module (profiles `router`, `held`, `mdm`); the single-DES refusal needs a
second one with the default settings. Every issued certificate is checked with
`openssl verify -x509_strict` and against the request (subject, SANs, public key); every
refusal also shows that nothing was stored.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from fleetpki.cli.main import cli
from fleetpki.protocols.scep.cms import decode_value, open_signed, verify
from fleetpki.protocols.scep.codec import MessageType
from support import scep_messages
from support.est_home import Home, openssl
from support.fleet_server import RunningServer, fleet_server
from support.lint import openssl_verify
from support.scep_clients import (
    Cipher,
    Digest,
    RsaKey,
    ScepCa,
    ScepClientError,
    ScepEnrollment,
    pki_scep_enroll,
    pki_scepca,
    rsa_key,
    scepclient_enroll,
)

pytestmark = pytest.mark.slow

_CALLBACK = "@CALLBACK_URL@"
PROFILES = """
[profiles.router]
description = "SCEP routers: RSA keys, DNS names under routers.example"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["rsa"]
keys.rsa_min_bits = 2048
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true, pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$" }
# scepclient always adds C=US, O=scep-client, OU=MDM.
subject.attributes.C = {}
subject.attributes.O = {}
subject.attributes.OU = {}
san = { max_count = 2, rules = [{ type = "dns", under = "routers.example" }] }
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
extensions.extended_key_usage = ["clientAuth", "serverAuth"]
renewal = { window_fraction = 1.0 }
enrollment = { scep = true }

[profiles.held]
description = "held for an operator"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["rsa"]
keys.rsa_min_bits = 2048
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
subject.attributes.C = {}
subject.attributes.O = {}
subject.attributes.OU = {}
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
extensions.extended_key_usage = ["clientAuth"]
enrollment = { scep = true, approval = "manual", retry_after = "1s" }

[profiles.mdm]
description = "challenges issued and judged by an MDM"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["rsa"]
keys.rsa_min_bits = 2048
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
extensions.key_usage = ["digitalSignature", "keyEncipherment"]
extensions.extended_key_usage = ["clientAuth"]
enrollment = { scep = true, challenge_callback = "@CALLBACK_URL@" }
"""

SETTINGS = """
[scep]
default_profile = "router"
accept_single_des = true
callback_timeout = "2s"
"""

MDM_CHALLENGE = "mdm-issued-4f1c9a"
MDM_DEVICE = "mdm-router-1"
REQUIRED_CAPS = {"AES", "SHA-256", "SHA-384", "POSTPKIOperation", "Renewal", "SCEPStandard"}

_PKI_STATUS = "2.16.840.1.113733.1.9.3"
_FAIL_INFO = "2.16.840.1.113733.1.9.4"
SUCCESS, FAILURE = "0", "2"
BAD_MESSAGE_CHECK, BAD_REQUEST, BAD_TIME = "1", "2", "3"

# -- an MDM's challenge service --------------------------------------------------------------

class ChallengeService:
    """What an MDM runs for dynamic SCEP challenges (challenge_callback.py's contract): allows
    one challenge, for one device; 403 for any other. Records every query it gets."""

    def __init__(self, good: str, device_id: str) -> None:
        self.received: list[dict[str, Any]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                query = json.loads(self.rfile.read(length))
                service.received.append(query)
                allowed = query.get("challenge") == good
                body = json.dumps({"allow": True, "device_id": device_id} if allowed
                                  else {"allow": False}).encode()
                self.send_response(200 if allowed else 403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/scep/verify"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="challenge-service")
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=10)


# -- the fleet -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Scep:
    home: Home
    server: RunningServer
    work: Path
    ca: ScepCa
    challenge: str  # the static challenge of profile `router`
    callback: ChallengeService

    def url(self, profile: str = "router") -> str:
        return f"{self.server.revocation_base}/scep/{profile}"

    @property
    def ra_certificate(self) -> x509.Certificate:
        return _load(self.ca.ra.read_bytes())

    @property
    def ra_fingerprint(self) -> str:
        """SHA-256 of the RA certificate's DER: what scepclient pins."""
        return hashlib.sha256(self.ra_certificate.public_bytes(
            serialization.Encoding.DER)).hexdigest()

    def key(self, name: str) -> RsaKey:
        return rsa_key(self.work, name)

    def enroll(self, key: RsaKey, cn: str, *, profile: str = "router",
               sans: tuple[str, ...] = (), password: str | None = None,
               cipher: Cipher | None = None, digest: Digest | None = None,
               old: tuple[Path, RsaKey] | None = None) -> ScepEnrollment:
        """`pki --scep`; the static challenge unless `password` or `old` (renewal) is given."""
        if password is None and old is None:
            password = self.challenge
        return pki_scep_enroll(
            self.url(profile), key, self.work / f"{key.pem.stem}.pem", ca=self.ca,
            dn=f"CN={cn}", sans=sans, password=password, cipher=cipher, digest=digest,
            old_certificate=old[0] if old else None, old_key=old[1] if old else None)

    def verify(self, got: ScepEnrollment | Path, key_pem: Path, *, cn: str,
               sans: tuple[str, ...] = ()) -> x509.Certificate:
        """The certificate (PEM file) chains to the root (openssl, x509_strict) and is the one
        asked for: its CN, exactly the SANs asked for, and the requester's public key."""
        path = got if isinstance(got, Path) else got.path
        openssl_verify(path, list(self.ca.issuing), self.ca.root)
        certificate = _load(path.read_bytes())
        assert certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == cn
        try:
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = sorted(san.value.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            names = []
        assert names == sorted(sans)
        key = serialization.load_pem_private_key(key_pem.read_bytes(), None)
        assert _spki(certificate.public_key()) == _spki(key.public_key())
        return certificate

    def count(self) -> int:
        return self.home.certificate_count()

    def audit_head(self) -> int:
        return int(_stdout(self.home, "audit", "head").split(":")[0])

    def audit_since(self, seq: int) -> list[dict[str, Any]]:
        out = _stdout(self.home, "audit", "list", "--since", str(seq + 1), "--limit", "100000")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def issued_by(self, certificate: x509.Certificate) -> str:
        """The actor the audit log names for the issuance of `certificate`."""
        actors = [e["actor"] for e in self.audit_since(0) if e["action"] == "certificate.issued"
                  and int(e["subject"], 16) == certificate.serial_number]
        assert len(actors) == 1, actors
        return str(actors[0])

    def approve_when_held(self, device_id: str, client: Future[ScepEnrollment],
                          timeout: float = 30.0) -> str:
        """Wait (bounded) until `fleetpki approvals list` shows the device's request, approve
        it with the CLI; fails early with the client's error if the client gave up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if client.done():
                client.result()  # raises the client's error
                pytest.fail("the client finished before its request was approved")
            for line in _stdout(self.home, "approvals", "list", "--json").splitlines():
                held = json.loads(line)
                if held["device_id"] == device_id and held["state"] == "pending":
                    _stdout(self.home, "approvals", "approve", held["id"])
                    return str(held["id"])
            time.sleep(0.3)
        pytest.fail(f"no held request of {device_id} within {timeout:.0f}s")


def _stdout(home: Home, *args: str) -> str:
    """A CLI command's stdout alone (Home.cli mixes in stderr, where notices go)."""
    result = home.runner.invoke(cli, ["--home", str(home.path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _prepare_home(template: Path, target: Path, *, callback_url: str, settings: str) -> Home:
    shutil.copytree(template, target)
    with (target / "profiles.toml").open("a") as handle:
        handle.write(PROFILES.replace(_CALLBACK, callback_url))
    (target / "fleetpki.toml").write_text(settings)
    return Home(target)


def _load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture(scope="module")
def scep(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Scep]:
    base = tmp_path_factory.mktemp("scep")
    callback = ChallengeService(MDM_CHALLENGE, MDM_DEVICE)
    try:
        home = _prepare_home(initialised_home_template, base / "home",
                             callback_url=callback.url, settings=SETTINGS)
        challenge = _stdout(home, "scep", "challenge", "set", "router").strip()
        work = base / "work"
        work.mkdir()
        with fleet_server(home.path, workers=2) as server:
            ca = pki_scepca(f"{server.revocation_base}/scep/router", base / "ca")
            yield Scep(home, server, work, ca, challenge, callback)
    finally:
        callback.stop()


# -- over plain HTTP, for the bad-input cases ------------------------------------------------

def _http(url: str, body: bytes | None = None, *, context: ssl.SSLContext | None = None
          ) -> tuple[int, bytes]:
    # Only http(s) URLs built here from the server's ports reach urllib (S310).
    request = urllib.request.Request(url, data=body,  # noqa: S310
                                     method="POST" if body is not None else "GET")
    if body is not None:
        request.add_header("Content-Type", "application/x-pki-message")
    try:
        with urllib.request.urlopen(request, timeout=30,  # noqa: S310
                                    context=context) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _pki_operation(scep: Scep, message: bytes, profile: str = "router") -> bytes:
    status, reply = _http(f"{scep.url(profile)}?operation=PKIOperation", message)
    assert status == 200, reply[:300]
    return reply


def _cert_rep(reply: bytes) -> tuple[str, str | None]:
    """(pkiStatus, failInfo) of a CertRep whose signature verifies."""
    signed = open_signed(reply)
    verify(signed)
    status = str(decode_value(signed.attributes[_PKI_STATUS][0]))
    fail = signed.attributes.get(_FAIL_INFO)
    return status, str(decode_value(fail[0])) if fail else None


def _request(scep: Scep, cn: str, *, transaction_id: str,
             who: scep_messages.Requester | None = None,
             recipient: x509.Certificate | None = None,
             signing_time: dt.datetime | None = None) -> bytes:
    """A PKCSReq with the right challenge, from a new requester unless `who` is given."""
    who = who or scep_messages.requester(common_name=cn)
    csr = scep_messages.csr(who.key, cn, challenge=scep.challenge)
    return scep_messages.message(who, MessageType.pkcs_req, csr,
                                 recipient or scep.ra_certificate,
                                 transaction_id=transaction_id, signing_time=signing_time)


# -- 1. GetCACert, GetCACaps -----------------------------------------------------------------

def test_scepca_fetches_the_root_the_issuing_ca_and_the_ra_certificate(scep: Scep) -> None:
    assert _load(scep.ca.root.read_bytes()).subject.rfc4514_string() == \
        "CN=Test Fleet Root CA,O=Test Fleet"
    assert [_load(p.read_bytes()).subject.rfc4514_string() for p in scep.ca.issuing] == \
        ["CN=Test Fleet Issuing CA 1,O=Test Fleet"]
    ra = scep.ra_certificate
    assert isinstance(ra.public_key(), rsa.RSAPublicKey)
    openssl_verify(scep.ca.ra, list(scep.ca.issuing), scep.ca.root)
    shown = json.loads(_stdout(scep.home, "scep", "ra", "--json"))
    assert [row["sha256"] for row in shown] == [scep.ra_fingerprint]


@pytest.mark.parametrize("path", ["/scep/router", "/scep", "/scep/router/pkiclient.exe"])
def test_getcacaps_lists_what_the_clients_look_for(scep: Scep, path: str) -> None:
    status, body = _http(f"{scep.server.revocation_base}{path}?operation=GetCACaps")
    assert status == 200
    assert set(body.decode().split()) >= REQUIRED_CAPS


def test_getcacaps_over_https(scep: Scep) -> None:
    context = ssl.create_default_context(cafile=str(scep.ca.root))
    status, body = _http(f"https://127.0.0.1:{scep.server.port}/scep/router"
                         "?operation=GetCACaps", context=context)
    assert status == 200
    assert set(body.decode().split()) >= REQUIRED_CAPS


def test_profile_without_scep_is_not_served(scep: Scep) -> None:
    status, _ = _http(f"{scep.server.revocation_base}/scep/sensor?operation=GetCACaps")
    assert status == 404


# -- 2-6. strongSwan pki ---------------------------------------------------------------------

@pytest.mark.parametrize(("cipher", "digest"), [(None, None), ("des3", "sha512")],
                         ids=["aes-sha256", "des3-sha512"])
def test_pki_enrolls_with_the_static_challenge_and_a_san(
        scep: Scep, cipher: Cipher | None, digest: Digest | None) -> None:
    name = f"router-{cipher or 'aes'}-{digest or 'sha256'}"
    key = scep.key(name)
    sans = (f"{name}.routers.example",)
    got = scep.enroll(key, name, sans=sans, cipher=cipher, digest=digest)
    certificate = scep.verify(got, key.pem, cn=name, sans=sans)
    assert scep.issued_by(certificate) == "challenge:router"


def test_bootstrap_credential_enrolls_its_device_once(scep: Scep) -> None:
    credential = scep.home.credential("router", device="router-boot-1")
    password = f"{credential.id}:{credential.secret}"
    key = scep.key("boot-1")
    certificate = scep.verify(scep.enroll(key, "router-boot-1", password=password), key.pem,
                              cn="router-boot-1")
    assert scep.issued_by(certificate) == f"bootstrap:{credential.id}"

    before = scep.count()
    with pytest.raises(ScepClientError) as refused:
        scep.enroll(scep.key("boot-2"), "router-boot-1", password=password)
    assert refused.value.fail_info == "badRequest", refused.value
    assert scep.count() == before


def test_wrong_challenge_is_refused_nothing_issued_and_audited(scep: Scep) -> None:
    before, seq = scep.count(), scep.audit_head()
    wrong = "not-the-router-challenge"
    with pytest.raises(ScepClientError) as refused:
        scep.enroll(scep.key("wrong-1"), "router-wrong-1", password=wrong)
    assert refused.value.fail_info == "badRequest", refused.value
    assert scep.count() == before
    entries = scep.audit_since(seq)
    refusals = [e for e in entries if e["action"] == "certificate.refused"]
    assert len(refusals) == 1, entries
    assert refusals[0]["details"]["profile"] == "router"
    assert "wrong challenge password" in refusals[0]["details"]["reason"]
    assert wrong not in json.dumps(entries)  # the audit log never holds a password


def test_pki_renews_with_its_certificate_and_a_new_key(scep: Scep) -> None:
    sans = ("router-renew.routers.example",)
    old_key = scep.key("renew-old")
    first = scep.enroll(old_key, "router-renew", sans=sans)
    old = scep.verify(first, old_key.pem, cn="router-renew", sans=sans)
    new_key = scep.key("renew-new")
    renewed = scep.enroll(new_key, "router-renew", sans=sans, old=(first.path, old_key))
    new = scep.verify(renewed, new_key.pem, cn="router-renew", sans=sans)
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
    assert scep.issued_by(new) == "device:router-renew"  # authenticated by the old certificate


def test_pki_polls_a_held_request_until_an_operator_approves(scep: Scep) -> None:
    credential = scep.home.credential("held", device="held-pki-1")
    key = scep.key("held-pki-1")
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(pki_scep_enroll, scep.url("held"), key,
                             scep.work / "held-pki-1.pem", ca=scep.ca, dn="CN=held-pki-1",
                             password=f"{credential.id}:{credential.secret}", interval=1,
                             max_poll_time=40)
        scep.approve_when_held("held-pki-1", client)
        got = client.result(timeout=80)
    scep.verify(got, key.pem, cn="held-pki-1")
    assert "SCEP request pending" in got.run.stderr  # it did poll


# -- 7. micromdm scepclient ------------------------------------------------------------------

def test_scepclient_enrolls_with_the_static_challenge(scep: Scep) -> None:
    directory = scep.work / "scepclient-enroll"
    got = scepclient_enroll(scep.url(), directory, challenge=scep.challenge,
                            common_name="mdm-dev-1", ca_fingerprint=scep.ra_fingerprint)
    certificate = scep.verify(got, directory / "key.pem", cn="mdm-dev-1")
    assert certificate.subject.rfc4514_string() == "CN=mdm-dev-1,OU=MDM,O=scep-client,C=US"
    assert scep.issued_by(certificate) == "challenge:router"


def test_scepclient_renews_with_its_certificate(scep: Scep) -> None:
    directory = scep.work / "scepclient-renew"
    first = scepclient_enroll(scep.url(), directory, challenge=scep.challenge,
                              common_name="mdm-renew-1", ca_fingerprint=scep.ra_fingerprint)
    old = _load(first.certificate)
    # cert.pem now exists: scepclient sends a RenewalReq signed with it (same key).
    renewed = scepclient_enroll(scep.url(), directory, challenge=scep.challenge,
                                common_name="mdm-renew-1", ca_fingerprint=scep.ra_fingerprint)
    new = scep.verify(renewed, directory / "key.pem", cn="mdm-renew-1")
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
    assert scep.issued_by(new) == "device:mdm-renew-1"


def test_scepclient_wrong_challenge_is_refused(scep: Scep) -> None:
    before = scep.count()
    with pytest.raises(ScepClientError) as refused:
        scepclient_enroll(scep.url(), scep.work / "scepclient-wrong", challenge="wrong",
                          common_name="mdm-wrong-1", ca_fingerprint=scep.ra_fingerprint)
    assert refused.value.fail_info == "badRequest", refused.value
    assert scep.count() == before


def test_scepclient_polls_a_held_request_until_approved(scep: Scep) -> None:
    """scepclient sleeps 30 s after PENDING, then sends its PKCSReq again: same transaction,
    so the one-time credential is not asked for a second time."""
    credential = scep.home.credential("held", device="held-mdm-1")
    directory = scep.work / "scepclient-held"
    with ThreadPoolExecutor(1) as pool:
        client = pool.submit(scepclient_enroll, scep.url("held"), directory,
                             challenge=f"{credential.id}:{credential.secret}",
                             common_name="held-mdm-1", ca_fingerprint=scep.ra_fingerprint,
                             timeout=60)
        scep.approve_when_held("held-mdm-1", client)
        got = client.result(timeout=70)
    scep.verify(got, directory / "key.pem", cn="held-mdm-1")
    assert got.run.elapsed >= 25  # it waited through PENDING


def test_scepclient_single_des_is_refused_without_accept_single_des(
        initialised_home_template: Path, tmp_path: Path) -> None:
    home = _prepare_home(initialised_home_template, tmp_path / "home",
                         callback_url="http://127.0.0.1:9/unused",
                         settings='[scep]\ndefault_profile = "router"\n')
    challenge = _stdout(home, "scep", "challenge", "set", "router").strip()
    with fleet_server(home.path) as server:
        (ra,) = json.loads(_stdout(home, "scep", "ra", "--json"))
        before = home.certificate_count()
        with pytest.raises(ScepClientError) as refused:
            scepclient_enroll(f"{server.revocation_base}/scep/router", tmp_path / "client",
                              challenge=challenge, common_name="mdm-des-1",
                              ca_fingerprint=ra["sha256"])
        assert refused.value.fail_info == "badAlg", refused.value
        assert home.certificate_count() == before


# -- 8. openssl reads a CertRep --------------------------------------------------------------

def test_certrep_verifies_and_decrypts_with_openssl_cms(scep: Scep, tmp_path: Path) -> None:
    who = scep_messages.requester(common_name="cms-check-1")
    reply = _pki_operation(scep, _request(scep, "cms-check-1", transaction_id="cms-check-1",
                                          who=who))
    assert _cert_rep(reply) == (SUCCESS, None)
    files = {name: tmp_path / name for name in
             ("reply.der", "envelope.der", "certs.der", "requester.pem", "requester.key")}
    files["reply.der"].write_bytes(reply)
    files["requester.pem"].write_bytes(who.certificate.public_bytes(serialization.Encoding.PEM))
    files["requester.key"].write_bytes(who.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    # The RA certificate is not given: openssl must find it in the reply. `cms -verify` builds
    # the signer's chain only from the reply's certificates and the trust store (-certfile
    # serves to find the signer, not its issuer), and the reply carries the RA certificate
    # alone: the issuing CA goes into the CAfile with the root.
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(scep.ca.root.read_bytes() + scep.ca.issuing[0].read_bytes())
    openssl("cms", "-verify", "-inform", "DER", "-in", str(files["reply.der"]), "-binary",
            "-CAfile", str(anchors), "-purpose", "any", "-out", str(files["envelope.der"]))
    openssl("cms", "-decrypt", "-inform", "DER", "-in", str(files["envelope.der"]), "-binary",
            "-recip", str(files["requester.pem"]), "-inkey", str(files["requester.key"]),
            "-out", str(files["certs.der"]))
    printed = openssl("pkcs7", "-inform", "DER", "-in", str(files["certs.der"]),
                      "-print_certs")
    certificates = x509.load_pem_x509_certificates(printed)
    assert len(certificates) == 1
    issued = tmp_path / "issued.pem"
    issued.write_bytes(certificates[0].public_bytes(serialization.Encoding.PEM))
    scep.verify(issued, files["requester.key"], cn="cms-check-1")


# -- 9. what the real clients never send -----------------------------------------------------

def test_garbage_body_is_400_and_stores_nothing(scep: Scep) -> None:
    before = scep.count()
    status, body = _http(f"{scep.url()}?operation=PKIOperation", b"not a CMS message" * 8)
    assert status == 400, body
    assert scep.count() == before


def test_oversized_body_is_413(scep: Scep) -> None:
    before = scep.count()
    status, body = _http(f"{scep.url()}?operation=PKIOperation",
                         b"\x30\x84" + os.urandom(64 * 1024 + 16))
    assert status == 413, body
    assert scep.count() == before


def _tampered(scep: Scep) -> bytes:
    return scep_messages.tamper_signature(_request(scep, "bad-sig-1", transaction_id="bad-sig"))


def _to_another_recipient(scep: Scep) -> bytes:
    stranger = scep_messages.requester(common_name="not-the-ra").certificate
    return _request(scep, "bad-rcpt-1", transaction_id="bad-recipient", recipient=stranger)


def _signed_in_1990(scep: Scep) -> bytes:
    return _request(scep, "bad-time-1", transaction_id="bad-time",
                    signing_time=dt.datetime(1990, 1, 1, tzinfo=dt.UTC))


@pytest.mark.parametrize(("build", "fail_info"), [
    (_tampered, BAD_MESSAGE_CHECK),
    (_to_another_recipient, BAD_REQUEST),
    (_signed_in_1990, BAD_TIME),
], ids=["tampered-signature", "another-recipient", "signing-time-1990"])
def test_defective_request_gets_certrep_failure_and_stores_nothing(
        scep: Scep, build: Callable[[Scep], bytes], fail_info: str) -> None:
    before = scep.count()
    assert _cert_rep(_pki_operation(scep, build(scep))) == (FAILURE, fail_info)
    assert scep.count() == before


def test_transaction_id_reused_with_another_key_is_refused(scep: Scep) -> None:
    transaction = "reused-" + os.urandom(4).hex()
    first = _pki_operation(scep, _request(scep, "reuse-1", transaction_id=transaction))
    assert _cert_rep(first) == (SUCCESS, None)
    before = scep.count()
    second = _pki_operation(scep, _request(scep, "reuse-2", transaction_id=transaction))
    assert _cert_rep(second) == (FAILURE, BAD_REQUEST)
    assert scep.count() == before


# -- 10. challenges judged by an MDM (challenge_callback); stops the service: keep last --------

def test_callback_allows_the_challenge_it_issued(scep: Scep) -> None:
    key = scep.key("mdm-1")
    got = scep.enroll(key, MDM_DEVICE, profile="mdm", password=MDM_CHALLENGE)
    certificate = scep.verify(got, key.pem, cn=MDM_DEVICE)
    assert scep.issued_by(certificate) == f"callback:mdm:{MDM_DEVICE}"
    query = scep.callback.received[-1]
    assert (query["challenge"], query["profile"]) == (MDM_CHALLENGE, "mdm")
    csr = x509.load_der_x509_csr(base64.b64decode(query["csr"]))
    assert _spki(csr.public_key()) == _spki(certificate.public_key())


def test_callback_refuses_a_challenge_it_did_not_issue(scep: Scep) -> None:
    before = scep.count()
    with pytest.raises(ScepClientError) as refused:
        scep.enroll(scep.key("mdm-2"), "mdm-router-2", profile="mdm",
                    password="not-issued-by-the-mdm")
    assert refused.value.fail_info == "badRequest", refused.value
    assert scep.callback.received[-1]["challenge"] == "not-issued-by-the-mdm"
    assert scep.count() == before


def test_callback_unreachable_refuses_even_its_good_challenge(scep: Scep) -> None:
    scep.callback.stop()
    before = scep.count()
    with pytest.raises(ScepClientError) as refused:
        scep.enroll(scep.key("mdm-3"), MDM_DEVICE, profile="mdm", password=MDM_CHALLENGE)
    assert refused.value.fail_info == "badRequest", refused.value
    assert scep.count() == before
