"""Real SCEP clients (RFC 8894) for integration tests: typed, bounded, loud.

Why: a SCEP server tested only with the requester in scep_messages.py (our own CMS writer)
proves little. Two independent clients with their own CMS stacks:

- strongSwan ``pki --scepca`` / ``pki --scep`` (5.9.8, Debian ``strongswan-pki``; its HTTP
  fetcher is the curl plugin from ``libstrongswan-extra-plugins``). RSA keys only, in DER.
  It encrypts with AES only when GetCACaps lists both AES and SHA-384 (else triple DES),
  accepts only replies signed with the plain ``rsaEncryption`` algorithm identifier, uses
  the SHA-1 of the new public key as transactionID, polls a PENDING request with CertPoll
  every ``--interval`` seconds, and renews (RenewalReq signed with the old certificate) with
  ``--cert old.pem --key old.der``. Its CSR attributes (challengePassword, extensionRequest)
  are not in DER SET OF order. It reports a refusal on stderr as
  ``failInfo:     badRequest - ...`` and exits 1.
- micromdm ``scepclient`` (Debian ``scep``). RSA only; always encrypts with single DES and
  signs with SHA-1; makes its key and a ``csr.pem`` next to ``-private-key`` and silently
  reuses that CSR on the next run (give it a fresh directory); pins the CA with the SHA-256
  of the RA certificate; with an existing ``-certificate`` file it sends a RenewalReq signed
  with that certificate (same key, same CSR, same transactionID). On PENDING it sleeps 30 s
  and sends the PKCSReq again. It reports errors on stdout (``... request failed, failInfo:
  badAlg (0)``) and exits 1; stderr holds its request log.

Every run has a timeout; a failing run raises ``ScepClientError`` carrying the command line
(secrets masked), exit status, stdout and stderr. pki's TPM plugin noise on stderr is kept
in the error text but never interpreted.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from support.strongswan import PkiRun, pki_binary

__all__ = [
    "Cipher",
    "Digest",
    "RsaKey",
    "ScepCa",
    "ScepClientError",
    "ScepEnrollment",
    "ToolRun",
    "pki_scep_enroll",
    "pki_scepca",
    "rsa_key",
    "scep_pki_binary",
    "scepclient_binary",
    "scepclient_enroll",
]

Cipher = Literal["aes", "des3"]
Digest = Literal["sha256", "sha384", "sha512", "sha224", "sha1"]

_OUTPUT_SHOWN = 4000
_WRITTEN_RE = re.compile(r"^(Root CA|Sub CA|RA) cert .*written to '([^']+)'", re.MULTILINE)
_PKI_FAIL_INFO_RE = re.compile(r"failInfo:\s+(\w+)")
_SCEPCLIENT_FAIL_INFO_RE = re.compile(r"failInfo:\s+(\w+)\s+\(\d+\)")


class ScepClientError(RuntimeError):
    """A client run failed or timed out; the message shows argv, exit status and output."""

    def __init__(self, run: ToolRun, reason: str) -> None:
        self.run = run
        super().__init__(f"{reason}\n{run.describe()}")

    @property
    def fail_info(self) -> str | None:
        """The SCEP failInfo name the client reported (``badRequest``...), if any."""
        return self.run.fail_info


@dataclass(frozen=True)
class ToolRun(PkiRun):
    """One finished client process (pki or scepclient); ``argv`` is shown with secrets
    masked, ``elapsed`` includes any polling sleeps."""

    @property
    def fail_info(self) -> str | None:
        """The failInfo name printed by pki (stderr: ``failInfo:     badRequest - ...``) or
        scepclient (stdout: ``failInfo: badAlg (0)``)."""
        text = self.stdout.decode("utf-8", errors="replace") + self.stderr
        match = _SCEPCLIENT_FAIL_INFO_RE.search(text) or _PKI_FAIL_INFO_RE.search(text)
        return match.group(1) if match else None


@dataclass(frozen=True)
class RsaKey:
    """One RSA key pair in the two encodings the clients want: PEM (openssl, scepclient) and
    DER (pki ``--in``/``--key``)."""

    pem: Path
    der: Path


@dataclass(frozen=True)
class ScepCa:
    """What ``pki --scepca`` wrote (PEM files): the root, the issuing CA(s), the RA."""

    run: ToolRun
    root: Path
    issuing: tuple[Path, ...]
    ra: Path


@dataclass(frozen=True)
class ScepEnrollment:
    """A certificate a client obtained: PEM bytes, also saved at ``path``."""

    run: ToolRun
    certificate: bytes
    path: Path


@functools.cache
def scep_pki_binary() -> str:
    """``pki`` with the plugins SCEP needs: those of EST (support.strongswan.pki_binary) plus
    curl, pki's HTTP fetcher for ``--scep``/``--scepca``."""
    found = pki_binary()
    proc = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=30,
                          check=False)
    match = re.search(r"^loaded plugins: (.*)$", proc.stdout + proc.stderr, re.MULTILINE)
    if match is None or "curl" not in match.group(1).split():
        _fail_missing("pki plugin 'curl'", "libstrongswan-extra-plugins")
    return found


