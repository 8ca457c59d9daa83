"""Independent checks of what fleetpki issues: pkilint (RFC 5280) and ``openssl verify``.

Why: asserting on our own parser's view of our own certificates proves little. pkilint
decodes the DER with a separate ASN.1 stack and checks RFC 5280 rules; OpenSSL builds and
verifies the chain the way relying parties do. Both are external to fleetpki, so a
profile bug cannot hide behind a matching bug in our own code.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

import pytest

# pkilint ships no type information; the ignore is marked so it is not reported as unused
# when mypy runs with --ignore-missing-imports.
from pkilint import loader, pkix  # type: ignore[import-untyped, unused-ignore]
from pkilint.pkix import (  # type: ignore[import-untyped, unused-ignore]
    certificate,
    crl,
    extension,
    name,
)
from pkilint.validation import (  # type: ignore[import-untyped, unused-ignore]
    ValidationFindingSeverity,
)

from .postgres import find_postgres_bindir

__all__ = ["lint_certificate", "lint_crl", "openssl_verify", "require_tool"]

_DEBIAN_PACKAGES: dict[str, str] = {
    "openssl": "openssl",
    "pg_ctl": "postgresql",
    "initdb": "postgresql",
    "postgres": "postgresql",
    "curl": "curl",
    "ocsptool": "gnutls-bin",
    "certtool": "gnutls-bin",
}
"""Executable -> Debian package that provides it, for actionable failure messages."""

_POSTGRES_SERVER_TOOLS = frozenset({"pg_ctl", "initdb", "postgres"})

_REPORTED_SEVERITY = ValidationFindingSeverity.ERROR
"""pkilint severities are IntEnum with FATAL=0 < ERROR=1 < WARNING=2...; report <= ERROR."""


def lint_certificate(der: bytes, *, ignore_codes: Collection[str] = ()) -> list[str]:
    """Lint a DER certificate with pkilint's RFC 5280 linter; return ERROR/FATAL findings.

    This is the same validator set as pkilint's ``lint_pkix_cert`` command. An empty list
    means pkilint found no RFC 5280 violation (warnings and notices are not returned).
    Undecodable input is reported as a single FATAL finding rather than raised, so a test
    asserting ``== []`` shows the reason.

    ``ignore_codes`` drops findings by pkilint code, for known false positives: e.g.
    pkilint 0.13 reports ``pkix.invalid_uri_syntax`` (ERROR) for every URI whose scheme is
    not http(s)/ftp(s)/git/rtsp/sftp/ssh/telnet, so ``urn:`` and ``spiffe://`` SANs fail.
    """
    # The factory functions append to the lists they are given, so build fresh ones per call.
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    try:
        document = loader.load_der_certificate(der, "certificate")
    except Exception as exc:  # pkilint raises ValueError or its own decoding errors
        return [f"loader: pkilint.decoding_failed (FATAL): {type(exc).__name__}: {exc}"]
    return _format_findings(validator.validate(document.root), ignore_codes)


def lint_crl(der: bytes, *, ignore_codes: Collection[str] = ()) -> list[str]:
    """Lint a DER CRL with pkilint's RFC 5280 CRL linter (PKIX profile); ERROR/FATAL only.

    Same validators as ``lint_crl --profile PKIX``; the CRL/ARL ``--type`` switch only
    matters for the CA/B Forum profile, so it is not needed here.
    """
    validator = crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )
    try:
        document = loader.load_der_crl(der, "crl")
    except Exception as exc:
        return [f"loader: pkilint.decoding_failed (FATAL): {type(exc).__name__}: {exc}"]
    return _format_findings(validator.validate(document.root), ignore_codes)


def _format_findings(results: Iterable[Any], ignore_codes: Collection[str]) -> list[str]:
    """Render ValidationResults as 'Validator @ node.path: code (SEVERITY): message'."""
    findings: list[str] = []
    for result in results:
        for description in result.finding_descriptions:
            finding = description.finding
            if finding.severity > _REPORTED_SEVERITY or finding.code in ignore_codes:
                continue
            message = f": {description.message}" if description.message else ""
            findings.append(
                f"{result.validator} @ {result.node.path}: "
                f"{finding.code} ({finding.severity.name}){message}"
            )
    return findings


def openssl_verify(leaf_pem: Path, chain: list[Path], root: Path) -> None:
    """Assert ``openssl verify -x509_strict`` accepts ``leaf_pem`` up to the trusted ``root``.

    ``chain`` holds the untrusted intermediates (PEM files, any order); they are concatenated
    into one ``-untrusted`` bundle because openssl takes a single file there. Raises
    AssertionError carrying openssl's output when verification fails.
    """
    openssl = require_tool("openssl")
    with tempfile.TemporaryDirectory(prefix="fleetpki-verify-") as tmp:
        argv = [openssl, "verify", "-x509_strict", "-CAfile", str(root)]
        if chain:
            bundle = Path(tmp) / "untrusted.pem"
            bundle.write_bytes(b"".join(_pem_with_newline(path.read_bytes()) for path in chain))
            argv += ["-untrusted", str(bundle)]
        argv.append(str(leaf_pem))
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"openssl verify timed out: {' '.join(argv)}") from exc
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or ": OK" not in proc.stdout:
        raise AssertionError(
            f"openssl verify rejected {leaf_pem} (exit {proc.returncode}):\n{output}"
        )


def _pem_with_newline(pem: bytes) -> bytes:
    """Make sure concatenated PEM blocks never end up on one line."""
    return pem if pem.endswith(b"\n") else pem + b"\n"


def require_tool(name: str) -> str:
    """Return the path of executable ``name``, or fail the test saying what to install.

    Failing (not skipping) is deliberate: a missing tool means the environment is not set
    up, and silently skipped checks would look like passing ones. PostgreSQL server tools
    live outside PATH on Debian, so they are also looked up in the server's bin directory.
    """
    found = shutil.which(name)
    if found is None and name in _POSTGRES_SERVER_TOOLS:
        bindir = find_postgres_bindir()
        if bindir is not None and (bindir / name).exists():
            found = str(bindir / name)
    if found is not None:
        return found
    package = _DEBIAN_PACKAGES.get(name, name)
    pytest.fail(
        f"required tool {name!r} not found: install the Debian package {package!r} "
        f"(run ./check, which installs it, or apt-get install {package})",
        pytrace=False,
    )
