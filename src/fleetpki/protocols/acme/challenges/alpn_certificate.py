"""What a tls-alpn-01 validation certificate must hold (RFC 8737 §3; RFC 8738 §6).

Pure checks on DER bytes, apart from the handshake (tls_alpn01.py) so that each rule can be
tested alone. The certificate is not verified against any trust store and its signature is
not checked: RFC 8737 §4 says the protocol does not use RFC 5280 authentication. What counts
is its content: exactly one subjectAltName entry, the identifier, and the critical
id-pe-acmeIdentifier extension holding SHA-256 of the key authorization.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509

from fleetpki.protocols.acme.challenges.problems import problem
from fleetpki.protocols.acme.challenges.target import Target

# RFC 8737 §3 and §6.1: id-pe-acmeIdentifier ::= { id-pe 31 }.
ACME_IDENTIFIER_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")


def expected_extension_value(digest: bytes) -> bytes:
    """RFC 8737 §3: extnValue is the DER of Authorization ::= OCTET STRING (SIZE (32)):
    tag 0x04, length 0x20, the 32 digest bytes."""
    return b"\x04\x20" + digest


def check_certificate(der: bytes, target: Target, digest: bytes, where: str) -> None:
    """Raises "incorrectResponse" naming the first rule the certificate breaks."""
    try:
        certificate = x509.load_der_x509_certificate(der)
        extensions = certificate.extensions
    except ValueError as error:  # includes x509.DuplicateExtension
        raise problem("incorrectResponse", f"{where}: the certificate presented cannot be "
                                           f"parsed ({error})") from None
    _check_subject_alt_name(extensions, target, where)
    _check_acme_identifier(extensions, digest, where)


def _check_subject_alt_name(extensions: x509.Extensions, target: Target, where: str) -> None:
    # RFC 8737 §3: "a subjectAltName extension containing the dNSName being validated and no
    # other entries"; RFC 8738 §6: for an ip identifier, "a single iPAddress" instead.
    wanted = f"IP:{target.host}" if target.ip is not None else f"DNS:{target.host}"
    try:
        names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        raise problem("incorrectResponse", f"{where}: the certificate has no subjectAltName; "
                                           f"expected exactly {wanted}") from None
    found = ", ".join(_describe(name) for name in names) or "none"
    if len(names) != 1 or not _matches(names[0], target):
        raise problem("incorrectResponse", f"{where}: the certificate's subjectAltName must "
                                           f"be exactly {wanted}; found {found}")


def _matches(name: x509.GeneralName, target: Target) -> bool:
    if target.ip is not None:
        return isinstance(name, x509.IPAddress) and name.value == target.ip
    # RFC 8737 §3: dNSName comparison is case-insensitive (RFC 4343).
    return isinstance(name, x509.DNSName) and name.value.lower() == target.host


def _describe(name: x509.GeneralName) -> str:
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        value = name.value
        shown = value if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address) \
            else value.with_prefixlen
        return f"IP:{shown}"
    return f"{type(name).__name__}:{name.value}"


def _check_acme_identifier(extensions: x509.Extensions, digest: bytes, where: str) -> None:
    expected = expected_extension_value(digest)
    try:
        extension = extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        raise problem("incorrectResponse", f"{where}: the certificate has no acmeIdentifier "
                                           "extension (1.3.6.1.5.5.7.1.31); expected one "
                                           f"holding SHA-256 {digest.hex()}") from None
    # RFC 8737 §3: the extension MUST be critical, so that no other software trusts the
    # certificate by mistake.
    if not extension.critical:
        raise problem("incorrectResponse", f"{where}: the certificate's acmeIdentifier "
                                           "extension is not marked critical")
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if raw != expected:
        if len(raw) == 34 and raw[:2] == b"\x04\x20":
            found = f"SHA-256 {raw[2:].hex()}"
        else:
            found = f"{len(raw)} bytes that are not a DER OCTET STRING of 32 bytes"
        raise problem("incorrectResponse", f"{where}: the certificate's acmeIdentifier "
                                           f"extension holds {found}; expected SHA-256 of the "
                                           f"key authorization, {digest.hex()}")
