"""The OCSP responder of `fleetpki serve` (RFC 6960, RFC 5019 profile) against two independent
clients: `openssl ocsp` and GnuTLS's `ocsptool`, plus curl for GET and for bad input.

Every request goes to the URL the certificate's AIA names. One server for the module; tests
that change a certificate's status issue their own.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from support.fleet_server import RunningServer, fleet_server
from support.http_head import head
from support.revocation_home import (
    HttpReply,
    Issued,
    RevocationHome,
    curl,
    openssl_date,
    prepare_revocation_home,
    run_tool,
)


@dataclass(frozen=True)
class Responder:
    home: RevocationHome
    server: RunningServer
    good: Issued
    revoked: Issued

    @property
    def url(self) -> str:
        [url] = self.good.ocsp_urls
        return url

    def ask(self, *args: str, issuer: Path | None = None) -> tuple[int, str]:
        """`openssl ocsp` (POST) against the responder, trusting our root;
        (exit code, stdout + stderr)."""
        result = run_tool("openssl", "ocsp", "-issuer", str(issuer or self.home.issuing_pem),
                          "-url", self.url, "-CAfile", str(self.home.root_pem),
                          "-timeout", "20", *args)
        return result.returncode, result.stdout + result.stderr

    def request_der(self, cert: Issued) -> bytes:
        """A nonce-free OCSPRequest made by openssl."""
        out = self.home.work / f"{cert.name}.ocsp-req"
        made = run_tool("openssl", "ocsp", "-issuer", str(self.home.issuing_pem), "-cert",
                        str(cert.pem), "-no_nonce", "-reqout", str(out))
        assert made.returncode == 0, made.stderr
        return out.read_bytes()

    def get(self, request: bytes, *args: str) -> HttpReply:
        """RFC 6960 Appendix A.1: GET {url}/{url-encoding of base64 of the DER}."""
        encoded = urllib.parse.quote(base64.b64encode(request).decode(), safe="")
        return curl(f"{self.url}/{encoded}", *args)

    def post(self, body: bytes, *args: str) -> HttpReply:
        return curl(self.url, "-H", "Content-Type: application/ocsp-request", *args, body=body)

    def read_response(self, der: bytes, cert: Issued | None = None) -> str:
        """openssl's reading of a DER OCSPResponse (verified when a certificate is given)."""
        path = self.home.work / "response.der"
        path.write_bytes(der)
        args = ["ocsp", "-respin", str(path), "-resp_text"]
        if cert is None:
            args.append("-noverify")
        else:
            args += ["-issuer", str(self.home.issuing_pem), "-cert", str(cert.pem),
                     "-CAfile", str(self.home.root_pem)]
        result = run_tool("openssl", *args)
        return result.stdout + result.stderr


