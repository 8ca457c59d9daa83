"""A data directory set up for revocation tests, and the CLI and openssl calls around it.

The `[revocation]` listener gets a port chosen before anything is issued, so the CRL, delta CRL
and OCSP URLs the certificates carry point at the `fleetpki serve` the tests start later (RFC
5280 §4.2.1.13, §4.2.1.15, §4.2.2.1). One profile per revocation policy (REVOCATION_PROFILES);
keys and CSRs are made by the openssl command line, not by fleetpki.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID

from fleetpki.cli.main import cli
from support.lint import require_tool
from support.ports import free_port

__all__ = ["REVOCATION_PROFILES", "HttpReply", "Issued", "RevocationHome", "crl_entries", "curl",
           "openssl_date", "prepare_revocation_home", "run_tool"]

_CLIENT = """issuer = "issuing"
keys.allowed = ["ec-p256"]
subject.attributes.CN = { required = true }
extensions = { key_usage = ["digitalSignature"], extended_key_usage = ["clientAuth"] }
"""

REVOCATION_PROFILES = f"""
[profiles.plain]
description = "listed on the issuer's complete CRL only"
validity = {{ default = "30d", maximum = "30d" }}
{_CLIENT}
[profiles.sharded]
description = "eight CRL partitions, each with delta CRLs"
validity = {{ default = "30d", maximum = "30d" }}
revocation = {{ crl_shards = 8, delta_crl = true }}
{_CLIENT}
[profiles.kept]
description = "revoked entries stay listed after expiry"
validity = {{ default = "30d", maximum = "30d" }}
revocation = {{ keep_expired = true }}
{_CLIENT}
[profiles.brief]
description = "short-lived: no revocation pointers at all"
validity = {{ default = "2d", maximum = "7d" }}
revocation = {{ short_lived = true }}
{_CLIENT}
[profiles.urgent]
description = "CRLs re-signed as soon as one of these is revoked"
validity = {{ default = "30d", maximum = "30d" }}
revocation = {{ publish_on_revoke = true }}
{_CLIENT}
[profiles.web]
description = "TLS servers on 127.0.0.1 (OCSP stapling)"
issuer = "issuing"
keys.allowed = ["ec-p256"]
validity = {{ default = "30d", maximum = "30d" }}
subject.attributes.CN = {{ required = true }}
san = {{ max_count = 2, rules = [{{ type = "ip", pattern = "^127\\\\.0\\\\.0\\\\.1$" }},
                                {{ type = "dns", under = "fleet.test" }}] }}
