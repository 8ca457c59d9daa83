"""EST with strongSwan's `pki --estca/--est`: an independent client with its own HTTP and TLS
stack and strict expectations (single-line base64, Content-Length, HTTP/1.1, no labels)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from support.est_home import Home, make_factory_pki, openssl, prepare_est_home
from support.fleet_server import RunningServer, fleet_server
from support.strongswan import PkiError, create_csr, est_cacerts, est_enroll, generate_key

SETTINGS = """
[est]
default_profile = "renewable"
"""


@dataclass(frozen=True)
class Setup:
    home: Home
    server: RunningServer
    work: Path
    factory: Path
    ca_files: tuple[Path, ...]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.port}"

    def trust(self) -> list[Path]:
        return [*self.ca_files, self.server.tls_chain]

    def csr(self, name: str, cn: str) -> tuple[Path, Path]:
        key = generate_key(self.work / f"{name}.key")
        return key, create_csr(key, self.work / f"{name}.csr", dn=f"CN={cn}")

    def verify(self, cert_pem: bytes, name: str) -> x509.Certificate:
        leaf = self.work / f"{name}.pem"
        leaf.write_bytes(cert_pem)
        root = next(p for p in self.ca_files if _self_signed(p))
        others = [p for p in self.ca_files if p != root]
        args = ["verify", "-CAfile", str(root)]
        for other in others:
            args += ["-untrusted", str(other)]
        assert b": OK" in openssl(*args, str(leaf))
        return x509.load_pem_x509_certificate(cert_pem)


def _self_signed(path: Path) -> bool:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.subject == cert.issuer


@pytest.fixture(scope="module")
def setup(initialised_home_template: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("est-pki")
    home = prepare_est_home(initialised_home_template, base / "home", settings=SETTINGS)
    factory = base / "factory"
    home.cli("manufacturers", "add", "acme", "--ca",
             str(make_factory_pki(factory, ["ACME-0101"])), "--profile", "renewable")
    work = base / "work"
    work.mkdir()
    with fleet_server(home.path, workers=2) as server:
        fetched = est_cacerts(f"https://127.0.0.1:{server.port}", tls_trust=[server.tls_chain],
                              caout=work / "ca.pem")
        yield Setup(home, server, work, factory, fetched.files)


def test_estca_fetches_the_root_and_the_issuing_ca(setup: Setup) -> None:
    subjects = sorted(x509.load_pem_x509_certificate(p.read_bytes()).subject.rfc4514_string()
                      for p in setup.ca_files)
    assert subjects == ["CN=Test Fleet Issuing CA 1,O=Test Fleet",
                        "CN=Test Fleet Root CA,O=Test Fleet"]


def test_first_enrollment_with_a_bootstrap_secret(setup: Setup) -> None:
    credential = setup.home.credential("renewable")
    _, csr = setup.csr("boot", "pki-0001")
    result = est_enroll(setup.url, csr, tls_trust=setup.trust(),
                        userpass=(credential.id, credential.secret))
    cert = setup.verify(result.certificate, "boot")
    assert cert.subject.rfc4514_string() == "CN=pki-0001"


def test_reenrollment_with_the_obtained_certificate(setup: Setup) -> None:
    credential = setup.home.credential("renewable")
    key, csr = setup.csr("old", "pki-0002")
    first = est_enroll(setup.url, csr, tls_trust=setup.trust(),
                       userpass=(credential.id, credential.secret), out=setup.work / "old.pem")
    assert first.path is not None
    _, renewal = setup.csr("new", "pki-0002")
    renewed = est_enroll(setup.url, renewal, tls_trust=setup.trust(), client_cert=first.path,
                         client_key=key)
    old = x509.load_pem_x509_certificate(first.certificate)
    new = setup.verify(renewed.certificate, "new")
    assert new.subject == old.subject and new.serial_number != old.serial_number


def test_first_enrollment_with_a_factory_certificate(setup: Setup) -> None:
    _, csr = setup.csr("factory", "ACME-0101")
    result = est_enroll(setup.url, csr, tls_trust=[*setup.trust(),
                                                   setup.factory / "maker-ca.pem"],
                        client_cert=setup.factory / "ACME-0101.pem",
                        client_key=setup.factory / "ACME-0101.key")
    assert setup.verify(result.certificate, "factory").subject.rfc4514_string() == \
        "CN=ACME-0101"


def test_wrong_secret_is_refused_and_nothing_is_issued(setup: Setup) -> None:
    credential = setup.home.credential("renewable")
    _, csr = setup.csr("wrong", "pki-0003")
    before = setup.home.certificate_count()
    with pytest.raises(PkiError, match="401"):
        est_enroll(setup.url, csr, tls_trust=setup.trust(),
                   userpass=(credential.id, "not-the-secret"))
    assert setup.home.certificate_count() == before


def test_tls13_enrollment(setup: Setup) -> None:
    credential = setup.home.credential("renewable")
    _, csr = setup.csr("tls13", "pki-0004")
    result = est_enroll(setup.url, csr, tls_trust=setup.trust(), tls_version_max="1.3",
                        userpass=(credential.id, credential.secret))
    setup.verify(result.certificate, "tls13")