@pytest.fixture(scope="module")
def responder(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[Responder]:
    home = prepare_revocation_home(initialised_home_template, tmp_path_factory.mktemp("ocsp"))
    good, revoked = home.issue("plain", "ocsp-good"), home.issue("plain", "ocsp-revoked")
    home.revoke(revoked, "keyCompromise")
    with fleet_server(home.path) as server:
        assert server.revocation_port == home.port
        yield Responder(home, server, good, revoked)


def test_the_certificates_point_at_this_responder(responder: Responder) -> None:
    assert responder.url == f"{responder.server.revocation_base}/ocsp"


def test_openssl_post_good(responder: Responder) -> None:
    code, output = responder.ask("-cert", str(responder.good.pem))
    assert code == 0, output
    assert "Response verify OK" in output
    assert f"{responder.good.pem}: good" in output


def test_openssl_post_revoked_with_reason_and_time(responder: Responder) -> None:
    code, output = responder.ask("-cert", str(responder.revoked.pem))
    assert code == 0, output
    assert "Response verify OK" in output
    assert f"{responder.revoked.pem}: revoked" in output
    assert "Reason: keyCompromise" in output
    revoked_at = dt.datetime.fromisoformat(str(responder.home.details(responder.revoked)
                                               ["revoked_at"]))
    assert f"Revocation Time: {openssl_date(revoked_at.replace(microsecond=0))}" in output


def test_openssl_serial_never_issued_is_unknown(responder: Responder) -> None:
    code, output = responder.ask("-serial", "0x1234")
    assert code == 0, output
    assert "Response verify OK" in output and "0x1234: unknown" in output


def test_openssl_nonce_is_echoed(responder: Responder) -> None:
    code, output = responder.ask("-cert", str(responder.good.pem), "-nonce", "-req_text",
                                 "-resp_text")
    assert code == 0, output
    assert "Response verify OK" in output and "WARNING" not in output
    nonces = re.findall(r"OCSP Nonce: \n\s+([0-9A-F]+)", output)
    assert len(nonces) == 2 and nonces[0] == nonces[1], output


@pytest.mark.parametrize("same_name", [False, True], ids=["other-name", "same-name-other-key"])
def test_a_foreign_ca_is_unauthorized(responder: Responder, same_name: bool) -> None:
    subject = "/CN=Foreign Fleet CA"
    if same_name:
        ours = x509.load_pem_x509_certificate(responder.home.issuing_pem.read_bytes()).subject
        subject = "".join(f"/{a.rfc4514_attribute_name}={a.value}" for a in ours)
    foreign = responder.home.work / f"foreign-{same_name}.pem"
    made = run_tool("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(foreign) + ".key",
                    "-out", str(foreign), "-days", "2", "-subj", subject,
                    "-addext", "basicConstraints=critical,CA:TRUE")
    assert made.returncode == 0, made.stderr
    code, output = responder.ask("-serial", "0x01", issuer=foreign)
    assert code != 0 and "Responder Error: unauthorized (6)" in output, output


def test_get_answer_with_cache_headers(responder: Responder) -> None:
    reply = responder.get(responder.request_der(responder.revoked))
    asked = time.time()
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/ocsp-response"
    text = responder.read_response(reply.body, responder.revoked)
    assert "Response verify OK" in text and "Cert Status: revoked" in text, text
    assert "Revocation Reason: keyCompromise (0x1)" in text
    this_update = _time_in(text, "This Update")
    next_update = _time_in(text, "Next Update")
    headers = reply.headers
    # RFC 5019 §6.2: cacheable until nextUpdate, no longer.
    max_age = re.fullmatch(r"max-age=(\d+), public, no-transform, must-revalidate",
                           headers["cache-control"])
    assert max_age is not None, headers
    assert abs(int(max_age.group(1)) - (next_update.timestamp() - asked)) <= 5
    assert email.utils.parsedate_to_datetime(headers["last-modified"]) == this_update
    assert email.utils.parsedate_to_datetime(headers["expires"]) == next_update
    assert re.fullmatch(r'"[0-9a-f]{16,}"', headers["etag"]), headers
    again = responder.get(responder.request_der(responder.revoked), "-H",
                          f"If-None-Match: {headers['etag']}")
    assert again.status == 304 and again.body == b"", again


def test_a_revocation_shows_at_once_after_good_was_served(responder: Responder) -> None:
    home = responder.home
    cert = home.issue("plain", "ocsp-soon-revoked")
    request = responder.request_der(cert)
    first = responder.get(request)
    assert "Cert Status: good" in responder.read_response(first.body, cert)
    home.revoke(cert, "superseded")
    second = responder.get(request)
    text = responder.read_response(second.body, cert)
    assert "Cert Status: revoked" in text and "Revocation Reason: superseded" in text, text
    assert second.headers["etag"] != first.headers["etag"]


def test_a_hold_and_its_release_show_at_once(responder: Responder) -> None:
    home = responder.home
    cert = home.issue("plain", "ocsp-held")
    home.revoke(cert, "certificateHold")
    code, output = responder.ask("-cert", str(cert.pem))
    assert code == 0 and f"{cert.pem}: revoked" in output, output
    assert "Reason: certificateHold" in output
    home.cli("certs", "release-hold", cert.serial_hex)
    code, output = responder.ask("-cert", str(cert.pem))
    assert code == 0 and f"{cert.pem}: good" in output, output


# -- GnuTLS -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "status"), [("good", "good"), ("revoked", "revoked")])
def test_gnutls_ocsptool(responder: Responder, name: str, status: str) -> None:
    cert: Issued = getattr(responder, name)
    result = run_tool("ocsptool", f"--ask={responder.url}", "--load-cert", str(cert.pem),
                      "--load-issuer", str(responder.home.issuing_pem))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"Certificate Status: {status}" in output, output
    assert "Verifying OCSP Response: Success." in output, output


def test_gnutls_certtool_verifies_the_chain(responder: Responder) -> None:
    chain = responder.home.work / "good-chain.pem"
    chain.write_bytes(responder.good.pem.read_bytes() + responder.home.issuing_pem.read_bytes())
    result = run_tool("certtool", "--verify", "--load-ca-certificate",
                      str(responder.home.root_pem), "--infile", str(chain))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Chain verification output: Verified. The certificate is trusted." in output


def test_gnutls_certtool_checks_the_published_crl(responder: Responder) -> None:
    """A second CRL implementation: the complete CRL's signature verifies under the issuing CA,
    and path validation with it refuses the revoked certificate and accepts the good one."""
    [url] = responder.good.crl_urls
    crl_der = responder.home.crl_file(url).read_bytes()
    crl = responder.home.work / "complete.crl.pem"
    crl.write_bytes(x509.load_der_x509_crl(crl_der).public_bytes(Encoding.PEM))
    checked = run_tool("certtool", "--verify-crl", "--load-ca-certificate",
                       str(responder.home.issuing_pem), "--infile", str(crl))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Verified" in checked.stdout + checked.stderr
    for issued, trusted in ((responder.good, True), (responder.revoked, False)):
        chain = responder.home.work / f"{issued.pem.stem}-crl-chain.pem"
        chain.write_bytes(issued.pem.read_bytes() + responder.home.issuing_pem.read_bytes())
        result = run_tool("certtool", "--verify", "--load-ca-certificate",
                          str(responder.home.root_pem), "--load-crl", str(crl),
                          "--infile", str(chain))
        output = result.stdout + result.stderr
        if trusted:
            assert result.returncode == 0, output
            assert "The certificate is trusted." in output
        else:
            assert result.returncode != 0, output
            assert "revoked" in output.lower(), output


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "args"), [
    (b"garbage, not DER\n", ()),
    (b"", ()),
    (b"\x30" + b"\x82\x23\x28" + bytes(9000), ()),  # > 8 KiB, Content-Length declared
    (bytes(9000), ("-H", "Transfer-Encoding: chunked")),  # > 8 KiB, no length declared
], ids=["garbage", "empty", "oversized", "oversized-chunked"])
def test_bad_posts_get_malformed_request(responder: Responder, body: bytes,
                                         args: tuple[str, ...]) -> None:
    reply = responder.post(body, *args)
    assert reply.status == 200, reply
    assert reply.headers["content-type"] == "application/ocsp-response"
    assert reply.headers["cache-control"] == "no-store"
    text = responder.read_response(reply.body)
    assert "Responder Error: malformedrequest (1)" in text, text
    if len(body) > 8192 and not args:  # refused by its Content-Length, unread: not reusable
        assert reply.headers["connection"] == "close"
    _still_answers(responder)