extensions = {{ key_usage = ["digitalSignature"], extended_key_usage = ["serverAuth"] }}
"""


def run_tool(name: str, *args: str, input: bytes | None = None, timeout: float = 30
             ) -> subprocess.CompletedProcess[str]:
    """Run an external tool (found on PATH, or the test fails naming the package), bounded;
    the caller judges the exit code."""
    return subprocess.run([require_tool(name), *args], input=input.decode() if input else None,
                          capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


def curl(url: str, *args: str, body: bytes | None = None) -> HttpReply:
    """One plain-HTTP request by curl, the path sent exactly as given (--path-as-is)."""
    command = [require_tool("curl"), "-sS", "--max-time", "20", "--path-as-is", "-D", "-",
               "-o", "-", url, *args]
    if body is not None:
        command += ["--data-binary", "@-"]
    result = subprocess.run(command, input=body, capture_output=True, timeout=30, check=False)
    assert result.returncode == 0, (url, result.stderr.decode(errors="replace"))
    head, _, payload = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in
               (line.partition(":") for line in lines[1:])}
    return HttpReply(int(lines[0].split()[1]), headers, payload)


def openssl_date(moment: dt.datetime) -> str:
    """A time the way `openssl crl -text` and `openssl ocsp -resp_text` print it."""
    moment = moment.astimezone(dt.UTC)
    return f"{moment:%b} {moment.day:2d} {moment:%H:%M:%S %Y} GMT"


_ENTRY = re.compile(r"^ {4}Serial Number: ([0-9A-F]+)$", re.MULTILINE)


def crl_entries(crl: Path) -> dict[int, str]:
    """Serial -> the text openssl prints for that entry (dates, reason, invalidity date),
    as `openssl crl -text` decodes the file."""
    result = run_tool("openssl", "crl", "-inform", "DER", "-in", str(crl), "-noout", "-text")
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("Signature Algorithm:", 2)[-2]  # the entries end before it
    matches = list(_ENTRY.finditer(text))
    return {int(m.group(1), 16): text[m.end():(matches[i + 1].start() if i + 1 < len(matches)
                                               else len(text))]
            for i, m in enumerate(matches)}


@dataclass(frozen=True)
class Issued:
    """A certificate fleetpki issued, with its key, as files."""

    name: str
    pem: Path  # the leaf alone
    key: Path
    cert: x509.Certificate

    @property
    def serial(self) -> int:
        return self.cert.serial_number

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    def _points(self, extension: type[x509.CRLDistributionPoints] | type[x509.FreshestCRL]
                ) -> list[str]:
        try:
            points = self.cert.extensions.get_extension_for_class(extension).value
        except x509.ExtensionNotFound:
            return []
        return [name.value for point in points for name in point.full_name or []
                if isinstance(name, x509.UniformResourceIdentifier)]

    @property
    def crl_urls(self) -> list[str]:
        return self._points(x509.CRLDistributionPoints)

    @property
    def delta_urls(self) -> list[str]:
        return self._points(x509.FreshestCRL)

    @property
    def ocsp_urls(self) -> list[str]:
        try:
            access = self.cert.extensions.get_extension_for_class(
                x509.AuthorityInformationAccess).value
        except x509.ExtensionNotFound:
            return []
        return [d.access_location.value for d in access
                if d.access_method == AuthorityInformationAccessOID.OCSP]


class RevocationHome:
    """A copy of the initialised template with revocation settings and profiles; the CLI runs
    in-process (a `python -m fleetpki.cli` costs two seconds of imports per call)."""

    def __init__(self, path: Path, work: Path, port: int) -> None:
        self.path = path
        self.work = work
        self.port = port
        self.runner = CliRunner()
        chain = x509.load_pem_x509_certificates(self.cli("ca", "export-chain", "issuing")
                                                .encode())
        self.issuing_pem, self.root_pem = work / "issuing.pem", work / "root.pem"
        self.issuing_pem.write_bytes(_pem(chain[0]))
        self.root_pem.write_bytes(_pem(chain[-1]))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def crl_directory(self) -> Path:
        return self.path / "crl"

    def run(self, *args: str) -> Result:
        """One CLI command; the caller judges the exit code."""
        return self.runner.invoke(cli, ["--home", str(self.path), *args],
                                  catch_exceptions=False)

    def cli(self, *args: str) -> str:
        """One CLI command that must succeed; its standard output."""
        result = self.run(*args)
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    def issue(self, profile: str, cn: str, *, validity: str | None = None,
              san: str | None = None, chain: bool = False) -> Issued:
        """Key and CSR by openssl, certificate by `fleetpki issue`."""
        key, csr, pem = (self.work / f"{cn}.{ext}" for ext in ("key", "csr", "pem"))
        args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}"]
        if san:
            args += ["-addext", f"subjectAltName={san}"]
        made = run_tool("openssl", *args)
        assert made.returncode == 0, made.stderr
        command = ["issue", "--profile", profile, "--csr", str(csr), "--out", str(pem)]
        if validity:
            command += ["--validity", validity]
        if chain:
            command.append("--chain")
        self.cli(*command)
        return Issued(cn, pem, key, x509.load_pem_x509_certificates(pem.read_bytes())[0])

    def revoke(self, issued: Issued, reason: str, *,
               invalidity_date: dt.datetime | None = None) -> None:
        args = ["certs", "revoke", issued.serial_hex, "--reason", reason]
        if invalidity_date is not None:
            args += ["--invalidity-date", invalidity_date.isoformat()]
        self.cli(*args)

    def publish(self, *, force: bool = False) -> list[dict[str, object]]:
        """`fleetpki crl publish --json`: what was written."""
        written: list[dict[str, object]] = json.loads(
            self.cli("crl", "publish", "--json", *(["--force"] if force else [])))
        return written

    def crl_file(self, url: str) -> Path:
        """The published file behind a CRL URL (the path under /crl/ is the file's)."""
        path = urlsplit(url).path
        assert path.startswith("/crl/"), url
        return self.crl_directory / path.removeprefix("/crl/")

    def root_crl(self) -> Path:
        """The root's CRL over its issuing CAs (`fleetpki ca root-crl`)."""
        out = self.work / "root.crl"
        self.cli("ca", "root-crl", "--out", str(out))
        return out

    def details(self, issued: Issued) -> dict[str, object]:
        shown: dict[str, object] = json.loads(self.cli("certs", "show", issued.serial_hex))
        return shown


def prepare_revocation_home(template: Path, base: Path, *, settings: str = "",
                            check_interval: str = "30s") -> RevocationHome:
    """Copy the template home, add the profiles and a `[revocation]` table whose listener and
    base_url use a port chosen now."""
    home, work = base / "home", base / "work"
    shutil.copytree(template, home)
    work.mkdir()
    port = free_port()
    with (home / "profiles.toml").open("a") as handle:
        handle.write(REVOCATION_PROFILES)
    (home / "fleetpki.toml").write_text(
        "[revocation]\n"
        f'listen = "127.0.0.1:{port}"\n'
        f'base_url = "http://127.0.0.1:{port}"\n'
        f'check_interval = "{check_interval}"\n' + settings)
    return RevocationHome(home, work, port)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)
