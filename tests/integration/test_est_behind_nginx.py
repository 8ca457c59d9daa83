"""EST behind a real nginx that terminates TLS and passes the client certificate in
X-SSL-Client-Cert (docs/protocols.md has the same configuration for operators).

The header is honoured only on the plain-HTTP proxy listener and only from a configured proxy
address: the tests also try to spoof it from elsewhere."""

from __future__ import annotations

import base64
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.est_home import Home, make_factory_pki, new_csr, openssl, prepare_est_home
from support.fleet_server import RunningServer, fleet_server
from support.lint import require_tool
from support.nginx import NginxProxy
from support.strongswan import create_csr, est_enroll, generate_key

SETTINGS = """
[est]
default_profile = "renewable"

[server.proxy]
listen = "127.0.0.1:0"
trusted = ["127.0.0.1"]
"""


@dataclass(frozen=True)
class Proxied:
    home: Home
    server: RunningServer
    nginx: NginxProxy
    nginx_chain: Path
    work: Path
    factory: Path

    def curl(self, url: str, *args: str, body: bytes) -> tuple[int, bytes]:
        result = subprocess.run(
            [require_tool("curl"), "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}",
             "-H", "Content-Type: application/pkcs10", "--data-binary", "@-", url, *args],
            input=body, capture_output=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        text, _, status = result.stdout.rpartition(b"\n")
        return int(status), text

    def via_nginx(self, operation: str, *args: str, body: bytes) -> tuple[int, bytes]:
        return self.curl(f"https://127.0.0.1:{self.nginx.port}/.well-known/est/{operation}",
                         "--cacert", str(self.nginx_chain), *args, body=body)

    def csr(self, name: str, cn: str) -> tuple[Path, bytes]:
        key, csr = new_csr(self.work, name, cn)
        return key, base64.b64encode(csr.read_bytes())

    def pem(self, response: bytes, name: str) -> Path:
        path = self.work / f"{name}.pem"
        path.write_bytes(openssl("pkcs7", "-inform", "DER", "-print_certs",
                                 input=base64.b64decode(response)))
        return path


@pytest.fixture(scope="module")
def proxied(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Proxied]:
    base = tmp_path_factory.mktemp("est-nginx")
    home = prepare_est_home(initialised_home_template, base / "home", settings=SETTINGS)
    factory = base / "factory"
    maker_ca = make_factory_pki(factory, ["ACME-0201"])
    home.cli("manufacturers", "add", "acme", "--ca", str(maker_ca), "--profile", "renewable")
    work = base / "work"
    work.mkdir()
    # nginx's own certificate, made by openssl: the proxy is a separate trust domain.
    nginx_key, nginx_cert = work / "nginx.key", work / "nginx.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(nginx_key), "-out", str(nginx_cert), "-days", "2",
            "-subj", "/CN=est-proxy", "-addext", "subjectAltName=IP:127.0.0.1")
    client_cas = work / "client-cas.pem"
    client_cas.write_bytes(maker_ca.read_bytes())
    with fleet_server(home.path, workers=1) as server:
        assert server.proxy_port is not None
        with NginxProxy(upstream_port=server.proxy_port, server_cert=nginx_cert,
                        server_key=nginx_key, client_ca=client_cas,
                        directory=base / "nginx") as nginx:
            yield Proxied(home, server, nginx, nginx_cert, work, factory)


def test_bootstrap_enrollment_through_nginx(proxied: Proxied) -> None:
    credential = proxied.home.credential("renewable")
    _, csr = proxied.csr("boot", "proxy-0001")
    status, body = proxied.via_nginx("simpleenroll", "-u", f"{credential.id}:{credential.secret}",
                                     body=csr)
    assert status == 200, body
    assert b"CN = proxy-0001" in openssl("x509", "-in", str(proxied.pem(body, "boot")),
                                         "-noout", "-subject")


def test_reenrollment_and_factory_identity_arrive_through_the_header(proxied: Proxied) -> None:
    credential = proxied.home.credential("renewable")
    key, csr = proxied.csr("first", "proxy-0002")
    _, body = proxied.via_nginx("simpleenroll", "-u", f"{credential.id}:{credential.secret}",
                                body=csr)
    current = proxied.pem(body, "first")
    _, again = proxied.csr("second", "proxy-0002")
    status, body = proxied.via_nginx("simplereenroll", "--cert", str(current), "--key", str(key),
                                     body=again)
    assert status == 200, body
    _, factory_csr = proxied.csr("factory", "ACME-0201")
    status, body = proxied.via_nginx(
        "simpleenroll", "--cert", str(proxied.factory / "ACME-0201.pem"),
        "--key", str(proxied.factory / "ACME-0201.key"), body=factory_csr)
    assert status == 200, body


def test_strongswan_pki_through_nginx(proxied: Proxied) -> None:
    credential = proxied.home.credential("renewable")
    key = generate_key(proxied.work / "pki.key")
    csr = create_csr(key, proxied.work / "pki.csr", dn="CN=proxy-0003")
    result = est_enroll(f"https://127.0.0.1:{proxied.nginx.port}", csr,
                        tls_trust=[proxied.nginx_chain],
                        userpass=(credential.id, credential.secret))
    assert b"BEGIN CERTIFICATE" in result.certificate


def test_header_from_an_untrusted_address_is_ignored(proxied: Proxied) -> None:
    """A client that reaches the proxy listener directly, from an address that is not the
    proxy, cannot claim a certificate by sending the header itself."""
    credential = proxied.home.credential("renewable")
    _, csr = proxied.csr("victim", "proxy-0004")
    _, body = proxied.via_nginx("simpleenroll", "-u", f"{credential.id}:{credential.secret}",
                                body=csr)
    stolen = urllib.parse.quote(proxied.pem(body, "victim").read_text())
    _, again = proxied.csr("thief", "proxy-0004")
    url = f"http://127.0.0.1:{proxied.server.proxy_port}/.well-known/est/simplereenroll"
    status, text = proxied.curl(url, "--interface", "127.0.0.2", "-H",
                                f"X-SSL-Client-Cert: {stolen}", body=again)
    assert status == 401 and b"current certificate" in text
    # The HTTPS listener never reads the header, whoever sends it.
    https = f"{proxied.server.base}/simplereenroll"
    status, text = proxied.curl(https, "--cacert", str(proxied.server.tls_chain), "-H",
                                f"X-SSL-Client-Cert: {stolen}", body=again)
    assert status == 401