def test_head_on_a_get_url_answers_as_the_get_without_content(responder: Responder) -> None:
    """RFC 9110 §9.3.2: caches and monitoring probes check a URL with HEAD; they get the
    GET's status and headers, its Content-Length included, and no content."""
    encoded = urllib.parse.quote(
        base64.b64encode(responder.request_der(responder.good)).decode(), safe="")
    url = f"{responder.url}/{encoded}"
    got, reply = curl(url), head(url)
    assert (reply.status, got.status) == (200, 200), (reply, got)
    assert reply.after_header == b"", reply
    assert int(reply.headers["content-length"]) == len(got.body) > 0
    for name in ("content-type", "etag", "last-modified", "expires"):
        assert reply.headers[name] == got.headers[name], name
    assert _max_age(reply.headers) - _max_age(got.headers) in (-1, 0)
    # RFC 9110 §8.8.2.1: never modified later than the answer's own Date.
    assert email.utils.parsedate_to_datetime(reply.headers["date"]) >= \
        email.utils.parsedate_to_datetime(reply.headers["last-modified"])
    cached = head(url, headers={"If-None-Match": got.headers["etag"]})
    assert (cached.status, cached.after_header) == (304, b""), cached
    assert cached.headers["etag"] == got.headers["etag"]
    _still_answers(responder)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_other_methods_get_405_with_allow(responder: Responder, method: str) -> None:
    reply = curl(responder.url, "-X", method)
    assert reply.status == 405, reply
    assert reply.headers["allow"] == "GET, HEAD, POST"
    _still_answers(responder)


def _max_age(headers: dict[str, str]) -> int:
    found = re.fullmatch(r"max-age=(\d+), public, no-transform, must-revalidate",
                         headers["cache-control"])
    assert found is not None, headers
    return int(found.group(1))


def _still_answers(responder: Responder) -> None:
    code, output = responder.ask("-cert", str(responder.good.pem))
    assert code == 0 and f"{responder.good.pem}: good" in output, output


def _time_in(text: str, label: str) -> dt.datetime:
    found = re.search(rf"{label}: (\w+ +\d+ [\d:]+ \d+) GMT", text)
    assert found is not None, (label, text)
    return dt.datetime.strptime(found.group(1), "%b %d %H:%M:%S %Y").replace(tzinfo=dt.UTC)
