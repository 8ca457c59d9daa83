"""A data directory set up for EST tests, and small helpers around curl and openssl.

Shared by the EST integration tests (curl/openssl, strongSwan, nginx): profiles for renewal,
server-side keys and manual approval; a manufacturer CA and factory certificates made with the
openssl command line, so the factory PKI is independent of fleetpki's own code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from fleetpki.cli.main import cli
from support.lint import require_tool

EXTRA_PROFILES = """
[profiles.renewable]
description = "renews at any time: for renewal tests"
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256", "ec-p384"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true, pattern = "^[A-Za-z0-9-]{3,64}$" }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
renewal = { window_fraction = 1.0 }
enrollment = { server_keygen = true }

[profiles.held]
issuer = "issuing"
device_id_from = "CN"
keys.allowed = ["ec-p256"]
validity = { default = "30d", maximum = "30d" }
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
enrollment = { approval = "manual", retry_after = "5s" }
"""


@dataclass(frozen=True)
class Credential:
    id: str
    secret: str


class Home:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.runner = CliRunner()

    def cli(self, *args: str) -> str:
        result = self.runner.invoke(cli, ["--home", str(self.path), *args],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    def credential(self, profile: str = "sensor", *, uses: int = 1,
                   device: str | None = None) -> Credential:
        args = ["bootstrap", "create", "--profile", profile, "--uses", str(uses), "--json"]
        if device:
            args += ["--device", device]
        made = json.loads(self.cli(*args))
        return Credential(made["id"], made["secret"])

    def certificate_count(self) -> int:
        out = self.cli("certs", "list", "--json", "--limit", "10000")
        return len([line for line in out.splitlines() if line.strip()])

    def audit_actions(self) -> list[str]:
        out = self.cli("audit", "list", "--limit", "100000")
        return [json.loads(line)["action"] for line in out.splitlines() if line.strip()]


def prepare_est_home(template: Path, target: Path, *, settings: str = "") -> Home:
    shutil.copytree(template, target)
    with (target / "profiles.toml").open("a") as handle:
        handle.write(EXTRA_PROFILES)
    if settings:
        (target / "fleetpki.toml").write_text(settings)
    return Home(target)


def openssl(*args: str, input: bytes | None = None, cwd: Path | None = None) -> bytes:
    result = subprocess.run([require_tool("openssl"), *args], input=input, cwd=cwd,
                            capture_output=True, timeout=60, check=False)
    assert result.returncode == 0, (args, result.stderr.decode(errors="replace"))
    return result.stdout


def make_factory_pki(directory: Path, serials: list[str], *, maker: str = "Acme") -> Path:
    """A manufacturer CA and one IDevID per serial number (subject serialNumber), all made by
    the openssl command line. Returns the CA certificate file; device files are
    <serial>.pem / <serial>.key. Give each manufacturer of one test its own `maker` name:
    TLS finds the CA of a client certificate by name."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_pem = directory / "maker-ca.key", directory / "maker-ca.pem"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(ca_key), "-out", str(ca_pem), "-days", "3650",
            "-subj", f"/O={maker} Devices/CN={maker} IDevID CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for serial in serials:
        key, csr, pem = (directory / f"{serial}.{ext}" for ext in ("key", "csr", "pem"))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(key), "-out", str(csr), "-subj", f"/serialNumber={serial}")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                "-days", "7300", "-out", str(pem), "-set_serial", "0x" + serial.encode().hex())
    return ca_pem


def new_csr(directory: Path, name: str, cn: str, *, curve: str = "P-256") -> tuple[Path, Path]:
    """A key and a DER CSR made by openssl; returns (key file, DER CSR file)."""
    key, csr = directory / f"{name}.key", directory / f"{name}.csr.der"
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", f"ec_paramgen_curve:{curve}", "-nodes",
            "-keyout", str(key), "-outform", "DER", "-out", str(csr), "-subj", f"/CN={cn}")
    return key, csr


def write_ca_files(home: Home, directory: Path) -> tuple[Path, Path]:
    """The issuing CA and the root, each in its own PEM file under `directory` (issuing.pem,
    root.pem), as exported by `fleetpki ca export-chain`; returns (issuing, root)."""
    chain = home.cli("ca", "export-chain", "issuing")
    blocks = [b + "-----END CERTIFICATE-----\n" for b in chain.split("-----END CERTIFICATE-----")
              if "BEGIN" in b]
    (directory / "issuing.pem").write_text(blocks[0].lstrip())
    (directory / "root.pem").write_text(blocks[-1].lstrip())
    return directory / "issuing.pem", directory / "root.pem"
