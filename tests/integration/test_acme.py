"""ACME (RFC 8555, RFC 9773) with the real clients, certbot 2.1 and lego 4.9, against
`fleetpki serve` on loopback: external account binding, http-01 and tls-alpn-01, renewal,
revocation (by account and by certificate key), account deactivation, `--csr`. The server
resolves the test names to 127.0.0.1 through its [acme.validation] hosts table, and validates
on the ports the clients listen on.

Each certificate is checked with `openssl verify -x509_strict`, pkilint, and in the store (the
inventory, CRL/OCSP status). What the clients never send (alg none, HS256 outside EAB, a wrong
url, reused or forged nonces, oversized keys, a CSR for other names) comes from
support/acme_client.py; each gets its problem type and stores nothing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc.jwk import ECKey, OctKey, RSAKey, thumbprint

from fleetpki.core.reasons import RevocationReason
from fleetpki.core.records import IssuedCertificate
from fleetpki.wiring import open_fleet
from support.acme_client import AcmeTestClient, Reply, b64url
from support.acme_loopback import DnsServer
from support.est_home import Home, write_ca_files
from support.fleet_server import RunningServer, fleet_server
from support.lint import lint_certificate, openssl_verify, require_tool
from support.ports import free_port

pytestmark = pytest.mark.slow

NAMES = ["gw1", "gw2", "gw3", "gw4", "gw5", "bad1", "bad2", "ari1"]
DOMAIN = "edge.fleet.internal"


@dataclass
class Acme:
    home: Home
    server: RunningServer
    work: Path
    root: Path
    chain: Path  # issuing CA + root: what clients trust for the server's TLS certificate
    http_port: int
    tls_port: int
    dns: DnsServer

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.server.port}/acme/directory"

    def eab(self, profile: str | None = None) -> tuple[str, str]:
        args = ["acme", "eab", "create", "--json"] + (["--profile", profile] if profile else [])
        made = json.loads(self.home.cli(*args))
        return made["key_id"], made["hmac_key"]

    def client(self) -> AcmeTestClient:
        return AcmeTestClient(self.directory, self.chain)

    def rows(self, table: str) -> int:
        with sqlite3.connect(self.home.path / "fleetpki.db") as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    def verify(self, certificate: Path, name: str) -> x509.Certificate:
        openssl_verify(certificate, [self.work / "issuing.pem"], self.root)
        loaded = x509.load_pem_x509_certificate(certificate.read_bytes())
        assert lint_certificate(loaded.public_bytes(serialization.Encoding.DER)) == []
        sans = loaded.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [name]
        return loaded


@pytest.fixture(scope="module")
def acme(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Acme]:
    base = tmp_path_factory.mktemp("acme")
    shutil.copytree(initialised_home_template, base / "home")
    home = Home(base / "home")
    http_port, tls_port = free_port(), free_port()
    hosts = ", ".join(f'"{n}.{DOMAIN}" = "127.0.0.1"' for n in NAMES)
    dns = DnsServer()  # dns-01 TXT records, through [acme.validation] resolver
    (home.path / "fleetpki.toml").write_text(
        f"[acme.validation]\nhosts = {{ {hosts} }}\nhttp_port = {http_port}\n"
        f"tls_alpn_port = {tls_port}\ntimeout = \"5s\"\n"
        f"resolver = \"127.0.0.1:{dns.address[1]}\"\n"
        "[acme.rate_limits]\norders_per_identifier = \"3/hour\"\n")
    work = base / "work"
    work.mkdir()
    issuing, root = write_ca_files(home, work)
    (work / "chain.pem").write_text(issuing.read_text() + root.read_text())
    try:
        with fleet_server(home.path, workers=1) as server:
            yield Acme(home, server, work, work / "root.pem", work / "chain.pem", http_port,
                       tls_port, dns)
    finally:
        dns.stop()


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, cwd=cwd, env={**os.environ, **env}, capture_output=True,
                            text=True, timeout=180, check=False)
    assert result.returncode == 0, (argv, result.stdout[-3000:], result.stderr[-3000:])
    return result


def _certbot(acme: Acme, *args: str) -> subprocess.CompletedProcess[str]:
    directory = acme.work / "certbot"
    return _run([require_tool("certbot"), "--config-dir", str(directory / "config"),
                 "--work-dir", str(directory / "work"), "--logs-dir", str(directory / "logs"),
                 "--non-interactive", "--agree-tos", "--server", acme.directory, *args],
                acme.work, {"REQUESTS_CA_BUNDLE": str(acme.chain)})


def _lego(acme: Acme, key_id: str, *args: str, mac: str = "unused-once-registered"
          ) -> subprocess.CompletedProcess[str]:
    # lego 4.9 asks for --eab on every command once the directory says
    # externalAccountRequired, even when its account exists; the MAC is then not used.
    return _run([require_tool("lego"), "--accept-tos", "--email", "ops@example.com",
                 "--server", acme.directory, "--path", str(acme.work / ".lego"),
                 "--eab", f"--kid={key_id}", f"--hmac={mac}", *args],
                acme.work, {"LEGO_CA_CERTIFICATES": str(acme.chain)})


def _stored(acme: Acme, certificate: x509.Certificate) -> IssuedCertificate:
    fleet = open_fleet(acme.home.path)
    try:
        record = fleet.store.get_certificate(certificate.serial_number)
    finally:
        fleet.close()
    assert record is not None
    return record


def _status(acme: Acme, certificate: x509.Certificate) -> str:
    return _stored(acme, certificate).status(dt.datetime.now(dt.UTC)).value


def test_certbot_register_issue_renew_revoke_unregister(acme: Acme) -> None:
    name = f"gw1.{DOMAIN}"
    key_id, mac = acme.eab()
    # KEY=VALUE: a base64url key that happens to start with "-" would read as an option.
    _certbot(acme, "register", "--email", "ops@example.com", f"--eab-kid={key_id}",
             f"--eab-hmac-key={mac}")
    listed = [json.loads(line) for line in acme.home.cli("acme", "eab", "list", "--json")
              .splitlines()]
    assert next(k for k in listed if k["key_id"] == key_id)["account"] is not None

    standalone = ("--standalone", "--http-01-address", "127.0.0.1",
                  "--http-01-port", str(acme.http_port))
    _certbot(acme, "certonly", *standalone, "-d", name)
    live = acme.work / "certbot" / "config" / "live" / name
    first = acme.verify(live / "cert.pem", name)
    assert _status(acme, first) == "valid"
    # The chain certbot saved is the issuing CA: a TLS server sends exactly that.
    assert x509.load_pem_x509_certificate((live / "chain.pem").read_bytes()).subject == \
        x509.load_pem_x509_certificate((acme.work / "issuing.pem").read_bytes()).subject

    _certbot(acme, "renew", "--force-renewal", "--no-random-sleep-on-renew", *standalone)
    renewed = acme.verify(live / "cert.pem", name)
    assert renewed.serial_number != first.serial_number

    _certbot(acme, "revoke", "--cert-path", str(live / "cert.pem"), "--reason", "keycompromise",
             "--no-delete-after-revoke")
    assert _status(acme, renewed) == "revoked"
    assert _stored(acme, renewed).revocation_reason is RevocationReason.key_compromise
    ocsp = subprocess.run(
        [require_tool("openssl"), "ocsp", "-issuer", str(acme.work / "issuing.pem"),
         "-cert", str(live / "cert.pem"), "-url", f"{acme.server.revocation_base}/ocsp",
         "-CAfile", str(acme.root), "-no_nonce"], capture_output=True, text=True, timeout=30,
        check=False)
    assert ": revoked" in ocsp.stdout, ocsp.stdout + ocsp.stderr

    _certbot(acme, "unregister")
    assert "acme.account.deactivated" in acme.home.audit_actions()


def test_lego_http_tls_alpn_renew_revoke_and_csr(acme: Acme) -> None:
    key_id, mac_key = acme.eab()
    http = ("--http", "--http.port", f"127.0.0.1:{acme.http_port}")
    tls = ("--tls", "--tls.port", f"127.0.0.1:{acme.tls_port}")
    # The first run registers the account with the binding's MAC.
    _lego(acme, key_id, *http, "-d", f"gw2.{DOMAIN}", "run", mac=mac_key)
    certificates = acme.work / ".lego" / "certificates"
    issued = acme.verify(certificates / f"gw2.{DOMAIN}.crt", f"gw2.{DOMAIN}")

    _lego(acme, key_id, *tls, "-d", f"gw3.{DOMAIN}", "run")
    acme.verify(certificates / f"gw3.{DOMAIN}.crt", f"gw3.{DOMAIN}")

    _lego(acme, key_id, *http, "-d", f"gw2.{DOMAIN}", "renew", "--days", "365",
          "--no-random-sleep")
    renewed = acme.verify(certificates / f"gw2.{DOMAIN}.crt", f"gw2.{DOMAIN}")
    assert renewed.serial_number != issued.serial_number

    _lego(acme, key_id, "-d", f"gw2.{DOMAIN}", "revoke")
    assert _status(acme, renewed) == "revoked"
    assert _status(acme, issued) == "valid"

    # --csr: the names and key come from a CSR made with openssl.
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gw4.{DOMAIN}")]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"gw4.{DOMAIN}")]),
                          critical=False)
           .sign(key, hashes.SHA256()))
    (acme.work / "gw4.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    _lego(acme, key_id, *http, "--csr", str(acme.work / "gw4.csr"), "run")
    from_csr = acme.verify(certificates / f"gw4.{DOMAIN}.crt", f"gw4.{DOMAIN}")
    assert from_csr.public_key().public_numbers() == key.public_key().public_numbers()


def test_directory_and_nonces(acme: Acme) -> None:
    client = acme.client()
    try:
        assert client.directory["meta"]["externalAccountRequired"] is True
        head = client.http.head(client.directory["newNonce"])
        get = client.http.get(client.directory["newNonce"])
        assert (head.status_code, get.status_code) == (200, 204)
        for response in (head, get):
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Replay-Nonce"]
        assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
        # RFC 8555 §6.3: other resources are not read with GET.
        assert client.http.get(client.directory["newAccount"]).status_code == 405
        # Unknown URLs and other methods: problem documents with a nonce (RFC 8555 §6.5)
        base = client.directory["newNonce"].rsplit("/", 1)[0]
        for method, url, status in (("POST", base + "/no-such-thing", 404),
                                    ("GET", base + "/order/1/nope", 404),
                                    ("PUT", client.directory["newOrder"], 405)):
            reply = client.http.request(method, url, content=b"{}")
            assert reply.status_code == status, (method, url, reply.text)
            assert reply.headers["Content-Type"] == "application/problem+json"
            assert reply.json()["type"] == "urn:ietf:params:acme:error:malformed"
            assert reply.headers["Replay-Nonce"]
        assert "POST" in reply.headers["Allow"]
    finally:
        client.close()


def _refused(acme: Acme, reply_status: int, problem: str, reply: Reply) -> None:
    assert reply.status == reply_status, reply.body
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.problem == problem, reply.body
    assert "Traceback" not in reply.body.decode()


def test_bad_jws_requests_get_their_problem_and_store_nothing(acme: Acme) -> None:
    client = acme.client()
    accounts, nonces = acme.rows("acme_accounts"), acme.rows("acme_nonces")
    try:
        url = client.directory["newAccount"]
        _refused(acme, 400, "malformed", client.post_raw(url, b"{not json"))
        _refused(acme, 400, "malformed", client.post_raw(url, b"a.b.c"))  # compact form
        _refused(acme, 415, "malformed",
                 client.post_raw(url, b"{}", content_type="application/json"))
        # alg none: the header says none, the signature is empty.
        protected = {"alg": "none", "jwk": client.jwk(), "url": url, "nonce": client.nonce()}
        unsigned = {"protected": b64url(json.dumps(protected).encode()),
                    "payload": b64url(b"{}"), "signature": ""}
        _refused(acme, 400, "badSignatureAlgorithm",
                 client.post_raw(url, json.dumps(unsigned).encode()))
        # HS256 is for the inner EAB JWS only.
        _refused(acme, 400, "badSignatureAlgorithm", client.post(
            url, {}, alg="HS256", key=OctKey.generate_key(256),
            extra={"jwk": client.jwk()}))
        # The url header must be the URL requested.
        _refused(acme, 403, "unauthorized", client.post(
            url, {"termsOfServiceAgreed": True}, extra={"url": url + "x"}))
        # A nonce this server never minted, then a reused one.
        _refused(acme, 400, "badNonce", client.post(url, {}, nonce="AAAAAAAAAAAAAAAAAAAAAA"))
        nonce = client.nonce()
        first = client.post(url, {"onlyReturnExisting": True}, nonce=nonce)
        _refused(acme, 400, "accountDoesNotExist", first)
        replayed = client.post(url, {"onlyReturnExisting": True}, nonce=nonce)
        _refused(acme, 400, "badNonce", replayed)
        assert replayed.headers["Replay-Nonce"] != nonce
        # An oversized key: RSA-8192.
        big = AcmeTestClient(acme.directory, acme.chain, key=RSAKey.generate_key(8192))
        try:
            reply = big.post(url, {}, alg="RS256")
            assert reply.status == 400 and reply.problem in ("badPublicKey", "malformed"), \
                reply.body
        finally:
            big.close()
        # No binding while the server requires one.
        _refused(acme, 400, "externalAccountRequired",
                 client.post(url, {"termsOfServiceAgreed": True}))
        # A binding MACed with the wrong key.
        key_id, _ = acme.eab()
        _refused(acme, 403, "unauthorized", client.register(key_id, b64url(b"x" * 32)))
        assert acme.rows("acme_accounts") == accounts
        assert acme.rows("acme_nonces") >= nonces  # spent nonces are all that was written
        # An EAB key binds one account: a second account is told why it cannot have it.
        key_id, mac = acme.eab()
        assert client.register(key_id, mac).status == 201
        second = acme.client()
        try:
            reused = second.register(key_id, mac)
            _refused(acme, 403, "unauthorized", reused)
            assert "already bound" in reused.json()["detail"], reused.body
        finally:
            second.close()
        assert acme.rows("acme_accounts") == accounts + 1
    finally:
        client.close()


def test_order_for_names_the_profile_refuses_and_csr_not_matching(acme: Acme) -> None:
    client = acme.client()
    try:
        key_id, mac = acme.eab()
        assert client.register(key_id, mac).status == 201
        new_order = client.directory["newOrder"]
        refused = client.post(new_order, {"identifiers": [
            {"type": "dns", "value": f"bad1.{DOMAIN}"},
            {"type": "dns", "value": "www.example.com"},
            {"type": "dns", "value": "gw.example.net"}]})
        _refused(acme, 400, "rejectedIdentifier", refused)
        subproblems = refused.json()["subproblems"]
        assert [s["identifier"]["value"] for s in subproblems] == ["gw.example.net",
                                                                    "www.example.com"]
        orders = acme.rows("acme_orders")
        _refused(acme, 400, "unsupportedIdentifier", client.post(
            new_order, {"identifiers": [{"type": "email", "value": "a@b.c"}]}))
        assert acme.rows("acme_orders") == orders

        # An order for bad1, proven with http-01 served by the test itself.
        order = client.post(new_order, {"identifiers": [{"type": "dns",
                                                         "value": f"bad1.{DOMAIN}"}]})
        assert order.status == 201, order.body
        finalize = order.json()["finalize"]
        # Finalizing before the name is proven: orderNotReady.
        csr_key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"bad2.{DOMAIN}")]),
                              critical=False).sign(csr_key, hashes.SHA256()))
        der = csr.public_bytes(serialization.Encoding.DER)
        _refused(acme, 403, "orderNotReady", client.post(finalize, {"csr": b64url(der)}))
        _validate_http(acme, client, order.json()["authorizations"][0])
        certificates = acme.home.certificate_count()
        _refused(acme, 400, "badCSR", client.post(finalize, {"csr": b64url(der)}))
        _refused(acme, 400, "malformed", client.post(finalize, {"csr": "not base64!"}))
        assert acme.home.certificate_count() == certificates
        assert client.post(order.headers["Location"], None).json()["status"] == "ready"
    finally:
        client.close()


def _validate_http(acme: Acme, client: AcmeTestClient, authorization_url: str) -> None:
    """Serve the key authorization on the validation port and ask for http-01."""
    authorization = client.post(authorization_url, None).json()
    challenge = next(c for c in authorization["challenges"] if c["type"] == "http-01")
    answer = f"{challenge['token']}.{thumbprint(client.jwk())}".encode()

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", acme.http_port), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        reply = client.post(challenge["url"], {})
        assert reply.status == 200 and reply.json()["status"] == "valid", reply.body
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_renewal_info_follows_the_profile_and_advisories(acme: Acme) -> None:
    client = acme.client()
    try:
        key_id, mac = acme.eab()
        assert client.register(key_id, mac).status == 201
        name = f"ari1.{DOMAIN}"
        order = client.post(client.directory["newOrder"],
                            {"identifiers": [{"type": "dns", "value": name}]})
        _validate_http(acme, client, order.json()["authorizations"][0])
        csr_key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]),
                              critical=False).sign(csr_key, hashes.SHA256()))
        done = client.post(order.json()["finalize"], {"csr": b64url(
            csr.public_bytes(serialization.Encoding.DER))})
        assert done.status == 200 and done.json()["status"] == "valid", done.body
        chain = client.post(done.json()["certificate"], None)
        assert chain.headers["Content-Type"] == "application/pem-certificate-chain"
        leaf = x509.load_pem_x509_certificates(chain.body)[0]
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier is not None
        serial = leaf.serial_number.to_bytes((leaf.serial_number.bit_length() + 8) // 8, "big")
        url = f"{client.directory['renewalInfo']}/{b64url(aki.key_identifier)}.{b64url(serial)}"
        info = client.http.get(url)
        assert info.status_code == 200, info.text
        window = info.json()["suggestedWindow"]
        assert leaf.not_valid_before_utc.isoformat()[:10] < window["start"][:10] \
            < window["end"][:10] <= leaf.not_valid_after_utc.isoformat()[:10]
        assert int(info.headers["Retry-After"]) > 0
        # An operator pulls the profile's renewals forward: the window moves to now.
        acme.home.cli("renewal", "advise", "--profile", "edge", "--end", "1d",
                      "--explanation", "key compromise drill")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            moved = client.http.get(url).json()["suggestedWindow"]
            if moved["start"] < window["start"]:
                break
            time.sleep(2)
        assert moved["start"] < window["start"], moved
        assert client.http.get(f"{client.directory['renewalInfo']}/AAAA.AQ").status_code == 404
    finally:
        client.close()


def _finalized(acme: Acme, client: AcmeTestClient, order: Reply, names: list[str],
               key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                          critical=False).sign(key, hashes.SHA256()))
    done = client.post(order.json()["finalize"], {"csr": b64url(
        csr.public_bytes(serialization.Encoding.DER))})
    assert done.status == 200 and done.json()["status"] == "valid", done.body
    chain = client.post(done.json()["certificate"], None)
    pem = acme.work / f"{names[0].replace('*', 'star')}.pem"
    pem.write_bytes(chain.body)
    openssl_verify(pem, [acme.work / "issuing.pem"], acme.root)
    return x509.load_pem_x509_certificates(chain.body)[0]


def test_dns01_wildcard_key_rollover_revocation_by_certificate_key_and_rate_limit(
        acme: Acme) -> None:
    client = acme.client()
    try:
        key_id, mac = acme.eab()
        assert client.register(key_id, mac).status == 201
        wildcard = f"*.wild.{DOMAIN}"
        order = client.post(client.directory["newOrder"],
                            {"identifiers": [{"type": "dns", "value": wildcard}]})
        assert order.status == 201, order.body
        authorization = client.post(order.json()["authorizations"][0], None).json()
        assert authorization["wildcard"] is True
        assert authorization["identifier"]["value"] == f"wild.{DOMAIN}"
        assert [c["type"] for c in authorization["challenges"]] == ["dns-01"]
        challenge = authorization["challenges"][0]
        answer = f"{challenge['token']}.{thumbprint(client.jwk())}".encode()
        digest = hashes.Hash(hashes.SHA256())
        digest.update(answer)
        acme.dns.add(f"_acme-challenge.wild.{DOMAIN}", "TXT",
                     f'"{b64url(digest.finalize())}"')
        validated = client.post(challenge["url"], {})
        assert validated.json()["status"] == "valid", validated.body
        certificate_key = ec.generate_private_key(ec.SECP256R1())
        issued = _finalized(acme, client, order, [wildcard], certificate_key)
        assert issued.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName) == [wildcard]

        # Key rollover (RFC 8555 §7.3.5): the old key no longer speaks for the account.
        old_key, new_key = client.key, ECKey.generate_key("P-256")
        changed = client.post(client.directory["keyChange"], client.key_change(new_key))
        assert changed.status == 200, changed.body
        client.key = new_key
        assert client.post(client.account_url, None).status == 200
        client.key = old_key
        _refused(acme, 403, "unauthorized", client.post(client.account_url, None))
        client.key = new_key

        # Revocation signed with the certificate's own key (jwk), reason superseded.
        jwk_client = AcmeTestClient(acme.directory, acme.chain,
                                    key=ECKey.import_key(certificate_key.private_bytes(
                                        serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())))
        try:
            unreadable = jwk_client.post(jwk_client.directory["revokeCert"],
                                         {"certificate": "AAAA", "reason": 4})
            _refused(acme, 400, "malformed", unreadable)
            assert "not a DER X.509 certificate" in unreadable.body.decode()
            reply = jwk_client.post(jwk_client.directory["revokeCert"], {
                "certificate": b64url(issued.public_bytes(serialization.Encoding.DER)),
                "reason": 4})
            assert reply.status == 200, reply.body
            again = jwk_client.post(jwk_client.directory["revokeCert"], {
                "certificate": b64url(issued.public_bytes(serialization.Encoding.DER)),
                "reason": 4})
            _refused(acme, 400, "alreadyRevoked", again)
        finally:
            jwk_client.close()
        assert _stored(acme, issued).revocation_reason is RevocationReason.superseded

        # orders_per_identifier = 3/hour: the fourth order for one name waits.
        identifiers = {"identifiers": [{"type": "dns", "value": f"gw5.{DOMAIN}"}]}
        statuses = [client.post(client.directory["newOrder"], identifiers) for _ in range(4)]
        assert [r.status for r in statuses[:3]] == [201, 201, 201]
        _refused(acme, 429, "rateLimited", statuses[3])
        assert int(statuses[3].headers["Retry-After"]) > 0
    finally:
        client.close()


def test_ip_identifier_with_http01_and_account_contact_update(acme: Acme) -> None:
    """RFC 8738: an "ip" identifier is validated at the address itself and lands in an
    iPAddress subjectAltName (lego 4.9 and certbot 2.1 cannot order one)."""
    client = acme.client()
    try:
        key_id, mac = acme.eab()
        assert client.register(key_id, mac).status == 201
        updated = client.post(client.account_url, {"contact": ["mailto:noc@example.com"]})
        assert updated.json()["contact"] == ["mailto:noc@example.com"], updated.body
        _refused(acme, 400, "unsupportedContact",
                 client.post(client.account_url, {"contact": ["tel:+1555"]}))
        order = client.post(client.directory["newOrder"],
                            {"identifiers": [{"type": "ip", "value": "127.0.0.1"}]})
        assert order.status == 201, order.body
        authorization = client.post(order.json()["authorizations"][0], None).json()
        assert sorted(c["type"] for c in authorization["challenges"]) == ["http-01",
                                                                          "tls-alpn-01"]
        _validate_http(acme, client, order.json()["authorizations"][0])
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName(
                   [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
               .sign(key, hashes.SHA256()))
        done = client.post(order.json()["finalize"], {"csr": b64url(
            csr.public_bytes(serialization.Encoding.DER))})
        assert done.json()["status"] == "valid", done.body
        chain = client.post(done.json()["certificate"], None)
        (acme.work / "ip.pem").write_bytes(chain.body)
        openssl_verify(acme.work / "ip.pem", [acme.work / "issuing.pem"], acme.root)
        leaf = x509.load_pem_x509_certificates(chain.body)[0]
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        assert lint_certificate(leaf.public_bytes(serialization.Encoding.DER)) == []
    finally:
        client.close()