@functools.cache
def scepclient_binary() -> str:
    found = shutil.which("scepclient")
    if found is None:
        _fail_missing("'scepclient'", "scep")
    assert found is not None
    return found


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        _fail_missing("'openssl'", "openssl")
    assert found is not None
    return found


def _fail_missing(what: str, package: str) -> None:
    pytest.fail(
        f"required tool {what} not found: install the Debian package {package!r} "
        f"(run ./check, which installs it, or apt-get install {package})",
        pytrace=False,
    )


def rsa_key(directory: Path, name: str, *, bits: int = 2048, timeout: float = 60.0) -> RsaKey:
    """A new RSA key made by ``openssl genrsa``: ``<name>.key`` (PEM) and ``<name>.der``."""
    directory.mkdir(parents=True, exist_ok=True)
    pem, der = directory / f"{name}.key", directory / f"{name}.der"
    for argv in ([_openssl(), "genrsa", "-out", str(pem), str(bits)],
                 [_openssl(), "rsa", "-in", str(pem), "-outform", "DER", "-out", str(der)]):
        run = _run(argv, timeout=timeout)
        if run.returncode != 0:
            raise ScepClientError(run, "openssl failed to make an RSA key")
    pem.chmod(0o600)
    der.chmod(0o600)
    return RsaKey(pem, der)


def pki_scepca(url: str, directory: Path, *, timeout: float = 60.0) -> ScepCa:
    """GetCACert with ``pki --scepca``: writes ``ca.pem`` (root), ``ca-1.pem``... (issuing)
    and ``ra.pem`` into ``directory``, overwriting. pki itself checks that the RA and CA
    certificates chain to the self-signed root it received."""
    directory.mkdir(parents=True, exist_ok=True)
    argv = [scep_pki_binary(), "--scepca", "--url", url, "--caout", str(directory / "ca.pem"),
            "--raout", str(directory / "ra.pem"), "--outform", "pem", "--force"]
    run = _run(argv, timeout=timeout)
    if run.returncode != 0:
        raise ScepClientError(run, "pki --scepca failed")
    written = _WRITTEN_RE.findall(run.stderr)
    roots = [Path(path) for kind, path in written if kind == "Root CA"]
    subs = tuple(Path(path) for kind, path in written if kind == "Sub CA")
    ras = [Path(path) for kind, path in written if kind == "RA"]
    if len(roots) != 1 or len(ras) != 1:
        raise ScepClientError(run, "pki --scepca did not write one root and one RA certificate")
    return ScepCa(run=run, root=roots[0], issuing=subs, ra=ras[0])


