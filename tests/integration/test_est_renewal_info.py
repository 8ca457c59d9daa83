"""EST `renewalinfo` against `fleetpki serve` over real mutual TLS, with curl as the device.

A device enrolls with a bootstrap secret, then asks for renewal information with the issued
certificate and key as its TLS client certificate (curl --cert/--key): the TLS layer, the
ASGI adapter and the RA all take part. openssl reads the certificate, not fleetpki.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from support.est_home import Home, new_csr, openssl, prepare_est_home
from support.fleet_server import RunningServer, fleet_server
from support.lint import require_tool

Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Device:
    certificate: Path
    key: Path

    @property
    def parsed(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certificate.read_bytes())


@dataclass(frozen=True)
class Est:
    home: Home
    server: RunningServer
    work: Path

    def curl(self, path: str, *args: str, body: bytes | None = None) -> Reply:
        """One request; returns (status, lower-cased headers, body)."""
        headers_file = self.work / f"headers-{path.replace('/', '-')}.txt"
        command = [require_tool("curl"), "-sS", "--max-time", "30", "--cacert",
                   str(self.server.tls_chain), "-D", str(headers_file), "-o", "-",
                   f"{self.server.base}/{path}", *args]
        if body is not None:
            command += ["--data-binary", "@-", "-H", "Content-Type: application/pkcs10"]
        result = subprocess.run(command, input=body, capture_output=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr.decode(errors="replace")
        lines = headers_file.read_bytes().decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if ":" in line)}
        return int(lines[0].split()[1]), headers, result.stdout

    def enroll(self, cn: str) -> Device:
        """First enrollment with a bootstrap secret in the `renewable` profile."""
        credential = self.home.credential("renewable")
        key, csr = new_csr(self.work, cn, cn)
        status, _, body = self.curl("renewable/simpleenroll", "-u",
                                    f"{credential.id}:{credential.secret}",
                                    body=base64.b64encode(csr.read_bytes()))
        assert status == 200, body
        pem = self.work / f"{cn}.pem"
        pem.write_bytes(openssl("pkcs7", "-inform", "DER", "-print_certs",
                                input=base64.b64decode(body)))
        return Device(pem, key)

    def renewal_info(self, device: Device, path: str = "renewalinfo") -> Reply:
        return self.curl(path, "--cert", str(device.certificate), "--key", str(device.key))


@pytest.fixture(scope="module")
def est(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[Est]:
    base = tmp_path_factory.mktemp("est-renewalinfo")
    home = prepare_est_home(initialised_home_template, base / "home")
    work = base / "work"
    work.mkdir()
    with fleet_server(home.path) as server:
        yield Est(home, server, work)


def openssl_serial(device: Device) -> str:
    """The serial as openssl prints it (upper-case hex), in the document's form."""
    out = openssl("x509", "-in", str(device.certificate), "-noout", "-serial").decode()
    return out.strip().removeprefix("serial=").lower().lstrip("0")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def test_renewalinfo_with_the_issued_certificate_over_mtls(est: Est) -> None:
    device = est.enroll("info-0001")
    status, headers, body = est.renewal_info(device, "renewable/renewalinfo")
    assert status == 200, body
    assert headers["content-type"] == "application/json"
    assert headers["retry-after"] == "86400"  # the profile's renewal.info_interval (1d)
    assert headers["cache-control"] == "private, no-cache"
    document = json.loads(body)
    assert document["status"] == "valid"
    assert document["serial"] == openssl_serial(device)
    cert = device.parsed
    assert utc(document["notAfter"]) == cert.not_valid_after_utc
    window = document["suggestedWindow"]
    # `renewable` renews at any time (window_fraction 1.0): the suggested window is the
    # first half of the whole lifetime.
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert utc(window["start"]) == cert.not_valid_before_utc
    assert abs(utc(window["end"]) - (cert.not_valid_before_utc + lifetime / 2)) \
        < dt.timedelta(seconds=1)
    assert "explanation" not in document


def test_renewalinfo_without_a_label_answers_for_the_certificates_profile(est: Est) -> None:
    device = est.enroll("info-0002")
    status, _, body = est.renewal_info(device)
    assert status == 200 and json.loads(body)["serial"] == openssl_serial(device)


def test_renewalinfo_without_a_client_certificate_is_401(est: Est) -> None:
    status, headers, body = est.curl("renewalinfo")
    assert status == 401
    assert b"present the current certificate" in body and b"Traceback" not in body
    assert headers["www-authenticate"].startswith("Basic realm=")


def test_renewalinfo_of_a_revoked_certificate_says_enroll_again(est: Est) -> None:
    device = est.enroll("info-0003")
    est.home.cli("certs", "revoke", openssl_serial(device), "--reason", "keyCompromise")
    status, _, body = est.renewal_info(device)
    assert status == 200, body
    document = json.loads(body)
    assert document["status"] == "revoked"
    assert "enroll again" in document["explanation"]
    window = document["suggestedWindow"]
    assert utc(window["start"]) <= dt.datetime.now(dt.UTC) <= utc(window["end"]) \
        + dt.timedelta(minutes=1)
