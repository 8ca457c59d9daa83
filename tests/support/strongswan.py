"""strongSwan's ``pki`` as an independent EST client (RFC 7030): typed, bounded, loud.

Why: an EST server tested only with our own client proves little. ``pki --estca`` and
``pki --est`` (strongSwan 5.9.8, Debian ``strongswan-pki``) are a separate implementation
with their own HTTP and TLS stack (strongSwan's libtls, not curl), so they show what a
server must tolerate. Every run has a timeout, and a failing run raises ``PkiError``
carrying pki's stdout and stderr.

What pki needs on Debian 12: ``strongswan-pki`` (the tool), ``libstrongswan`` (libtls and
the x509/pem/pkcs7 plugins; a dependency) and ``libstrongswan-standard-plugins`` (the
openssl plugin: without it pki can neither load nor generate EC keys and certificates and
offers only AES-CBC TLS 1.2 suites). The curl plugin from ``libstrongswan-extra-plugins``
is not used by ``--est``/``--estca``; it is the HTTP fetcher of ``--scep``/``--scepca``.

Behaviour that shapes the server (observed; see tests/integration/test_peer_harness.py):

- URL: ``https://host:port[/prefix]``; requests go to ``[/prefix]/.well-known/est/<op>``,
  so there is no way to address a CA label. ``--cert`` switches from ``simpleenroll`` to
  ``simplereenroll``: pki cannot do an initial enrollment authenticated by a certificate
  (IDevID) other than through ``/simplereenroll``.
- TLS: 1.2 only unless ``libtls.version_max = 1.3`` is configured (``tls_version_max``);
  the server certificate must match the URL host (an IP SAN for ``127.0.0.1``). The client
  sends its leaf plus any intermediates it loaded with ``--cacert``, never the root.
- Requests: ``Host: host:port``; Basic ``Authorization`` sent pre-emptively when
  ``--userpass`` is given; POST body is single-line base64 DER without a trailing newline,
  with ``Content-Type: application/pkcs10`` and ``Content-Length``.
- Responses: the status line must be ``HTTP/1.1``; any status >= 300 fails at once (no
  retry on 401); 200 needs ``Content-Length`` and a base64 body without line breaks
  (Content-Type is ignored); the header must arrive in the first read of 1024 bytes, and a
  response spanning more than one TLS record fails unless the header came in a record of
  its own. 202 is polled every ``max(--interval, Retry-After seconds)`` on a new connection.
- ``--estca`` fails unless the certs-only reply contains a self-signed root.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

__all__ = [
    "EnrollResult",
    "EstCaResult",
    "KeyType",
    "OutForm",
    "PkiError",
    "PkiRun",
    "TlsVersion",
    "create_csr",
    "est_cacerts",
    "est_enroll",
    "generate_key",
    "pki_binary",
]

OutForm = Literal["pem", "der"]
KeyType = Literal["ecdsa", "rsa", "ed25519"]
TlsVersion = Literal["1.2", "1.3"]

_REQUIRED_PLUGINS: dict[str, str] = {
    "x509": "libstrongswan",
    "pem": "libstrongswan",
    "pkcs7": "libstrongswan",
    "openssl": "libstrongswan-standard-plugins",
}
"""pki plugins the EST commands need -> Debian package providing each."""

_DEFAULT_SIZE: dict[str, int] = {"ecdsa": 256, "rsa": 2048}
_SYSTEM_CONF = Path("/etc/strongswan.conf")
_WRITTEN_RE = re.compile(r"written to '([^']+)'")
_PEM_CERT_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----\r?\n?", re.DOTALL
)
_OUTPUT_SHOWN = 4000


class PkiError(RuntimeError):
    """A ``pki`` run failed or timed out; the message shows argv, exit status and output."""

    def __init__(self, run: PkiRun, reason: str) -> None:
        self.run = run
        super().__init__(f"{reason}\n{run.describe()}")


@dataclass(frozen=True)
class PkiRun:
    """One finished ``pki`` process. ``argv`` is shown with the Basic password masked."""

    argv: tuple[str, ...]
    returncode: int | None
    """Exit status, or None if the run was killed at its timeout."""
    stdout: bytes
    stderr: str
    elapsed: float
    """Wall-clock seconds, including any 202 polling sleeps."""

    def describe(self) -> str:
        """argv, exit status and (trimmed) output, for assertion and error messages."""
        try:
            out = self.stdout.decode("ascii")
        except UnicodeDecodeError:
            out = f"<{len(self.stdout)} bytes of binary output>"
        return (
            f"$ {shlex.join(self.argv)}\n"
            f"exit status: {self.returncode} after {self.elapsed:.1f}s\n"
            f"--- stdout ---\n{out[-_OUTPUT_SHOWN:]}\n"
            f"--- stderr ---\n{self.stderr[-_OUTPUT_SHOWN:]}"
        )


@dataclass(frozen=True)
class EstCaResult:
    """What ``pki --estca`` wrote: CA certificates, root first, in ``outform`` encoding."""

    run: PkiRun
    certificates: tuple[bytes, ...]
    files: tuple[Path, ...]
    """Files written with ``caout`` (root, then ``-1``, ``-2``...); empty for stdout."""


@dataclass(frozen=True)
class EnrollResult:
    """What ``pki --est`` wrote: the issued certificate in ``outform`` encoding."""

    run: PkiRun
    certificate: bytes
    path: Path | None
    """Where the certificate was also saved, if ``out`` was given."""


@functools.cache
def pki_binary() -> str:
    """Return the ``pki`` executable, failing the test if it or a needed plugin is missing.

    The plugin check reads the "loaded plugins:" line of ``pki --help``: a pki without the
    openssl plugin runs, but fails later with an obscure "building CRED_... failed".
    """
    found = shutil.which("pki")
    if found is None:
        _fail_missing("'pki'", "strongswan-pki")
    assert found is not None
    proc = subprocess.run(
        [found, "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    match = re.search(r"^loaded plugins: (.*)$", proc.stdout + proc.stderr, re.MULTILINE)
    loaded = set(match.group(1).split()) if match else set()
    for plugin, package in _REQUIRED_PLUGINS.items():
        if plugin not in loaded:
            _fail_missing(f"pki plugin {plugin!r}", package)
    return found


def _fail_missing(what: str, package: str) -> None:
    pytest.fail(
        f"required tool {what} not found: install the Debian package {package!r} "
        f"(run ./check, which installs it, or apt-get install {package})",
        pytrace=False,
    )


def generate_key(
    out: Path, *, key_type: KeyType = "ecdsa", size: int | None = None, timeout: float = 60.0
) -> Path:
    """Write a new private key (PEM) with ``pki --gen``; EC P-256 unless told otherwise."""
    argv = [pki_binary(), "--gen", "--type", key_type, "--outform", "pem"]
    if key_type != "ed25519":
        argv += ["--size", str(size if size is not None else _DEFAULT_SIZE[key_type])]
    run = _run(argv, timeout=timeout)
    if run.returncode != 0 or not run.stdout:
        raise PkiError(run, "pki --gen failed")
    out.write_bytes(run.stdout)
    out.chmod(0o600)
    return out


def create_csr(
    key: Path,
    out: Path,
    *,
    dn: str,
    sans: Sequence[str] = (),
    challenge_password: str | None = None,
    outform: OutForm = "pem",
    timeout: float = 60.0,
) -> Path:
    """Write a PKCS#10 request for ``key`` with ``pki --req`` (e.g. ``dn="CN=sensor-1"``).

    The key type is detected from the key file. ``sans`` are strongSwan identity strings
    (``dev.example``, ``192.0.2.1``, ``email:a@b``). ``pki --est`` reads the request from
    a file, in PEM or DER.
    """
    argv = [pki_binary(), "--req", "--in", str(key), "--type", "priv", "--dn", dn,
            "--outform", outform]
    for san in sans:
        argv += ["--san", san]
    if challenge_password is not None:
        argv += ["--password", challenge_password]
    run = _run(argv, timeout=timeout, secrets=(challenge_password,))
    if run.returncode != 0 or not run.stdout:
        raise PkiError(run, "pki --req failed")
    out.write_bytes(run.stdout)
    return out


def est_cacerts(
    base_url: str,
    *,
    tls_trust: Sequence[Path],
    caout: Path | None = None,
    outform: OutForm = "pem",
    tls_version_max: TlsVersion | None = None,
    debug: int = 1,
    timeout: float = 60.0,
) -> EstCaResult:
    """Fetch CA certificates with ``pki --estca`` (``GET .../.well-known/est/cacerts``).

    ``tls_trust`` are the ``--cacert`` files that authenticate the TLS server. With
    ``caout`` pki writes one file per certificate (``caout`` for the root, ``-1``, ``-2``
    for the others, suffix from ``outform`` if ``caout`` has none), overwriting existing
    ones; without it, certificates come from stdout, which pki only writes in PEM.
    ``tls_version_max="1.3"`` enables TLS 1.3 (pki's libtls defaults to 1.2 at most).
    """
    if caout is None and outform != "pem":
        raise ValueError("without caout, pki --estca only writes PEM (to stdout)")
    argv = [pki_binary(), "--estca", "--url", base_url, "--outform", outform,
            "--debug", str(debug)]
    for anchor in tls_trust:
        argv += ["--cacert", str(anchor)]
    if caout is not None:
        argv += ["--caout", str(caout), "--force"]
    run = _run(argv, timeout=timeout, tls_version_max=tls_version_max)
    if run.returncode != 0:
        raise PkiError(run, "pki --estca failed")
    if caout is None:
        certificates = tuple(_PEM_CERT_RE.findall(run.stdout))
        files: tuple[Path, ...] = ()
    else:
        files = tuple(Path(name) for name in _WRITTEN_RE.findall(run.stderr))
        certificates = tuple(path.read_bytes() for path in files)
    if not certificates:
        raise PkiError(run, "pki --estca succeeded but wrote no certificate")
    return EstCaResult(run=run, certificates=certificates, files=files)


def est_enroll(
    base_url: str,
    csr: Path,
    *,
    tls_trust: Sequence[Path],
    userpass: tuple[str, str] | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    out: Path | None = None,
    outform: OutForm = "pem",
    interval: int = 1,
    max_poll_time: int = 30,
    tls_version_max: TlsVersion | None = None,
    debug: int = 1,
    timeout: float | None = None,
) -> EnrollResult:
    """Enroll with ``pki --est``: POST the PKCS#10 in ``csr`` (PEM or DER file).

    Authentication: ``userpass=(user, password)`` sends HTTP Basic (pre-emptively);
    ``client_cert``/``client_key`` make pki authenticate with that certificate in TLS and,
    as pki always does then, use ``/simplereenroll`` (so re-enrollment and IDevID-based
    requests look the same). Both may be combined.

    ``tls_trust`` (``--cacert``) must hold the TLS server's trust chain and the chain of the
    issuing CA (pki checks, and only logs, whether the issued certificate is trusted), plus
    the intermediates of ``client_cert``, which pki sends along with it.

    On 202, pki sleeps ``max(interval, Retry-After)`` seconds and retries, until
    ``max_poll_time`` seconds have passed (checked before each sleep, so one interval may be
    exceeded; pki's own default, 0, polls forever). ``timeout`` bounds the whole process
    (default ``max_poll_time + 60``).
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("client_cert and client_key go together")
    if interval < 1 or max_poll_time < 1:
        raise ValueError("interval and max_poll_time must be >= 1 (pki treats 0 as 'forever')")
    argv = [pki_binary(), "--est", "--url", base_url, "--in", str(csr), "--outform", outform,
            "--interval", str(interval), "--maxpolltime", str(max_poll_time),
            "--debug", str(debug)]
    for anchor in tls_trust:
        argv += ["--cacert", str(anchor)]
    secrets: tuple[str | None, ...] = ()
    if userpass is not None:
        user, password = userpass
        argv += ["--userpass", f"{user}:{password}"]
        secrets = (password,)
    if client_cert is not None and client_key is not None:
        argv += ["--cert", str(client_cert), "--key", str(client_key)]
    run = _run(
        argv,
        timeout=timeout if timeout is not None else max_poll_time + 60.0,
        tls_version_max=tls_version_max,
        secrets=secrets,
    )
    if run.returncode != 0:
        raise PkiError(run, "pki --est failed")
    if not run.stdout:
        raise PkiError(run, "pki --est succeeded but wrote no certificate")
    if out is not None:
        out.write_bytes(run.stdout)
    return EnrollResult(run=run, certificate=run.stdout, path=out)


def _run(
    argv: list[str],
    *,
    timeout: float,
    tls_version_max: TlsVersion | None = None,
    secrets: Sequence[str | None] = (),
) -> PkiRun:
    """Run pki with a timeout; never raises for a non-zero exit (callers decide)."""
    shown = tuple(_mask(arg, secrets) for arg in argv)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="fleetpki-pki-") as tmp:
        if tls_version_max is not None:
            # strongswan.conf is the only way to set libtls versions; include the system
            # file so plugin loading stays as installed.
            conf = Path(tmp) / "strongswan.conf"
            base = Path(env.get("STRONGSWAN_CONF", str(_SYSTEM_CONF)))
            include = f"include {base}\n" if base.exists() else ""
            conf.write_text(
                f"{include}libtls {{\n  version_min = 1.2\n  version_max = {tls_version_max}\n}}\n",
                encoding="utf-8",
            )
            env["STRONGSWAN_CONF"] = str(conf)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            run = PkiRun(
                argv=shown,
                returncode=None,
                stdout=_as_bytes(exc.stdout),
                stderr=_as_bytes(exc.stderr).decode("utf-8", errors="replace"),
                elapsed=time.monotonic() - started,
            )
            raise PkiError(run, f"pki timed out after {timeout:.0f}s") from exc
    return PkiRun(
        argv=shown,
        returncode=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr.decode("utf-8", errors="replace"),
        elapsed=time.monotonic() - started,
    )


def _mask(arg: str, secrets: Sequence[str | None]) -> str:
    for secret in secrets:
        if secret:
            arg = arg.replace(secret, "***")
    return arg


def _as_bytes(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data.encode() if isinstance(data, str) else data