def pki_scep_enroll(
    url: str,
    key: RsaKey,
    out: Path,
    *,
    ca: ScepCa,
    dn: str,
    sans: Sequence[str] = (),
    password: str | None = None,
    old_certificate: Path | None = None,
    old_key: RsaKey | None = None,
    cipher: Cipher | None = None,
    digest: Digest | None = None,
    interval: int = 1,
    max_poll_time: int = 30,
    timeout: float | None = None,
) -> ScepEnrollment:
    """PKCSReq (or, with ``old_certificate``/``old_key``, RenewalReq) with ``pki --scep``.

    ``sans`` are strongSwan identity strings (``host.example``, ``192.0.2.1``). On PENDING pki
    polls every ``interval`` seconds until ``max_poll_time`` has passed (both >= 1: pki reads
    0 as "forever"); ``timeout`` bounds the whole process (default ``max_poll_time + 30``).
    The certificate is written to ``out`` in PEM.
    """
    if (old_certificate is None) != (old_key is None):
        raise ValueError("old_certificate and old_key go together")
    if interval < 1 or max_poll_time < 1:
        raise ValueError("interval and max_poll_time must be >= 1 (pki treats 0 as 'forever')")
    argv = [scep_pki_binary(), "--scep", "--url", url, "--in", str(key.der), "--dn", dn,
            "--cacert-enc", str(ca.ra), "--cacert-sig", str(ca.ra), "--cacert", str(ca.root)]
    for issuing in ca.issuing:
        argv += ["--cacert", str(issuing)]
    for san in sans:
        argv += ["--san", san]
    if password is not None:
        argv += ["--password", password]
    if old_certificate is not None and old_key is not None:
        argv += ["--cert", str(old_certificate), "--key", str(old_key.der)]
    if cipher is not None:
        argv += ["--cipher", cipher]
    if digest is not None:
        argv += ["--digest", digest]
    argv += ["--interval", str(interval), "--maxpolltime", str(max_poll_time),
             "--outform", "pem"]
    run = _run(argv, timeout=timeout if timeout is not None else max_poll_time + 30.0,
               secrets=(password,))
    if run.returncode != 0:
        raise ScepClientError(run, "pki --scep failed")
    if b"-----BEGIN CERTIFICATE-----" not in run.stdout:
        raise ScepClientError(run, "pki --scep succeeded but wrote no certificate")
    out.write_bytes(run.stdout)
    return ScepEnrollment(run=run, certificate=run.stdout, path=out)


def scepclient_enroll(
    url: str,
    directory: Path,
    *,
    challenge: str,
    common_name: str,
    ca_fingerprint: str,
    timeout: float = 60.0,
) -> ScepEnrollment:
    """Run micromdm's ``scepclient`` with its key, CSR and certificate in ``directory``.

    A first run there makes ``key.pem`` and ``csr.pem`` and sends a PKCSReq; a run where
    ``cert.pem`` exists sends a RenewalReq signed with it (same key). ``ca_fingerprint`` is
    the SHA-256 hex of the RA certificate (DER). The subject is scepclient's default
    ``C=US, O=scep-client, OU=MDM`` plus ``CN=common_name``. On PENDING scepclient sleeps
    30 s before it asks again: allow for it in ``timeout``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    certificate = directory / "cert.pem"
    argv = [scepclient_binary(), "-server-url", url,
            "-private-key", str(directory / "key.pem"), "-certificate", str(certificate),
            "-challenge", challenge, "-cn", common_name, "-ca-fingerprint", ca_fingerprint]
    run = _run(argv, timeout=timeout, secrets=(challenge,), cwd=directory)
    if run.returncode != 0:
        raise ScepClientError(run, "scepclient failed")
    if not certificate.exists():
        raise ScepClientError(run, "scepclient succeeded but wrote no certificate")
    pem = certificate.read_bytes()
    return ScepEnrollment(run=run, certificate=pem, path=certificate)


def _run(argv: list[str], *, timeout: float, secrets: Sequence[str | None] = (),
         cwd: Path | None = None) -> ToolRun:
    """Run a client with a timeout; never raises for a non-zero exit (callers decide)."""
    shown = tuple(_mask(arg, secrets) for arg in argv)
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        run = ToolRun(argv=shown, returncode=None, stdout=_as_bytes(exc.stdout),
                      stderr=_as_bytes(exc.stderr).decode("utf-8", errors="replace"),
                      elapsed=time.monotonic() - started)
        raise ScepClientError(run, f"{Path(argv[0]).name} timed out after {timeout:.0f}s"
                              ) from exc
    return ToolRun(argv=shown, returncode=proc.returncode, stdout=proc.stdout,
                   stderr=proc.stderr.decode("utf-8", errors="replace"),
                   elapsed=time.monotonic() - started)


def _mask(arg: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            arg = arg.replace(secret, "***")
    return arg


def _as_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data.encode() if isinstance(data, str) else data
